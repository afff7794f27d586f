//! A test client of ibex-server that speaks the real protocol over a real
//! WebSocket on 127.0.0.1 through the shared client state machine
//! (`ibex_core::sync::ClientSession`, the same code the browser engine
//! runs), verifying every received commit like the browser engine.
#![allow(dead_code)]

pub mod pg;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ibex_core::sync::frame::Frame;
use ibex_core::sync::{ClientSession, Event};
use ibex_core::trust::register_schemas;
use ibex_core::*;
use ibex_server::{Config, Running, start};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn repo_path() -> RepoPath {
    RepoPath::parse("/data/todos").unwrap()
}

pub fn registry() -> Arc<Registry> {
    let mut r = Registry::new();
    register_schemas(&mut r).unwrap();
    r.register(Schema::new("todo", 1).field("title", FieldDef::new(FieldType::String)).field("done", FieldDef::new(FieldType::Boolean)).field("body", FieldDef::new(FieldType::Text))).unwrap();
    Arc::new(r)
}

pub fn todo() -> SchemaId {
    SchemaId::new("todo", 1)
}

/// A config whose root key lives outside `data`, so a test can wipe the
/// data directory and keep the server's identity (as a deployment keeps
/// its key out of the data volume).
pub fn config(data: &Path, key: &Path) -> Config {
    let mut c = Config::new("127.0.0.1:0".parse().unwrap(), data.to_owned());
    c.root_key = Some(key.to_owned());
    c.repo_threads = 2;
    // IBEX_TEST_STORE=postgres: the same suite on PostgreSQL.
    c.store = pg::test_store(data);
    c
}

/// The root key file every test server of a process shares.
pub fn shared_key() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("root.key"), "11".repeat(32)).unwrap();
        d
    });
    dir.path().join("root.key")
}

pub fn root_key() -> SessionKey {
    SessionKey::from_seed([0x11; 32])
}

pub async fn server_with(data: &Path, f: impl FnOnce(&mut Config)) -> Running {
    let mut c = config(data, &shared_key());
    f(&mut c);
    start(c).await.unwrap()
}

pub async fn server(data: &Path) -> Running {
    start(config(data, &shared_key())).await.unwrap()
}

pub async fn peered(data: &Path, peer: SocketAddr) -> Running {
    let mut c = config(data, &shared_key());
    c.peers = vec![format!("ws://{peer}")];
    start(c).await.unwrap()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).unwrap();
    n
}

pub struct Client {
    pub key: SessionKey,
    pub session: ClientSession,
    pub repos: BTreeMap<RepoPath, Repository>,
    pub path: RepoPath,
    pub ws: Option<Socket>,
    pub clock: i64,
    /// `error` frames received: (repo, code).
    pub errors: Vec<(String, String)>,
    /// Commits this client refused (code).
    pub rejected: Vec<String>,
    /// From the last `welcome`: (user, email).
    pub user: Option<(String, String)>,
    pub login_sent: bool,
    pub login_is: Option<String>,
    /// The last `hello` (to build replays in tests).
    pub hello: Option<Vec<u8>>,
    /// Why the connection ended, if it did.
    pub closed: Option<String>,
    /// This client's clock minus real time (a wrong clock).
    pub skew: i64,
}

impl Client {
    pub fn new(n: u8) -> Client {
        Client::with_repo(n, repo_path())
    }

    pub fn with_repo(n: u8, path: RepoPath) -> Client {
        Client::with_key(SessionKey::from_seed([n; 32]), path)
    }

    pub fn with_key(key: SessionKey, path: RepoPath) -> Client {
        let mut repos = BTreeMap::new();
        repos.insert(path.clone(), Repository::new(path.clone(), registry()));
        Client {
            session: ClientSession::new(key.clone(), Trust::new(Rules::default())),
            key,
            repos,
            path,
            ws: None,
            clock: now_ms(),
            errors: Vec::new(),
            rejected: Vec::new(),
            user: None,
            login_sent: false,
            login_is: None,
            hello: None,
            closed: None,
            skew: 0,
        }
    }

    /// This client's clock (real time plus its skew).
    pub fn now(&self) -> i64 {
        now_ms() + self.skew
    }

    pub fn repo(&self) -> &Repository {
        &self.repos[&self.path]
    }

    pub fn repo_mut(&mut self) -> &mut Repository {
        self.repos.get_mut(&self.path).unwrap()
    }

    /// Adds another repository to sync.
    pub fn add_repo(&mut self, path: &RepoPath) {
        self.repos.insert(path.clone(), Repository::new(path.clone(), registry()));
        self.session.open(&mut self.repos, path);
    }

    /// Opens a socket without the handshake.
    pub async fn raw(addr: SocketAddr) -> Socket {
        connect_async(format!("ws://{addr}/sync")).await.unwrap().0
    }

    /// Connects and completes the handshake (the root is trusted on first use).
    pub async fn connect(&mut self, addr: SocketAddr) {
        self.try_connect(addr).await.unwrap_or_else(|e| panic!("connect: {e}; errors: {:?}", self.errors));
    }

    pub async fn try_connect(&mut self, addr: SocketAddr) -> Result<(), String> {
        self.ws = Some(connect_async(format!("ws://{addr}/sync")).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?.0);
        self.closed = None;
        self.session.connected(self.now());
        self.user = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.session.conn.is_ready() {
            if Instant::now() > deadline {
                return Err("no welcome within 5 s".into());
            }
            if !self.receive_one(Duration::from_secs(5)).await {
                return Err(format!("connection ended during the handshake: {:?}", self.closed));
            }
        }
        Ok(())
    }

    /// Drops the connection (the server sees it close).
    pub async fn disconnect(&mut self) {
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.close(None).await;
        }
        self.session.disconnected();
    }

    /// Writes locally; pushed at once when connected.
    pub fn write(&mut self, key: &str, field: &str, v: Value) -> CommitId {
        self.clock = self.session.conn.commit_time(self.now()).max(self.clock + 1);
        let clock = self.clock;
        let sk = self.key.clone();
        let id = self.repo_mut().update(key, &todo(), &[Change::Put { field: field.into(), value: v }], &sk, clock).unwrap().unwrap();
        let path = self.path.clone();
        self.session.pushed(&mut self.repos, &path, &[id]);
        id
    }

    pub async fn send_raw(&mut self, b: Vec<u8>) {
        if let Some(ws) = self.ws.as_mut() {
            let _ = ws.send(Ws::Binary(b.into())).await;
        }
    }

    pub async fn send(&mut self, f: &Frame) {
        self.send_raw(f.encode()).await;
    }

    /// Sends what the session queued.
    pub async fn flush_out(&mut self) {
        for f in self.session.take_frames() {
            self.send_raw(f).await;
        }
    }

    /// Handles one incoming frame (false on timeout or when the connection ends).
    pub async fn receive_one(&mut self, wait: Duration) -> bool {
        self.flush_out().await;
        let Some(ws) = self.ws.as_mut() else { return false };
        let b = match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Ws::Binary(b)))) => b,
            Ok(Some(Ok(Ws::Close(f)))) => {
                self.closed = Some(f.map(|f| f.reason.to_string()).unwrap_or_default());
                self.errors.push((String::new(), format!("closed: {}", self.closed.as_deref().unwrap_or(""))));
                self.ws = None;
                self.session.disconnected();
                return false;
            }
            Ok(Some(Ok(_))) => return true,
            Ok(None) | Ok(Some(Err(_))) => {
                self.closed = Some("connection lost".into());
                self.ws = None;
                self.session.disconnected();
                return false;
            }
            Err(_) => return false,
        };
        if b.first() == Some(&16) {
            self.hello = Some(b.to_vec());
        }
        let now = self.now();
        if let Err(e) = self.session.receive(&mut self.repos, &b, now, nonce()) {
            self.errors.push((String::new(), format!("{}: {e}", e.code())));
            self.closed = Some(e.to_string());
            if let Some(mut ws) = self.ws.take() {
                let _ = ws.close(None).await;
            }
            self.session.disconnected();
            return false;
        }
        for ev in self.session.take_events() {
            match ev {
                Event::Error { repo, code, .. } => self.errors.push((repo, code)),
                Event::Rejected { code, .. } => self.rejected.push(code),
                Event::Welcome { user, email, .. } => self.user = Some((user, email)),
                Event::LoginSent(_) => self.login_sent = true,
                Event::LoginIs(e) => self.login_is = Some(e),
                _ => {}
            }
        }
        self.flush_out().await;
        true
    }

    /// A new round for every repository, until it completes and nothing of
    /// ours is unacknowledged.
    pub async fn sync(&mut self) {
        self.try_sync(Duration::from_secs(10)).await.unwrap_or_else(|e| panic!("{e}"));
    }

    pub async fn try_sync(&mut self, within: Duration) -> Result<(), String> {
        self.session.sync_now(&mut self.repos);
        let deadline = Instant::now() + within;
        while !self.session.sync_complete(&self.repos, self.now()) {
            if Instant::now() > deadline {
                return Err(format!("sync did not complete; unacked {}, errors {:?}, refused {:?}", self.session.unacked(), self.errors, self.session.refused()));
            }
            if self.ws.is_none() {
                return Err(format!("connection ended: {:?}; errors {:?}", self.closed, self.errors));
            }
            self.receive_one(Duration::from_millis(200)).await;
            let now = self.now();
            let _ = self.session.tick_with(&mut self.repos, now);
        }
        self.session.sync_done();
        Ok(())
    }

    /// Receives for a while (relays), running the session's timers.
    pub async fn listen(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end && self.ws.is_some() {
            self.receive_one(end.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(1), Duration::from_millis(250))).await;
            let now = self.now();
            let _ = self.session.tick_with(&mut self.repos, now);
        }
    }

    /// A signed commit of this client's session, never integrated here
    /// (to send hand-made frames).
    pub fn forge(&self, item: &str, parents: Vec<CommitId>, body: Body, timestamp: i64) -> Vec<u8> {
        Commit { repo: self.path.clone(), key: item.into(), parents, timestamp, session: self.key.id(), schema: todo(), body }.sign(&self.key).unwrap().encode()
    }

    pub fn state(&mut self) -> Vec<(String, ItemData)> {
        let repo = self.repos.get_mut(&self.path).unwrap();
        let mut keys: Vec<String> = repo.keys().map(str::to_owned).collect();
        keys.sort();
        keys.into_iter().map(|k| (k.clone(), (*repo.head(&k).unwrap().data).clone())).collect()
    }
}

/// Syncs `c` until its state equals `want` (replication between servers
/// runs in the background).
pub async fn sync_until(c: &mut Client, want: &[(String, ItemData)]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        c.sync().await;
        if c.state() == want {
            return;
        }
        assert!(Instant::now() < deadline, "did not converge: {} of {} items", c.state().len(), want.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET path` on the server; (status line, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut resp = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut resp)).await;
    let status = resp.lines().next().unwrap_or_default().to_owned();
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}
