//! The server under hostile and heavy clients, against the real server on
//! 127.0.0.1. One test per finding of the hardening review (numbered as
//! there); each failed before the repository actors, bounded queues and
//! quotas existed.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use ibex_core::sync::frame::{Frame, Role, auth_payload};
use ibex_core::text::Splice;
use ibex_core::*;
use tokio_tungstenite::tungstenite::Message as Ws;

fn text_value(len: usize) -> ItemData {
    let mut f = BTreeMap::new();
    f.insert("body".to_owned(), Value::Text("x".repeat(len)));
    ItemData::new(f)
}

/// Waits until `f` holds, or fails after `within`.
async fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A victim on another repository syncs promptly while something hostile runs.
async fn victim_syncs(addr: std::net::SocketAddr, n: u8) -> Duration {
    let mut v = Client::with_repo(n, RepoPath::parse(&format!("/data/victim{n}")).unwrap());
    v.connect(addr).await;
    let t0 = Instant::now();
    v.write("v", "title", Value::Str("victim".into()));
    v.sync().await;
    t0.elapsed()
}

// 1. Unbounded send queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f01_a_reader_that_stops_reading_holds_a_bounded_queue_and_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| {
        c.limits.conn_queue_bytes = 256 << 10;
        c.limits.slow_consumer = Duration::from_secs(2);
    })
    .await;
    // A repository of ~12 MB.
    let mut w = Client::new(1);
    w.connect(srv.addr).await;
    for i in 0..12_000 {
        w.write(&format!("k{i}"), "title", Value::Str(format!("{i}:{}", "y".repeat(1000))));
    }
    w.sync().await;
    // The attacker asks for everything, over and over, and never reads.
    let mut evil = Client::new(2);
    evil.connect(srv.addr).await;
    for round in 1..=100 {
        evil.send(&Frame::Begin { repo: repo_path(), round, digest: SetDigest::default() }).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let queued = srv.metrics.queue_bytes.load(Relaxed);
    assert!(queued < 1 << 20, "{queued} bytes queued for connections");
    // Everyone else is served meanwhile.
    assert!(victim_syncs(srv.addr, 3).await < Duration::from_secs(3));
    // The reader that stays stuck is disconnected, and its memory returns.
    eventually("the slow reader to be cut off", Duration::from_secs(10), || srv.metrics.slow_disconnects.load(Relaxed) >= 1).await;
    eventually("its queue to be freed", Duration::from_secs(5), || srv.metrics.queue_bytes.load(Relaxed) < 64 << 10).await;
    srv.stop().await;
}

// 2a. Quadratic decoding before the signature check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f02a_a_commit_of_320000_splices_with_a_bad_signature_is_refused_in_linear_time() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    let base = a.write("k", "body", Value::Text("z".repeat(700_000)));
    a.sync().await;
    let splices: Vec<Splice> = (0..320_000u32).map(|i| Splice { pos: i * 2, delete: 1, insert: String::new() }).collect();
    let mut bytes = a.forge("k", vec![base], Body::Delta { base, changes: vec![Change::Text { field: "body".into(), splices }] }, now_ms());
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    assert!(n > 1_000_000);
    let t0 = Instant::now();
    a.send(&Frame::Commits { repo: repo_path(), commits: vec![bytes] }).await;
    let victim = victim_syncs(srv.addr, 3).await;
    while !a.errors.iter().any(|(_, c)| c == "ERR_BAD_SIGNATURE") {
        assert!(t0.elapsed() < Duration::from_secs(5), "no refusal; errors {:?}", a.errors);
        a.receive_one(Duration::from_millis(100)).await;
    }
    assert!(t0.elapsed() < Duration::from_secs(3), "refusing took {:?}", t0.elapsed());
    assert!(victim < Duration::from_secs(3), "a victim waited {victim:?}");
    srv.stop().await;
}

// 2b. Every step of a delta chain cloned the whole value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f02b_siblings_on_a_long_chain_over_a_large_value_cost_bounded_work() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| c.limits.max_commit = 16 << 20).await;
    let mut a = Client::new(1);
    // 8 MiB text, a 250-deep chain of one-character edits, 300 siblings on its tip.
    let key = a.key.clone();
    let repo = a.repo_mut();
    let mut t = now_ms();
    let mut tip = repo.write("big", &todo(), text_value(8 << 20), &key, t).unwrap().unwrap();
    for i in 0..250u32 {
        t += 1;
        tip = repo.update("big", &todo(), &[Change::Text { field: "body".into(), splices: vec![Splice { pos: i, delete: 1, insert: "a".into() }] }], &key, t).unwrap().unwrap();
    }
    let mut ids: Vec<CommitId> = repo.commits_in_order().iter().map(|c| c.id).collect();
    for i in 0..300u32 {
        let bytes = a.forge(
            "big",
            vec![tip],
            Body::Delta { base: tip, changes: vec![Change::Text { field: "body".into(), splices: vec![Splice { pos: 1000 + i, delete: 1, insert: "s".into() }] }] },
            t + 10 + i64::from(i),
        );
        let c = SignedCommit::decode(&bytes).unwrap();
        ids.push(c.id);
        a.repo_mut().insert(c).unwrap();
    }
    a.connect(srv.addr).await;
    let t0 = Instant::now();
    let path = a.path.clone();
    a.session.pushed(&mut a.repos, &path, &ids);
    a.flush_out().await;
    // The server stays responsive while it works…
    let (status, _) = http_get(srv.addr, "/healthz").await;
    assert!(status.contains("200"), "{status}");
    assert!(victim_syncs(srv.addr, 3).await < Duration::from_secs(3));
    // …and takes everything (frames over the work budget are taken in later rounds).
    let mut b = Client::new(4);
    b.connect(srv.addr).await;
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        a.listen(Duration::from_millis(500)).await;
        b.sync().await;
        if b.repo().commit_count() == 551 {
            break;
        }
        assert!(Instant::now() < deadline, "{} of 551 commits after {:?}; a: {:?}", b.repo().commit_count(), t0.elapsed(), a.errors);
    }
    println!("551 commits over an 8 MiB value taken in {:?}", t0.elapsed());
    srv.stop().await;
}

// 3. Unlimited repositories and open files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f03_reading_thousands_of_repositories_creates_nothing_and_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| c.limits.max_repos_per_connection = 100).await;
    let mut evil = Client::new(2);
    evil.connect(srv.addr).await;
    for i in 0..1_000 {
        let f = Frame::Begin { repo: RepoPath::parse(&format!("/data/r{i}")).unwrap(), round: 1, digest: SetDigest { count: 1, xor: [1; 32] } };
        evil.send(&f).await;
    }
    evil.listen(Duration::from_secs(2)).await;
    let quota = evil.errors.iter().filter(|(_, c)| c == "ERR_QUOTA").count();
    assert!(quota >= 800, "{quota} refusals");
    // Reading a name creates no file.
    let files = std::fs::read_dir(dir.path().join("data")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(files, 0, "log files were created for repositories nobody wrote");
    assert!(srv.metrics.repos_open.load(Relaxed) <= 110);
    // Others still open and write new repositories.
    assert!(victim_syncs(srv.addr, 3).await < Duration::from_secs(3));
    srv.stop().await;
}

/// A fake server that records every frame it receives.
async fn fake_peer(hello: Option<Vec<u8>>) -> (std::net::SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let g = g.clone();
            let hello = hello.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else { return };
                if let Some(h) = hello {
                    let _ = ws.send(Ws::Binary(h.into())).await;
                }
                // A welcome with no proof, as a fake that skips the handshake.
                let _ = ws.send(Ws::Binary(Frame::Welcome { user: String::new(), email: String::new(), expires: i64::MAX, time: 0, sig: [0; 64] }.encode().into())).await;
                while let Some(Ok(m)) = ws.next().await {
                    if let Ws::Binary(b) = m {
                        g.lock().unwrap().push(b.to_vec());
                    }
                }
            });
        }
    });
    (addr, got)
}

// 4. Peering was unauthenticated and a root-signing oracle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f04_a_fake_peer_gets_nothing_and_cannot_reflect_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    // Data to leak.
    let real = server(dir.path()).await;
    let mut a = Client::new(1);
    a.connect(real.addr).await;
    a.write("secret", "title", Value::Str("private".into()));
    a.sync().await;
    real.stop().await;
    // (a) A fake at the --peer URL that only says welcome.
    let (fake, got) = fake_peer(None).await;
    let mut c = config(dir.path(), &shared_key());
    c.peers = vec![format!("ws://{fake}")];
    let srv = ibex_server::start(c).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(got.lock().unwrap().is_empty(), "the server sent {} frames to an unauthenticated peer", got.lock().unwrap().len());
    srv.stop().await;
    // (b) A fake that replays the server's own hello (from a client
    // connection) at its peer link: no auth is signed for it.
    let mut c = config(dir.path(), &shared_key());
    let (fake_addr_tx, fake_addr_rx) = tokio::sync::oneshot::channel::<std::net::SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = listener.local_addr().unwrap();
    c.peers = vec![format!("ws://{fake}")];
    let srv = ibex_server::start(c).await.unwrap();
    let _ = fake_addr_tx.send(srv.addr);
    let server_addr = fake_addr_rx.await.unwrap();
    let (s, _) = listener.accept().await.unwrap();
    let mut link = tokio_tungstenite::accept_async(s).await.unwrap();
    let mut probe = Client::new(5);
    probe.connect(server_addr).await;
    let own_hello = probe.hello.clone().unwrap();
    link.send(Ws::Binary(own_hello.into())).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(2), link.next()).await;
    let signed = matches!(answer, Ok(Some(Ok(Ws::Binary(ref b)))) if matches!(Frame::decode(b), Ok(Frame::Auth { .. })));
    assert!(!signed, "the server answered its own hello with a root-signed auth: {answer:?}");
    // (c) A client that is not the root cannot connect as a peer.
    let mut raw = Client::raw(srv.addr).await;
    let Some(Ok(Ws::Binary(h))) = raw.next().await else { panic!() };
    let Frame::Hello { nonce, root, .. } = Frame::decode(&h).unwrap() else { panic!() };
    let key = SessionKey::from_seed([9; 32]);
    let cn = [4; 32];
    let auth = Frame::Auth { version: 2, role: Role::Peer, session: key.id(), nonce: cn, sig: key.sign(&auth_payload(Role::Peer, &nonce, &cn, &root)) };
    raw.send(Ws::Binary(auth.encode().into())).await.unwrap();
    let Some(Ok(Ws::Binary(e))) = raw.next().await else { panic!() };
    assert!(matches!(Frame::decode(&e).unwrap(), Frame::Error { code, .. } if code == "ERR_HANDSHAKE"));
    srv.stop().await;
}

// 5. Commits with missing parents were buffered without a byte bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f05_commits_waiting_for_parents_are_bounded_per_connection_and_dropped_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| c.limits.pending_bytes_per_connection = 2 << 20).await;
    let mut evil = Client::new(2);
    evil.connect(srv.addr).await;
    for i in 0..12u8 {
        let bytes = evil.forge("k", vec![CommitId([i; 32])], Body::Full(Arc::new(text_value(512 << 10))), now_ms());
        evil.send(&Frame::Commits { repo: repo_path(), commits: vec![bytes] }).await;
    }
    evil.listen(Duration::from_secs(1)).await;
    assert!(evil.errors.iter().filter(|(_, c)| c == "ERR_PENDING_FULL").count() >= 7, "{:?}", evil.errors);
    let pending = srv.metrics.pending_bytes.load(Relaxed);
    assert!(pending > 0 && pending <= 2 << 20, "{pending} bytes waiting");
    evil.disconnect().await;
    eventually("waiting commits to be dropped with their connection", Duration::from_secs(5), || srv.metrics.pending_bytes.load(Relaxed) == 0).await;
    srv.stop().await;
}

// 6. Login links: unlimited per connection, per address; sent on the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f06_login_links_are_limited_and_sent_off_the_sync_path() {
    struct Slow(Mutex<u32>);
    impl ibex_server::login::LoginVerifier for Slow {
        fn send(&self, _: &str, _: &str) -> Result<(), ibex_server::error::ServerError> {
            std::thread::sleep(Duration::from_millis(300));
            *self.0.lock().unwrap() += 1;
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let slow = Arc::new(Slow(Mutex::new(0)));
    let v = slow.clone();
    let srv = server_with(dir.path(), move |c| c.verifier = v).await;
    let mut evil = Client::new(2);
    evil.connect(srv.addr).await;
    for i in 0..8 {
        evil.send(&Frame::Login { email: format!("victim{i}@example.org") }).await;
    }
    // Sending is slow; syncing is not.
    assert!(victim_syncs(srv.addr, 3).await < Duration::from_secs(2));
    evil.listen(Duration::from_secs(4)).await;
    assert_eq!(*slow.0.lock().unwrap(), 5, "one connection got {} links sent", *slow.0.lock().unwrap());
    assert!(evil.errors.iter().filter(|(_, c)| c == "ERR_QUOTA").count() >= 3);
    // Per address: a fourth link to the same address waits for the window.
    let mut errors = 0;
    for n in 10..14u8 {
        let mut c = Client::new(n);
        c.connect(srv.addr).await;
        c.send(&Frame::Login { email: "ann@example.org".into() }).await;
        c.listen(Duration::from_millis(600)).await;
        errors += c.errors.iter().filter(|(_, c)| c == "ERR_QUOTA").count();
    }
    assert_eq!(errors, 1, "the 4th link to one address is refused");
    // Others can still log in.
    let mut bob = Client::new(20);
    bob.connect(srv.addr).await;
    bob.send(&Frame::Login { email: "bob@example.org".into() }).await;
    bob.listen(Duration::from_millis(600)).await;
    assert!(bob.login_sent, "{:?}", bob.errors);
    srv.stop().await;
}

// 7. Future-dated commits were accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f07_commits_stamped_in_the_future_are_refused_and_clients_clamp_their_clock() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let mut evil = Client::new(2);
    evil.connect(srv.addr).await;
    let bytes = evil.forge("k", vec![], Body::Full(Arc::new(text_value(3))), now_ms() + 30 * 24 * 3600 * 1000);
    evil.send(&Frame::Commits { repo: repo_path(), commits: vec![bytes] }).await;
    evil.listen(Duration::from_millis(500)).await;
    assert!(evil.errors.iter().any(|(_, c)| c == "ERR_CLOCK"), "{:?}", evil.errors);
    // A replica whose clock runs an hour fast stamps with the server's time.
    let mut fast = Client::new(3);
    fast.skew = 3_600_000;
    fast.connect(srv.addr).await;
    fast.write("k", "title", Value::Str("from a fast clock".into()));
    fast.sync().await;
    let ts = fast.repo().commits_in_order()[0].timestamp;
    assert!(ts < now_ms() + 10 * 60 * 1000, "stamped {} ms ahead", ts - now_ms());
    srv.stop().await;
}

// 8. Durability under load: a write stayed unflushed for seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f08_an_acknowledged_commit_is_on_disk_whatever_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    // A busy neighbour: a stream of commits to another repository.
    let addr = srv.addr;
    let busy = tokio::spawn(async move {
        let mut n = Client::with_repo(7, RepoPath::parse("/data/busy").unwrap());
        n.connect(addr).await;
        let t0 = Instant::now();
        let mut i = 0;
        while t0.elapsed() < Duration::from_secs(3) {
            i += 1;
            n.write(&format!("k{}", i % 50), "title", Value::Str(format!("{i}")));
            n.flush_out().await;
            n.receive_one(Duration::from_millis(1)).await;
        }
    });
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut worst = Duration::ZERO;
    for i in 0..10 {
        let id = a.write(&format!("d{i}"), "title", Value::Str("durable".into()));
        let t0 = Instant::now();
        a.flush_out().await;
        while a.session.unacked() > 0 {
            assert!(t0.elapsed() < Duration::from_secs(2), "no acknowledgement");
            a.receive_one(Duration::from_millis(50)).await;
        }
        worst = worst.max(t0.elapsed());
        // Acknowledged means flushed: the bytes are in the log file now.
        // (Records are compact: expanded, they give back the commit's bytes.)
        let log = std::fs::read(dir.path().join("data/todos.log")).unwrap();
        let scan = ibex_core::log::scan(&log).unwrap();
        let bytes = a.repo().commit(&id).unwrap().bytes().to_vec();
        let stored = ibex_core::compact::commits(&log, &scan, "/data/todos");
        assert!(stored.iter().any(|(_, c)| c.as_deref().ok() == Some(&bytes[..])), "acknowledged commit {i} is not in the log");
    }
    assert!(worst < Duration::from_millis(500), "an acknowledgement took {worst:?} under load");
    busy.await.unwrap();
    srv.stop().await;
}

// 9. Logout did not revoke reads on the session's other connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f09_logout_cuts_every_connection_of_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let (mut tab1, mut tab2) = (Client::new(1), Client::new(1));
    tab1.connect(srv.addr).await;
    tab2.connect(srv.addr).await;
    tab2.sync().await;
    tab1.send(&Frame::Logout).await;
    tab2.listen(Duration::from_secs(1)).await;
    assert!(tab2.ws.is_none(), "the other connection of the session stayed open");
    let mut w = Client::new(3);
    w.connect(srv.addr).await;
    w.write("after", "title", Value::Str("after logout".into()));
    w.sync().await;
    assert!(tab2.repo().commit_count() == 0);
    srv.stop().await;
}

// 10. /sys/sessions grew by one certificate per throw-away connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f10_throwaway_connections_leave_no_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| c.limits.anonymous_per_ip_per_minute = 10_000).await;
    for n in 0..200u32 {
        let mut c = Client::with_key(SessionKey::from_seed(sha2_seed(n)), repo_path());
        c.connect(srv.addr).await;
        c.disconnect().await;
    }
    let log = dir.path().join("sys/sessions.log");
    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    assert!(size <= 12, "/sys/sessions holds {size} bytes after 200 sessions that wrote nothing");
    // A session that writes is certified durably before its first commit.
    let mut w = Client::new(1);
    w.connect(srv.addr).await;
    w.write("k", "title", Value::Str("x".into()));
    w.sync().await;
    assert!(std::fs::metadata(&log).unwrap().len() > 12);
    srv.stop().await;
}

fn sha2_seed(n: u32) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(n.to_le_bytes()).into()
}

// 11. User ids were an unsalted hash of the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f11_user_ids_do_not_reveal_addresses() {
    let links = Arc::new(Mutex::new(Vec::<String>::new()));
    struct Keep(Arc<Mutex<Vec<String>>>);
    impl ibex_server::login::LoginVerifier for Keep {
        fn send(&self, _: &str, link: &str) -> Result<(), ibex_server::error::ServerError> {
            self.0.lock().unwrap().push(link.to_owned());
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let l = links.clone();
    let srv = server_with(dir.path(), move |c| c.verifier = Arc::new(Keep(l))).await;
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    a.send(&Frame::Login { email: "ann@example.org".into() }).await;
    a.listen(Duration::from_millis(300)).await;
    let token = links.lock().unwrap()[0].split("ibex-login=").nth(1).unwrap().to_owned();
    a.send(&Frame::Redeem { token }).await;
    a.listen(Duration::from_millis(500)).await;
    let (user, _) = a.user.clone().unwrap();
    assert!(!user.is_empty());
    assert_ne!(user, ibex_core::trust::legacy_user_id("ann@example.org"), "the id is a plain hash of the address");
    // Clients cannot read the users list.
    let mut probe = Client::with_repo(2, RepoPath::parse("/sys/users").unwrap());
    probe.connect(srv.addr).await;
    probe.session.sync_now(&mut probe.repos);
    probe.listen(Duration::from_millis(400)).await;
    assert!(probe.errors.iter().any(|(r, c)| r == "/sys/users" && c == "ERR_FORBIDDEN"));
    srv.stop().await;
}

// 12. No handshake timeout, no header timeout, no connection cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f12_idle_handshakes_slow_headers_and_connection_floods_are_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| {
        c.limits.handshake_timeout = Duration::from_secs(1);
        c.limits.header_timeout = Duration::from_secs(1);
        c.limits.max_connections_per_ip = 20;
    })
    .await;
    // A socket that never answers hello is closed.
    let mut idle = Client::raw(srv.addr).await;
    let t0 = Instant::now();
    while let Some(Ok(Ws::Binary(_))) = tokio::time::timeout(Duration::from_secs(5), idle.next()).await.expect("not closed within 5 s") {}
    assert!(t0.elapsed() < Duration::from_secs(4));
    // Slow-loris headers are cut.
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "a connection with unfinished headers stayed open");
    // At most 20 connections from one address.
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(Client::raw(srv.addr).await);
    }
    let extra = tokio_tungstenite::connect_async(format!("ws://{}/sync", srv.addr)).await;
    assert!(extra.is_err(), "the 21st connection from one address was accepted");
    assert!(srv.metrics.quota_refusals.load(Relaxed) >= 1);
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = http_get(srv.addr, "/healthz").await;
    assert!(status.contains("200"));
    srv.stop().await;
}

// 13. Files readable by others; symlinks and dotfiles served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f13_data_is_private_and_static_files_stay_inside_their_directory() {
    let dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<html>app</html>").unwrap();
    std::fs::write(site.path().join(".env"), "SECRET=1").unwrap();
    std::fs::write(dir.path().join("outside.txt"), "outside").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path().join("outside.txt"), site.path().join("link.txt")).unwrap();
    let static_dir = site.path().to_owned();
    let srv = server_with(&dir.path().join("data"), move |c| c.static_dir = Some(static_dir)).await;
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    a.write("k", "title", Value::Str("x".into()));
    a.sync().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("data/data/todos.log")), 0o600);
        assert_eq!(mode(&dir.path().join("data/data")), 0o700);
        assert_eq!(mode(&dir.path().join("data")), 0o700);
    }
    let (_, body) = http_get(srv.addr, "/.env").await;
    assert!(!body.contains("SECRET"));
    let (_, body) = http_get(srv.addr, "/link.txt").await;
    assert!(!body.contains("outside"));
    let (_, body) = http_get(srv.addr, "/%2e%2e/outside.txt").await;
    assert!(!body.contains("outside"));
    let (status, body) = http_get(srv.addr, "/some/route").await;
    assert!(status.contains("200") && body.contains("app"), "unknown paths fall back to index.html");
    srv.stop().await;
}
