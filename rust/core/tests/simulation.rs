//! Deterministic simulation of Ibex's sync (in the spirit of FoundationDB's
//! and TigerBeetle's): client replicas and servers, driven by one seed
//! through the real state machines — `ClientSession` on clients,
//! `RepoServe` per repository and connection on servers, `ConnClient` +
//! `RepoClient` on server-to-server links, `Repository` and `Log` on every
//! replica — over a simulated network and simulated disks.
//!
//! The network is what a WebSocket gives: frames arrive whole and in order
//! on a connection, or not at all. Faults: delays (any interleaving of
//! connections), a connection cut with frames in flight lost in both
//! directions (a frame cut mid-way is never delivered), frames of a dying
//! connection that still reach the server after the client reconnected
//! (reordering and duplication across connections), silent partitions
//! (no close: heartbeats must notice), and healing. Disks: unflushed bytes
//! lost or torn at any offset on a crash, flushes failing (`EIO`) and
//! writes failing half-way (`ENOSPC`) for a while. Crashes and restarts of
//! clients and servers at any step.
//!
//! Invariants, checked as it runs and at the end:
//! 1. a server never says "durable" (`ack`, `in-sync`, `done`) before its
//!    flush succeeded, and nothing it said durable is lost by a crash;
//! 2. a client that reports "synced" has every commit it wrote durable on
//!    its server, and every commit its server held durably when the round
//!    ended;
//! 3. after healing, every replica holds the same commits and the same
//!    value of every item.
//!
//! `IBEX_SIM_SEED=<n>` replays one seed (printing its trace with
//! `IBEX_SIM_TRACE=1`); `IBEX_SIM_SEEDS` and `IBEX_SIM_SECONDS` set how many
//! seeds run and the time box (`npm run bench` runs a longer night).
//! `IBEX_SIM_PLANT=ack-before-flush` plants a bug in the simulated server
//! (durable-words sent before the flush) to show the checker catches it.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ibex_core::sync::frame::{Frame, Role, auth_payload, is_connection_frame, welcome_payload};
use ibex_core::sync::session::Timers;
use ibex_core::sync::{ClientSession, ConnClient, Ctx, Event, RepoClient, RepoServe, RepoStore};
use ibex_core::text::Splice;
use ibex_core::trust::{CERT_TTL_MS, SESSIONS, register_schemas};
use ibex_core::*;

// ---- randomness ---------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn bytes32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for c in b.chunks_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        b
    }
}

// ---- disks -----------------------------------------------------------------

#[derive(Default)]
struct DiskInner {
    data: Vec<u8>,
    durable: usize,
    fail_flush: bool,
    fail_write: bool,
}

/// Storage with explicit durability: a crash keeps what was flushed plus a
/// torn prefix of the rest; failures can be switched on.
#[derive(Clone, Default)]
struct Disk(Arc<Mutex<DiskInner>>);

impl Disk {
    fn lock(&self) -> std::sync::MutexGuard<'_, DiskInner> {
        self.0.lock().unwrap()
    }
    fn crash(&self, rng: &mut Rng) -> Disk {
        let i = self.lock();
        let torn = rng.below((i.data.len() - i.durable) as u64 + 1) as usize;
        let keep = if rng.chance(0.5) { i.durable } else { i.durable + torn };
        Disk(Arc::new(Mutex::new(DiskInner { data: i.data[..keep].to_vec(), durable: keep, ..Default::default() })))
    }
    fn set_failing(&self, flush: bool, write: bool) {
        let mut i = self.lock();
        i.fail_flush = flush;
        i.fail_write = write;
    }
}

impl Storage for Disk {
    fn len(&mut self) -> Result<u64> {
        Ok(self.lock().data.len() as u64)
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let i = self.lock();
        let start = (offset as usize).min(i.data.len());
        let n = buf.len().min(i.data.len() - start);
        buf[..n].copy_from_slice(&i.data[start..start + n]);
        Ok(n)
    }
    fn append(&mut self, d: &[u8]) -> Result<()> {
        let mut i = self.lock();
        if i.fail_write {
            i.data.extend_from_slice(&d[..d.len() / 2]);
            return Err(Error::Storage("No space left on device (simulated)".into()));
        }
        i.data.extend_from_slice(d);
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        let mut i = self.lock();
        if i.fail_flush {
            return Err(Error::Storage("Input/output error (simulated)".into()));
        }
        i.durable = i.data.len();
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> Result<()> {
        let mut i = self.lock();
        let len = (len as usize).min(i.data.len());
        i.data.truncate(len);
        i.durable = i.durable.min(len);
        Ok(())
    }
}

// ---- schemas and signature memo ------------------------------------------

fn registry() -> Arc<Registry> {
    let mut r = Registry::new();
    register_schemas(&mut r).unwrap();
    r.register(
        Schema::new("note", 1)
            .field("title", FieldDef::new(FieldType::String))
            .field("n", FieldDef::new(FieldType::Number))
            .field("done", FieldDef::new(FieldType::Boolean))
            .field("tags", FieldDef::new(FieldType::Set))
            .field("attrs", FieldDef::new(FieldType::Map))
            .field("body", FieldDef::new(FieldType::Text)),
    )
    .unwrap();
    Arc::new(r)
}

/// Signatures verified once per (id, signature) for the whole run: the
/// other checks (certificate, clock, rules) always run.
fn verify(trust: &Trust, c: &StoredCommit, now: Option<i64>, memo: &Mutex<HashSet<(CommitId, [u8; 64])>>) -> Result<()> {
    let k = (c.id, c.signature());
    if !memo.lock().unwrap().contains(&k) {
        c.verify()?;
        memo.lock().unwrap().insert(k);
    }
    trust.verify_authority(c, now)
}

const REPOS: [&str; 2] = ["/data/a", "/data/b"];
const T0: i64 = 1_750_000_000_000;

// ---- network ------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    Client(usize),
    /// Server `s`'s link to another server (it is the client there).
    Link(usize),
}

struct Pipe {
    /// Frames travelling client → server and server → client.
    up: VecDeque<Vec<u8>>,
    down: VecDeque<Vec<u8>>,
    client: End,
    server: usize,
    /// Silent: frames wait, nobody is told.
    partitioned: bool,
}

// ---- servers ------------------------------------------------------------------

struct SConn {
    nonce: [u8; 32],
    session: Option<SessionId>,
    peer: bool,
    subscribed: BTreeSet<RepoPath>,
    sent_certs: BTreeSet<SessionId>,
    /// Server's durable commits when it ended each round of this
    /// connection (invariant 2).
    snapshot: BTreeMap<(RepoPath, u64), BTreeSet<CommitId>>,
}

struct SRepo {
    repo: Repository,
    disk: Disk,
    serves: BTreeMap<u64, RepoServe>,
    held: Vec<(u64, Frame)>,
}

struct SLink {
    conn: ConnClient,
    pipe: u64,
    clients: BTreeMap<RepoPath, RepoClient>,
}

struct Server {
    root: SessionKey,
    trust: Trust,
    repos: BTreeMap<RepoPath, SRepo>,
    conns: BTreeMap<u64, SConn>,
    link: Option<SLink>,
    /// Commits this server has ever said are durable (invariant 1).
    acked: BTreeSet<CommitId>,
    /// Commits durable here now.
    durable: BTreeMap<RepoPath, BTreeSet<CommitId>>,
    salt: u64,
    disks_failing: bool,
    /// Sessions whose certificate is durable here (only their commits are
    /// taken: a certificate lost in a crash would orphan them).
    durable_certs: BTreeSet<SessionId>,
}

// ---- clients --------------------------------------------------------------------

struct Store(BTreeMap<RepoPath, Repository>);

impl RepoStore for Store {
    fn repo_mut(&mut self, p: &RepoPath) -> Option<&mut Repository> {
        self.0.get_mut(p)
    }
    fn repo_paths(&self) -> Vec<RepoPath> {
        self.0.keys().cloned().collect()
    }
}

struct Client {
    key: SessionKey,
    session: ClientSession,
    store: Store,
    disks: BTreeMap<RepoPath, Disk>,
    server: usize,
    pipe: Option<u64>,
    next_connect: i64,
    /// Commits this client wrote (invariant 2).
    authored: BTreeSet<CommitId>,
    /// Commits this client wrote and flushed itself (they must survive).
    flushed: BTreeSet<CommitId>,
    /// Its server's durable commits when its last completed round ended.
    snapshot: BTreeMap<RepoPath, BTreeSet<CommitId>>,
    clock_skew: i64,
}

// ---- the world --------------------------------------------------------------------

/// Signatures already checked, shared by every seed's world (a cache).
type Memo = Arc<Mutex<HashSet<(CommitId, [u8; 64])>>>;

struct World {
    rng: Rng,
    now: i64,
    servers: Vec<Server>,
    clients: Vec<Client>,
    pipes: BTreeMap<u64, Pipe>,
    next_pipe: u64,
    memo: Memo,
    trace: bool,
    plant: bool,
    /// Every commit some server said was durable, anywhere (invariant 3).
    acked_anywhere: BTreeSet<CommitId>,
}

type Violation = String;

fn timers() -> Timers {
    Timers { ping_interval: 2_000, pong_timeout: 2_000, handshake_timeout: 4_000 }
}

impl World {
    fn new(seed: u64, memo: Memo, plant: bool) -> World {
        let mut rng = Rng(seed);
        let n_servers = 1 + rng.below(2) as usize;
        let n_clients = 2 + rng.below(2) as usize;
        let root = SessionKey::from_seed([0x77; 32]);
        let mut servers = Vec::new();
        for s in 0..n_servers {
            let mut trust = Trust::new(Rules::default());
            trust.add_root(root.id());
            trust.set_clock_limits(10 * 60 * 1000, CERT_TTL_MS);
            servers.push(Server {
                root: root.clone(),
                trust,
                repos: BTreeMap::new(),
                conns: BTreeMap::new(),
                link: None,
                acked: BTreeSet::new(),
                durable: BTreeMap::new(),
                salt: 0x5a17 + s as u64,
                disks_failing: false,
                durable_certs: BTreeSet::new(),
            });
        }
        let mut clients = Vec::new();
        for c in 0..n_clients {
            let key = SessionKey::from_seed(rng.bytes32());
            let mut trust = Trust::new(Rules::default());
            trust.add_root(root.id());
            let mut session = ClientSession::new(key.clone(), trust);
            session.conn.set_timers(timers());
            let mut store = Store(BTreeMap::new());
            let mut disks = BTreeMap::new();
            for r in REPOS {
                let path = RepoPath::parse(r).unwrap();
                let disk = Disk::default();
                store.0.insert(path.clone(), Repository::open(path.clone(), registry(), Box::new(disk.clone())).unwrap().0);
                disks.insert(path, disk);
            }
            let skew = if rng.chance(0.2) { rng.below(600_000) as i64 - 300_000 } else { 0 };
            clients.push(Client {
                key,
                session,
                store,
                disks,
                server: c % n_servers,
                pipe: None,
                next_connect: 0,
                authored: BTreeSet::new(),
                flushed: BTreeSet::new(),
                snapshot: BTreeMap::new(),
                clock_skew: skew,
            });
        }
        let mut w = World { rng, now: T0, servers, clients, pipes: BTreeMap::new(), next_pipe: 1, memo, trace: std::env::var("IBEX_SIM_TRACE").is_ok(), plant, acked_anywhere: BTreeSet::new() };
        for s in 0..w.servers.len() {
            w.open_server_repos(s);
        }
        w
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            println!("[{:>7}] {}", self.now - T0, what());
        }
    }

    // ---- servers ----

    fn open_server_repos(&mut self, s: usize) {
        for r in std::iter::once(SESSIONS).chain(REPOS) {
            let path = RepoPath::parse(r).unwrap();
            if self.servers[s].repos.contains_key(&path) {
                continue;
            }
            let disk = Disk::default();
            let repo = Repository::open(path.clone(), registry(), Box::new(disk.clone())).unwrap().0;
            self.servers[s].repos.insert(path, SRepo { repo, disk, serves: BTreeMap::new(), held: Vec::new() });
        }
    }

    fn server_crash(&mut self, s: usize) -> Result<(), Violation> {
        self.log(|| format!("server {s} crashes"));
        let pipes: Vec<u64> = self.pipes.iter().filter(|(_, p)| p.server == s || p.client == End::Link(s)).map(|(id, _)| *id).collect();
        for p in pipes {
            self.close_pipe(p);
        }
        let srv = &mut self.servers[s];
        let mut repos = BTreeMap::new();
        for (path, r) in std::mem::take(&mut srv.repos) {
            let disk = r.disk.crash(&mut self.rng);
            disk.set_failing(false, false);
            let (mut repo, _) = Repository::open(path.clone(), registry(), Box::new(disk.clone())).map_err(|e| format!("server {s} cannot reopen {path}: {e}"))?;
            for id in &srv.acked {
                if repo.commit(id).is_none() && r.repo.commit(id).is_some() {
                    return Err(format!("invariant 1: server {s} lost acknowledged commit {id:?} of {path} in a crash"));
                }
            }
            if path.as_str() == SESSIONS {
                srv.trust.refresh_all(&mut repo);
                srv.durable_certs = repo.keys().filter_map(|k| hex::decode(k).ok()?.try_into().ok().map(SessionId)).collect();
            }
            let ids: BTreeSet<CommitId> = repo.commit_ids().collect();
            srv.durable.insert(path.clone(), ids);
            repos.insert(path, SRepo { repo, disk, serves: BTreeMap::new(), held: Vec::new() });
        }
        srv.repos = repos;
        srv.conns.clear();
        srv.link = None;
        srv.disks_failing = false;
        Ok(())
    }

    /// Group commit: flush every dirty repository; on success release the
    /// words that mean "durable".
    fn server_flush(&mut self, s: usize) -> Result<(), Violation> {
        let paths: Vec<RepoPath> = self.servers[s].repos.keys().cloned().collect();
        for path in paths {
            let srv = &mut self.servers[s];
            let r = srv.repos.get_mut(&path).unwrap();
            let ok = r.repo.unsynced_bytes() == 0 || r.repo.flush().is_ok();
            if !ok {
                continue;
            }
            let ids: BTreeSet<CommitId> = r.repo.commit_ids().collect();
            srv.durable.insert(path.clone(), ids);
            let held = std::mem::take(&mut r.held);
            for (conn, f) in held {
                self.release(s, conn, f)?;
            }
        }
        Ok(())
    }

    /// Sends an "after the flush" frame, recording what it claims.
    fn release(&mut self, s: usize, conn: u64, f: Frame) -> Result<(), Violation> {
        let srv = &mut self.servers[s];
        let path = f.repo().unwrap().clone();
        let r = &srv.repos[&path];
        if !self.plant && r.repo.unsynced_bytes() > 0 {
            return Err(format!("invariant 1: server {s} sends {:?} for {path} with unflushed bytes", f));
        }
        match &f {
            Frame::Ack { ids, .. } => {
                for p in ids {
                    if let Some(id) = r.repo.commit_ids().find(|id| id.prefix() == *p) {
                        srv.acked.insert(id);
                        self.acked_anywhere.insert(id);
                    }
                }
            }
            Frame::Done { round, .. } | Frame::InSync { round, .. } => {
                let all: BTreeSet<CommitId> = r.repo.commit_ids().collect();
                srv.acked.extend(all.iter().copied());
                self.acked_anywhere.extend(all.iter().copied());
                let round = *round;
                if let Some(c) = srv.conns.get_mut(&conn) {
                    c.snapshot.insert((path.clone(), round), srv.durable.get(&path).cloned().unwrap_or_default());
                }
            }
            _ => {}
        }
        self.server_send(s, conn, f.encode());
        Ok(())
    }

    fn server_send(&mut self, s: usize, conn: u64, bytes: Vec<u8>) {
        if let Some(p) = self.pipes.get_mut(&conn)
            && p.server == s
        {
            p.down.push_back(bytes);
        }
    }

    /// Commits to a connection, each session's certificate before its first commit.
    fn send_commits(&mut self, s: usize, conn: u64, path: &RepoPath, ids: &[CommitId]) {
        let srv = &mut self.servers[s];
        let Some(c) = srv.conns.get_mut(&conn) else { return };
        let r = &srv.repos[path];
        let mut certs = Vec::new();
        let mut bytes = Vec::new();
        for id in ids {
            let Some(commit) = r.repo.commit(id) else { continue };
            let sess = commit.session();
            if !srv.trust.is_root(&sess)
                && c.sent_certs.insert(sess)
                && let Some(cc) = srv.trust.certificate_commit(&sess)
            {
                certs.push(cc.bytes().to_vec());
            }
            bytes.push(commit.bytes().to_vec());
        }
        let mut out = Vec::new();
        if !certs.is_empty() {
            out.push(Frame::Commits { repo: RepoPath::parse(SESSIONS).unwrap(), commits: certs }.encode());
        }
        for f in Frame::commits(path, bytes.iter().map(Vec::as_slice)) {
            out.push(f.encode());
        }
        for b in out {
            self.server_send(s, conn, b);
        }
    }

    /// New commits of `path` on server `s` go to every subscriber and
    /// replica; `source` gets only those it did not send (`received`):
    /// the commits its frame unblocked came from others.
    fn relay(&mut self, s: usize, path: &RepoPath, ids: &[CommitId], source: Option<u64>, received: &BTreeSet<CommitId>) {
        if ids.is_empty() {
            return;
        }
        let targets: Vec<u64> = self.servers[s].conns.iter().filter(|(_, c)| c.peer || (!path.as_str().starts_with("/sys/") && c.subscribed.contains(path))).map(|(id, _)| *id).collect();
        for t in targets {
            if Some(t) == source {
                let rest: Vec<CommitId> = ids.iter().copied().filter(|id| !received.contains(id)).collect();
                self.send_commits(s, t, path, &rest);
            } else {
                self.send_commits(s, t, path, ids);
            }
        }
        // Our link to another server.
        let link = self.servers[s].link.as_ref().map(|l| l.pipe);
        let ids: Vec<CommitId> = if link.is_some() && link == source { ids.iter().copied().filter(|id| !received.contains(id)).collect() } else { ids.to_vec() };
        let ids = &ids[..];
        if let Some(lp) = link
            && !ids.is_empty()
            && self.servers[s].link.as_ref().is_some_and(|l| l.conn.is_ready())
        {
            let srv = &mut self.servers[s];
            let l = srv.link.as_mut().unwrap();
            let rc = l.clients.entry(path.clone()).or_insert_with(|| RepoClient::new(path.clone()));
            rc.mark_unacked(ids);
            let r = &srv.repos[path];
            let mut frames = Vec::new();
            // Certificates first, as the real server does for links.
            let certs: Vec<Vec<u8>> = ids
                .iter()
                .filter_map(|id| r.repo.commit(id))
                .map(|c| c.session())
                .filter(|x| !srv.trust.is_root(x))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter_map(|x| srv.trust.certificate_commit(&x).map(|c| c.bytes().to_vec()))
                .collect();
            if !certs.is_empty() {
                frames.push(Frame::Commits { repo: RepoPath::parse(SESSIONS).unwrap(), commits: certs }.encode());
            }
            frames.extend(ibex_core::sync::server::commit_frames(&r.repo, ids).iter().map(Frame::encode));
            for f in frames {
                if let Some(p) = self.pipes.get_mut(&lp) {
                    p.up.push_back(f);
                }
            }
        }
    }

    fn after_integration(&mut self, s: usize, path: &RepoPath, source: Option<u64>, received: &BTreeSet<CommitId>) {
        let srv = &mut self.servers[s];
        let r = srv.repos.get_mut(path).unwrap();
        let ids = r.repo.take_integrated();
        if ids.is_empty() {
            return;
        }
        if path.as_str() == SESSIONS {
            let keys: Vec<String> = ids.iter().filter_map(|id| r.repo.commit(id).map(|c| c.key.to_string())).collect();
            srv.trust.refresh(&mut r.repo, keys.iter().map(String::as_str));
        }
        self.relay(s, path, &ids, source, received);
    }

    /// A frame reaches server `s` on pipe `conn`.
    fn server_receive(&mut self, s: usize, conn: u64, bytes: Vec<u8>) -> Result<(), Violation> {
        let now = self.now;
        if is_connection_frame(&bytes) {
            let frame = match Frame::decode(&bytes) {
                Ok(f) => f,
                Err(e) => return Err(format!("server {s} got an undecodable frame from a correct client: {e}")),
            };
            match frame {
                Frame::Auth { role, session, nonce, sig, .. } => {
                    let srv = &mut self.servers[s];
                    let Some(c) = srv.conns.get_mut(&conn) else { return Ok(()) };
                    if session.verify(&auth_payload(role, &c.nonce, &nonce, &srv.root.id()), &sig).is_err() {
                        return Err(format!("server {s}: a correct client's auth did not verify"));
                    }
                    c.session = Some(session);
                    c.peer = role == Role::Peer;
                    let (user, expires) = if srv.trust.is_root(&session) {
                        (String::new(), i64::MAX)
                    } else {
                        let cert = srv.trust.certificate(&session).cloned().unwrap_or(Certificate { session, owner: None, expires: now + CERT_TTL_MS, issued: Some(now) });
                        srv.trust.set_certificate(cert.clone());
                        (String::new(), cert.expires)
                    };
                    let proof = srv.root.sign(&welcome_payload(role, &c.nonce, &nonce, &session));
                    let w = Frame::Welcome { user, email: String::new(), expires, time: now, sig: proof };
                    self.server_send(s, conn, w.encode());
                    if role == Role::Peer {
                        let repos = REPOS.iter().map(|r| (RepoPath::parse(r).unwrap(), SetDigest::default())).collect();
                        self.server_send(s, conn, Frame::Repos { repos }.encode());
                    }
                }
                Frame::Ping { n } => self.server_send(s, conn, Frame::Pong { n }.encode()),
                _ => {}
            }
            return Ok(());
        }
        let frame = Frame::decode(&bytes).map_err(|e| format!("server {s}: undecodable repository frame: {e}"))?;
        let path = frame.repo().unwrap().clone();
        let (session, peer) = match self.servers[s].conns.get(&conn) {
            Some(SConn { session: Some(x), peer, .. }) => (*x, *peer),
            _ => return Ok(()),
        };
        if path.as_str() == SESSIONS && !peer {
            // A client restores certificates this server lost: each is
            // checked (root-signed) and re-issued.
            if let Frame::Commits { commits, .. } = frame {
                for b in commits {
                    let c = StoredCommit::parse(b.into_boxed_slice(), true).map_err(|e| e.to_string())?;
                    let srv = &mut self.servers[s];
                    if !srv.trust.is_root(&c.session()) || c.verify().is_err() {
                        return Err(format!("server {s}: a client sent a certificate not signed by the root"));
                    }
                    let Some(cert) = Certificate::from_commit(&c) else { continue };
                    if srv.trust.certificate(&cert.session).is_some() && srv.durable_certs.contains(&cert.session) {
                        continue;
                    }
                    let sr = srv.repos.get_mut(&RepoPath::parse(SESSIONS).unwrap()).unwrap();
                    cert.write(&mut sr.repo, &srv.root, now).map_err(|e| e.to_string())?;
                    let flushed = sr.repo.flush().is_ok();
                    self.after_integration(s, &RepoPath::parse(SESSIONS).unwrap(), None, &BTreeSet::new());
                    if flushed {
                        self.servers[s].durable_certs.insert(cert.session);
                    }
                }
            }
            return Ok(());
        }
        // A session's certificate is written, durably, before its first commit.
        if matches!(frame, Frame::Commits { .. }) && !peer && !self.servers[s].durable_certs.contains(&session) && !self.servers[s].trust.is_root(&session) {
            let srv = &mut self.servers[s];
            let cert = srv.trust.certificate(&session).cloned().ok_or("uncertified session sent commits")?;
            let sr = srv.repos.get_mut(&RepoPath::parse(SESSIONS).unwrap()).unwrap();
            cert.write(&mut sr.repo, &srv.root, now).map_err(|e| e.to_string())?;
            let flushed = sr.repo.flush().is_ok();
            self.after_integration(s, &RepoPath::parse(SESSIONS).unwrap(), None, &BTreeSet::new());
            if !flushed {
                // Cannot certify durably now: the frame is dropped (the
                // client's commits stay unacknowledged and come again).
                return Ok(());
            }
            self.servers[s].durable_certs.insert(session);
        }
        if let Frame::Begin { .. } = frame
            && let Some(c) = self.servers[s].conns.get_mut(&conn)
        {
            c.subscribed.insert(path.clone());
        }
        let memo = self.memo.clone();
        let srv = &mut self.servers[s];
        let trust = &srv.trust;
        let r = srv.repos.get_mut(&path).ok_or("unknown repository")?;
        let serve = r.serves.entry(conn).or_default();
        let v = |c: &StoredCommit| verify(trust, c, Some(now), &memo);
        let ctx = Ctx { verify: &v, owner: conn, now, salt: srv.salt };
        let served = serve.handle(&mut r.repo, frame, &ctx).map_err(|e| format!("server {s} refused a correct client's frame: {e}"))?;
        for (_, e) in &served.rejected {
            if !matches!(e.code(), "ERR_STORAGE" | "ERR_PENDING_FULL" | "ERR_UNKNOWN_SESSION") {
                return Err(format!("server {s} refused a correct commit: {e}"));
            }
        }
        let send = served.send;
        let now_frames = served.now;
        let received: BTreeSet<CommitId> = served.received.into_iter().collect();
        for f in served.after_flush {
            r.held.push((conn, f));
        }
        let clean = r.repo.unsynced_bytes() == 0;
        self.send_commits(s, conn, &path, &send);
        for f in now_frames {
            self.server_send(s, conn, f.encode());
        }
        self.after_integration(s, &path, Some(conn), &received);
        if self.plant || clean {
            // Nothing to flush (or the planted bug): release at once.
            let r = self.servers[s].repos.get_mut(&path).unwrap();
            let held = std::mem::take(&mut r.held);
            for (c, f) in held {
                self.release(s, c, f)?;
            }
        }
        Ok(())
    }

    // ---- server links (server s is the client of server t) ----

    fn link_receive(&mut self, s: usize, bytes: Vec<u8>) -> Result<(), Violation> {
        let now = self.now;
        let nonce = self.rng.bytes32();
        let Some(l) = self.servers[s].link.as_mut() else { return Ok(()) };
        let pipe = l.pipe;
        l.conn.received(now);
        if is_connection_frame(&bytes) {
            let f = Frame::decode(&bytes).map_err(|e| e.to_string())?;
            let was = l.conn.is_ready();
            let replies = l.conn.handle(f, now, nonce).map_err(|e| format!("server {s}'s link: {e}"))?;
            let events = l.conn.take_events();
            let ready = l.conn.is_ready();
            for r in replies {
                self.pipes.get_mut(&pipe).unwrap().up.push_back(r.encode());
            }
            let mut begin: Vec<RepoPath> = Vec::new();
            if !was && ready {
                begin.extend(std::iter::once(SESSIONS).chain(REPOS).map(|r| RepoPath::parse(r).unwrap()));
            }
            for e in events {
                if let Event::Repos(rs) = e {
                    begin.extend(rs.into_iter().map(|(p, _)| p));
                }
            }
            for p in begin {
                let srv = &mut self.servers[s];
                let l = srv.link.as_mut().unwrap();
                let rc = l.clients.entry(p.clone()).or_insert_with(|| RepoClient::new(p.clone()));
                let (f, _) = rc.begin(&srv.repos[&p].repo);
                self.pipes.get_mut(&pipe).unwrap().up.push_back(f.encode());
            }
            return Ok(());
        }
        let frame = Frame::decode(&bytes).map_err(|e| e.to_string())?;
        let path = frame.repo().unwrap().clone();
        let memo = self.memo.clone();
        let srv = &mut self.servers[s];
        let l = srv.link.as_mut().unwrap();
        let rc = l.clients.entry(path.clone()).or_insert_with(|| RepoClient::new(path.clone()));
        let trust = &srv.trust;
        let r = srv.repos.get_mut(&path).ok_or("unknown repository")?;
        let h = rc.handle(&mut r.repo, frame, &|c| verify(trust, c, Some(now), &memo)).map_err(|e| format!("server {s}'s link refused a frame: {e}"))?;
        if let Some(e) = h.rejected.first() {
            return Err(format!("server {s}'s link refused a correct commit: {e}"));
        }
        for f in h.replies {
            // Commits the other server wants go with their certificates.
            if let Frame::Commits { repo, commits } = &f {
                let srv = &self.servers[s];
                let sessions: BTreeSet<SessionId> =
                    commits.iter().filter_map(|b| StoredCommit::parse(b.clone().into_boxed_slice(), false).ok()).map(|c| c.session()).filter(|x| !srv.trust.is_root(x)).collect();
                let certs: Vec<Vec<u8>> = sessions.iter().filter_map(|x| srv.trust.certificate_commit(x).map(|c| c.bytes().to_vec())).collect();
                if !certs.is_empty() && repo.as_str() != SESSIONS {
                    self.pipes.get_mut(&pipe).unwrap().up.push_back(Frame::Commits { repo: RepoPath::parse(SESSIONS).unwrap(), commits: certs }.encode());
                }
            }
            self.pipes.get_mut(&pipe).unwrap().up.push_back(f.encode());
        }
        let received: BTreeSet<CommitId> = h.received.into_iter().collect();
        self.after_integration(s, &path, Some(pipe), &received);
        Ok(())
    }

    // ---- clients ----

    fn client_now(&self, c: usize) -> i64 {
        self.now + self.clients[c].clock_skew
    }

    fn client_receive(&mut self, c: usize, bytes: Vec<u8>) -> Result<(), Violation> {
        let now = self.client_now(c);
        let nonce = self.rng.bytes32();
        let ended = match Frame::decode(&bytes) {
            Ok(Frame::Done { repo, round } | Frame::InSync { repo, round }) => Some((repo, round)),
            _ => None,
        };
        let cl = &mut self.clients[c];
        match cl.session.receive(&mut cl.store, &bytes, now, nonce) {
            Ok(()) => {
                if let Some((repo, round)) = ended
                    && cl.session.completed_round(&repo) == round
                    && let Some(pipe) = cl.pipe
                {
                    let snap = self.servers[cl.server].conns.get(&pipe).and_then(|x| x.snapshot.get(&(repo.clone(), round))).cloned().unwrap_or_default();
                    cl.snapshot.insert(repo, snap);
                }
            }
            Err(e) => {
                self.log(|| format!("client {c} closes: {e}"));
                if let Some(p) = self.clients[c].pipe {
                    self.close_pipe(p);
                }
                return Ok(());
            }
        }
        let cl = &mut self.clients[c];
        for e in cl.session.take_events() {
            if let Event::Rejected { code, message, .. } = e {
                return Err(format!("client {c} refused a correct commit: {code} {message}"));
            }
        }
        for r in cl.store.0.values_mut() {
            r.take_integrated();
        }
        self.client_out(c);
        Ok(())
    }

    fn client_out(&mut self, c: usize) {
        let frames = self.clients[c].session.take_frames();
        if let Some(p) = self.clients[c].pipe.and_then(|p| self.pipes.get_mut(&p)) {
            p.up.extend(frames);
        }
    }

    fn client_write(&mut self, c: usize) {
        let now = self.client_now(c);
        let op = self.rng.below(8);
        let item = format!("i{}", self.rng.below(6));
        let path = RepoPath::parse(REPOS[self.rng.below(2) as usize]).unwrap();
        let n = self.rng.below(1000);
        let change = match op {
            0 => Change::Put { field: "title".into(), value: Value::Str(format!("t{n}")) },
            1 => Change::Put { field: "n".into(), value: Value::Num(n as f64) },
            2 => Change::Put { field: "done".into(), value: Value::Bool(n.is_multiple_of(2)) },
            3 => Change::SetAdd { field: "tags".into(), elems: [Scalar::Str(format!("g{}", n % 5))].into() },
            4 => Change::SetRemove { field: "tags".into(), elems: [Scalar::Str(format!("g{}", n % 5))].into() },
            5 => Change::MapPut { field: "attrs".into(), key: format!("k{}", n % 3), value: Scalar::Num(n as f64) },
            6 => Change::Deleted(n.is_multiple_of(3)),
            _ => {
                let cl = &mut self.clients[c];
                let len = cl.store.0.get_mut(&path).unwrap().head(&item).and_then(|h| match h.data.fields.get("body") {
                    Some(Value::Text(t)) => Some(t.chars().count()),
                    _ => None,
                });
                let len = len.unwrap_or(0) as u32;
                let pos = if len == 0 { 0 } else { (n as u32) % (len + 1) };
                Change::Text { field: "body".into(), splices: vec![Splice { pos, delete: 0, insert: format!("{}", n % 10) }] }
            }
        };
        let cl = &mut self.clients[c];
        let ts = cl.session.conn.commit_time(now);
        let key = cl.key.clone();
        let repo = cl.store.0.get_mut(&path).unwrap();
        match repo.update(&item, &SchemaId::new("note", 1), &[change], &key, ts) {
            Ok(Some(id)) => {
                repo.take_integrated();
                cl.authored.insert(id);
                cl.session.pushed(&mut cl.store, &path, &[id]);
                self.client_out(c);
            }
            Ok(None) => {}
            Err(e) => panic!("a local write failed: {e}"),
        }
    }

    fn client_flush(&mut self, c: usize) {
        let cl = &mut self.clients[c];
        for (p, r) in cl.store.0.iter_mut() {
            if r.flush().is_ok() {
                let ids: Vec<CommitId> = r.commit_ids().filter(|id| cl.authored.contains(id)).collect();
                cl.flushed.extend(ids);
                let _ = p;
            }
        }
    }

    fn client_crash(&mut self, c: usize) -> Result<(), Violation> {
        self.log(|| format!("client {c} crashes"));
        if let Some(p) = self.clients[c].pipe {
            self.close_pipe(p);
        }
        let cl = &mut self.clients[c];
        let mut store = Store(BTreeMap::new());
        for (path, disk) in cl.disks.clone() {
            let d = disk.crash(&mut self.rng);
            let (repo, _) = Repository::open(path.clone(), registry(), Box::new(d.clone())).map_err(|e| format!("client {c} cannot reopen: {e}"))?;
            for id in &cl.flushed {
                if cl.store.0[&path].commit(id).is_some() && repo.commit(id).is_none() {
                    return Err(format!("client {c} lost a commit it had flushed"));
                }
            }
            cl.disks.insert(path.clone(), d);
            store.0.insert(path, repo);
        }
        let root = SessionKey::from_seed([0x77; 32]).id();
        let mut trust = Trust::new(Rules::default());
        trust.add_root(root);
        let mut session = ClientSession::new(cl.key.clone(), trust);
        session.conn.set_timers(timers());
        // Everything it holds may be unknown to the server: all of it is
        // unacknowledged until a round says otherwise.
        for (path, repo) in store.0.iter() {
            let mine: Vec<CommitId> = repo.commit_ids().filter(|id| cl.authored.contains(id)).collect();
            let _ = (path, mine);
        }
        cl.session = session;
        cl.store = store;
        cl.snapshot.clear();
        cl.authored.retain(|id| cl.store.0.values().any(|r| r.commit(id).is_some()));
        Ok(())
    }

    fn connect(&mut self, end: End, s: usize) {
        let id = self.next_pipe;
        self.next_pipe += 1;
        self.pipes.insert(id, Pipe { up: VecDeque::new(), down: VecDeque::new(), client: end, server: s, partitioned: false });
        let nonce = self.rng.bytes32();
        let srv = &mut self.servers[s];
        srv.conns.insert(id, SConn { nonce, session: None, peer: false, subscribed: BTreeSet::new(), sent_certs: BTreeSet::new(), snapshot: BTreeMap::new() });
        let hello = Frame::hello(nonce, &srv.root, self.now, srv.trust.rules().to_string());
        self.pipes.get_mut(&id).unwrap().down.push_back(hello.encode());
        match end {
            End::Client(c) => {
                let now = self.client_now(c);
                self.clients[c].pipe = Some(id);
                self.clients[c].session.connected(now);
            }
            End::Link(from) => {
                let mut trust = Trust::new(Rules::default());
                trust.add_root(self.servers[from].root.id());
                let mut conn = ConnClient::new(Role::Peer, self.servers[from].root.clone(), trust);
                conn.set_timers(timers());
                conn.connected(self.now);
                self.servers[from].link = Some(SLink { conn, pipe: id, clients: BTreeMap::new() });
            }
        }
        self.log(|| format!("pipe {id}: {end:?} connects to server {s}"));
    }

    fn close_pipe(&mut self, id: u64) {
        let Some(p) = self.pipes.remove(&id) else { return };
        self.log(|| format!("pipe {id} closes ({} up, {} down lost)", p.up.len(), p.down.len()));
        // Frames still travelling up may reach the server before it
        // notices (delivered now), or be lost.
        if !p.up.is_empty() && self.rng.chance(0.3) && self.servers[p.server].conns.contains_key(&id) {
            self.pipes.insert(id, Pipe { up: p.up.clone(), down: VecDeque::new(), client: p.client, server: p.server, partitioned: false });
            let frames: Vec<Vec<u8>> = p.up.iter().take(self.rng.below(p.up.len() as u64 + 1) as usize).cloned().collect();
            for f in frames {
                let _ = self.server_receive(p.server, id, f);
            }
            self.pipes.remove(&id);
        }
        let srv = &mut self.servers[p.server];
        srv.conns.remove(&id);
        for r in srv.repos.values_mut() {
            r.serves.remove(&id);
            r.held.retain(|(c, _)| *c != id);
            r.repo.drop_pending_of(id);
        }
        match p.client {
            End::Client(c) => {
                if self.clients[c].pipe == Some(id) {
                    self.clients[c].pipe = None;
                    self.clients[c].snapshot.clear();
                    self.clients[c].session.disconnected();
                    self.clients[c].next_connect = self.now + 200 + self.rng.below(2_000) as i64;
                }
            }
            End::Link(s) => {
                if self.servers[s].link.as_ref().is_some_and(|l| l.pipe == id) {
                    self.servers[s].link = None;
                }
            }
        }
    }

    // ---- invariants ----

    fn check_synced_claims(&mut self) -> Result<(), Violation> {
        for c in 0..self.clients.len() {
            let now = self.client_now(c);
            let cl = &self.clients[c];
            if !cl.session.synced(&cl.store, now) {
                continue;
            }
            let Some(pipe) = cl.pipe else { return Err(format!("client {c} says synced without a connection")) };
            let srv = &self.servers[cl.server];
            for (path, repo) in &cl.store.0 {
                let durable = srv.durable.get(path).cloned().unwrap_or_default();
                for id in repo.commit_ids().collect::<Vec<_>>() {
                    if cl.authored.contains(&id) && !durable.contains(&id) {
                        return Err(format!("invariant 2: client {c} says synced but its commit {id:?} in {path} is not durable on server {}", cl.server));
                    }
                }
                let _ = pipe;
                if let Some(snap) = cl.snapshot.get(path) {
                    for id in snap {
                        if repo.commit(id).is_none() {
                            return Err(format!("invariant 2: client {c} says synced but lacks {id:?} of {path} that its server held when the round ended"));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    // ---- driving ----

    fn step(&mut self, faults: bool) -> Result<(), Violation> {
        // While healing, nobody writes (convergence is checked after).
        let writes = faults;
        let roll = self.rng.below(100);
        match roll {
            // Deliver a frame.
            0..=49 => {
                let ready: Vec<(u64, bool)> = self
                    .pipes
                    .iter()
                    .filter(|(_, p)| !p.partitioned)
                    .flat_map(|(id, p)| {
                        let mut v = Vec::new();
                        if !p.up.is_empty() {
                            v.push((*id, true));
                        }
                        if !p.down.is_empty() {
                            v.push((*id, false));
                        }
                        v
                    })
                    .collect();
                if ready.is_empty() {
                    return Ok(());
                }
                let (id, up) = ready[self.rng.below(ready.len() as u64) as usize];
                let p = self.pipes.get_mut(&id).unwrap();
                let (server, client) = (p.server, p.client);
                if up {
                    let f = p.up.pop_front().unwrap();
                    self.log(|| format!("pipe {id} ↑ {}", describe_frame(&f)));
                    self.server_receive(server, id, f)?;
                } else {
                    let f = p.down.pop_front().unwrap();
                    self.log(|| format!("pipe {id} ↓ {}", describe_frame(&f)));
                    match client {
                        End::Client(c) => self.client_receive(c, f)?,
                        End::Link(s) => {
                            if let Err(e) = self.link_receive(s, f) {
                                if e.contains("refused") {
                                    return Err(e);
                                }
                                self.close_pipe(id);
                            }
                        }
                    }
                }
            }
            // Time passes; timers fire.
            50..=61 => {
                self.now += 1 + self.rng.below(800) as i64;
                for c in 0..self.clients.len() {
                    let now = self.client_now(c);
                    let real = self.now;
                    let cl = &mut self.clients[c];
                    if cl.pipe.is_none() {
                        if real >= cl.next_connect {
                            let s = cl.server;
                            self.connect(End::Client(c), s);
                        }
                        continue;
                    }
                    if let Err(e) = cl.session.tick_with(&mut cl.store, now) {
                        self.log(|| format!("client {c} times out: {e}"));
                        let p = self.clients[c].pipe.unwrap();
                        self.close_pipe(p);
                        continue;
                    }
                    self.client_out(c);
                }
                for s in 0..self.servers.len() {
                    if self.servers.len() > 1 && s == 0 && self.servers[0].link.is_none() {
                        self.connect(End::Link(0), 1);
                    }
                    let now = self.now;
                    if let Some(l) = self.servers[s].link.as_mut() {
                        match l.conn.tick(now) {
                            Ok(fs) => {
                                let pipe = l.pipe;
                                for f in fs {
                                    if let Some(p) = self.pipes.get_mut(&pipe) {
                                        p.up.push_back(f.encode());
                                    }
                                }
                            }
                            Err(_) => {
                                let pipe = l.pipe;
                                self.close_pipe(pipe);
                            }
                        }
                    }
                }
            }
            62..=71 if writes => {
                let c = self.rng.below(self.clients.len() as u64) as usize;
                self.client_write(c);
            }
            72..=75 => {
                let c = self.rng.below(self.clients.len() as u64) as usize;
                self.client_flush(c);
            }
            76..=85 => {
                let s = self.rng.below(self.servers.len() as u64) as usize;
                self.server_flush(s)?;
            }
            86..=88 => {
                let c = self.rng.below(self.clients.len() as u64) as usize;
                let cl = &mut self.clients[c];
                cl.session.sync_now(&mut cl.store);
                self.client_out(c);
            }
            _ if !faults => {}
            89..=91 => {
                if let Some(&id) = self.pipes.keys().nth(self.rng.below(self.pipes.len() as u64) as usize) {
                    self.log(|| format!("cut pipe {id}"));
                    self.close_pipe(id);
                }
            }
            92..=93 => {
                if let Some(&id) = self.pipes.keys().nth(self.rng.below(self.pipes.len() as u64) as usize) {
                    let p = self.pipes.get_mut(&id).unwrap();
                    p.partitioned = !p.partitioned;
                    self.log(|| format!("pipe {id} partition toggled"));
                }
            }
            94..=95 => {
                let c = self.rng.below(self.clients.len() as u64) as usize;
                self.client_crash(c)?;
            }
            96 => {
                let s = self.rng.below(self.servers.len() as u64) as usize;
                self.server_crash(s)?;
            }
            97..=98 => {
                let s = self.rng.below(self.servers.len() as u64) as usize;
                let srv = &mut self.servers[s];
                srv.disks_failing = !srv.disks_failing;
                let (f, w) = (srv.disks_failing, srv.disks_failing && self.rng.chance(0.5));
                for r in srv.repos.values() {
                    r.disk.set_failing(f, w);
                }
                self.log(|| format!("server {s} disks failing: {f}"));
            }
            _ => {}
        }
        self.check_synced_claims()
    }

    /// Heals every fault and runs until everyone is synced.
    fn heal(&mut self) -> Result<(), Violation> {
        for s in 0..self.servers.len() {
            self.servers[s].disks_failing = false;
            for r in self.servers[s].repos.values() {
                r.disk.set_failing(false, false);
            }
        }
        for p in self.pipes.values_mut() {
            p.partitioned = false;
        }
        for round in 0..6_000 {
            if round % 200 == 0 {
                for c in 0..self.clients.len() {
                    let cl = &mut self.clients[c];
                    cl.session.sync_now(&mut cl.store);
                    self.client_out(c);
                }
            }
            self.step(false)?;
            if round % 50 == 0 && self.quiet() {
                return Ok(());
            }
        }
        Err(format!("did not converge after healing: {}", self.describe()))
    }

    fn quiet(&mut self) -> bool {
        for s in 0..self.servers.len() {
            let _ = self.server_flush(s);
        }
        if self.pipes.values().any(|p| !p.up.is_empty() || !p.down.is_empty()) {
            return false;
        }
        if self.servers.len() > 1 && !self.servers[0].link.as_ref().is_some_and(|l| l.conn.is_ready()) {
            return false;
        }
        (0..self.clients.len()).all(|c| {
            let now = self.client_now(c);
            let cl = &self.clients[c];
            cl.session.sync_complete(&cl.store, now)
        }) && self.digests_agree()
    }

    fn digests_agree(&self) -> bool {
        REPOS.iter().all(|r| {
            let p = RepoPath::parse(r).unwrap();
            let d = self.servers[0].repos[&p].repo.digest();
            self.servers.iter().all(|s| s.repos[&p].repo.digest() == d) && self.clients.iter().all(|c| c.store.0[&p].digest() == d)
        })
    }

    fn describe(&self) -> String {
        let mut out = String::new();
        for r in REPOS {
            let p = RepoPath::parse(r).unwrap();
            out += &format!(
                "{r}: servers {:?} clients {:?}; ",
                self.servers.iter().map(|s| s.repos[&p].repo.commit_count()).collect::<Vec<_>>(),
                self.clients.iter().map(|c| c.store.0[&p].commit_count()).collect::<Vec<_>>()
            );
        }
        out += &format!("client pipes {:?}", self.clients.iter().map(|c| c.pipe.is_some()).collect::<Vec<_>>());
        out
    }

    fn final_checks(&mut self) -> Result<(), Violation> {
        for r in REPOS {
            let p = RepoPath::parse(r).unwrap();
            let mut want: Option<Vec<(String, ItemData)>> = None;
            let acked: Vec<CommitId> = self
                .acked_anywhere
                .iter()
                .copied()
                .filter(|id| self.servers.iter().any(|s| s.repos[&p].repo.commit(id).is_some()) || self.clients.iter().any(|c| c.store.0[&p].commit(id).is_some()))
                .collect();
            let mut replicas: Vec<&mut Repository> = self.servers.iter_mut().map(|s| &mut s.repos.get_mut(&p).unwrap().repo).collect();
            replicas.extend(self.clients.iter_mut().map(|c| c.store.0.get_mut(&p).unwrap()));
            // A commit may wait forever for a parent nobody holds: its
            // author crashed before flushing it, the server relayed it
            // before its own flush and then crashed too. Nothing was
            // acknowledged (or shown: waiting commits are invisible), so
            // that is not a loss; a parent someone still holds is.
            let held: BTreeSet<CommitId> = replicas.iter().flat_map(|repo| repo.commit_ids()).collect();
            for (i, repo) in replicas.into_iter().enumerate() {
                if let Some(p) = repo.missing_parents().into_iter().find(|p| held.contains(p) || self.acked_anywhere.contains(p)) {
                    let ids: Vec<&CommitId> = repo.pending_ids().collect();
                    return Err(format!("invariant 3: commits {ids:?} of {r} in replica {i} (servers first) still wait for {p:?}, which another replica holds"));
                }
                for id in &acked {
                    if repo.commit(id).is_none() {
                        return Err(format!("invariant 3: an acknowledged commit {id:?} is missing from a replica of {r}"));
                    }
                }
                let mut keys: Vec<String> = repo.keys().map(str::to_owned).collect();
                keys.sort();
                let state: Vec<(String, ItemData)> = keys
                    .into_iter()
                    .map(|k| {
                        let h = repo.head(&k).unwrap();
                        (k, (*h.data).clone())
                    })
                    .collect();
                match &want {
                    None => want = Some(state),
                    Some(w) if *w != state => return Err(format!("invariant 3: replicas of {r} hold different values")),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn describe_frame(b: &[u8]) -> String {
    match Frame::decode(b) {
        Ok(Frame::Commits { repo, commits }) => {
            let ids: Vec<String> = commits.iter().filter_map(|c| StoredCommit::parse(c.clone().into_boxed_slice(), false).ok()).map(|c| format!("{:?}", c.id)).collect();
            format!("commits {repo} {ids:?}")
        }
        Ok(Frame::Ack { repo, ids }) => format!("ack {repo} {}", ids.len()),
        Ok(f @ (Frame::Begin { .. } | Frame::Done { .. } | Frame::InSync { .. } | Frame::Want { .. } | Frame::More { .. } | Frame::WantIds { .. })) => format!("{f:?}").chars().take(140).collect(),
        Ok(f) => ibex_core::sync::frame::frame_name(&f.encode()).to_string(),
        Err(e) => format!("undecodable {e}"),
    }
}

/// One seed: a random run with faults, then healing and the final checks.
fn run_seed(seed: u64, memo: Memo, plant: bool) -> Result<(), Violation> {
    let mut w = World::new(seed, memo, plant);
    let steps = 150 + w.rng.below(250);
    for _ in 0..steps {
        w.step(true)?;
    }
    w.heal()?;
    w.final_checks()
}

fn seed_of(i: u64, base: u64) -> u64 {
    base.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn run_many(count: u64, seconds: u64, base: u64, plant: bool, threads: usize) -> (u64, Vec<(u64, Violation)>) {
    let memo = Arc::new(Mutex::new(HashSet::new()));
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failures = Mutex::new(Vec::new());
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| {
                while !stop.load(Relaxed) {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= count || t0.elapsed() > Duration::from_secs(seconds) {
                        break;
                    }
                    let seed = seed_of(i, base);
                    let m = memo.clone();
                    let res = std::panic::catch_unwind(|| run_seed(seed, m, plant))
                        .unwrap_or_else(|p| Err(format!("panic: {}", p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())));
                    done.fetch_add(1, Relaxed);
                    if let Err(v) = res {
                        failures.lock().unwrap().push((seed, v));
                        if plant {
                            stop.store(true, Relaxed);
                        }
                    }
                }
            });
        }
    });
    (done.load(Relaxed), failures.into_inner().unwrap())
}

#[test]
fn simulated_faults_never_lose_acknowledged_commits_nor_claim_sync_falsely() {
    if let Ok(s) = std::env::var("IBEX_SIM_SEED") {
        let seed: u64 = s.parse().expect("IBEX_SIM_SEED is a number");
        println!("replaying simulation seed {seed}");
        if let Err(v) = run_seed(seed, Arc::new(Mutex::new(HashSet::new())), std::env::var("IBEX_SIM_PLANT").is_ok()) {
            panic!("seed {seed}: {v}");
        }
        return;
    }
    let count: u64 = std::env::var("IBEX_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let seconds: u64 = std::env::var("IBEX_SIM_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    println!("simulation: base {base}, {count} seeds (replay one with IBEX_SIM_SEED=<seed>)");
    let t0 = Instant::now();
    let (done, failures) = run_many(count, seconds, base, false, 2);
    println!("simulation: {done} seeds in {:.1} s, {} violations", t0.elapsed().as_secs_f64(), failures.len());
    if std::env::var("IBEX_SIM_SUMMARY").is_ok() {
        let mut kinds: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        for (seed, v) in &failures {
            let k: String = v.chars().filter(|c| !c.is_ascii_hexdigit() || c.is_alphabetic() && !c.is_ascii_lowercase()).take(90).collect();
            let e = kinds.entry(k).or_insert((0, *seed));
            e.0 += 1;
        }
        for (k, (n, seed)) in kinds {
            println!("{n:>5} × {k} (e.g. seed {seed})");
        }
    }
    if let Some((seed, v)) = failures.first() {
        panic!("simulation seed {seed} (replay with IBEX_SIM_SEED={seed}): {v}");
    }
    assert!(done >= count, "only {done} of {count} seeds ran within {seconds} s");
}

/// The checker works: a server that says "durable" before its flush
/// (the bug the first fault tests found: acks before the disk) is caught.
#[test]
fn the_simulation_catches_a_planted_ack_before_the_flush() {
    let base = 42;
    let (done, failures) = run_many(3_000, 120, base, true, 2);
    let (seed, v) = failures.first().unwrap_or_else(|| panic!("the planted bug went unnoticed in {done} seeds"));
    println!("planted bug caught after {done} seeds: seed {seed}: {v}");
    assert!(v.contains("invariant"), "{v}");
}
