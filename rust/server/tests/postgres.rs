//! Many `ibex-server` processes on one PostgreSQL (`--store postgres://…`),
//! clients spread across them, speaking the real protocol
//! (`common::Client`). Each test starts its own cluster in a temporary
//! directory (`common::pg`) and fails, saying why, if it cannot.
//!
//! * p1: a live edit on one instance reaches subscribers on the others at
//!   once; offline edits made against different instances converge.
//! * p2: `kill -9` of an instance while clients write on all three loses
//!   no acknowledged commit; its writer moves to another instance.
//! * p3: PostgreSQL stopped mid-traffic: every instance reports unready,
//!   nothing is acknowledged while it is down; once it is back, instances
//!   are ready again, live relays work again, and everything converges.
//! * p4: login links are kept in the database: a link issued by one
//!   instance is redeemed on another, and an address's quota of links is
//!   counted across instances; `ibex-server import` copies a file
//!   data directory, and a second import adds nothing.
//! * p5: rules given to one instance (`--rules`) are stored and enforced by
//!   an instance started without them.
//! * p6: without a root key an instance refuses to start (`ERR_CONFIG`);
//!   `IBEX_ROOT_KEY` and `--root-key` give the same root; a database
//!   migrated by a newer server is refused (`ERR_STORE_SCHEMA`), one at an
//!   older version is migrated.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::pg::{Instance, ONE_AT_A_TIME, Pg, free_port};
use common::*;
use ibex_core::*;

async fn cluster(pg: &Pg, n: usize) -> Vec<Instance> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(Instance::spawn(&pg.url(), pg.dir(), free_port()).await);
    }
    v
}

/// Receives until `c` holds `id`; how long that took.
async fn arrival(c: &mut Client, id: &CommitId, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while !c.repo().contains_commit(id) {
        if t0.elapsed() > within || c.ws.is_none() {
            return None;
        }
        c.receive_one(Duration::from_millis(20)).await;
    }
    Some(t0.elapsed())
}

/// Syncs every client until they hold the same items (or panics).
async fn converge(clients: &mut [&mut Client], addrs: &[SocketAddr]) -> Vec<(String, ItemData)> {
    let t0 = Instant::now();
    loop {
        for c in clients.iter_mut() {
            settle(c, addrs).await;
        }
        let first = clients[0].state();
        if clients.iter_mut().all(|c| c.state() == first) {
            return first;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "clients did not converge: {:?}", clients.iter_mut().map(|c| c.state().len()).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Syncs `c` completely, reconnecting to the first instance that takes
/// it whenever its connection is gone.
async fn settle(c: &mut Client, addrs: &[SocketAddr]) {
    let t0 = Instant::now();
    loop {
        if c.ws.is_none() {
            for a in addrs {
                if c.try_connect(*a).await.is_ok() {
                    break;
                }
            }
        }
        if c.ws.is_some() && c.try_sync(Duration::from_secs(3)).await.is_ok() {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(40), "no complete sync within 40 s; errors {:?}", c.errors);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes one commit after another until `stop`, each waited for up to
/// 2 s; returns the ids whose acknowledgement arrived. When its
/// connection drops it moves to the next instance of `addrs`.
async fn writer(mut c: Client, addrs: Vec<SocketAddr>, tag: &'static str, stop: Arc<AtomicBool>) -> (Client, Vec<CommitId>) {
    let mut acked = Vec::new();
    let mut waiting = Vec::new();
    let mut i = 0;
    while !stop.load(Relaxed) {
        if c.ws.is_none() {
            for a in &addrs {
                if c.try_connect(*a).await.is_ok() {
                    break;
                }
            }
            if c.ws.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        waiting.push(c.write(&format!("{tag}{i}"), "title", Value::Str(format!("{tag} {i}"))));
        i += 1;
        c.flush_out().await;
        let t0 = Instant::now();
        while c.session.unacked() > 0 && c.ws.is_some() && t0.elapsed() < Duration::from_secs(2) {
            c.receive_one(Duration::from_millis(20)).await;
            let now = c.now();
            let _ = c.session.tick_with(&mut c.repos, now);
        }
        if c.session.unacked() == 0 {
            acked.append(&mut waiting);
        }
    }
    (c, acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p1_live_edits_cross_instances_and_offline_edits_converge() {
    let _one = ONE_AT_A_TIME.lock().await;
    let pg = Pg::start();
    let s = cluster(&pg, 3).await;
    let addrs: Vec<SocketAddr> = s.iter().map(|i| i.addr).collect();
    let (mut a, mut b, mut c) = (Client::new(1), Client::new(2), Client::new(3));
    a.connect(addrs[0]).await;
    b.connect(addrs[1]).await;
    c.connect(addrs[2]).await;
    for x in [&mut a, &mut b, &mut c] {
        x.sync().await;
    }
    // Live, both ways: each edit reaches the subscribers on the other
    // instances without anyone asking.
    let mut took = Vec::new();
    for i in 0..10 {
        let id = a.write(&format!("live{i}"), "title", Value::Str(format!("from A {i}")));
        a.flush_out().await;
        took.push(arrival(&mut c, &id, Duration::from_secs(5)).await.expect("an edit on instance A did not reach a subscriber on C"));
        arrival(&mut b, &id, Duration::from_secs(5)).await.expect("an edit on instance A did not reach a subscriber on B");
        let back = c.write(&format!("back{i}"), "title", Value::Str(format!("from C {i}")));
        c.flush_out().await;
        took.push(arrival(&mut a, &back, Duration::from_secs(5)).await.expect("an edit on instance C did not reach a subscriber on A"));
    }
    took.sort();
    eprintln!("cross-instance relay: p50 {:?}, max {:?}", took[took.len() / 2], took[took.len() - 1]);
    // Offline edits (a shared item edited by everyone, and items of one's
    // own), then each client reconnects to another instance.
    for x in [&mut a, &mut b, &mut c] {
        x.sync().await;
        x.disconnect().await;
    }
    for (n, x) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
        for i in 0..20 {
            x.write(&format!("off{n}-{i}"), "title", Value::Str(format!("offline {n} {i}")));
        }
        x.write("shared", "title", Value::Str(format!("written offline by {n}")));
        x.write("live0", "done", Value::Bool(n == 1));
    }
    a.connect(addrs[1]).await;
    b.connect(addrs[2]).await;
    c.connect(addrs[0]).await;
    let state = converge(&mut [&mut a, &mut b, &mut c], &addrs).await;
    assert_eq!(state.len(), 20 + 60 + 1, "every item of every client is everywhere");
    // A newcomer on any instance gets the same.
    let mut d = Client::new(4);
    d.connect(addrs[2]).await;
    d.sync().await;
    assert_eq!(d.state(), state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2_kill_9_of_an_instance_while_clients_write_loses_no_acknowledged_commit() {
    let _one = ONE_AT_A_TIME.lock().await;
    let pg = Pg::start();
    let mut s = cluster(&pg, 3).await;
    let addrs: Vec<SocketAddr> = s.iter().map(|i| i.addr).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (n, tag) in ["a", "b", "c"].into_iter().enumerate() {
        let mut c = Client::new(n as u8 + 1);
        c.connect(addrs[n]).await;
        c.sync().await;
        // The writer on the instance that dies moves to the next one.
        let order: Vec<SocketAddr> = (0..3).map(|k| addrs[(n + k) % 3]).collect();
        tasks.push(tokio::spawn(writer(c, order, tag, stop.clone())));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s[1].kill9();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Relaxed);
    let mut acked = Vec::new();
    let mut clients = Vec::new();
    for t in tasks {
        let (c, ids) = t.await.unwrap();
        acked.extend(ids);
        clients.push(c);
    }
    let alive = [addrs[0], addrs[2]];
    let mut check = Client::new(9);
    check.connect(addrs[2]).await;
    check.sync().await;
    let lost: Vec<_> = acked.iter().filter(|id| !check.repo().contains_commit(id)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged commits were lost to kill -9", lost.len(), acked.len());
    eprintln!("{} commits acknowledged by three instances, one killed midway; none lost", acked.len());
    assert!(acked.len() > 30, "too few writes to mean anything: {}", acked.len());
    // The killed instance's client converges through another.
    let mut refs: Vec<&mut Client> = clients.iter_mut().collect();
    refs.push(&mut check);
    converge(&mut refs, &alive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_postgres_restarted_mid_traffic_instances_are_unready_then_everything_converges() {
    let _one = ONE_AT_A_TIME.lock().await;
    let pg = Pg::start();
    let s = cluster(&pg, 3).await;
    let addrs: Vec<SocketAddr> = s.iter().map(|i| i.addr).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (n, tag) in ["a", "c"].into_iter().enumerate() {
        let at = n * 2;
        let mut c = Client::new(at as u8 + 1);
        c.connect(addrs[at]).await;
        c.sync().await;
        tasks.push(tokio::spawn(writer(c, vec![addrs[at]], tag, stop.clone())));
    }
    let mut x = Client::new(7);
    x.connect(addrs[0]).await;
    x.sync().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    pg.down();
    let t0 = Instant::now();
    for i in &s {
        while i.ready().await {
            assert!(t0.elapsed() < Duration::from_secs(10), "instance {} still reports ready with the database down", i.addr);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Nothing is acknowledged while nothing can be stored.
    let during = x.write("during", "title", Value::Str("written while the database is down".into()));
    x.flush_out().await;
    x.listen(Duration::from_millis(1500)).await;
    assert!(x.session.unacked() > 0, "a commit was acknowledged while the database was down");
    pg.up().unwrap();
    let t0 = Instant::now();
    for i in &s {
        while !i.ready().await {
            assert!(t0.elapsed() < Duration::from_secs(20), "instance {} not ready again 20 s after the database came back", i.addr);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!("all instances ready {:?} after the database came back", t0.elapsed());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Relaxed);
    let mut acked = Vec::new();
    let mut clients = Vec::new();
    for t in tasks {
        let (c, ids) = t.await.unwrap();
        acked.extend(ids);
        clients.push(c);
    }
    settle(&mut x, &addrs).await;
    assert_eq!(x.session.unacked(), 0);
    // Live relays work again (every instance listens again).
    let mut y = Client::new(8);
    y.connect(addrs[2]).await;
    y.sync().await;
    let id = x.write("after", "title", Value::Str("after the restart".into()));
    x.flush_out().await;
    arrival(&mut y, &id, Duration::from_secs(5)).await.expect("no live relay across instances after the database restart");
    let mut check = Client::new(9);
    check.connect(addrs[1]).await;
    check.sync().await;
    assert!(check.repo().contains_commit(&during), "the commit written during the outage was lost");
    let lost = acked.iter().filter(|id| !check.repo().contains_commit(id)).count();
    assert_eq!(lost, 0, "acknowledged commits lost across the database restart");
    let mut refs: Vec<&mut Client> = clients.iter_mut().collect();
    refs.push(&mut x);
    refs.push(&mut y);
    refs.push(&mut check);
    converge(&mut refs, &addrs).await;
}

/// The token of the last login link `inst` printed for `email`.
fn printed_token(inst: &Instance, pg: &Pg, email: &str) -> Option<String> {
    inst.stdout(pg.dir()).lines().rfind(|l| l.starts_with(&format!("IBEX LOGIN LINK {email} ")))?.split("ibex-login=").nth(1).map(str::to_owned)
}

async fn until(c: &mut Client, what: &str, f: impl Fn(&Client) -> bool) {
    let t0 = Instant::now();
    while !f(c) {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out waiting for {what}; errors: {:?}", c.errors);
        c.receive_one(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p4_login_links_work_on_any_instance_and_a_file_data_directory_imports() {
    use ibex_core::sync::frame::Frame;
    let _one = ONE_AT_A_TIME.lock().await;
    let pg = Pg::start();
    // A file server's data, written by a client, then the server stopped.
    let files = tempfile::tempdir().unwrap();
    let srv = server(files.path()).await;
    let mut w = Client::new(5);
    w.connect(srv.addr).await;
    for i in 0..50 {
        w.write(&format!("old{i}"), "title", Value::Str(format!("from the file server {i}")));
    }
    w.sync().await;
    let old = w.state();
    w.disconnect().await;
    srv.stop().await;
    let import = |what: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ibex-server")).args(["import", "--data"]).arg(files.path()).args(["--store", &pg.url()]).output().unwrap();
        assert!(out.status.success(), "{what} import failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let first = import("the first");
    assert!(first.contains("/data/todos: 50 commits, 50 new"), "{first}");
    let again = import("a repeated");
    assert!(again.contains("/data/todos: 50 commits, 0 new, 50 already there"), "{again}");
    let s = cluster(&pg, 2).await;
    // The imported data is served, and the file server's clients' sessions
    // (their certificates came along in /sys/sessions) keep writing.
    let mut r = Client::new(6);
    r.connect(s[1].addr).await;
    r.sync().await;
    assert_eq!(r.state(), old, "the imported repository differs");
    w.connect(s[0].addr).await;
    w.write("new", "title", Value::Str("after the move".into()));
    w.sync().await;
    assert!(w.errors.is_empty(), "{:?}", w.errors);
    // A link asked for on A is redeemed on B, once.
    let mut a = Client::new(1);
    a.connect(s[0].addr).await;
    a.send(&Frame::Login { email: "ann@example.org".into() }).await;
    until(&mut a, "login-sent", |c| c.login_sent).await;
    let t0 = Instant::now();
    let token = loop {
        if let Some(t) = printed_token(&s[0], &pg, "ann@example.org") {
            break t;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "no login link printed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    a.disconnect().await;
    a.connect(s[1].addr).await;
    a.send(&Frame::Redeem { token: token.clone() }).await;
    until(&mut a, "welcome as ann", |c| c.user.as_ref().is_some_and(|(_, e)| e == "ann@example.org")).await;
    let user = a.user.clone().unwrap().0;
    let mut b = Client::new(2);
    b.connect(s[0].addr).await;
    let used = token.clone();
    b.send(&Frame::Redeem { token }).await;
    until(&mut b, "a refusal", |c| c.errors.iter().any(|(_, code)| code == "ERR_LOGIN")).await;
    // The same address logs in as the same user on the other instance.
    b.send(&Frame::Login { email: "ann@example.org".into() }).await;
    until(&mut b, "login-sent", |c| c.login_sent).await;
    let t0 = Instant::now();
    let second = loop {
        if let Some(t) = printed_token(&s[0], &pg, "ann@example.org").filter(|t| *t != used) {
            break t;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "no second login link printed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    b.send(&Frame::Redeem { token: second }).await;
    until(&mut b, "welcome as ann", |c| c.user.as_ref().is_some_and(|(_, e)| e == "ann@example.org")).await;
    assert_eq!(b.user.clone().unwrap().0, user, "one address, two users across instances");
    // The address's quota (3 links per window) is the group's: two were
    // sent by A, so B sends one more and refuses the next.
    let mut c = Client::new(10);
    c.connect(s[1].addr).await;
    c.send(&Frame::Login { email: "ann@example.org".into() }).await;
    until(&mut c, "login-sent", |c| c.login_sent).await;
    let mut d = Client::new(11);
    d.connect(s[1].addr).await;
    d.send(&Frame::Login { email: "ann@example.org".into() }).await;
    until(&mut d, "a refusal", |c| c.errors.iter().any(|(_, code)| code == "ERR_QUOTA")).await;
    assert!(!d.login_sent, "a fourth link to one address was sent by another instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p5_rules_given_to_one_instance_are_used_by_instances_started_without() {
    let _one = ONE_AT_A_TIME.lock().await;
    let pg = Pg::start();
    let rules = pg.dir().join("rules.txt");
    std::fs::write(&rules, "/data/* session nobody\n").unwrap();
    let a = Instance::spawn_with(&pg.url(), pg.dir(), free_port(), &["--rules", rules.to_str().unwrap()]).await;
    let b = Instance::spawn(&pg.url(), pg.dir(), free_port()).await;
    for (name, inst) in [("A (given the rules)", &a), ("B (started without)", &b)] {
        let mut c = Client::new(1);
        c.connect(inst.addr).await;
        let id = c.write("k", "title", Value::Str("nobody may write here".into()));
        c.flush_out().await;
        until(&mut c, "a refusal", |c| c.errors.iter().any(|(_, code)| code == "ERR_FORBIDDEN") || c.rejected.iter().any(|code| code == "ERR_FORBIDDEN")).await;
        let mut r = Client::new(2);
        r.connect(b.addr).await;
        r.sync().await;
        assert!(!r.repo().contains_commit(&id), "instance {name} stored a write its rules forbid");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_the_root_key_comes_from_configuration_and_schemas_are_versioned() {
    let _one = ONE_AT_A_TIME.lock().await;
    let pg = Pg::start();
    let bin = env!("CARGO_BIN_EXE_ibex-server");
    let port = free_port().to_string();
    // No root key: each instance would make its own; refused, with the code.
    let out = std::process::Command::new(bin).args(["--port", &port, "--store", &pg.url()]).env_remove("IBEX_ROOT_KEY").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ERR_CONFIG") && err.contains("IBEX_ROOT_KEY"), "{err}");
    // The key from the environment is the same root as the key file.
    let log = std::fs::File::create(pg.dir().join("env-instance.log")).unwrap();
    let by_env = std::process::Command::new(bin)
        .args(["--port", &port, "--host", "127.0.0.1", "--store", &pg.url()])
        .env("IBEX_ROOT_KEY", "11".repeat(32))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let env_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Killed when dropped, a failing test included.
    let by_env = Instance { child: by_env, addr: env_addr, port: env_addr.port() };
    let t0 = Instant::now();
    while !http_get_ok(env_addr).await {
        assert!(t0.elapsed() < Duration::from_secs(20), "the instance keyed by IBEX_ROOT_KEY did not start");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let by_file = Instance::spawn(&pg.url(), pg.dir(), free_port()).await;
    let (mut a, mut c) = (Client::new(1), Client::new(3));
    a.connect(env_addr).await;
    c.connect(by_file.addr).await;
    a.sync().await;
    c.sync().await;
    let id = a.write("k", "title", Value::Str("one root".into()));
    a.flush_out().await;
    arrival(&mut c, &id, Duration::from_secs(5)).await.expect("a commit certified by the IBEX_ROOT_KEY instance did not reach the --root-key instance's client");
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    drop(by_env);
    // A database migrated by a newer server is refused, with the code.
    pg.psql("UPDATE ibex_meta SET value = '99' WHERE key = 'schema_version'");
    let out = std::process::Command::new(bin).args(["--port", &free_port().to_string(), "--store", &pg.url(), "--root-key"]).arg(shared_key()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ERR_STORE_SCHEMA"), "{err}");
    // A database at version 1 is migrated by the next server to start.
    pg.psql("DROP TABLE ibex_login_sent; UPDATE ibex_meta SET value = '1' WHERE key = 'schema_version'");
    let _migrated = Instance::spawn(&pg.url(), pg.dir(), free_port()).await;
    assert_eq!(pg.psql("SELECT value FROM ibex_meta WHERE key = 'schema_version'"), "2");
    assert_eq!(pg.psql("SELECT count(*) FROM ibex_login_sent"), "0");
}

async fn http_get_ok(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok() && http_get(addr, "/readyz").await.0.contains("200")
}
