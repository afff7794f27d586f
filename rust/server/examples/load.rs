//! Load generator for benchmark W10: many clients speaking the real sync
//! protocol (the shared `ClientSession` — what the browser engine runs —,
//! verifying every commit they receive) against a running `ibex-server`.
//!
//! ```text
//! load relay  --addr 127.0.0.1:8080 --pid <server pid> --repos 100 --per-repo 10 --rate 5 --seconds 60 [--attack slow-reader|splices]
//! load union  --addr … --pid … --clients 100 --rate 1 --seconds 60
//! load idle   --addr … --pid … --connections 10000
//! ```
//!
//! `relay`: per repository one writer (`rate` edits/s) and `per-repo − 1`
//! readers; reports relay latency (writer's send → reader's receipt, one
//! clock), lost commits, server RSS and CPU. `union`: every client writes
//! to one repository, then everyone syncs: every client and the server
//! must hold exactly the union; reports time to converge. `idle`: holds
//! authenticated connections and reports the server's RSS. One JSON line.
//!
//! `cargo run --release -p ibex-server --example load -- relay …`

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ibex_core::sync::ClientSession;
use ibex_core::sync::frame::Frame;
use ibex_core::text::Splice;
use ibex_core::trust::register_schemas;
use ibex_core::*;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message as Ws;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn registry() -> Arc<Registry> {
    let mut r = Registry::new();
    register_schemas(&mut r).unwrap();
    r.register(Schema::new("load", 1).field("n", FieldDef::new(FieldType::Number)).field("body", FieldDef::new(FieldType::Text))).unwrap();
    Arc::new(r)
}

fn seed(i: u64, salt: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&i.to_le_bytes());
    s[8..16].copy_from_slice(&salt.to_le_bytes());
    s[16] = 0x5c;
    s
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).unwrap();
    n
}

/// Server RSS (bytes) and CPU time (seconds) from /proc.
fn proc_usage(pid: u32) -> (u64, f64) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .unwrap_or(0)
        * 1024;
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0);
    (rss, cpu)
}

type Sent = Arc<Mutex<HashMap<CommitId, Instant>>>;

struct Shared {
    sent: Sent,
    latencies: Mutex<Vec<f64>>,
    stop: AtomicBool,
    written: AtomicU64,
}

/// One client: a WebSocket and a `ClientSession`.
struct Peer {
    key: SessionKey,
    session: ClientSession,
    repos: BTreeMap<RepoPath, Repository>,
    path: RepoPath,
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Peer {
    async fn connect(addr: SocketAddr, key: SessionKey, path: RepoPath) -> Result<Peer, String> {
        let (ws, _) = connect_async(format!("ws://{addr}/sync")).await.map_err(|e| e.to_string())?;
        let mut repos = BTreeMap::new();
        repos.insert(path.clone(), Repository::new(path.clone(), registry()));
        let mut session = ClientSession::new(key.clone(), Trust::new(Rules::default()));
        session.connected(now_ms());
        let mut p = Peer { key, session, repos, path, ws };
        let t0 = Instant::now();
        while !p.session.conn.is_ready() {
            if t0.elapsed() > Duration::from_secs(30) {
                return Err("no welcome".into());
            }
            p.recv(Duration::from_secs(5)).await?;
        }
        Ok(p)
    }

    async fn flush(&mut self) -> Result<(), String> {
        for f in self.session.take_frames() {
            self.ws.send(Ws::Binary(f.into())).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Handles one frame (Ok(false) on timeout).
    async fn recv(&mut self, wait: Duration) -> Result<bool, String> {
        self.flush().await?;
        match tokio::time::timeout(wait, self.ws.next()).await {
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

    fn write(&mut self, item: &str, n: f64) -> Option<CommitId> {
        let key = self.key.clone();
        let t = self.session.conn.commit_time(now_ms());
        let repo = self.repos.get_mut(&self.path).unwrap();
        let id = repo.update(item, &SchemaId::new("load", 1), &[Change::Put { field: "n".into(), value: Value::Num(n) }], &key, t).ok()??;
        repo.take_integrated();
        let path = self.path.clone();
        self.session.pushed(&mut self.repos, &path, &[id]);
        Some(id)
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

    fn count(&self) -> usize {
        self.repos[&self.path].commit_count()
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.windows(2).find(|w| w[0] == name).and_then(|w| w[1].parse().ok()).unwrap_or(default)
}

fn pct(xs: &mut [f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[((p * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1]
}

/// A reader: receives until stopped, recording relay latency.
async fn reader(mut p: Peer, shared: Arc<Shared>) -> Result<Peer, String> {
    p.sync(Duration::from_secs(60)).await?;
    while !shared.stop.load(Relaxed) {
        p.recv(Duration::from_millis(200)).await?;
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
    Ok(p)
}

async fn writer(mut p: Peer, shared: Arc<Shared>, rate: f64, n: usize) -> Result<Peer, String> {
    p.sync(Duration::from_secs(60)).await?;
    let every = Duration::from_secs_f64(1.0 / rate);
    let mut next = Instant::now();
    let mut i = 0u64;
    while !shared.stop.load(Relaxed) {
        if Instant::now() >= next {
            next += every;
            i += 1;
            if let Some(id) = p.write(&format!("w{n}-{}", i % 200), i as f64) {
                shared.sent.lock().unwrap().insert(id, Instant::now());
                shared.written.fetch_add(1, Relaxed);
            }
            p.flush().await?;
        }
        p.recv(next.saturating_duration_since(Instant::now()).min(Duration::from_millis(50))).await?;
        p.repos.get_mut(&p.path).unwrap().take_integrated();
        let _ = p.session.tick_with(&mut p.repos, now_ms());
    }
    Ok(p)
}

/// The slow-reader attack: a 12 MB repository asked for over and over by a
/// client that never reads (finding 1 of the hardening review).
async fn slow_reader_attack(addr: SocketAddr, stop: Arc<AtomicBool>, commits: usize) -> Result<(), String> {
    let path = RepoPath::parse("/data/attack-target").unwrap();
    let mut w = Peer::connect(addr, SessionKey::from_seed(seed(1, 999)), path.clone()).await?;
    for i in 0..commits {
        let key = w.key.clone();
        let repo = w.repos.get_mut(&path).unwrap();
        let id = repo.update(&format!("k{i}"), &SchemaId::new("load", 1), &[Change::Put { field: "body".into(), value: Value::Text("y".repeat(1000)) }], &key, now_ms()).unwrap().unwrap();
        repo.take_integrated();
        w.session.pushed(&mut w.repos, &path, &[id]);
    }
    w.sync(Duration::from_secs(120)).await?;
    let mut evil = Peer::connect(addr, SessionKey::from_seed(seed(2, 999)), path.clone()).await?;
    let mut round = 1;
    while !stop.load(Relaxed) {
        // Never reads: only sends "I hold nothing" again.
        let f = Frame::Begin { repo: path.clone(), round, digest: SetDigest::default() };
        round += 1;
        if evil.ws.send(Ws::Binary(f.encode().into())).await.is_err() {
            // Cut off for not reading: come back, as an attacker would.
            if let Ok(p) = Peer::connect(addr, evil.key.clone(), path.clone()).await {
                evil = p;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Commits of 320,000 splices with bad signatures, again and again
/// (finding 2 of the hardening review).
async fn splice_attack(addr: SocketAddr, stop: Arc<AtomicBool>) -> Result<(), String> {
    let path = RepoPath::parse("/data/splice-target").unwrap();
    let mut a = Peer::connect(addr, SessionKey::from_seed(seed(3, 997)), path.clone()).await?;
    let base = a.write("k", 1.0).unwrap();
    a.sync(Duration::from_secs(30)).await?;
    let splices: Vec<Splice> = (0..320_000u32).map(|i| Splice { pos: i * 2, delete: 1, insert: String::new() }).collect();
    let c = Commit {
        repo: path.clone(),
        key: "k".into(),
        parents: vec![base],
        timestamp: now_ms(),
        session: a.key.id(),
        schema: SchemaId::new("load", 1),
        body: Body::Delta { base, changes: vec![Change::Text { field: "body".into(), splices }] },
    };
    let mut bytes = c.sign(&a.key).unwrap().encode();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    let frame = Frame::Commits { repo: path, commits: vec![bytes] }.encode();
    while !stop.load(Relaxed) {
        let sent = a.ws.send(Ws::Binary(frame.clone().into())).await.is_ok();
        if !sent || a.recv(Duration::from_millis(20)).await.is_err() {
            // Cut off for forging: come back (same key: no new session).
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Ok(p) = Peer::connect(addr, a.key.clone(), a.path.clone()).await {
                a = p;
            }
        }
    }
    Ok(())
}

async fn relay(args: &[String]) -> String {
    let addr: SocketAddr = arg(args, "--addr", "127.0.0.1:8080".parse().unwrap());
    let pid: u32 = arg(args, "--pid", 0);
    let repos: usize = arg(args, "--repos", 100);
    let per: usize = arg(args, "--per-repo", 10);
    let rate: f64 = arg(args, "--rate", 5.0);
    let seconds: u64 = arg(args, "--seconds", 60);
    let attack: String = arg(args, "--attack", "none".to_owned());
    let salt: u64 = now_ms() as u64;
    let shared = Arc::new(Shared { sent: Arc::new(Mutex::new(HashMap::new())), latencies: Mutex::new(Vec::new()), stop: AtomicBool::new(false), written: AtomicU64::new(0) });
    let attack_stop = Arc::new(AtomicBool::new(false));
    let attacker = match attack.as_str() {
        "slow-reader" => Some(tokio::spawn(slow_reader_attack(addr, attack_stop.clone(), 12_000))),
        "splices" => Some(tokio::spawn(splice_attack(addr, attack_stop.clone()))),
        _ => None,
    };
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    let t_connect = Instant::now();
    for r in 0..repos {
        let path = RepoPath::parse(&format!("/data/load{}-{r}", salt % 1_000_000)).unwrap();
        for c in 0..per {
            let key = SessionKey::from_seed(seed((r * per + c) as u64, salt));
            let p = match Peer::connect(addr, key, path.clone()).await {
                Ok(p) => p,
                Err(e) => return format!(r#"{{"error":"connect: {e}"}}"#),
            };
            if c == 0 {
                writers.push(tokio::spawn(writer(p, shared.clone(), rate, r)));
            } else {
                readers.push(tokio::spawn(reader(p, shared.clone())));
            }
        }
    }
    let connect_s = t_connect.elapsed().as_secs_f64();
    let (_, cpu0) = proc_usage(pid);
    let t0 = Instant::now();
    let mut rss_max = 0;
    while t0.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_max = rss_max.max(proc_usage(pid).0);
    }
    let (_, cpu1) = proc_usage(pid);
    shared.stop.store(true, Relaxed);
    attack_stop.store(true, Relaxed);
    if let Some(a) = attacker {
        a.abort();
    }
    let mut ws = Vec::new();
    for w in writers {
        match w.await.unwrap() {
            Ok(p) => ws.push(p),
            Err(e) => return format!(r#"{{"error":"writer: {e}"}}"#),
        }
    }
    for w in ws.iter_mut() {
        if let Err(e) = w.sync(Duration::from_secs(60)).await {
            return format!(r#"{{"error":"writer sync: {e}"}}"#);
        }
    }
    let want: HashMap<RepoPath, usize> = ws.iter().map(|w| (w.path.clone(), w.count())).collect();
    let mut lost = 0usize;
    let mut rs = Vec::new();
    for r in readers {
        match r.await.unwrap() {
            Ok(p) => rs.push(p),
            Err(e) => return format!(r#"{{"error":"reader: {e}"}}"#),
        }
    }
    for r in rs.iter_mut() {
        let _ = r.sync(Duration::from_secs(60)).await;
        lost += want[&r.path].saturating_sub(r.count());
    }
    let mut l = shared.latencies.lock().unwrap().clone();
    let n = l.len();
    let (p50, p95, p99) = (pct(&mut l, 0.5), pct(&mut l, 0.95), pct(&mut l, 0.99));
    format!(
        r#"{{"mode":"relay","attack":"{attack}","clients":{},"writers":{},"rate":{rate},"seconds":{seconds},"written":{},"deliveries":{n},"p50":{p50:.2},"p95":{p95:.2},"p99":{p99:.2},"lost":{lost},"serverRssMax":{rss_max},"serverCpu":{:.3},"connectSeconds":{connect_s:.1}}}"#,
        repos * per,
        repos,
        shared.written.load(Relaxed),
        (cpu1 - cpu0) / seconds as f64
    )
}

async fn union(args: &[String]) -> String {
    let addr: SocketAddr = arg(args, "--addr", "127.0.0.1:8080".parse().unwrap());
    let pid: u32 = arg(args, "--pid", 0);
    let clients: usize = arg(args, "--clients", 100);
    let rate: f64 = arg(args, "--rate", 1.0);
    let seconds: u64 = arg(args, "--seconds", 60);
    let salt: u64 = now_ms() as u64 ^ 0x77;
    let path = RepoPath::parse(&format!("/data/union{salt}")).unwrap();
    let shared = Arc::new(Shared { sent: Arc::new(Mutex::new(HashMap::new())), latencies: Mutex::new(Vec::new()), stop: AtomicBool::new(false), written: AtomicU64::new(0) });
    let mut tasks = Vec::new();
    for c in 0..clients {
        let p = match Peer::connect(addr, SessionKey::from_seed(seed(c as u64, salt)), path.clone()).await {
            Ok(p) => p,
            Err(e) => return format!(r#"{{"error":"connect: {e}"}}"#),
        };
        tasks.push(tokio::spawn(writer(p, shared.clone(), rate, c)));
    }
    let (_, cpu0) = proc_usage(pid);
    let t0 = Instant::now();
    let mut rss_max = 0;
    while t0.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_max = rss_max.max(proc_usage(pid).0);
    }
    shared.stop.store(true, Relaxed);
    let (_, cpu1) = proc_usage(pid);
    let mut ps = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(p) => ps.push(p),
            Err(e) => return format!(r#"{{"error":"writer: {e}"}}"#),
        }
    }
    let tc = Instant::now();
    // Everyone syncs until they all hold the same set.
    let written = shared.written.load(Relaxed) as usize;
    for _ in 0..3 {
        for p in ps.iter_mut() {
            let _ = p.sync(Duration::from_secs(120)).await;
        }
        if ps.iter().all(|p| p.count() == written) {
            break;
        }
    }
    let converge = tc.elapsed().as_secs_f64();
    let digests: std::collections::HashSet<(u64, [u8; 32])> = ps
        .iter()
        .map(|p| {
            let d = p.repos[&p.path].digest();
            (d.count, d.xor)
        })
        .collect();
    let short = ps.iter().filter(|p| p.count() != written).count();
    format!(
        r#"{{"mode":"union","clients":{clients},"rate":{rate},"seconds":{seconds},"written":{written},"clientsShort":{short},"distinctStates":{},"convergeSeconds":{converge:.2},"serverRssMax":{rss_max},"serverCpu":{:.3}}}"#,
        digests.len(),
        (cpu1 - cpu0) / seconds as f64
    )
}

async fn idle(args: &[String]) -> String {
    let addr: SocketAddr = arg(args, "--addr", "127.0.0.1:8080".parse().unwrap());
    let pid: u32 = arg(args, "--pid", 0);
    let n: usize = arg(args, "--connections", 10_000);
    let salt: u64 = now_ms() as u64 ^ 0x1d1e;
    let (rss0, _) = proc_usage(pid);
    let path = RepoPath::parse("/data/idle").unwrap();
    let t0 = Instant::now();
    let mut held = Vec::with_capacity(n);
    let mut failed = 0;
    // A few connecting at once: the handshake costs a signature each way.
    let mut pending = Vec::new();
    for i in 0..n {
        let path = path.clone();
        pending.push(tokio::spawn(async move { Peer::connect(addr, SessionKey::from_seed(seed(i as u64, salt)), path).await }));
        if pending.len() == 64 {
            for p in pending.drain(..) {
                match p.await.unwrap() {
                    Ok(p) => held.push(p),
                    Err(_) => failed += 1,
                }
            }
        }
    }
    for p in pending.drain(..) {
        match p.await.unwrap() {
            Ok(p) => held.push(p),
            Err(_) => failed += 1,
        }
    }
    let connect = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss1, _) = proc_usage(pid);
    format!(r#"{{"mode":"idle","connections":{},"failed":{failed},"serverRssBefore":{rss0},"serverRss":{rss1},"connectSeconds":{connect:.1}}}"#, held.len())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let out = rt.block_on(async {
        match args.get(1).map(String::as_str) {
            Some("relay") => relay(&args).await,
            Some("union") => union(&args).await,
            Some("idle") => idle(&args).await,
            Some("attack") => {
                // An attacker on its own, until killed (run beside `relay`).
                let addr: SocketAddr = arg(&args, "--addr", "127.0.0.1:8080".parse().unwrap());
                let kind: String = arg(&args, "--kind", "slow-reader".to_owned());
                let stop = Arc::new(AtomicBool::new(false));
                let commits: usize = arg(&args, "--commits", 12_000);
                let r = if kind == "splices" { splice_attack(addr, stop).await } else { slow_reader_attack(addr, stop, commits).await };
                format!(r#"{{"mode":"attack","kind":"{kind}","result":"{:?}"}}"#, r.err())
            }
            _ => "usage: load relay|union|idle --addr host:port --pid <server pid> …".to_owned(),
        }
    });
    println!("{out}");
    rt.shutdown_background();
}
