//! A test client of ibex-server that speaks the real protocol over a real
//! WebSocket on 127.0.0.1: the handshake (`hello` → `auth` → `welcome`),
//! then reconciliation of `/sys/sessions` and one application repository,
//! verifying every received commit with `Trust` like the browser engine.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ibex_core::handshake::{Control, is_control};
use ibex_core::sync::{Message, Reconciler};
use ibex_core::trust::{SESSIONS, register_schemas};
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
    r.register(Schema::new("todo", 1).field("title", FieldDef::new(FieldType::String)).field("done", FieldDef::new(FieldType::Boolean))).unwrap();
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

pub async fn server(data: &Path) -> Running {
    start(config(data, &shared_key())).await.unwrap()
}

pub async fn peered(data: &Path, peer: SocketAddr) -> Running {
    let mut c = config(data, &shared_key());
    c.peers = vec![format!("ws://{peer}")];
    start(c).await.unwrap()
}

pub struct Client {
    pub key: SessionKey,
    pub trust: Trust,
    pub sessions: Repository,
    pub sessions_rec: Reconciler,
    pub repo: Repository,
    pub rec: Reconciler,
    pub ws: Option<Socket>,
    pub clock: i64,
    /// `error` frames received: (repo, code).
    pub errors: Vec<(String, String)>,
    /// Commits this client refused.
    pub rejected: Vec<Error>,
    /// From the last `welcome`: (user, email).
    pub user: Option<(String, String)>,
    pub login_sent: bool,
    /// The last `hello` (to build replays in tests).
    pub hello: Option<Control>,
}

impl Client {
    pub fn new(n: u8) -> Client {
        Client::with_repo(n, repo_path())
    }

    pub fn with_repo(n: u8, path: RepoPath) -> Client {
        let sessions = RepoPath::parse(SESSIONS).unwrap();
        Client {
            key: SessionKey::from_seed([n; 32]),
            trust: Trust::new(Rules::default()),
            sessions: Repository::new(sessions.clone(), registry()),
            sessions_rec: Reconciler::new(sessions, u64::from(n) + 100),
            repo: Repository::new(path.clone(), registry()),
            rec: Reconciler::new(path, n.into()),
            ws: None,
            clock: now_ms() + i64::from(n),
            errors: Vec::new(),
            rejected: Vec::new(),
            user: None,
            login_sent: false,
            hello: None,
        }
    }

    /// Opens a socket without the handshake.
    pub async fn raw(addr: SocketAddr) -> Socket {
        connect_async(format!("ws://{addr}/sync")).await.unwrap().0
    }

    /// Connects and completes the handshake (the root is trusted on first use).
    pub async fn connect(&mut self, addr: SocketAddr) {
        self.ws = Some(Client::raw(addr).await);
        let Some(Ok(Ws::Binary(b))) = self.ws.as_mut().unwrap().next().await else { panic!("no hello") };
        let hello = Control::decode(&b).unwrap();
        let (nonce, root, rules) = hello.verify_hello().unwrap();
        assert!(!self.trust.has_roots() || self.trust.is_root(&root), "the server's root key changed");
        self.trust.add_root(root);
        self.trust.set_rules(Rules::parse(rules).unwrap());
        let auth = Control::auth(&self.key, nonce, &root);
        self.hello = Some(hello.clone());
        self.send_raw(auth.encode()).await;
        self.user = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.user.is_none() {
            assert!(Instant::now() < deadline, "no welcome; errors: {:?}", self.errors);
            assert!(self.receive_one(Duration::from_secs(5)).await, "connection ended during the handshake; errors: {:?}", self.errors);
        }
    }

    pub fn write(&mut self, key: &str, field: &str, v: Value) -> CommitId {
        self.clock += 10;
        self.repo.update(key, &todo(), &[Change::Put { field: field.into(), value: v }], &self.key, self.clock).unwrap().unwrap()
    }

    pub async fn send_raw(&mut self, b: Vec<u8>) {
        self.ws.as_mut().unwrap().send(Ws::Binary(b.into())).await.unwrap();
    }

    pub async fn send(&mut self, m: &Message) {
        self.send_raw(m.encode()).await;
    }

    /// Handles one incoming frame (false on timeout or when the connection ends).
    pub async fn receive_one(&mut self, wait: Duration) -> bool {
        let ws = self.ws.as_mut().unwrap();
        let b = match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Ws::Binary(b)))) => b,
            Ok(Some(Ok(Ws::Close(f)))) => {
                self.errors.push((String::new(), format!("closed: {}", f.map(|f| f.reason.to_string()).unwrap_or_default())));
                return false;
            }
            _ => return false,
        };
        if is_control(&b) {
            match Control::decode(&b).unwrap() {
                Control::Error { repo, code, .. } => self.errors.push((repo, code)),
                Control::Welcome { user, email, .. } => self.user = Some((user, email)),
                Control::LoginSent { .. } => self.login_sent = true,
                other => panic!("unexpected control frame {other:?}"),
            }
            return true;
        }
        let msg = Message::decode(&b).unwrap();
        let trust = &self.trust;
        let h = if msg.repo().as_str() == SESSIONS {
            let h = self.sessions_rec.handle(&mut self.sessions, msg, &|c| trust.verify(c)).unwrap();
            let keys: Vec<String> = h.inserted.iter().filter_map(|id| self.sessions.commit(id).map(|c| c.key.to_string())).collect();
            self.trust.refresh(&mut self.sessions, keys.iter().map(String::as_str));
            h
        } else {
            self.rec.handle(&mut self.repo, msg, &|c| trust.verify(c)).unwrap()
        };
        self.rejected.extend(h.rejected);
        for r in h.replies {
            self.send(&r).await;
        }
        true
    }

    /// Reconciles the sessions, then the application repository, until
    /// both sides agree. Certificates first, as the browser engine does:
    /// otherwise commits can arrive before their writer's certificate and
    /// be refused (ERR_UNKNOWN_SESSION) until a later round re-sends them.
    pub async fn sync(&mut self) {
        let s = self.sessions_rec.start(&self.sessions);
        self.send(&s).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.sessions_rec.is_synced() {
            assert!(Instant::now() < deadline, "sessions did not sync; errors: {:?}", self.errors);
            assert!(self.receive_one(Duration::from_secs(5)).await || self.ws.is_some(), "connection ended");
        }
        let start = self.rec.start(&self.repo);
        self.send(&start).await;
        while !(self.rec.is_synced() && self.sessions_rec.is_synced()) {
            assert!(Instant::now() < deadline, "sync did not finish; errors: {:?}", self.errors);
            assert!(self.receive_one(Duration::from_secs(5)).await || self.ws.is_some(), "connection ended");
        }
        assert!(self.rejected.is_empty(), "{:?}", self.rejected);
    }

    /// Pushes commits made since connecting (live mode).
    pub async fn push(&mut self, ids: &[CommitId]) {
        let path = self.repo.path().clone();
        let frames = Message::commits(&path, ids.iter().map(|id| self.repo.commit(id).unwrap()));
        for f in frames {
            self.send(&f).await;
        }
    }

    pub fn state(&mut self) -> Vec<(String, ItemData)> {
        let mut keys: Vec<String> = self.repo.keys().map(str::to_owned).collect();
        keys.sort();
        keys.into_iter().map(|k| (k.clone(), (*self.repo.head(&k).unwrap().data).clone())).collect()
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Syncs `c` until its state equals `want` (replication between servers
/// runs in the background).
pub async fn sync_until(c: &mut Client, want: &[(String, ItemData)]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        c.sync().await;
        if c.state() == want {
            return;
        }
        assert!(Instant::now() < deadline, "did not converge: {} of {} items", c.state().len(), want.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
