//! One repository's actor: the only owner of its `Repository` and log.
//!
//! It runs on the repository runtime (not the one serving sockets), takes
//! messages in order from a bounded inbox, and:
//!
//! * answers each connection's rounds (`ibex_core::sync::RepoServe`) and
//!   each peer link's (`RepoClient`, when this server is the client);
//! * verifies every received commit (signature, certificate, rules, clock,
//!   size) before it enters, with a bound on the work one frame may cost;
//! * relays new commits to every subscriber and peer, sending a session's
//!   certificate before its first commit to each connection;
//! * turns answers and relays into frames only as each connection's queue
//!   has room (a reader that stops reading costs its queue, not a copy of
//!   the repository; past its backlog bound it is asked to resync);
//! * flushes in groups — when its inbox is empty, or `flush_deadline`
//!   after the oldest unflushed commit, whatever the load — and only then
//!   sends `in-sync`, `done` and `ack`; a failed flush is retried every
//!   half second until it succeeds (a full disk that frees up);
//! * creates its file only when its first commit is accepted, moves a log
//!   with a damaged header aside and starts empty (peers and clients
//!   restore it), and retires when idle.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ibex_core::sync::frame::{Frame, MAX_COMMIT_BYTES_PER_FRAME, MAX_COMMITS_PER_FRAME};
use ibex_core::sync::{Ctx, RepoClient, RepoServe};
use ibex_core::trust::{SESSIONS, USERS, legacy_user_id, user_id};
use ibex_core::{Certificate, CommitId, Error, FileStorage, ItemData, PendingLimits, RepoPath, Repository, SchemaId, SessionId, StoredCommit, Value};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::state::{ConnId, Endpoint, Permits, Shared, now_ms};

/// What a repository actor is asked to do.
pub enum RepoMsg {
    /// A repository frame from a connection (this server answers).
    Frame {
        from: Endpoint,
        frame: Frame,
        permit: Option<Permits>,
        done: Option<oneshot::Sender<()>>,
    },
    /// A repository frame from a server this one connected to (this server
    /// is the client on that link).
    LinkFrame {
        link: Endpoint,
        frame: Frame,
        done: Option<oneshot::Sender<()>>,
    },
    /// Starts a round on a link.
    LinkBegin {
        link: Endpoint,
    },
    /// A connection's queue has room again.
    Drained {
        conn: ConnId,
    },
    /// A connection or link closed.
    Gone {
        conn: ConnId,
    },
    /// `/sys/sessions`: writes a certificate, durably, before answering.
    Certify {
        cert: Certificate,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    /// `/sys/sessions`: certificates a client holds and this server lost
    /// (a disk lost, a restore): each root-signed one is re-issued.
    Adopt {
        commits: Vec<Vec<u8>>,
        reply: oneshot::Sender<()>,
    },
    /// `/sys/users`: the id of an address, the user created if needed.
    User {
        email: String,
        reply: oneshot::Sender<Result<String, Error>>,
    },
    /// `/sys/users`: the address of a user id.
    Email {
        user: String,
        reply: oneshot::Sender<Option<String>>,
    },
    /// Operator work (`admin.rs`): in order with clients' frames; the
    /// commits it writes are relayed like theirs and durable before the reply.
    Admin {
        job: crate::admin::Job,
        reply: oneshot::Sender<Result<crate::admin::Done, Error>>,
    },
    Ping {
        reply: oneshot::Sender<()>,
    },
    Flush {
        reply: oneshot::Sender<bool>,
    },
    /// A shared store (`store/notify.rs`) has commits of this repository up
    /// to `seq` that other servers stored: read the ones after what this
    /// actor read, integrate and relay them. `done` is answered after.
    Refresh {
        seq: i64,
        done: Option<oneshot::Sender<()>>,
    },
    Stop {
        reply: oneshot::Sender<()>,
    },
}

enum Out {
    Frame(Vec<u8>),
    Ids(VecDeque<CommitId>),
}

/// Frames waiting for a connection's queue to have room.
#[derive(Default)]
struct Backlog {
    items: VecDeque<Out>,
    ids: usize,
}

struct Serve {
    ep: Endpoint,
    serve: RepoServe,
    backlog: Backlog,
    /// Frames that may leave only after the next flush.
    held: Vec<Frame>,
}

struct Link {
    ep: Endpoint,
    client: RepoClient,
    backlog: Backlog,
}

/// A repository kept in a shared PostgreSQL store (`store/`): held in
/// memory, its new commits inserted at each flush.
struct Db {
    store: Arc<crate::store::PgStore>,
    /// The highest seq of this repository read or written here.
    last_seq: i64,
    /// Commits integrated here and not stored yet, parents first.
    unstored: Vec<CommitId>,
}

struct Actor {
    shared: Arc<Shared>,
    db: Option<Db>,
    path: RepoPath,
    file: PathBuf,
    repo: Option<Repository>,
    open_error: Option<(Error, Instant)>,
    salt: u64,
    serves: HashMap<ConnId, Serve>,
    links: HashMap<ConnId, Link>,
    dirty_since: Option<Instant>,
    flush_failed: Option<Instant>,
    /// Told the waiting clients about the failing flush already.
    flush_reported: bool,
    last_used: Instant,
    last_expiry: Instant,
    /// Bytes of waiting commits last added to the server-wide gauge.
    pending_reported: usize,
}

/// This server lacks the certificates of `sessions` (its `/sys/sessions`
/// was lost or damaged): asks every client connection for them, at most
/// once per session every 10 seconds. Clients answer with what they hold.
fn ask_for_certificates(shared: &Shared, sessions: &[SessionId]) {
    let now = std::time::Instant::now();
    let due: Vec<CommitId> = {
        let mut asked = shared.cert_requests.lock().unwrap_or_else(|e| e.into_inner());
        if asked.len() > 100_000 {
            asked.retain(|_, t| now.duration_since(*t) < Duration::from_secs(10));
        }
        let mut due = Vec::new();
        for s in sessions {
            if asked.get(s).is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(10)) {
                asked.insert(*s, now);
                due.push(CommitId(s.0));
            }
        }
        due
    };
    if due.is_empty() {
        return;
    }
    tracing::warn!(sessions = due.len(), "certificates missing here; asking clients for them");
    let frame = Frame::WantIds { repo: RepoPath::parse(SESSIONS).expect("valid path"), ids: due }.encode();
    for ep in shared.conns().by_id.values().filter(|e| !e.peer) {
        ep.out.push(frame.clone());
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // The salt only keys reconciliation hashes; a fixed one is still correct.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// A repository file (log or checkpoint): the configured storage (tests
/// inject failing disks), or a private file.
fn storage_at(shared: &Shared, file: &std::path::Path) -> Result<Box<dyn ibex_core::Storage>, Error> {
    match &shared.config.storage {
        Some(f) => f.open(file),
        None => Ok(Box::new(FileStorage::open_private(file)?)),
    }
}

pub async fn run(shared: Arc<Shared>, path: RepoPath, mut rx: mpsc::Receiver<RepoMsg>) {
    let file = shared.config.data.join(path.kind()).join(format!("{}.log", path.name()));
    let mut a = Actor {
        db: shared.pg.clone().map(|store| Db { store, last_seq: 0, unstored: Vec::new() }),
        shared: shared.clone(),
        path: path.clone(),
        file,
        repo: None,
        open_error: None,
        salt: random_u64(),
        serves: HashMap::new(),
        links: HashMap::new(),
        dirty_since: None,
        flush_failed: None,
        flush_reported: false,
        last_used: Instant::now(),
        last_expiry: Instant::now(),
        pending_reported: 0,
    };
    a.ensure_open();
    let mut stopped = None;
    loop {
        let deadline = a.next_deadline();
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = tokio::time::sleep_until(deadline.into()) => {
                a.on_timer();
                if a.idle() && shared.registry.retire(&path, &rx) {
                    break;
                }
                continue;
            }
        };
        let Some(msg) = msg else { break };
        if let RepoMsg::Stop { reply } = msg {
            // Answered below, once the log and the checkpoint are written:
            // nothing touches the files after the answer.
            stopped = Some(reply);
            shared.registry.retire(&path, &rx);
            break;
        }
        a.handle(msg);
        a.report_pending();
        // Group commit: flush once nothing else is waiting, or when the
        // oldest unflushed commit reaches the deadline.
        if let Some(since) = a.dirty_since
            && (rx.is_empty() || since.elapsed() >= shared.limits().flush_deadline)
            && a.flush_failed.is_none()
        {
            a.flush();
        }
    }
    a.flush();
    a.checkpoint();
    if let Some(r) = &mut a.repo {
        // Waiting commits die with the actor (senders send them again).
        r.expire_pending(i64::MAX);
    }
    a.report_pending();
    Metrics::sub(&shared.metrics.repos_open, 1);
    if let Some(reply) = stopped {
        let _ = reply.send(());
    }
}

impl Actor {
    fn limits(&self) -> &crate::config::Limits {
        self.shared.limits()
    }

    /// Opens the repository if it is not open; on failure the error is
    /// kept (and sent to whoever asks) and retried a second later.
    fn ensure_open(&mut self) -> bool {
        if self.repo.is_some() {
            return true;
        }
        if let Some((_, at)) = &self.open_error
            && at.elapsed() < Duration::from_secs(1)
        {
            return false;
        }
        match self.open() {
            Ok(r) => {
                self.repo = Some(r);
                self.open_error = None;
                true
            }
            Err(e) => {
                tracing::error!(repo = %self.path, error = %e, "cannot open repository; its clients get an error until it opens");
                self.open_error = Some((e, Instant::now()));
                false
            }
        }
    }

    fn open(&mut self) -> Result<Repository, Error> {
        let limits =
            PendingLimits { max_commits: self.limits().pending_commits_per_repo, max_bytes: self.limits().pending_bytes_per_repo, max_owner_bytes: self.limits().pending_bytes_per_connection };
        let schemas = self.shared.schemas.clone();
        if self.db.is_some() {
            let mut repo = self.open_db()?;
            repo.set_pending_limits(limits);
            return Ok(repo);
        }
        if !self.file.exists() {
            let mut r = Repository::new(self.path.clone(), schemas);
            r.set_pending_limits(limits);
            return Ok(r);
        }
        let storage = self.open_storage()?;
        // Beside each log its checkpoint (rust/core/src/checkpoint.rs):
        // opening reads it and the log's tail instead of every commit; a
        // missing, torn or stale one is rebuilt from a full scan. Session
        // certificates are read whole into the trust store: no checkpoint.
        let ckpt = if self.path.as_str() == SESSIONS {
            None
        } else {
            match self.open_storage_at(&self.file.with_extension("ckpt")) {
                Ok(c) => Some(c),
                Err(e) => {
                    // Only slower: the whole log is read.
                    tracing::warn!(repo = %self.path, error = %e, "cannot open the checkpoint; reading the whole log");
                    None
                }
            }
        };
        let opened = tokio::task::block_in_place(|| match ckpt {
            Some(ckpt) => {
                let opened = Repository::open_checkpointed(self.path.clone(), schemas.clone(), storage, ckpt)?;
                if !matches!(opened.1.checkpoint, ibex_core::CheckpointUse::Used { .. }) || self.log_records_intact()? {
                    return Ok(opened);
                }
                // A record the checkpoint covers is damaged: the server
                // heals (and reports) it as it does without a checkpoint,
                // so the checkpoint is dropped and the log scanned whole.
                drop(opened);
                let mut ckpt = self.open_storage_at(&self.file.with_extension("ckpt"))?;
                ckpt.truncate(0)?;
                Repository::open_checkpointed(self.path.clone(), schemas.clone(), self.open_storage()?, ckpt)
            }
            None => Repository::open(self.path.clone(), schemas.clone(), storage),
        });
        let (mut repo, report) = match opened {
            Ok(x) => x,
            Err(e @ Error::LogHeader(_)) => {
                // Not ours, or torn where no tail cut can fix it: keep the
                // file for inspection and start empty; clients and peers
                // restore what they hold.
                let aside = self.file.with_extension(format!("log.damaged-{}", now_ms()));
                std::fs::rename(&self.file, &aside)?;
                Metrics::inc(&self.shared.metrics.damaged_logs);
                tracing::error!(repo = %self.path, error = %e, moved_to = %aside.display(), "DAMAGED LOG HEADER: the log was moved aside and the repository starts empty; clients and peers will restore it");
                if self.path.as_str() == SESSIONS {
                    self.shared.restoring_sessions.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                (Repository::new(self.path.clone(), schemas), ibex_core::LoadReport::default())
            }
            Err(e) => return Err(e),
        };
        if !report.corrupt.is_empty() || !report.rejected.is_empty() || report.truncated_bytes > 0 {
            if !report.corrupt.is_empty() || !report.rejected.is_empty() {
                Metrics::inc(&self.shared.metrics.damaged_logs);
            }
            tracing::warn!(repo = %self.path, corrupt = report.corrupt.len(), rejected = report.rejected.len(), torn_tail_bytes = report.truncated_bytes, "damaged log records skipped; clients and peers restore them");
        }
        tracing::debug!(repo = %self.path, commits = report.commits, "opened repository");
        repo.set_pending_limits(limits);
        if self.path.as_str() == SESSIONS {
            self.shared.trust_mut().refresh_all(&mut repo);
            let durable: Vec<SessionId> = repo.keys().filter_map(|k| hex::decode(k).ok()?.try_into().ok().map(SessionId)).collect();
            self.shared.durable_certs().extend(durable);
        }
        Ok(repo)
    }

    /// Reads the repository from the shared store, every commit (they were
    /// verified by the server that stored them), in pages.
    fn open_db(&mut self) -> Result<Repository, Error> {
        let db = self.db.as_mut().expect("a shared store");
        let mut repo = Repository::new(self.path.clone(), self.shared.schemas.clone());
        let mut last = 0;
        let t0 = Instant::now();
        loop {
            let rows = db.store.block(db.store.read_after(self.path.as_str(), last))?;
            let n = rows.len();
            if let Some((seq, _, _)) = rows.last() {
                last = *seq;
            }
            let refused = Self::insert_rows(&mut repo, rows, true).1;
            if !refused.is_empty() {
                Metrics::inc(&self.shared.metrics.damaged_logs);
                tracing::error!(repo = %self.path, refused = refused.len(), first = %refused[0], "damaged commit rows in the database were skipped");
            }
            if n < crate::store::postgres::READ_ROWS as usize {
                break;
            }
        }
        db.last_seq = last;
        // Whatever waits for parents was stored before its parents were:
        // it stays waiting, as in a log.
        tracing::debug!(repo = %self.path, commits = repo.commit_count(), ms = t0.elapsed().as_millis() as u64, "opened repository from the database");
        if self.path.as_str() == SESSIONS {
            self.shared.trust_mut().refresh_all(&mut repo);
            let durable: Vec<SessionId> = repo.keys().filter_map(|k| hex::decode(k).ok()?.try_into().ok().map(SessionId)).collect();
            self.shared.durable_certs().extend(durable);
        }
        Ok(repo)
    }

    /// Integrates rows read from the shared store; returns their ids and
    /// the rows refused (an id that is not 32 bytes, bytes that do not
    /// parse, another repository's commit).
    fn insert_rows(repo: &mut Repository, rows: Vec<crate::store::postgres::Row>, quiet: bool) -> (Vec<CommitId>, Vec<Error>) {
        let mut ids = Vec::with_capacity(rows.len());
        let mut bad = Vec::new();
        let commits: Vec<(CommitId, Box<[u8]>)> = rows
            .into_iter()
            .filter_map(|(seq, id, bytes)| match <[u8; 32]>::try_from(id.as_slice()) {
                Ok(id) => {
                    ids.push(CommitId(id));
                    Some((CommitId(id), bytes.into_boxed_slice()))
                }
                Err(_) => {
                    bad.push(Error::Storage(format!("row {seq}: an id of {} bytes", id.len())));
                    None
                }
            })
            .collect();
        let (_, refused) = repo.insert_trusted(commits, quiet);
        bad.extend(refused);
        (ids, bad)
    }

    /// Reads and relays what other servers stored after `last_seq`.
    fn refresh(&mut self, seq: i64) {
        if self.db.as_ref().is_none_or(|d| seq <= d.last_seq) || self.repo.is_none() {
            // A repository not open yet reads everything when it opens.
            return;
        }
        let mut from_db = std::collections::HashSet::new();
        loop {
            let db = self.db.as_mut().expect("checked");
            let rows = match db.store.block(db.store.read_after(self.path.as_str(), db.last_seq)) {
                Ok(r) => r,
                Err(e) => {
                    // The listener asks again once the database is back.
                    tracing::warn!(repo = %self.path, error = %e, "cannot read new commits from the database");
                    break;
                }
            };
            let n = rows.len();
            if let Some((s, _, _)) = rows.last() {
                db.last_seq = *s;
            }
            let repo = self.repo.as_mut().expect("open");
            let (ids, refused) = Self::insert_rows(repo, rows, false);
            if !refused.is_empty() {
                tracing::error!(repo = %self.path, refused = refused.len(), first = %refused[0], "damaged commit rows in the database were skipped");
            }
            from_db.extend(ids);
            if n < crate::store::postgres::READ_ROWS as usize {
                break;
            }
        }
        if self.path.as_str() == SESSIONS {
            let repo = self.repo.as_ref().expect("open");
            let durable: Vec<SessionId> = from_db.iter().filter_map(|id| repo.commit(id)).filter_map(|c| hex::decode(&*c.key).ok()?.try_into().ok().map(SessionId)).collect();
            self.shared.durable_certs().extend(durable);
        }
        let root = Endpoint::new(0, crate::outq::OutQueue::new(0, self.shared.metrics.clone()), self.shared.root.id(), true);
        self.after_change_stored(None, &root, &Default::default(), &from_db);
    }

    /// Whether commits integrated here are not durable yet.
    fn unsynced(&self) -> bool {
        match &self.db {
            Some(db) => !db.unstored.is_empty(),
            None => self.repo.as_ref().is_some_and(|r| r.unsynced_bytes() > 0),
        }
    }

    /// Whether every record of the log still has its checksum. Opening from
    /// a checkpoint reads only the records after it; the server still
    /// checks the ones before (sequential reading and CRC32, no parsing),
    /// because a damaged one must be reported and restored from clients
    /// and peers rather than found when a peer asks for it.
    fn log_records_intact(&self) -> Result<bool, Error> {
        let bytes = self.open_storage()?.read_all()?;
        let scan = ibex_core::log::scan(&bytes)?;
        Ok(scan.corrupt.is_empty())
    }

    fn open_storage(&self) -> Result<Box<dyn ibex_core::Storage>, Error> {
        self.open_storage_at(&self.file)
    }

    fn open_storage_at(&self, file: &std::path::Path) -> Result<Box<dyn ibex_core::Storage>, Error> {
        storage_at(&self.shared, file)
    }

    /// Writes the repository's checkpoint (after a successful flush: it
    /// covers only what is durable). A failure costs only a longer next
    /// open, so it is logged, not returned.
    fn checkpoint(&mut self) {
        if self.flush_failed.is_some() {
            return;
        }
        if let Some(repo) = &mut self.repo
            && let Err(e) = tokio::task::block_in_place(|| repo.write_checkpoint())
        {
            tracing::warn!(repo = %self.path, error = %e, "cannot write the checkpoint; the next open scans the whole log");
        }
    }

    /// Keeps the server-wide gauge of waiting commits' bytes current.
    fn report_pending(&mut self) {
        let now = self.repo.as_ref().map_or(0, Repository::pending_bytes);
        if now >= self.pending_reported {
            Metrics::add(&self.shared.metrics.pending_bytes, (now - self.pending_reported) as u64);
        } else {
            Metrics::sub(&self.shared.metrics.pending_bytes, (self.pending_reported - now) as u64);
        }
        self.pending_reported = now;
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut d = now + Duration::from_secs(5);
        if let Some(since) = self.dirty_since {
            d = d.min(since + self.limits().flush_deadline);
        }
        if let Some(at) = self.flush_failed {
            d = d.min(at + Duration::from_millis(500));
        }
        if self.idle_candidate() {
            d = d.min(self.last_used + self.limits().repo_idle);
        }
        d.max(now + Duration::from_millis(1))
    }

    fn on_timer(&mut self) {
        if self.dirty_since.is_some() {
            self.flush();
        }
        if self.last_expiry.elapsed() > Duration::from_secs(30) {
            self.last_expiry = Instant::now();
            let before = now_ms() - self.limits().pending_ttl.as_millis() as i64;
            if let Some(r) = &mut self.repo {
                r.expire_pending(before);
            }
        }
    }

    fn idle_candidate(&self) -> bool {
        self.dirty_since.is_none()
            && self.flush_failed.is_none()
            && self.serves.values().all(|s| s.backlog.items.is_empty() && s.held.is_empty() && !s.serve.in_round())
            && self.links.values().all(|l| l.backlog.items.is_empty() && !l.client.in_round())
    }

    fn idle(&self) -> bool {
        self.idle_candidate() && self.last_used.elapsed() >= self.limits().repo_idle
    }

    fn handle(&mut self, msg: RepoMsg) {
        self.last_used = Instant::now();
        match msg {
            RepoMsg::Frame { from, frame, permit, done } => {
                self.frame(from, frame);
                drop(permit);
                if let Some(d) = done {
                    let _ = d.send(());
                }
            }
            RepoMsg::LinkFrame { link, frame, done } => {
                self.link_frame(link, frame);
                if let Some(d) = done {
                    let _ = d.send(());
                }
            }
            RepoMsg::LinkBegin { link } => {
                if !self.ensure_open() {
                    return;
                }
                let repo = self.repo.as_ref().expect("open");
                let l = self.links.entry(link.id).or_insert_with(|| Link { ep: link.clone(), client: RepoClient::new(self.path.clone()), backlog: Backlog::default() });
                let (f, _) = l.client.begin(repo);
                l.backlog.items.push_back(Out::Frame(f.encode()));
                self.pump(link.id);
            }
            RepoMsg::Drained { conn } => self.pump(conn),
            RepoMsg::Gone { conn } => {
                self.serves.remove(&conn);
                self.links.remove(&conn);
                if let Some(r) = &mut self.repo {
                    r.drop_pending_of(conn);
                }
            }
            RepoMsg::Certify { cert, reply } => {
                let _ = reply.send(self.certify(&cert));
            }
            RepoMsg::Adopt { commits, reply } => {
                self.adopt(commits);
                let _ = reply.send(());
            }
            RepoMsg::User { email, reply } => {
                let _ = reply.send(self.user(&email));
            }
            RepoMsg::Email { user, reply } => {
                let email = self.ensure_open().then(|| self.repo.as_mut().and_then(|r| r.head(&user))).flatten().and_then(|h| match h.data.fields.get("email") {
                    Some(Value::Str(e)) => Some(e.clone()),
                    _ => None,
                });
                let _ = reply.send(email);
            }
            RepoMsg::Admin { job, reply } => {
                let _ = reply.send(self.admin(job));
            }
            RepoMsg::Ping { reply } => {
                let _ = reply.send(());
            }
            RepoMsg::Flush { reply } => {
                self.flush();
                let _ = reply.send(self.flush_failed.is_none());
            }
            RepoMsg::Refresh { seq, done } => {
                self.refresh(seq);
                if let Some(d) = done {
                    let _ = d.send(());
                }
            }
            RepoMsg::Stop { .. } => {}
        }
    }

    fn send_error(ep: &Endpoint, repo: &str, e: &Error, id: Option<CommitId>) {
        ep.out.push(Frame::error_about(repo, e, id).encode());
    }

    fn frame(&mut self, from: Endpoint, frame: Frame) {
        if !self.ensure_open() {
            let e = self.open_error.as_ref().map_or_else(|| Error::Storage("unavailable".into()), |(e, _)| Error::Storage(format!("{} cannot be opened on the server: {e}", self.path)));
            Self::send_error(&from, self.path.as_str(), &e, None);
            return;
        }
        let shared = self.shared.clone();
        let path = self.path.clone();
        let was_new = !self.repo.as_ref().expect("open").is_persistent();
        if let Frame::Commits { .. } = &frame
            && was_new
            && self.repo.as_ref().expect("open").commit_count() == 0
            && !from.peer
            && !shared.trust().is_root(&from.session)
            && !shared.hit_new_repo(from.session)
        {
            Metrics::inc(&shared.metrics.quota_refusals);
            let e = Error::Quota(format!("this session created {} repositories this hour, the most allowed (--new-repos-per-session-per-hour)", shared.limits().new_repos_per_session_per_hour));
            Self::send_error(&from, path.as_str(), &e, None);
            return;
        }
        if let (Frame::Commits { .. }, Some(db)) = (&frame, &self.db)
            && self.flush_failed.is_some()
            && db.unstored.len() >= shared.limits().pending_commits_per_repo
        {
            // The database is away and this many commits wait for it: take
            // no more (the client keeps them and sends them again).
            Metrics::inc(&shared.metrics.quota_refusals);
            let e = Error::Storage(format!("{} commits of this repository wait for the database; try again when it is back", db.unstored.len()));
            Self::send_error(&from, path.as_str(), &e, None);
            return;
        }
        let serve = self.serves.entry(from.id).or_insert_with(|| Serve { ep: from.clone(), serve: RepoServe::new(), backlog: Backlog::default(), held: Vec::new() });
        serve.ep = from.clone();
        if let Frame::Begin { .. } = &frame {
            // A new round covers everything still queued for this
            // connection (earlier answers and relays): drop them, so
            // repeated rounds cost one answer, not a pile of them.
            serve.backlog = Backlog::default();
        }
        let repo = self.repo.as_mut().expect("open");
        repo.set_work_budget(Some(shared.limits().work_bytes_per_frame));
        let max_commit = shared.limits().max_commit;
        let now = now_ms();
        let served = {
            let trust = shared.trust();
            let verify = |c: &StoredCommit| -> Result<(), Error> {
                if c.bytes().len() > max_commit {
                    return Err(Error::Quota(format!("commit {} is {} bytes; this server accepts at most {max_commit} (--max-commit-bytes)", c.id.to_hex(), c.bytes().len())));
                }
                trust.verify_at(c, now)
            };
            let ctx = Ctx { verify: &verify, owner: from.id, now, salt: self.salt };
            serve.serve.handle(repo, frame, &ctx)
        };
        repo.set_work_budget(None);
        let served = match served {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(conn = from.id, repo = %path, error = %e, "protocol violation; closing the connection");
                Self::send_error(&from, path.as_str(), &e, None);
                from.out.close(format!("protocol error: {e}"));
                self.serves.remove(&from.id);
                return;
            }
        };
        Metrics::add(&shared.metrics.commits_accepted, served.accepted as u64);
        Metrics::add(&shared.metrics.rejected_commits, served.rejected.len() as u64);
        for (i, (id, e)) in served.rejected.iter().enumerate() {
            if i < 8 {
                tracing::info!(conn = from.id, repo = %path, code = e.code(), error = %e, "rejected commit");
                Self::send_error(&from, path.as_str(), e, *id);
            }
        }
        let forged = served.rejected.iter().filter(|(_, e)| matches!(e.code(), "ERR_BAD_SIGNATURE" | "ERR_DECODE" | "ERR_BAD_KEY")).count() as u32;
        if forged > 0 && from.invalid.fetch_add(forged, std::sync::atomic::Ordering::Relaxed) + forged > crate::state::MAX_INVALID_COMMITS {
            Metrics::inc(&shared.metrics.quota_refusals);
            tracing::warn!(conn = from.id, repo = %path, "too many forged or malformed commits; closing the connection");
            Self::send_error(&from, "", &Error::Quota(format!("more than {} forged or malformed commits on this connection", crate::state::MAX_INVALID_COMMITS)), None);
            from.out.close("too many forged or malformed commits");
        }
        if !served.send.is_empty() {
            serve.backlog.ids += served.send.len();
            serve.backlog.items.push_back(Out::Ids(served.send.into()));
        }
        for f in served.now {
            serve.backlog.items.push_back(Out::Frame(f.encode()));
        }
        serve.held.extend(served.after_flush);
        let received: std::collections::HashSet<CommitId> = served.received.into_iter().collect();
        self.after_change(Some(from.id), &from, &received);
        self.pump(from.id);
    }

    fn link_frame(&mut self, link: Endpoint, frame: Frame) {
        if !self.ensure_open() {
            return;
        }
        let shared = self.shared.clone();
        let path = self.path.clone();
        let l = self.links.entry(link.id).or_insert_with(|| Link { ep: link.clone(), client: RepoClient::new(path.clone()), backlog: Backlog::default() });
        let repo = self.repo.as_mut().expect("open");
        repo.set_work_budget(Some(shared.limits().work_bytes_per_frame));
        let now = now_ms();
        let h = {
            let trust = shared.trust();
            l.client.handle(repo, frame, &|c| trust.verify_at(c, now))
        };
        repo.set_work_budget(None);
        let received: std::collections::HashSet<CommitId>;
        match h {
            Ok(h) => {
                received = h.received.iter().copied().collect();
                Metrics::add(&shared.metrics.rejected_commits, h.rejected.len() as u64);
                for (i, e) in h.rejected.iter().enumerate() {
                    if i < 8 {
                        tracing::warn!(link = link.id, repo = %path, code = e.code(), error = %e, "peer sent a commit this server refuses");
                        Self::send_error(&link, path.as_str(), e, None);
                    }
                }
                for f in h.replies {
                    // Commits the other server wants go through the backlog
                    // as ids, so their certificates are sent first.
                    match f {
                        Frame::Commits { commits, .. } => {
                            let ids: VecDeque<CommitId> = commits.iter().filter_map(|b| StoredCommit::parse(b.clone().into_boxed_slice(), false).ok()).map(|c| c.id).collect();
                            l.backlog.ids += ids.len();
                            l.backlog.items.push_back(Out::Ids(ids));
                        }
                        other => l.backlog.items.push_back(Out::Frame(other.encode())),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(link = link.id, repo = %path, error = %e, "peer protocol error; closing the link");
                link.out.close(format!("protocol error: {e}"));
                self.links.remove(&link.id);
                return;
            }
        }
        self.after_change(Some(link.id), &link, &received);
        self.pump(link.id);
    }

    /// After commits may have been integrated: persist a new repository,
    /// refresh certificates, relay, and note that a flush is due.
    fn after_change(&mut self, source: Option<ConnId>, by: &Endpoint, received: &std::collections::HashSet<CommitId>) {
        self.after_change_stored(source, by, received, &Default::default());
    }

    /// [`Actor::after_change`] where the commits in `stored` came from the
    /// shared store: relayed, not stored again.
    fn after_change_stored(&mut self, source: Option<ConnId>, by: &Endpoint, received: &std::collections::HashSet<CommitId>, stored: &std::collections::HashSet<CommitId>) {
        let shared = self.shared.clone();
        let repo = self.repo.as_mut().expect("open");
        let ids = repo.take_integrated();
        if ids.is_empty() {
            self.release_held_if_clean();
            return;
        }
        if let Some(db) = &mut self.db {
            let before = db.unstored.len();
            db.unstored.extend(ids.iter().filter(|id| !stored.contains(id)));
            if before == 0 && !db.unstored.is_empty() && shared.registry.add_known(&self.path) {
                tracing::info!(repo = %self.path, by = %by.session, "created repository");
            }
        } else if !repo.is_persistent() {
            match storage_at(&shared, &self.file).and_then(|s| repo.persist_to(s)) {
                Ok(()) => {
                    if self.path.as_str() != SESSIONS {
                        match storage_at(&shared, &self.file.with_extension("ckpt")) {
                            Ok(c) => repo.attach_checkpoint(c),
                            Err(e) => tracing::warn!(repo = %self.path, error = %e, "cannot create the checkpoint; the next open reads the whole log"),
                        }
                    }
                    if shared.registry.add_known(&self.path) {
                        tracing::info!(repo = %self.path, by = %by.session, "created repository");
                    }
                }
                Err(e) => {
                    Metrics::inc(&shared.metrics.flush_failures);
                    tracing::error!(repo = %self.path, error = %e, "cannot create the repository's file; its commits stay in memory until it can");
                    self.flush_failed = Some(Instant::now());
                }
            }
        }
        if self.path.as_str() == SESSIONS {
            let keys: Vec<String> = ids.iter().filter_map(|id| repo.commit(id).map(|c| c.key.to_string())).collect();
            shared.trust_mut().refresh(repo, keys.iter().map(String::as_str));
        }
        if self.dirty_since.is_none() && (self.db.is_none() || self.unsynced()) {
            self.dirty_since = Some(Instant::now());
        }
        self.relay(&ids, source, received);
    }

    /// New commits to every subscriber and replica; `source` gets only the
    /// ones it did not send itself (the commits its frame unblocked came
    /// from others).
    fn relay(&mut self, ids: &[CommitId], source: Option<ConnId>, received: &std::collections::HashSet<CommitId>) {
        let shared = self.shared.clone();
        let mut targets: Vec<Endpoint> = if self.path.as_str().starts_with("/sys/") { Vec::new() } else { shared.registry.subscribers(&self.path) };
        targets.extend(shared.replicas());
        let links: std::collections::HashSet<ConnId> = shared.conns().links.keys().copied().collect();
        let max_ids = self.limits().conn_backlog_ids;
        let mut pump = Vec::new();
        let rest: Vec<CommitId> = ids.iter().copied().filter(|id| !received.contains(id)).collect();
        for ep in targets {
            if ep.out.is_closed() {
                continue;
            }
            let ids: &[CommitId] = if Some(ep.id) == source { &rest } else { ids };
            if ids.is_empty() {
                continue;
            }
            let backlog = if links.contains(&ep.id) {
                let l = self.links.entry(ep.id).or_insert_with(|| Link { ep: ep.clone(), client: RepoClient::new(self.path.clone()), backlog: Backlog::default() });
                l.client.mark_unacked(ids);
                &mut l.backlog
            } else {
                let s = self.serves.entry(ep.id).or_insert_with(|| Serve { ep: ep.clone(), serve: RepoServe::new(), backlog: Backlog::default(), held: Vec::new() });
                &mut s.backlog
            };
            if backlog.ids + ids.len() > max_ids {
                // A reader this far behind is asked to reconcile again
                // instead of holding the server's memory.
                backlog.items.clear();
                backlog.ids = 0;
                backlog.items.push_back(Out::Frame(Frame::Resync { repo: self.path.clone() }.encode()));
                Metrics::inc(&shared.metrics.resyncs);
                tracing::info!(conn = ep.id, repo = %self.path, "reader too far behind; asked to resync");
            } else {
                backlog.ids += ids.len();
                backlog.items.push_back(Out::Ids(ids.iter().copied().collect()));
            }
            pump.push(ep.id);
        }
        for id in pump {
            self.pump(id);
        }
    }

    /// Moves backlog into a connection's queue while it has room.
    fn pump(&mut self, conn: ConnId) {
        let Some(repo) = self.repo.as_ref() else { return };
        let (ep, backlog) = match (self.serves.get_mut(&conn), self.links.get_mut(&conn)) {
            (Some(s), _) => (s.ep.clone(), &mut s.backlog),
            (None, Some(l)) => (l.ep.clone(), &mut l.backlog),
            _ => return,
        };
        let shared = &self.shared;
        while let Some(front) = backlog.items.front_mut() {
            let room = ep.out.room();
            if room == 0 || ep.out.is_closed() {
                if !ep.out.is_closed() {
                    ep.out.wait_for_room(&self.path);
                }
                break;
            }
            match front {
                Out::Frame(b) => {
                    if b.len() > room && ep.out.queued() > 0 {
                        ep.out.wait_for_room(&self.path);
                        break;
                    }
                    let Some(Out::Frame(b)) = backlog.items.pop_front() else { unreachable!() };
                    ep.out.push(b);
                }
                Out::Ids(ids) => {
                    let budget = room.min(MAX_COMMIT_BYTES_PER_FRAME);
                    let mut chunk: Vec<&StoredCommit> = Vec::new();
                    let mut bytes = 0;
                    while let Some(id) = ids.front() {
                        let Some(c) = repo.commit(id) else {
                            ids.pop_front();
                            backlog.ids -= 1;
                            continue;
                        };
                        if !chunk.is_empty() && (bytes + c.bytes().len() > budget || chunk.len() == MAX_COMMITS_PER_FRAME) {
                            break;
                        }
                        bytes += c.bytes().len();
                        chunk.push(c);
                        ids.pop_front();
                        backlog.ids -= 1;
                    }
                    if ids.is_empty() {
                        backlog.items.pop_front();
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    // Certificates first, once per session and connection.
                    let mut missing: Vec<SessionId> = Vec::new();
                    let certs: Vec<Vec<u8>> = {
                        let trust = shared.trust();
                        let mut sent = ep.certs.lock().unwrap_or_else(|e| e.into_inner());
                        let mut v = Vec::new();
                        for c in &chunk {
                            let s: SessionId = c.session();
                            if trust.is_root(&s) || sent.contains(&s) {
                                continue;
                            }
                            if let Some(cc) = trust.certificate_commit(&s) {
                                v.push(cc.bytes().to_vec());
                                sent.insert(s);
                            } else {
                                missing.push(s);
                            }
                        }
                        v
                    };
                    if !certs.is_empty() {
                        let sessions = RepoPath::parse(SESSIONS).expect("valid path");
                        ep.out.push(Frame::Commits { repo: sessions, commits: certs }.encode());
                    }
                    if !missing.is_empty() {
                        ask_for_certificates(shared, &missing);
                    }
                    ep.out.push(Frame::Commits { repo: self.path.clone(), commits: chunk.iter().map(|c| c.bytes().to_vec()).collect() }.encode());
                    Metrics::inc(&shared.metrics.frames_out);
                }
            }
        }
    }

    /// Frames held for a flush go out when nothing is waiting to be flushed.
    fn release_held_if_clean(&mut self) {
        if self.dirty_since.is_some() || self.flush_failed.is_some() || self.unsynced() {
            return;
        }
        let ids: Vec<ConnId> = self.serves.iter().filter(|(_, s)| !s.held.is_empty()).map(|(id, _)| *id).collect();
        for id in ids {
            let s = self.serves.get_mut(&id).expect("listed");
            for f in std::mem::take(&mut s.held) {
                s.backlog.items.push_back(Out::Frame(f.encode()));
            }
            self.pump(id);
        }
    }

    /// Makes every commit integrated here durable: `fsync` of the log, or
    /// one transaction of the shared store.
    fn flush(&mut self) {
        if self.repo.is_none() {
            return;
        }
        if !self.unsynced() {
            self.dirty_since = None;
            self.flush_failed = None;
            self.release_held_if_clean();
            return;
        }
        let repo = self.repo.as_mut().expect("open");
        let t0 = Instant::now();
        let done = match &mut self.db {
            Some(db) => {
                let commits: Vec<(&[u8], &[u8])> = db.unstored.iter().filter_map(|id| repo.commit(id)).map(|c| (&c.id.0[..], c.bytes())).collect();
                match db.store.block(db.store.append(self.path.as_str(), &commits, now_ms())) {
                    Ok(done) => {
                        if done.contiguous && done.base == Some(db.last_seq) {
                            // Nobody stored anything in between: nothing to read back.
                            db.last_seq = done.last;
                        }
                        db.unstored.clear();
                        Ok(())
                    }
                    Err(e) => Err(Error::from(e)),
                }
            }
            None => tokio::task::block_in_place(|| repo.flush()),
        };
        match done {
            Ok(()) => {
                self.shared.metrics.flushed(t0.elapsed().as_micros() as u64);
                if self.flush_failed.take().is_some() {
                    tracing::info!(repo = %self.path, "storage works again: the backlog is flushed");
                }
                self.flush_reported = false;
                self.dirty_since = None;
                self.release_held_if_clean();
            }
            Err(e) => {
                Metrics::inc(&self.shared.metrics.flush_failures);
                tracing::error!(repo = %self.path, error = %e, "flush failed; retrying every 500 ms (nothing is acknowledged until it succeeds)");
                self.flush_failed = Some(Instant::now());
                if !self.flush_reported {
                    self.flush_reported = true;
                    for s in self.serves.values().filter(|s| !s.held.is_empty()) {
                        Self::send_error(&s.ep, self.path.as_str(), &e, None);
                    }
                }
            }
        }
    }

    fn certify(&mut self, cert: &Certificate) -> Result<(), Error> {
        if self.path.as_str() != SESSIONS {
            return Err(Error::Storage("certificates live in /sys/sessions".into()));
        }
        if !self.ensure_open() {
            return Err(self.open_error.as_ref().map_or_else(|| Error::Storage("unavailable".into()), |(e, _)| e.clone()));
        }
        let repo = self.repo.as_mut().expect("open");
        cert.write(repo, &self.shared.root, now_ms())?;
        let root = Endpoint::new(0, crate::outq::OutQueue::new(0, self.shared.metrics.clone()), self.shared.root.id(), true);
        self.after_change(None, &root, &Default::default());
        self.flush();
        if self.flush_failed.is_some() {
            return Err(Error::Storage("the certificate could not be written durably".into()));
        }
        self.shared.durable_certs().insert(cert.session);
        Ok(())
    }

    fn admin(&mut self, job: crate::admin::Job) -> Result<crate::admin::Done, Error> {
        if !self.ensure_open() {
            return Err(self.open_error.as_ref().map_or_else(|| Error::Storage("unavailable".into()), |(e, _)| e.clone()));
        }
        let shared = self.shared.clone();
        let repo = self.repo.as_mut().expect("open");
        let done = tokio::task::block_in_place(|| job.run(repo, &shared));
        // Whatever was written (all of it, or some before an error) is
        // relayed and flushed.
        let root = Endpoint::new(0, crate::outq::OutQueue::new(0, shared.metrics.clone()), shared.root.id(), true);
        self.after_change(None, &root, &Default::default());
        if self.dirty_since.is_some() {
            self.flush();
            if self.flush_failed.is_some() {
                return Err(Error::Storage("the new commits could not be written durably yet (retried every 500 ms)".into()));
            }
        }
        done
    }

    fn adopt(&mut self, commits: Vec<Vec<u8>>) {
        for b in commits {
            let Ok(c) = StoredCommit::parse(b.into_boxed_slice(), true) else { continue };
            let genuine = self.shared.trust().is_root(&c.session()) && c.verify().is_ok() && c.repo() == SESSIONS;
            let Some(cert) = Certificate::from_commit(&c).filter(|_| genuine) else {
                tracing::info!(repo = %self.path, "a client sent a certificate not signed by this root; ignored");
                continue;
            };
            if self.shared.durable_certs().contains(&cert.session) {
                continue;
            }
            tracing::info!(session = %cert.session, "restoring a certificate a client kept");
            if let Err(e) = self.certify(&cert) {
                tracing::warn!(error = %e, "cannot restore a certificate");
            }
        }
    }

    fn user(&mut self, email: &str) -> Result<String, Error> {
        if self.path.as_str() != USERS {
            return Err(Error::Storage("users live in /sys/users".into()));
        }
        if !self.ensure_open() {
            return Err(self.open_error.as_ref().map_or_else(|| Error::Storage("unavailable".into()), |(e, _)| e.clone()));
        }
        let repo = self.repo.as_mut().expect("open");
        // Users created before ids were keyed keep their id.
        let legacy = legacy_user_id(email);
        if let Some(h) = repo.head(&legacy)
            && h.data.fields.get("email") == Some(&Value::Str(email.to_owned()))
        {
            return Ok(legacy);
        }
        let id = user_id(&self.shared.user_secret, email);
        if repo.head(&id).is_none() {
            let mut fields = std::collections::BTreeMap::new();
            fields.insert("email".to_owned(), Value::Str(email.to_owned()));
            repo.write(&id, &SchemaId::new("ibex.user", 1), ItemData::new(fields), &self.shared.root, now_ms())?;
            let root = Endpoint::new(0, crate::outq::OutQueue::new(0, self.shared.metrics.clone()), self.shared.root.id(), true);
            self.after_change(None, &root, &Default::default());
            self.flush();
            if self.flush_failed.is_some() {
                return Err(Error::Storage("the user could not be written durably".into()));
            }
        }
        Ok(id)
    }
}
