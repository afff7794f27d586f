//! Benchmark W11: many `ibex-server` instances on one PostgreSQL.
//!
//! ```text
//! w11 --server target/release/ibex-server [--seconds 10] [--commits 100000] [--quick]
//! ```
//!
//! Starts its own PostgreSQL cluster in a temporary directory (`initdb` +
//! `pg_ctl`, as `nobody` when run as root; binaries from `IBEX_PG_BIN` or
//! `/usr/lib/postgresql/*/bin`), spawns real server processes, drives them
//! with clients speaking the real protocol (`ClientSession`, verifying
//! every commit), and prints one JSON line:
//!
//! * `relay`: 10 repositories, each with one writer (5 edits/s) and three
//!   readers, for `--seconds`: latency from the writer's send to each
//!   reader's receipt (one clock), for one server on files, one server on
//!   PostgreSQL, and three servers on PostgreSQL with every reader on
//!   another instance than its writer (cross-instance relay).
//! * `throughput`: 24 clients, each writing to its own repository in
//!   batches of 8 and waiting for the acknowledgements, spread over 1 or 3
//!   instances on one PostgreSQL: acknowledged commits per second, and the
//!   CPU seconds the servers and PostgreSQL used (to name the bottleneck).
//! * `cold`: a repository of `--commits` commits stored in PostgreSQL; a
//!   new instance starts, and a client that already holds every commit
//!   syncs (the instance opens the repository from the database and
//!   reconciles: nothing to send), then a new client downloads everything
//!   (verifying every signature).
//!
//! CPU figures are cores (CPU seconds per second) of the servers, of
//! PostgreSQL (the postmaster and its backends) and of this process (the
//! clients), all on the same machine.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ibex_core::sync::ClientSession;
use ibex_core::trust::{SESSIONS, register_schemas};
use ibex_core::*;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message as Ws;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn registry() -> Arc<Registry> {
    let mut r = Registry::new();
    register_schemas(&mut r).unwrap();
    r.register(Schema::new("load", 1).field("n", FieldDef::new(FieldType::Number))).unwrap();
    Arc::new(r)
}

fn seed(i: u64, salt: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&i.to_le_bytes());
    s[8..16].copy_from_slice(&salt.to_le_bytes());
    s[16] = 0x11;
    s
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).unwrap();
    n
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// CPU seconds (user + system) of a process, and of its children when
/// `tree` (PostgreSQL's backends are children of the postmaster).
fn cpu(pid: u32, tree: bool) -> f64 {
    let one = |p: u32| -> Option<(u32, f64)> {
        let s = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
        Some((f.get(1)?.parse().ok()?, (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0))
    };
    let mut total = one(pid).map_or(0.0, |x| x.1);
    if tree {
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                && let Some((ppid, c)) = one(p)
                && ppid == pid
            {
                total += c;
            }
        }
    }
    total
}

struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Pg {
    fn run(&self, prog: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(prog);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).current_dir(self.dir.path()).stdin(Stdio::null()).output().map_err(|e| format!("{}: {e}", exe.display()))?;
        if out.status.success() { Ok(()) } else { Err(format!("{prog} failed: {}", String::from_utf8_lossy(&out.stderr))) }
    }

    fn start() -> Result<Pg, String> {
        let bin = match std::env::var("IBEX_PG_BIN") {
            Ok(d) => PathBuf::from(d),
            Err(_) => {
                let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                    .map_err(|_| "PostgreSQL is not installed (scripts/setup.sh installs it)".to_string())?
                    .flatten()
                    .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
                    .collect();
                v.sort();
                v.pop().ok_or("no /usr/lib/postgresql/*/bin")?.1
            }
        };
        let base = if is_root() { PathBuf::from("/tmp") } else { std::env::temp_dir() };
        let dir = tempfile::Builder::new().prefix("ibex-w11-").tempdir_in(base).map_err(|e| e.to_string())?;
        if is_root() {
            Command::new("chown").arg("nobody:").arg(dir.path()).status().map_err(|e| e.to_string())?;
        }
        let pg = Pg { dir, bin, port: free_port() };
        let data = pg.dir.path().join("data");
        pg.run("initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "ibex", "-E", "UTF8", "--no-sync"])?;
        let log = pg.dir.path().join("postgres.log");
        // IBEX_W11_PG_OPTS: more server options, to find a bottleneck (e.g.
        // "-c synchronous_commit=off"); the reported runs use the defaults.
        let extra = std::env::var("IBEX_W11_PG_OPTS").unwrap_or_default();
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 {extra}", pg.port, pg.dir.path().display());
        pg.run("pg_ctl", &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "-o", &opts, "start"])?;
        Ok(pg)
    }

    fn createdb(&self, name: &str) -> String {
        let ok = Command::new(self.bin.join("createdb")).args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "ibex", name]).status().unwrap();
        assert!(ok.success(), "createdb {name}");
        format!("postgres://ibex@127.0.0.1:{}/{name}", self.port)
    }

    fn postmaster(&self) -> u32 {
        std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).ok().and_then(|s| s.lines().next()?.trim().parse().ok()).unwrap_or(0)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]);
    }
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn(bin: &Path, store: Option<&str>, key: &Path, data: &Path) -> Server {
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["--port", &port.to_string(), "--host", "127.0.0.1", "--data"]).arg(data).arg("--root-key").arg(key);
    cmd.args(["--max-connections-per-ip", "30000", "--anonymous-per-ip-per-minute", "1000000", "--connections-per-ip-per-minute", "1000000", "--rounds-per-minute", "1000000"]);
    if let Some(s) = store {
        cmd.args(["--store", s]);
    }
    let child = cmd.env("RUST_LOG", "error").stdout(Stdio::null()).spawn().expect("ibex-server");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t0 = Instant::now();
    loop {
        if let Ok(r) = http_status(addr, "/readyz").await
            && r
        {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "ibex-server did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Server { child, addr }
}

async fn http_status(addr: SocketAddr, path: &str) -> Result<bool, std::io::Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    Ok(resp.starts_with("HTTP/1.1 200"))
}

/// One client: a WebSocket and a `ClientSession`.
struct Peer {
    key: SessionKey,
    session: ClientSession,
    repos: BTreeMap<RepoPath, Repository>,
    path: RepoPath,
    ws: Option<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>>,
}

impl Peer {
    fn new(key: SessionKey, path: RepoPath) -> Peer {
        let mut repos = BTreeMap::new();
        repos.insert(path.clone(), Repository::new(path.clone(), registry()));
        Peer { session: ClientSession::new(key.clone(), Trust::new(Rules::default())), key, repos, path, ws: None }
    }

    async fn connect(&mut self, addr: SocketAddr) -> Result<(), String> {
        let (ws, _) = connect_async(format!("ws://{addr}/sync")).await.map_err(|e| e.to_string())?;
        self.ws = Some(ws);
        self.session.connected(now_ms());
        let t0 = Instant::now();
        while !self.session.conn.is_ready() {
            if t0.elapsed() > Duration::from_secs(30) {
                return Err("no welcome".into());
            }
            self.recv(Duration::from_secs(5)).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), String> {
        let ws = self.ws.as_mut().ok_or("not connected")?;
        for f in self.session.take_frames() {
            ws.send(Ws::Binary(f.into())).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn recv(&mut self, wait: Duration) -> Result<bool, String> {
        self.flush().await?;
        let ws = self.ws.as_mut().ok_or("not connected")?;
        match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => Ok(false),
            Ok(Some(Ok(Ws::Binary(b)))) => {
                self.session.receive(&mut self.repos, &b, now_ms(), nonce()).map_err(|e| e.to_string())?;
                self.flush().await?;
                Ok(true)
            }
            Ok(Some(Ok(_))) => Ok(true),
            Ok(other) => Err(format!("connection ended: {other:?}")),
        }
    }

    fn write(&mut self, item: &str, n: f64) -> CommitId {
        let key = self.key.clone();
        let t = self.session.conn.commit_time(now_ms());
        let repo = self.repos.get_mut(&self.path).unwrap();
        let id = repo.update(item, &SchemaId::new("load", 1), &[Change::Put { field: "n".into(), value: Value::Num(n) }], &key, t).unwrap().unwrap();
        repo.take_integrated();
        let path = self.path.clone();
        self.session.pushed(&mut self.repos, &path, &[id]);
        id
    }

    async fn sync(&mut self, within: Duration) -> Result<(), String> {
        self.session.sync_now(&mut self.repos);
        let t0 = Instant::now();
        while !self.session.sync_complete(&self.repos, now_ms()) {
            if t0.elapsed() > within {
                return Err(format!("sync did not complete (unacked {})", self.session.unacked()));
            }
            self.recv(Duration::from_millis(100)).await?;
            let _ = self.session.tick_with(&mut self.repos, now_ms());
        }
        self.session.sync_done();
        Ok(())
    }
}

fn pct(xs: &mut [f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[((p * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1]
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

struct Relay {
    sent: Mutex<HashMap<CommitId, Instant>>,
    latencies: Mutex<Vec<f64>>,
    /// Writers stop first; readers a second later (the last edits arrive).
    stop_writing: AtomicBool,
    stop: AtomicBool,
    written: AtomicU64,
}

/// 10 repositories × (1 writer at 5 edits/s + 3 readers); readers on
/// another instance than their writer when there are several.
async fn relay(addrs: &[SocketAddr], seconds: u64, salt: u64) -> String {
    let shared = Arc::new(Relay { sent: Default::default(), latencies: Default::default(), stop_writing: AtomicBool::new(false), stop: AtomicBool::new(false), written: AtomicU64::new(0) });
    let (repos, readers_per) = (10usize, 3usize);
    let mut tasks = Vec::new();
    let mut readers = Vec::new();
    for r in 0..repos {
        let path = RepoPath::parse(&format!("/data/relay-{salt}-{r}")).unwrap();
        let n = addrs.len();
        let mut w = Peer::new(SessionKey::from_seed(seed(r as u64 * 10, salt)), path.clone());
        w.connect(addrs[r % n]).await.unwrap();
        w.sync(Duration::from_secs(30)).await.unwrap();
        for k in 0..readers_per {
            let at = if n == 1 { 0 } else { (r + 1 + k % (n - 1)) % n };
            let mut p = Peer::new(SessionKey::from_seed(seed(r as u64 * 10 + 1 + k as u64, salt)), path.clone());
            p.connect(addrs[at]).await.unwrap();
            p.sync(Duration::from_secs(30)).await.unwrap();
            let shared = shared.clone();
            readers.push(tokio::spawn(async move {
                while !shared.stop.load(Relaxed) {
                    if p.recv(Duration::from_millis(100)).await.is_err() {
                        break;
                    }
                    let ids = p.repos.get_mut(&p.path).unwrap().take_integrated();
                    if !ids.is_empty() {
                        let now = Instant::now();
                        let sent = shared.sent.lock().unwrap();
                        let mut l = shared.latencies.lock().unwrap();
                        for id in ids {
                            if let Some(t) = sent.get(&id) {
                                l.push(now.duration_since(*t).as_secs_f64() * 1000.0);
                            }
                        }
                    }
                    let _ = p.session.tick_with(&mut p.repos, now_ms());
                }
            }));
        }
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let every = Duration::from_millis(200);
            let mut next = Instant::now() + Duration::from_millis(r as u64 * 20);
            let mut i = 0u64;
            while !shared.stop.load(Relaxed) {
                if Instant::now() >= next && !shared.stop_writing.load(Relaxed) {
                    next += every;
                    i += 1;
                    let id = w.write(&format!("k{}", i % 50), i as f64);
                    shared.sent.lock().unwrap().insert(id, Instant::now());
                    shared.written.fetch_add(1, Relaxed);
                    let _ = w.flush().await;
                }
                let _ = w.recv(next.saturating_duration_since(Instant::now()).min(Duration::from_millis(50))).await;
                w.repos.get_mut(&w.path).unwrap().take_integrated();
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    shared.stop_writing.store(true, Relaxed);
    // Let the last edits arrive.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    shared.stop.store(true, Relaxed);
    for t in tasks.into_iter().chain(readers) {
        let _ = t.await;
    }
    let mut l = shared.latencies.lock().unwrap().clone();
    let written = shared.written.load(Relaxed);
    let expected = written as usize * readers_per;
    format!("{{\"p50\":{},\"p95\":{},\"p99\":{},\"deliveries\":{},\"expected\":{}}}", round2(pct(&mut l, 0.50)), round2(pct(&mut l, 0.95)), round2(pct(&mut l, 0.99)), l.len(), expected)
}

/// 24 clients, one repository each, batches of 8 waited for.
async fn throughput(addrs: &[SocketAddr], seconds: u64, salt: u64, pids: &[u32], pg: u32) -> String {
    let clients = 24usize;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let path = RepoPath::parse(&format!("/data/tp-{salt}-{c}")).unwrap();
        let mut p = Peer::new(SessionKey::from_seed(seed(1000 + c as u64, salt)), path);
        p.connect(addrs[c % addrs.len()]).await.unwrap();
        p.sync(Duration::from_secs(30)).await.unwrap();
        // The certificate is written before the first commit: once, outside the window.
        p.write("warm", 0.0);
        p.sync(Duration::from_secs(30)).await.unwrap();
        let (stop, acked) = (stop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Relaxed) {
                for _ in 0..8 {
                    i += 1;
                    p.write(&format!("k{}", i % 100), i as f64);
                }
                if p.flush().await.is_err() {
                    break;
                }
                while p.session.unacked() > 0 && !stop.load(Relaxed) {
                    if p.recv(Duration::from_millis(50)).await.is_err() {
                        return;
                    }
                }
                if p.session.unacked() == 0 {
                    acked.fetch_add(8, Relaxed);
                }
                p.repos.get_mut(&p.path).unwrap().take_integrated();
            }
        }));
    }
    let cpu0: f64 = pids.iter().map(|p| cpu(*p, false)).sum();
    let pg0 = cpu(pg, true);
    let me0 = cpu(std::process::id(), false);
    let a0 = acked.load(Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let n = acked.load(Relaxed) - a0;
    let dt = t0.elapsed().as_secs_f64();
    let servers = pids.iter().map(|p| cpu(*p, false)).sum::<f64>() - cpu0;
    let db = cpu(pg, true) - pg0;
    let me = cpu(std::process::id(), false) - me0;
    stop.store(true, Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    format!(
        "{{\"commitsPerSecond\":{},\"seconds\":{},\"serverCpu\":{},\"postgresCpu\":{},\"clientCpu\":{}}}",
        (n as f64 / dt).round(),
        round2(dt),
        round2(servers / dt),
        round2(db / dt),
        round2(me / dt)
    )
}

/// A repository of `commits` commits written straight into the database
/// (with its writer's certificate), then served by a new instance.
async fn cold(bin: &Path, pg: &Pg, key: &Path, root: &SessionKey, commits: usize, tmp: &Path) -> String {
    let url = pg.createdb("cold");
    let store = ibex_server::store::PgStore::connect(&url, Duration::from_secs(10)).await.unwrap();
    let writer = SessionKey::from_seed(seed(7, 7));
    let mut sessions = Repository::new(RepoPath::parse(SESSIONS).unwrap(), registry());
    let t = now_ms();
    Certificate { session: writer.id(), owner: None, expires: t + 86_400_000, issued: Some(t - 1000) }.write(&mut sessions, root, t - 1000).unwrap();
    let rows: Vec<(&[u8], &[u8])> = sessions.commits_in_order().iter().map(|c| (&c.id.0[..], c.bytes())).collect();
    store.append(SESSIONS, &rows, t).await.unwrap();
    let path = RepoPath::parse("/data/big").unwrap();
    let mut w = Peer::new(writer.clone(), path.clone());
    let t0 = Instant::now();
    for i in 0..commits {
        let repo = w.repos.get_mut(&path).unwrap();
        repo.update(&format!("item{}", i % 1000), &SchemaId::new("load", 1), &[Change::Put { field: "n".into(), value: Value::Num(i as f64) }], &writer, t + i as i64).unwrap();
    }
    w.repos.get_mut(&path).unwrap().take_integrated();
    let made = t0.elapsed();
    let t0 = Instant::now();
    {
        let repo = &w.repos[&path];
        let all = repo.commits_in_order();
        for batch in all.chunks(10_000) {
            let rows: Vec<(&[u8], &[u8])> = batch.iter().map(|c| (&c.id.0[..], c.bytes())).collect();
            store.append(path.as_str(), &rows, t).await.unwrap();
        }
    }
    let stored = t0.elapsed();
    drop(store);
    let t0 = Instant::now();
    let s = spawn(bin, Some(&url), key, tmp).await;
    let ready = t0.elapsed();
    // The writer holds everything: its round is the open plus an empty reconciliation.
    w.connect(s.addr).await.unwrap();
    let t0 = Instant::now();
    w.sync(Duration::from_secs(300)).await.unwrap();
    let first = t0.elapsed();
    let mut fresh = Peer::new(SessionKey::from_seed(seed(8, 8)), path.clone());
    fresh.connect(s.addr).await.unwrap();
    let t0 = Instant::now();
    fresh.sync(Duration::from_secs(600)).await.unwrap();
    let download = t0.elapsed();
    let got = fresh.repos[&path].commit_count();
    assert_eq!(got, commits, "the new client got {got} of {commits} commits");
    format!(
        "{{\"commits\":{commits},\"signMs\":{},\"storeMs\":{},\"readyMs\":{},\"firstSyncMs\":{},\"downloadMs\":{}}}",
        made.as_millis(),
        stored.as_millis(),
        ready.as_millis(),
        first.as_millis(),
        download.as_millis()
    )
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.windows(2).find(|w| w[0] == name).and_then(|w| w[1].parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let bin: PathBuf = arg(&args, "--server", PathBuf::from("target/release/ibex-server"));
    let seconds: u64 = arg(&args, "--seconds", if quick { 3 } else { 10 });
    let commits: usize = arg(&args, "--commits", if quick { 10_000 } else { 100_000 });
    let pg = match Pg::start() {
        Ok(p) => p,
        Err(e) => {
            println!("{{\"error\":{:?}}}", format!("cannot start PostgreSQL: {e}"));
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = SessionKey::from_seed(nonce());
    let key = tmp.path().join("root.key");
    std::fs::write(&key, hex::encode(root.seed())).unwrap();
    let mut out = Vec::new();
    // Relay: files (1), PostgreSQL (1), PostgreSQL (3, cross-instance).
    {
        let s = spawn(&bin, None, &key, &tmp.path().join("files")).await;
        eprint!("W11 relay, 1 server on files… ");
        let r = relay(&[s.addr], seconds, 1).await;
        eprintln!("{r}");
        out.push(format!("\"relayFiles\":{r}"));
    }
    let url = pg.createdb("relay");
    {
        let s = spawn(&bin, Some(&url), &key, tmp.path()).await;
        eprint!("W11 relay, 1 server on PostgreSQL… ");
        let r = relay(&[s.addr], seconds, 2).await;
        eprintln!("{r}");
        out.push(format!("\"relayPg1\":{r}"));
    }
    {
        let mut s = Vec::new();
        for _ in 0..3 {
            s.push(spawn(&bin, Some(&url), &key, tmp.path()).await);
        }
        let addrs: Vec<SocketAddr> = s.iter().map(|x| x.addr).collect();
        eprint!("W11 relay, 3 servers on PostgreSQL, readers on other instances… ");
        let r = relay(&addrs, seconds, 3).await;
        eprintln!("{r}");
        out.push(format!("\"relayPg3\":{r}"));
    }
    for n in [1usize, 3] {
        let url = pg.createdb(&format!("tp{n}"));
        let mut s = Vec::new();
        for _ in 0..n {
            s.push(spawn(&bin, Some(&url), &key, tmp.path()).await);
        }
        let addrs: Vec<SocketAddr> = s.iter().map(|x| x.addr).collect();
        let pids: Vec<u32> = s.iter().map(|x| x.child.id()).collect();
        eprint!("W11 throughput, {n} server(s) on PostgreSQL… ");
        let r = throughput(&addrs, seconds, 10 + n as u64, &pids, pg.postmaster()).await;
        eprintln!("{r}");
        out.push(format!("\"throughput{n}\":{r}"));
    }
    eprint!("W11 a new instance serving a {commits}-commit repository… ");
    let r = cold(&bin, &pg, &key, &root, commits, tmp.path()).await;
    eprintln!("{r}");
    out.push(format!("\"cold\":{r}"));
    println!("{{{}}}", out.join(","));
}
