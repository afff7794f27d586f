//! The hub: one thread that owns every repository of the server and runs
//! the sync protocol (`ibex_core::sync`) for every connection.
//!
//! Repositories hold storage that is not `Send` in general (the same core
//! runs on OPFS in browsers), so instead of sharing them behind locks the
//! server keeps them on this thread; WebSocket tasks send it frames over a
//! channel and receive replies on their own channel. Per connection, frames
//! are handled in order. New commits are relayed at once to every other
//! connection subscribed to the repository (no polling), and the logs are
//! flushed shortly after writes and on shutdown.
//!
//! Security (`ibex_core::trust`, `rules`, `handshake`): every connection
//! starts with `hello` (a fresh nonce) and must prove its session with
//! `auth` before anything else; the hub certifies the session (anonymous
//! by default) in `/sys/sessions` with the root key. Every sync frame is
//! checked against the read rule for the connection's session (a repository
//! it may not read gets an `error` frame and nothing else), and every
//! received commit passes `Trust::verify` (signature, certificate, write
//! rule) before it is stored or relayed; rejections are logged, counted and
//! reported to the sender.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use ibex_core::handshake::{Control, is_control, normalize_email};
use ibex_core::sync::{Message, Reconciler};
use ibex_core::trust::{CERT_TTL_MS, SESSIONS, USERS, register_schemas, user_id};
use ibex_core::{Certificate, Error, FileStorage, Registry, RepoPath, Repository, Rules, SessionId, SessionKey, Trust};
use tokio::sync::mpsc::UnboundedSender;

use crate::login::{LoginVerifier, Logins};

/// Rejected commits reported to the sender per frame (the rest are counted).
const MAX_ERRORS_PER_FRAME: usize = 8;

/// What the hub needs to know about security.
pub struct Security {
    pub root: SessionKey,
    pub rules: Rules,
    /// Base URL of login links (`<url>/?ibex-login=<token>`).
    pub public_url: String,
    pub login_ttl: Duration,
    pub verifier: Arc<dyn LoginVerifier>,
}

/// Counters the server exposes on `/stats`.
#[derive(Debug, Default)]
pub struct Stats {
    pub rejected_commits: AtomicU64,
    pub refused_handshakes: AtomicU64,
    pub forbidden_reads: AtomicU64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Writes are flushed this long after they happen.
const FLUSH_AFTER: Duration = Duration::from_millis(50);

pub type ConnId = u64;

/// What a connection's task receives from the hub.
#[derive(Debug)]
pub enum Outgoing {
    Frame(Vec<u8>),
    /// Close the connection, with a reason (bad input).
    Close(String),
}

pub enum Command {
    Connect {
        conn: ConnId,
        out: UnboundedSender<Outgoing>,
    },
    /// A connection to another server (`--peer`): every repository this
    /// server opens is reconciled with it, in both directions.
    PeerConnect {
        conn: ConnId,
        out: UnboundedSender<Outgoing>,
    },
    Frame {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Disconnect {
        conn: ConnId,
    },
    /// Flush everything, then answer.
    Flush {
        done: std::sync::mpsc::Sender<()>,
    },
    Shutdown,
}

struct Entry {
    repo: Repository,
    /// Connections that sent frames for this repository, and their side of
    /// the reconciliation.
    peers: BTreeMap<ConnId, Reconciler>,
}

struct Conn {
    out: UnboundedSender<Outgoing>,
    /// This connection's handshake nonce (we are the server side).
    nonce: [u8; 32],
    /// The session proven by `auth` (server side), or set once our own
    /// `auth` was welcomed (peer connections, where we are the client).
    session: Option<SessionId>,
    /// A connection this server opened to another server.
    peer: bool,
}

struct Hub {
    data: PathBuf,
    registry: Arc<Registry>,
    repos: BTreeMap<RepoPath, Entry>,
    conns: HashMap<ConnId, Conn>,
    dirty: BTreeSet<RepoPath>,
    sec: Security,
    trust: Trust,
    logins: Logins,
    stats: Arc<Stats>,
}

/// Starts the hub thread; send it [`Command`]s. With `open_all`, every log
/// already in the data directory is opened at once (so peers reconcile it).
pub fn spawn(data: PathBuf, open_all: bool, sec: Security, stats: Arc<Stats>) -> Result<(Sender<Command>, std::thread::JoinHandle<()>), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    // Repositories (and their storage) live and die on the hub thread.
    let handle = std::thread::Builder::new()
        .name("ibex-hub".into())
        .spawn(move || match Hub::new(data, open_all, sec, stats) {
            Ok(mut hub) => {
                let _ = ready_tx.send(Ok(()));
                hub.run(rx);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(|e| e.to_string())?;
    ready_rx.recv().map_err(|_| "the hub thread stopped".to_owned())??;
    Ok((tx, handle))
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    // Seeds only vary Bloom hashing between sessions; a fixed fallback is safe.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

impl Hub {
    fn new(data: PathBuf, open_all: bool, sec: Security, stats: Arc<Stats>) -> Result<Hub, String> {
        let mut registry = Registry::new();
        register_schemas(&mut registry).map_err(|e| e.to_string())?;
        let mut trust = Trust::new(sec.rules.clone());
        trust.add_root(sec.root.id());
        let mut hub = Hub { data, registry: Arc::new(registry), repos: BTreeMap::new(), conns: HashMap::new(), dirty: BTreeSet::new(), logins: Logins::new(sec.login_ttl), sec, trust, stats };
        // Certificates are needed to judge every other commit: load them first.
        let sessions = RepoPath::parse(SESSIONS).expect("valid path");
        hub.entry(&sessions)?;
        hub.trust.refresh_all(&mut hub.repos.get_mut(&sessions).expect("opened above").repo);
        if open_all {
            hub.open_all();
        }
        Ok(hub)
    }

    fn run(&mut self, rx: Receiver<Command>) {
        loop {
            let cmd = if self.dirty.is_empty() { rx.recv().map_err(|_| RecvTimeoutError::Disconnected) } else { rx.recv_timeout(FLUSH_AFTER) };
            match cmd {
                Ok(Command::Connect { conn, out }) => {
                    let mut nonce = [0u8; 32];
                    if let Err(e) = getrandom::fill(&mut nonce) {
                        tracing::error!(error = %e, "no secure random source; refusing the connection");
                        let _ = out.send(Outgoing::Close("server has no random source".into()));
                        continue;
                    }
                    let hello = Control::hello(nonce, &self.sec.root, self.trust.rules().to_string());
                    let _ = out.send(Outgoing::Frame(hello.encode()));
                    self.conns.insert(conn, Conn { out, nonce, session: None, peer: false });
                }
                Ok(Command::PeerConnect { conn, out }) => {
                    // We are the client here: wait for the peer's hello.
                    self.conns.insert(conn, Conn { out, nonce: [0; 32], session: None, peer: true });
                }
                Ok(Command::Frame { conn, bytes }) => {
                    if is_control(&bytes) {
                        self.control(conn, &bytes);
                    } else {
                        self.frame(conn, &bytes);
                    }
                }
                Ok(Command::Disconnect { conn }) => {
                    self.conns.remove(&conn);
                    for e in self.repos.values_mut() {
                        e.peers.remove(&conn);
                    }
                }
                Ok(Command::Flush { done }) => {
                    self.flush();
                    let _ = done.send(());
                }
                Ok(Command::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => self.flush(),
            }
        }
    }

    fn flush(&mut self) {
        for path in std::mem::take(&mut self.dirty) {
            if let Some(e) = self.repos.get_mut(&path)
                && let Err(err) = e.repo.flush()
            {
                tracing::error!(repo = %path, error = %err, "flush failed");
            }
        }
    }

    fn send(&self, conn: ConnId, out: Outgoing) {
        if let Some(c) = self.conns.get(&conn) {
            let _ = c.out.send(out);
        }
    }

    fn send_error(&self, conn: ConnId, repo: &str, e: &Error) {
        self.send(conn, Outgoing::Frame(Control::error(repo, e).encode()));
    }

    /// Refuses the connection: an error frame, then close.
    fn refuse(&self, conn: ConnId, e: &Error) {
        self.send_error(conn, "", e);
        self.send(conn, Outgoing::Close(e.to_string()));
    }

    fn peer_conns(&self) -> Vec<ConnId> {
        self.conns.iter().filter(|(_, c)| c.peer && c.session.is_some()).map(|(id, _)| *id).collect()
    }

    /// A control frame (`handshake.rs`).
    fn control(&mut self, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (peer, session, nonce) = (c.peer, c.session, c.nonce);
        let msg = match Control::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(conn, error = %e, "malformed control frame; closing the connection");
                self.send_error(conn, "", &e);
                self.send(conn, Outgoing::Close(format!("malformed frame: {e}")));
                return;
            }
        };
        let now = now_ms();
        match (peer, session, msg) {
            // --- we are the client of another server ---
            (true, _, hello @ Control::Hello { .. }) => match hello.verify_hello() {
                Ok((nonce, root, _)) if root == self.sec.root.id() => {
                    let auth = Control::auth(&self.sec.root, nonce, &root);
                    self.send(conn, Outgoing::Frame(auth.encode()));
                }
                Ok((_, root, _)) => {
                    tracing::error!(conn, peer_root = %root, "peer server has a different root key; peers must share --root-key");
                    self.send(conn, Outgoing::Close("different root key".into()));
                }
                Err(e) => {
                    tracing::error!(conn, error = %e, "peer server's hello is invalid");
                    self.send(conn, Outgoing::Close(e.to_string()));
                }
            },
            (true, None, Control::Welcome { .. }) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.session = Some(self.sec.root.id());
                }
                let paths: Vec<RepoPath> = self.repos.keys().cloned().collect();
                for p in paths {
                    self.start_with_peer(&p, conn);
                }
            }
            (true, _, Control::Error { repo, code, message }) => tracing::warn!(conn, repo, code, message, "peer server reported an error"),
            (true, _, other) => {
                tracing::warn!(conn, frame = ?other, "unexpected control frame from a peer server; ignored")
            }
            // --- we are the server ---
            (false, None, auth @ Control::Auth { .. }) => match auth.verify_auth(&nonce, &self.sec.root.id()) {
                Ok(s) => self.authenticated(conn, s, now),
                Err(e) => {
                    self.stats.refused_handshakes.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(conn, error = %e, "handshake refused");
                    self.refuse(conn, &e);
                }
            },
            (false, Some(_), Control::Auth { .. }) => self.refuse(conn, &Error::Handshake("this connection is already authenticated".into())),
            (false, None, _) => {
                self.stats.refused_handshakes.fetch_add(1, Ordering::Relaxed);
                self.refuse(conn, &Error::Handshake("authenticate first: answer hello with auth".into()));
            }
            (false, Some(s), Control::Login { email }) => {
                let res = normalize_email(&email).and_then(|email| {
                    if self.trust.is_root(&s) {
                        return Err(Error::Login("the root session cannot log in".into()));
                    }
                    let token = self.logins.issue(&email).map_err(Error::Login)?;
                    let link = format!("{}/?ibex-login={token}", self.sec.public_url.trim_end_matches('/'));
                    self.sec.verifier.send(&email, &link).map_err(Error::Login)?;
                    Ok(email)
                });
                match res {
                    Ok(email) => self.send(conn, Outgoing::Frame(Control::LoginSent { email }.encode())),
                    Err(e) => self.send_error(conn, "", &e),
                }
            }
            (false, Some(s), Control::Redeem { token }) => {
                if let Err(e) = self.redeem(conn, s, &token, now) {
                    tracing::warn!(conn, error = %e, "login refused");
                    self.send_error(conn, "", &e);
                }
            }
            (false, Some(s), Control::Logout) => {
                if let Some(mut cert) = self.trust.certificate(&s).cloned() {
                    cert.expires = cert.expires.min(now);
                    if let Err(e) = self.write_certificate(&cert, now) {
                        tracing::error!(error = %e, "cannot expire a certificate");
                    }
                }
                self.send(conn, Outgoing::Close("logged out".into()));
            }
            (false, Some(_), other) => {
                tracing::warn!(conn, frame = ?other, "unexpected control frame from a client; ignored")
            }
        }
    }

    /// `session` proved itself on `conn`: certify it if needed, then welcome.
    fn authenticated(&mut self, conn: ConnId, session: SessionId, now: i64) {
        if self.trust.is_root(&session) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.session = Some(session);
            }
            self.send(conn, Outgoing::Frame(Control::Welcome { user: String::new(), email: String::new(), expires: i64::MAX }.encode()));
            return;
        }
        let cert = match self.trust.certificate(&session).cloned() {
            // Expired: an anonymous session is renewed; a user's must log in
            // again with a new key (its owner never changes).
            Some(c) if c.expires < now && c.owner.is_some() => {
                self.refuse(conn, &Error::SessionExpired { session: session.to_hex(), expired: c.expires, at: now });
                return;
            }
            Some(c) if c.expires - now > CERT_TTL_MS / 2 => c,
            Some(c) => Certificate { expires: now + CERT_TTL_MS, ..c },
            None => Certificate { session, owner: None, expires: now + CERT_TTL_MS },
        };
        if let Err(e) = self.write_certificate(&cert, now) {
            tracing::error!(error = %e, "cannot write a certificate");
            self.refuse(conn, &e);
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(session);
        }
        self.welcome(conn, &cert);
    }

    /// Sends `cert`'s commits, then `welcome`.
    fn welcome(&mut self, conn: ConnId, cert: &Certificate) {
        let path = RepoPath::parse(SESSIONS).expect("valid path");
        let key = cert.session.to_hex();
        let frames: Vec<Vec<u8>> = {
            let repo = &self.repos[&path].repo;
            let ids: Vec<_> = repo.history(&key).map(|h| h.into_iter().map(|e| e.id).collect()).unwrap_or_default();
            Message::commits(&path, ids.iter().filter_map(|id: &ibex_core::CommitId| repo.commit(id))).iter().map(Message::encode).collect()
        };
        for f in frames {
            self.send(conn, Outgoing::Frame(f));
        }
        let email = cert.owner.as_deref().and_then(|u| self.email_of(u)).unwrap_or_default();
        self.send(conn, Outgoing::Frame(Control::Welcome { user: cert.owner.clone().unwrap_or_default(), email, expires: cert.expires }.encode()));
    }

    fn email_of(&mut self, user: &str) -> Option<String> {
        let path = RepoPath::parse(USERS).ok()?;
        let head = self.entry(&path).ok()?.repo.head(user)?;
        match head.data.fields.get("email") {
            Some(ibex_core::Value::Str(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Writes a certificate with the root key, updates trust, and relays it.
    fn write_certificate(&mut self, cert: &Certificate, now: i64) -> Result<(), Error> {
        let path = RepoPath::parse(SESSIONS).expect("valid path");
        self.entry(&path).map_err(Error::Storage)?;
        let entry = self.repos.get_mut(&path).expect("opened above");
        let before: BTreeSet<_> = entry.repo.leaves(&cert.session.to_hex()).into_iter().collect();
        cert.write(&mut entry.repo, &self.sec.root, now)?;
        let key = cert.session.to_hex();
        self.trust.refresh(&mut entry.repo, [key.as_str()]);
        let new: Vec<_> = entry.repo.leaves(&key).into_iter().filter(|l| !before.contains(l)).collect();
        self.dirty.insert(path.clone());
        self.relay(&path, &new, None);
        Ok(())
    }

    fn redeem(&mut self, conn: ConnId, session: SessionId, token: &str, now: i64) -> Result<(), Error> {
        if self.trust.is_root(&session) {
            return Err(Error::Login("the root session cannot log in".into()));
        }
        let email = self.logins.redeem(token).map_err(Error::Login)?;
        let user = user_id(&email);
        let cert = self.trust.certificate(&session).cloned().unwrap_or(Certificate { session, owner: None, expires: now + CERT_TTL_MS });
        if let Some(other) = &cert.owner
            && *other != user
        {
            return Err(Error::Forbidden("this session belongs to another user; log out first".into()));
        }
        let users = RepoPath::parse(USERS).expect("valid path");
        self.entry(&users).map_err(Error::Storage)?;
        let entry = self.repos.get_mut(&users).expect("opened above");
        if entry.repo.head(&user).is_none() {
            let mut fields = std::collections::BTreeMap::new();
            fields.insert("email".to_owned(), ibex_core::Value::Str(email.clone()));
            entry.repo.write(&user, &ibex_core::SchemaId::new("ibex.user", 1), ibex_core::ItemData::new(fields), &self.sec.root, now)?;
            self.dirty.insert(users);
        }
        let cert = Certificate { owner: Some(user.clone()), expires: now + CERT_TTL_MS, ..cert };
        self.write_certificate(&cert, now)?;
        tracing::info!(conn, %user, session = %session, "session logged in");
        self.welcome(conn, &cert);
        Ok(())
    }

    /// Sends the commits `ids` of `path` to every connection reconciling it
    /// (but `except`).
    fn relay(&self, path: &RepoPath, ids: &[ibex_core::CommitId], except: Option<ConnId>) {
        if ids.is_empty() {
            return;
        }
        let Some(entry) = self.repos.get(path) else {
            return;
        };
        let frames: Vec<Vec<u8>> = Message::commits(path, ids.iter().filter_map(|id| entry.repo.commit(id))).iter().map(Message::encode).collect();
        for other in entry.peers.keys().copied().filter(|c| Some(*c) != except) {
            for f in &frames {
                self.send(other, Outgoing::Frame(f.clone()));
            }
        }
    }

    /// Opens every `<kind>/<name>.log` under the data directory.
    fn open_all(&mut self) {
        let Ok(kinds) = std::fs::read_dir(&self.data) else {
            return;
        };
        for kind in kinds.flatten() {
            let Ok(files) = std::fs::read_dir(kind.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                let (Some(stem), Some(k)) = (name.strip_suffix(".log"), kind.file_name().to_str().map(str::to_owned)) else {
                    continue;
                };
                if let Ok(path) = RepoPath::parse(&format!("/{k}/{stem}"))
                    && let Err(e) = self.entry(&path)
                {
                    tracing::error!(repo = %path, error = %e, "cannot open repository");
                }
            }
        }
    }

    /// Starts reconciling `path` with the peer server on `conn`.
    fn start_with_peer(&mut self, path: &RepoPath, conn: ConnId) {
        let Some(entry) = self.repos.get_mut(path) else {
            return;
        };
        let rec = entry.peers.entry(conn).or_insert_with(|| Reconciler::new(path.clone(), seed()));
        let frame = rec.start(&entry.repo).encode();
        self.send(conn, Outgoing::Frame(frame));
    }

    fn entry(&mut self, path: &RepoPath) -> Result<&mut Entry, String> {
        if !self.repos.contains_key(path) {
            let file = self.data.join(path.kind()).join(format!("{}.log", path.name()));
            let storage = FileStorage::open(&file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
            let (repo, report) = Repository::open(path.clone(), self.registry.clone(), Box::new(storage)).map_err(|e| e.to_string())?;
            if !report.corrupt.is_empty() || !report.rejected.is_empty() {
                tracing::warn!(repo = %path, corrupt = report.corrupt.len(), rejected = report.rejected.len(), "damaged log records skipped");
            }
            tracing::info!(repo = %path, commits = report.commits, "opened repository");
            self.repos.insert(path.clone(), Entry { repo, peers: BTreeMap::new() });
            for conn in self.peer_conns() {
                self.start_with_peer(path, conn);
            }
        }
        Ok(self.repos.get_mut(path).expect("inserted above"))
    }

    fn frame(&mut self, conn: ConnId, bytes: &[u8]) {
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(conn, error = %e, "malformed frame; closing the connection");
                self.send(conn, Outgoing::Close(format!("malformed frame: {e}")));
                return;
            }
        };
        let path = msg.repo().clone();
        let Some(session) = self.conns.get(&conn).and_then(|c| c.session) else {
            self.stats.refused_handshakes.fetch_add(1, Ordering::Relaxed);
            self.refuse(conn, &Error::Handshake("authenticate first: answer hello with auth".into()));
            return;
        };
        let principal = self.trust.principal(&session, now_ms());
        if let Err(e) = self.trust.rules().check_read(&path, &principal) {
            // Nothing of the repository is sent or accepted; the connection
            // stays open for the others.
            self.stats.forbidden_reads.fetch_add(1, Ordering::Relaxed);
            tracing::info!(conn, repo = %path, session = %session, "read refused");
            self.send_error(conn, path.as_str(), &e);
            return;
        }
        if let Err(e) = self.entry(&path) {
            tracing::error!(repo = %path, error = %e, "cannot open repository");
            self.send(conn, Outgoing::Close(format!("cannot open {path}")));
            return;
        }
        let entry = self.repos.get_mut(&path).expect("opened above");
        let rec = entry.peers.entry(conn).or_insert_with(|| Reconciler::new(path.clone(), seed()));
        let trust = &self.trust;
        let handled = rec.handle(&mut entry.repo, msg, &|c| trust.verify(c));
        let handled = match handled {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(conn, repo = %path, error = %e, "sync failed; closing the connection");
                self.send(conn, Outgoing::Close(e.to_string()));
                return;
            }
        };
        self.stats.rejected_commits.fetch_add(handled.rejected.len() as u64, Ordering::Relaxed);
        for (i, e) in handled.rejected.iter().enumerate() {
            tracing::warn!(conn, repo = %path, session = %session, code = e.code(), error = %e, "rejected commit");
            if i < MAX_ERRORS_PER_FRAME {
                self.send_error(conn, path.as_str(), e);
            }
        }
        if !handled.inserted.is_empty() {
            self.dirty.insert(path.clone());
            if path.as_str() == SESSIONS {
                // Certificates from a peer server: judge later commits by them.
                let entry = self.repos.get_mut(&path).expect("opened above");
                let keys: BTreeSet<String> = handled.inserted.iter().filter_map(|id| entry.repo.commit(id).map(|c| c.key.to_string())).collect();
                self.trust.refresh(&mut entry.repo, keys.iter().map(String::as_str));
            }
        }
        for r in handled.replies {
            self.send(conn, Outgoing::Frame(r.encode()));
        }
        // Relay what is new here to every other subscriber of the repository.
        self.relay(&path, &handled.inserted, Some(conn));
    }
}
