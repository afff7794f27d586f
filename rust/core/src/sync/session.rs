//! The client side of a connection, sans-I/O: the handshake, heartbeats,
//! certificates, and one [`RepoClient`] per repository. The browser engine
//! (`ibex-wasm`), Node, the server's test client and the simulation all
//! drive this same code; the server's peer connections drive its two parts
//! ([`ConnClient`], [`RepoClient`]) from their own threads.
//!
//! A driver calls [`ClientSession::connected`] when its transport opens,
//! [`ClientSession::receive`] with every frame, [`ClientSession::tick`]
//! every second or so, and sends what [`ClientSession::take_frames`]
//! returns. An `Err` from `receive` or `tick` means: close the connection
//! (and reconnect later).
//!
//! Connection state: `Idle` → (transport up) `WaitHello` → (hello, auth
//! sent) `WaitWelcome` → (welcome with a valid proof that the server holds
//! the root key) `Ready`: every open repository begins a round, local
//! commits are pushed as they are made. A silent link — no frame for
//! `ping_interval`, then no answer to a ping within `pong_timeout` — is an
//! error, so "synced" is never claimed over a dead connection. A client
//! that has sent nothing for `ping_interval` pings too: a reader that only
//! receives pushes must still show the server it is there (the server
//! closes connections it hears nothing from).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::commit::CommitId;
use crate::error::{Error, Result};
use crate::path::RepoPath;
use crate::repository::{Repository, SetDigest};
use crate::rules::{Principal, Rules};
use crate::signing::{SessionId, SessionKey};
use crate::stored::StoredCommit;
use crate::trust::{Certificate, DEFAULT_MAX_SKEW_MS, SESSIONS, Trust};

use super::client::RepoClient;
use super::frame::{Frame, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, Role, auth_payload, hello_payload, is_connection_frame, welcome_payload};

/// Something the connection reported, for the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A root key was trusted for the first time (persist it).
    Root(String),
    /// The server certified this session: user id and e-mail ("" anonymous).
    Welcome { user: String, email: String, expires: i64 },
    /// The server refused something (`repo` "" for the connection).
    Error { repo: String, code: String, message: String },
    /// A login link was sent to this address.
    LoginSent(String),
    /// A login token belongs to this address (asked with `login-info`).
    LoginIs(String),
    /// A commit from the server failed verification and was dropped.
    Rejected { repo: String, code: String, message: String },
    /// A peer server announced the repositories it holds.
    Repos(Vec<(RepoPath, SetDigest)>),
}

/// Timers of a connection, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// Ping after this long without any frame from the server, or without
    /// sending one.
    pub ping_interval: i64,
    /// The connection is dead when a ping is not answered within this.
    pub pong_timeout: i64,
    /// The handshake must complete within this.
    pub handshake_timeout: i64,
}

impl Default for Timers {
    fn default() -> Self {
        Timers { ping_interval: 10_000, pong_timeout: 10_000, handshake_timeout: 15_000 }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Idle,
    WaitHello {
        since: i64,
    },
    WaitWelcome {
        since: i64,
        server_nonce: [u8; 32],
        nonce: [u8; 32],
        root: SessionId,
    },
    /// Welcomed; the nonces stay, for the welcome that follows a login.
    Ready {
        server_nonce: [u8; 32],
        nonce: [u8; 32],
        root: SessionId,
    },
}

/// Decides whether a hello's nonce is one this process issued itself (a
/// server refuses to answer its own hellos: no reflection).
pub type NonceFilter = Arc<dyn Fn(&[u8; 32]) -> bool + Send + Sync>;

/// The connection-level client state machine (see module docs).
pub struct ConnClient {
    role: Role,
    key: SessionKey,
    pub trust: Trust,
    state: State,
    timers: Timers,
    last_rx: i64,
    /// When this side last sent a frame (see [`ConnClient::sent`]).
    last_tx: i64,
    ping: Option<(u64, i64)>,
    ping_n: u64,
    /// Server clock minus ours, from the last welcome.
    offset: Option<i64>,
    user: Option<(String, String)>,
    refuse_nonce: Option<NonceFilter>,
    events: Vec<Event>,
}

impl std::fmt::Debug for ConnClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnClient").field("role", &self.role).field("state", &self.state).finish()
    }
}

impl ConnClient {
    pub fn new(role: Role, key: SessionKey, trust: Trust) -> ConnClient {
        ConnClient { role, key, trust, state: State::Idle, timers: Timers::default(), last_rx: 0, last_tx: 0, ping: None, ping_n: 0, offset: None, user: None, refuse_nonce: None, events: Vec::new() }
    }

    pub fn set_timers(&mut self, t: Timers) {
        self.timers = t;
    }

    /// Refuse hellos whose nonce `f` recognizes (peers: our own nonces).
    pub fn set_nonce_filter(&mut self, f: NonceFilter) {
        self.refuse_nonce = Some(f);
    }

    pub fn key(&self) -> &SessionKey {
        &self.key
    }

    /// Replaces the session key (after logging out).
    pub fn set_key(&mut self, key: SessionKey) {
        self.key = key;
        self.user = None;
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready { .. })
    }

    pub fn is_connected(&self) -> bool {
        self.state != State::Idle
    }

    /// The user of this session from the last welcome, or from a
    /// certificate.
    pub fn user(&self) -> Option<(String, String)> {
        if let Some((u, e)) = &self.user
            && !u.is_empty()
        {
            return Some((u.clone(), e.clone()));
        }
        let owner = self.trust.certificate(&self.key.id())?.owner.clone()?;
        Some((owner, String::new()))
    }

    /// Who this session is for the write rules.
    pub fn me(&self) -> Principal {
        let id = self.key.id();
        if self.trust.is_root(&id) {
            return Principal::Root;
        }
        Principal::Session { user: self.trust.certificate(&id).and_then(|c| c.owner.clone()) }
    }

    /// The time to stamp a local commit with: our clock, unless it is more
    /// than half the server's allowed skew away from the server's (as of
    /// the last welcome), so the server never refuses our commits for it.
    pub fn commit_time(&self, local_now: i64) -> i64 {
        match self.offset {
            Some(off) => {
                let server = local_now.saturating_add(off);
                if (local_now - server).abs() > DEFAULT_MAX_SKEW_MS / 2 { server } else { local_now }
            }
            None => local_now,
        }
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The transport opened; `nonce` is 32 fresh random bytes.
    pub fn connected(&mut self, now: i64) {
        self.state = State::WaitHello { since: now };
        self.last_rx = now;
        self.last_tx = now;
        self.ping = None;
    }

    /// Frames were sent (at about `now`).
    pub fn sent(&mut self, now: i64) {
        self.last_tx = now;
    }

    pub fn disconnected(&mut self) {
        self.state = State::Idle;
        self.ping = None;
    }

    /// Timers: frames to send, or an error meaning "close the connection".
    pub fn tick(&mut self, now: i64) -> Result<Vec<Frame>> {
        match self.state {
            State::Idle => Ok(Vec::new()),
            State::WaitHello { since } | State::WaitWelcome { since, .. } => {
                if now - since > self.timers.handshake_timeout {
                    Err(Error::Timeout(format!("the server did not complete the handshake within {} ms", self.timers.handshake_timeout)))
                } else {
                    Ok(Vec::new())
                }
            }
            State::Ready { .. } => {
                if let Some((_, at)) = self.ping {
                    if now - at > self.timers.pong_timeout {
                        return Err(Error::Timeout(format!("no answer from the server for {} ms", now - self.last_rx)));
                    }
                    return Ok(Vec::new());
                }
                if now - self.last_rx >= self.timers.ping_interval || now - self.last_tx >= self.timers.ping_interval {
                    self.ping_n += 1;
                    self.ping = Some((self.ping_n, now));
                    self.last_tx = now;
                    return Ok(vec![Frame::Ping { n: self.ping_n }]);
                }
                Ok(Vec::new())
            }
        }
    }

    /// Whether frames arrived recently enough to trust the link.
    pub fn alive(&self, now: i64) -> bool {
        self.is_ready() && now - self.last_rx <= self.timers.ping_interval + self.timers.pong_timeout
    }

    /// Any frame arrived.
    pub fn received(&mut self, now: i64) {
        self.last_rx = now;
        self.ping = None;
    }

    /// Handles a connection frame; returns the replies. `nonce` is used if
    /// the frame is a hello (32 fresh random bytes).
    pub fn handle(&mut self, frame: Frame, now: i64, nonce: [u8; 32]) -> Result<Vec<Frame>> {
        match frame {
            Frame::Hello { min, max, nonce: server_nonce, root, time, rules, sig } => {
                if !matches!(self.state, State::WaitHello { .. }) {
                    return Err(Error::Handshake("unexpected hello".into()));
                }
                if max < MIN_PROTOCOL_VERSION || min > PROTOCOL_VERSION {
                    return Err(Error::Version(format!("the server speaks sync protocol {min}–{max}; this client speaks {MIN_PROTOCOL_VERSION}–{PROTOCOL_VERSION}: upgrade the older side")));
                }
                root.verify(&hello_payload(&server_nonce, time, &rules), &sig).map_err(|_| Error::Handshake("the hello is not signed by the server's root key".into()))?;
                if self.trust.has_roots() && !self.trust.is_root(&root) {
                    return Err(Error::Handshake(format!("the server's root key {} is not the one this database trusts; refusing to sync", root.to_hex())));
                }
                if let Some(f) = &self.refuse_nonce
                    && f(&server_nonce)
                {
                    return Err(Error::Handshake("the hello carries a nonce this server issued itself (reflection)".into()));
                }
                if !self.trust.is_root(&root) {
                    self.trust.add_root(root);
                    self.events.push(Event::Root(root.to_hex()));
                }
                self.trust.set_rules(Rules::parse(&rules)?);
                let version = max.min(PROTOCOL_VERSION);
                let sig = self.key.sign(&auth_payload(self.role, &server_nonce, &nonce, &root));
                self.state = State::WaitWelcome { since: now, server_nonce, nonce, root };
                Ok(vec![Frame::Auth { version, role: self.role, session: self.key.id(), nonce, sig }])
            }
            Frame::Welcome { user, email, expires, time, sig } => {
                let (server_nonce, nonce, root) = match self.state.clone() {
                    State::WaitWelcome { server_nonce, nonce, root, .. } | State::Ready { server_nonce, nonce, root } => (server_nonce, nonce, root),
                    _ => return Err(Error::Handshake("welcome before hello".into())),
                };
                root.verify(&welcome_payload(self.role, &server_nonce, &nonce, &self.key.id()), &sig)
                    .map_err(|_| Error::Handshake("the welcome does not prove the server holds its root key".into()))?;
                self.state = State::Ready { server_nonce, nonce, root };
                self.offset = Some(time - now);
                if !self.trust.is_root(&self.key.id()) {
                    let owner = (!user.is_empty()).then(|| user.clone());
                    let issued = self.trust.certificate(&self.key.id()).and_then(|c| c.issued);
                    self.trust.set_certificate(Certificate { session: self.key.id(), owner, expires, issued });
                }
                self.user = Some((user.clone(), email.clone()));
                self.events.push(Event::Welcome { user, email, expires });
                Ok(Vec::new())
            }
            Frame::Ping { n } => Ok(vec![Frame::Pong { n }]),
            Frame::Pong { .. } => Ok(Vec::new()),
            Frame::Error { repo, code, message, .. } => {
                self.events.push(Event::Error { repo, code, message });
                Ok(Vec::new())
            }
            Frame::LoginSent { email } => {
                self.events.push(Event::LoginSent(email));
                Ok(Vec::new())
            }
            Frame::LoginIs { email } => {
                self.events.push(Event::LoginIs(email));
                Ok(Vec::new())
            }
            Frame::Repos { repos } if self.role == Role::Peer => {
                self.events.push(Event::Repos(repos));
                Ok(Vec::new())
            }
            other => Err(Error::Handshake(format!("unexpected frame from the server: {}", super::frame::frame_name(&other.encode())))),
        }
    }
}

/// Where a [`ClientSession`] finds the repositories it syncs.
pub trait RepoStore {
    fn repo_mut(&mut self, path: &RepoPath) -> Option<&mut Repository>;
    /// Every repository to keep in sync (not `/sys/sessions`).
    fn repo_paths(&self) -> Vec<RepoPath>;
}

impl RepoStore for BTreeMap<RepoPath, Repository> {
    fn repo_mut(&mut self, path: &RepoPath) -> Option<&mut Repository> {
        self.get_mut(path)
    }
    fn repo_paths(&self) -> Vec<RepoPath> {
        self.keys().filter(|p| p.as_str() != SESSIONS).cloned().collect()
    }
}

/// Rejected commits reported back per frame (the rest are counted).
const MAX_ERRORS_PER_FRAME: usize = 8;

/// A repository whose commits stay unacknowledged after a round starts
/// another one after this long without news from the server.
pub const RETRY_AFTER_MS: i64 = 3_000;

/// A whole client connection: [`ConnClient`] plus one [`RepoClient`] per
/// repository (see module docs).
#[derive(Debug)]
pub struct ClientSession {
    pub conn: ConnClient,
    repos: BTreeMap<RepoPath, RepoClient>,
    out: Vec<Vec<u8>>,
    events: Vec<Event>,
    new_certs: Vec<StoredCommit>,
    rejected_total: u64,
    /// Rounds started by the last [`ClientSession::sync_now`], and the
    /// commits that were unacknowledged then.
    sync_rounds: BTreeMap<RepoPath, u64>,
    sync_needed: BTreeMap<RepoPath, std::collections::BTreeSet<CommitId>>,
    /// `sync_now` was called and waits for the rounds of the connection.
    sync_pending: bool,
    /// When each repository last heard from the server (a round that ended
    /// with commits still unacknowledged is retried after a pause).
    quiet_since: BTreeMap<RepoPath, i64>,
    /// Frames were taken since the last tick (which stamps the time).
    sent_unstamped: bool,
}

impl ClientSession {
    pub fn new(key: SessionKey, trust: Trust) -> ClientSession {
        ClientSession {
            conn: ConnClient::new(Role::Client, key, trust),
            repos: BTreeMap::new(),
            out: Vec::new(),
            events: Vec::new(),
            new_certs: Vec::new(),
            rejected_total: 0,
            sync_rounds: BTreeMap::new(),
            sync_needed: BTreeMap::new(),
            sync_pending: false,
            quiet_since: BTreeMap::new(),
            sent_unstamped: false,
        }
    }

    pub fn trust(&self) -> &Trust {
        &self.conn.trust
    }

    pub fn trust_mut(&mut self) -> &mut Trust {
        &mut self.conn.trust
    }

    /// Frames to send, in order.
    pub fn take_frames(&mut self) -> Vec<Vec<u8>> {
        self.sent_unstamped |= !self.out.is_empty();
        std::mem::take(&mut self.out)
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        let mut e = self.conn.take_events();
        e.append(&mut self.events);
        e
    }

    /// Certificate commits received since the last call (persist them).
    pub fn take_certificates(&mut self) -> Vec<StoredCommit> {
        std::mem::take(&mut self.new_certs)
    }

    /// Commits from the network refused so far.
    pub fn rejected_count(&self) -> u64 {
        self.rejected_total
    }

    fn send(&mut self, f: Frame) {
        self.out.push(f.encode());
    }

    fn state(&mut self, path: &RepoPath) -> &mut RepoClient {
        self.repos.entry(path.clone()).or_insert_with(|| RepoClient::new(path.clone()))
    }

    /// The transport opened.
    pub fn connected(&mut self, now: i64) {
        self.out.clear();
        self.conn.connected(now);
        self.repos.values_mut().for_each(RepoClient::reset);
    }

    /// The transport closed: everything is reconciled again next time.
    pub fn disconnected(&mut self) {
        self.out.clear();
        self.conn.disconnected();
        self.repos.values_mut().for_each(RepoClient::reset);
        self.sync_rounds.clear();
    }

    /// Stops waiting for a `db.sync()` (it was answered or gave up).
    pub fn sync_done(&mut self) {
        self.sync_pending = false;
    }

    /// Timers (heartbeat, handshake timeout, retries); `Err`: close the
    /// connection. With `store`, a repository whose last round ended with
    /// commits still unacknowledged (the server was busy, or an answer was
    /// lost) starts another round after [`RETRY_AFTER_MS`] of quiet.
    pub fn tick(&mut self, now: i64) -> Result<()> {
        if std::mem::take(&mut self.sent_unstamped) {
            self.conn.sent(now);
        }
        for f in self.conn.tick(now)? {
            self.send(f);
        }
        Ok(())
    }

    /// [`ClientSession::tick`] with retries of unacknowledged commits.
    pub fn tick_with(&mut self, store: &mut dyn RepoStore, now: i64) -> Result<()> {
        self.tick(now)?;
        if !self.conn.is_ready() {
            return Ok(());
        }
        let due: Vec<RepoPath> = self
            .repos
            .iter()
            .filter(|(p, s)| s.unacked() > 0 && !s.in_round() && s.denied().is_none() && now - self.quiet_since.get(*p).copied().unwrap_or(0) >= RETRY_AFTER_MS)
            .map(|(p, _)| p.clone())
            .collect();
        for p in due {
            self.quiet_since.insert(p.clone(), now);
            if let Some(repo) = store.repo_mut(&p) {
                let st = self.repos.get_mut(&p).expect("listed");
                let (f, _) = st.begin(repo);
                self.out.push(f.encode());
            }
        }
        Ok(())
    }

    /// A repository was opened (or should be synced): begin a round now
    /// if connected.
    pub fn open(&mut self, store: &mut dyn RepoStore, path: &RepoPath) {
        if !self.conn.is_ready() || path.as_str() == SESSIONS {
            self.state(path);
            return;
        }
        if let Some(repo) = store.repo_mut(path) {
            let st = self.repos.entry(path.clone()).or_insert_with(|| RepoClient::new(path.clone()));
            let (f, n) = st.begin(repo);
            self.out.push(f.encode());
            // A `db.sync()` waiting for the connection waits for this round.
            if self.sync_pending {
                self.sync_rounds.insert(path.clone(), n);
            }
        }
    }

    /// Local commits were made: remembered as unacknowledged and pushed
    /// now when connected.
    pub fn pushed(&mut self, store: &mut dyn RepoStore, path: &RepoPath, ids: &[CommitId]) {
        let ready = self.conn.is_ready();
        let Some(repo) = store.repo_mut(path) else { return };
        let st = self.repos.entry(path.clone()).or_insert_with(|| RepoClient::new(path.clone()));
        let frames = st.push(repo, ids);
        if ready && st.denied().is_none() {
            self.out.extend(frames.iter().map(Frame::encode));
        }
    }

    /// Starts a new round for every repository (what `db.sync()` waits
    /// for); see [`ClientSession::sync_complete`].
    pub fn sync_now(&mut self, store: &mut dyn RepoStore) {
        self.sync_rounds.clear();
        self.sync_needed = self.repos.iter().map(|(p, s)| (p.clone(), s.unacked_ids())).collect();
        self.sync_pending = true;
        if !self.conn.is_ready() {
            return;
        }
        for path in store.repo_paths() {
            let Some(repo) = store.repo_mut(&path) else { continue };
            let st = self.repos.entry(path.clone()).or_insert_with(|| RepoClient::new(path.clone()));
            if st.denied().is_some() {
                continue;
            }
            let (f, n) = st.begin(repo);
            self.out.push(f.encode());
            self.sync_rounds.insert(path, n);
        }
    }

    /// True once every round of the last [`ClientSession::sync_now`] has
    /// completed on a live connection, every commit that was unacknowledged
    /// when it was called is acknowledged, and the server refused none
    /// (commits made since may still be on their way: writers that never
    /// stop do not keep `db.sync()` waiting forever).
    pub fn sync_complete(&self, store: &dyn RepoStoreRef, now: i64) -> bool {
        self.conn.alive(now)
            && (!self.sync_rounds.is_empty() || store.paths().is_empty())
            && store.paths().iter().all(|p| {
                let Some(s) = self.repos.get(p) else { return false };
                if s.denied().is_some() {
                    return true;
                }
                let round_done = self.sync_rounds.get(p).is_some_and(|n| s.completed(*n));
                let needed_acked = self.sync_needed.get(p).is_none_or(|ids| !s.any_unacked(ids));
                round_done && needed_acked && s.wanted_acked() && s.rejected().next().is_none()
            })
    }

    /// Connected with a live link, and every repository completed a round
    /// on this connection with nothing unacknowledged or refused.
    pub fn synced(&self, store: &dyn RepoStoreRef, now: i64) -> bool {
        self.conn.alive(now) && store.paths().iter().all(|p| self.repos.get(p).is_some_and(|s| s.synced() || s.denied().is_some()))
    }

    /// The last round of `path` that completed on this connection (0: none).
    pub fn completed_round(&self, path: &RepoPath) -> u64 {
        self.repos.get(path).map_or(0, RepoClient::completed_round)
    }

    /// Local commits not yet durable on the server.
    pub fn unacked(&self) -> usize {
        self.repos.values().map(RepoClient::unacked).sum()
    }

    /// Repositories the server refused to let this session read.
    pub fn denied(&self) -> Vec<RepoPath> {
        self.repos.values().filter(|s| s.denied().is_some()).map(|s| s.path().clone()).collect()
    }

    /// Commits of this replica the server refused: (repo, id, error).
    pub fn refused(&self) -> Vec<(RepoPath, CommitId, Error)> {
        self.repos.values().flat_map(|s| s.rejected().map(|(id, e)| (s.path().clone(), *id, e.clone()))).collect()
    }

    /// Sends a connection frame (login, logout, …) if the session is ready.
    pub fn send_control(&mut self, f: Frame) -> Result<()> {
        if !self.conn.is_ready() {
            return Err(Error::Handshake("not connected to the server".into()));
        }
        self.send(f);
        Ok(())
    }

    /// Handles one frame from the server. `nonce`: 32 fresh random bytes
    /// (used if the frame is a hello). `Err`: close the connection.
    pub fn receive(&mut self, store: &mut dyn RepoStore, bytes: &[u8], now: i64, nonce: [u8; 32]) -> Result<()> {
        self.conn.received(now);
        let frame = Frame::decode(bytes)?;
        if is_connection_frame(bytes) {
            let was_ready = self.conn.is_ready();
            if let Frame::Error { repo, code, message, id } = &frame
                && let Ok(path) = RepoPath::parse(repo)
            {
                let e = error_from(code, message);
                let st = self.state(&path);
                match id {
                    Some(id) => st.refused(*id, e),
                    None if code == "ERR_FORBIDDEN" => st.deny(e),
                    None => {}
                }
                // A server that lost a certificate (a disk lost, a restore
                // in progress) is sent ours: it is root-signed, so the
                // server can check and re-issue it; the commit goes again.
                if code == "ERR_UNKNOWN_SESSION"
                    && let Some(id) = id
                    && self.conn.is_ready()
                    && let Some(repo) = store.repo_mut(&path)
                    && repo.load_commits(&[*id]).is_ok()
                    && let Some(c) = repo.commit(id)
                {
                    let session = c.session();
                    if let Some(cert) = self.conn.trust.certificate_commit(&session) {
                        let f = Frame::Commits { repo: RepoPath::parse(SESSIONS).expect("valid path"), commits: vec![cert.bytes().to_vec()] };
                        self.out.push(f.encode());
                        let id = *id;
                        let st = self.repos.entry(path.clone()).or_insert_with(|| RepoClient::new(path.clone()));
                        let again = st.push(repo, &[id]);
                        self.out.extend(again.iter().map(Frame::encode));
                    }
                }
            }
            if !self.conn.is_ready() && !matches!(frame, Frame::Hello { .. } | Frame::Welcome { .. } | Frame::Error { .. } | Frame::Ping { .. } | Frame::Pong { .. }) {
                return Err(Error::Handshake("frame before the handshake completed".into()));
            }
            for f in self.conn.handle(frame, now, nonce)? {
                self.send(f);
            }
            if !was_ready && self.conn.is_ready() {
                for path in store.repo_paths() {
                    self.open(store, &path);
                    // Commits made while offline that the round does not
                    // cover are pushed after it (the round covers them all).
                }
            }
            return Ok(());
        }
        if !self.conn.is_ready() {
            return Err(Error::Handshake("sync frame before the handshake completed".into()));
        }
        let path = frame.repo().expect("a repository frame").clone();
        if path.as_str() == SESSIONS {
            // A server that lost certificates asks for them by session
            // (`want-ids` on /sys/sessions names sessions): send the ones
            // this replica holds; they are root-signed, the server checks.
            if let Frame::WantIds { ids, .. } = &frame {
                let certs: Vec<Vec<u8>> = ids.iter().filter_map(|id| self.conn.trust.certificate_commit(&SessionId(id.0)).map(|c| c.bytes().to_vec())).collect();
                if !certs.is_empty() {
                    self.send(Frame::Commits { repo: path, commits: certs });
                }
                return Ok(());
            }
            // Certificates, sent before the commits that need them.
            if let Frame::Commits { commits, .. } = frame {
                for b in commits {
                    let res = StoredCommit::parse(b.into_boxed_slice(), true).and_then(|c| self.conn.trust.add_certificate(&c).map(|new| (new, c)));
                    match res {
                        Ok((true, c)) => self.new_certs.push(c),
                        Ok((false, _)) => {}
                        Err(e) => {
                            self.rejected_total += 1;
                            self.events.push(Event::Rejected { repo: SESSIONS.into(), code: e.code().into(), message: e.to_string() });
                        }
                    }
                }
            }
            return Ok(());
        }
        let Some(repo) = store.repo_mut(&path) else {
            // A relay for a repository this replica closed: ignore.
            return Ok(());
        };
        self.quiet_since.insert(path.clone(), now);
        let st = self.repos.entry(path.clone()).or_insert_with(|| RepoClient::new(path.clone()));
        let trust = &self.conn.trust;
        let h = st.handle(repo, frame, &|c| trust.verify(c))?;
        self.rejected_total += h.rejected.len() as u64;
        for (i, e) in h.rejected.iter().enumerate() {
            if i < MAX_ERRORS_PER_FRAME {
                self.events.push(Event::Rejected { repo: path.to_string(), code: e.code().into(), message: e.to_string() });
                self.out.push(Frame::error(path.as_str(), e).encode());
            }
        }
        self.out.extend(h.replies.iter().map(Frame::encode));
        Ok(())
    }
}

/// Read-only view of a store's repository list (for status checks).
pub trait RepoStoreRef {
    fn paths(&self) -> Vec<RepoPath>;
}

impl<T: RepoStore> RepoStoreRef for T {
    fn paths(&self) -> Vec<RepoPath> {
        self.repo_paths()
    }
}

/// An error that crossed the wire, by its code.
pub fn error_from(code: &str, message: &str) -> Error {
    let m = message.to_owned();
    match code {
        "ERR_FORBIDDEN" => Error::Forbidden(m),
        "ERR_QUOTA" => Error::Quota(m),
        "ERR_CLOCK" => Error::Clock(m),
        "ERR_STORAGE" => Error::Storage(m),
        "ERR_UNKNOWN_SESSION" => Error::UnknownSession(m),
        "ERR_HANDSHAKE" => Error::Handshake(m),
        "ERR_LOGIN" => Error::Login(m),
        "ERR_VERSION" => Error::Version(m),
        "ERR_TIMEOUT" => Error::Timeout(m),
        "ERR_BAD_SIGNATURE" => Error::BadSignature { id: m },
        "ERR_DECODE" => Error::Decode { what: m, offset: 0 },
        _ => Error::InvalidCommit { id: String::new(), reason: format!("{code}: {m}") },
    }
}
