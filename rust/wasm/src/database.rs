//! What the worker's engine does, in plain Rust (no JS types), so it is
//! tested natively: the open repositories of one database, the session key
//! that signs this replica's commits, the batch protocol of `batch.rs`, the
//! certificates it has received, and its connection to the server — the
//! shared client state machine of `ibex_core::sync::session`, which does
//! the handshake, reconciliation, pushes, acknowledgements and heartbeats
//! and verifies every received commit (signatures, certificates, write
//! rules): the client trusts the server for nothing it can check itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use ibex_core::codec::{Reader, Writer};
use ibex_core::log::{KIND_COMMIT, Log};
use ibex_core::sync::frame::Frame;
use ibex_core::sync::{ClientSession, Event as SyncEvent, RepoStore};
use ibex_core::trust::{SESSIONS, register_schemas};
use ibex_core::{CommitId, Error, LoadReport, Registry, RepoPath, Repository, Result, Rules, Schema, SessionId, SessionKey, Storage, StoredCommit, Trust};

use crate::batch::{Outcome, decode_mutations, encode_outcomes};

mod history;
pub use history::Filter;

/// Something the connection reported, for the JavaScript side.
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
    /// A login link's token belongs to this address.
    LoginIs(String),
    /// A commit from the server failed verification and was dropped.
    Rejected { repo: String, code: String, message: String },
}

fn random_nonce() -> [u8; 32] {
    let mut b = [0u8; 32];
    // Without a random source the handshake fails (the server checks the
    // signature over both nonces); never a panic.
    let _ = getrandom::fill(&mut b);
    b
}

/// The repositories of a database, as the sync session sees them.
struct Repos(BTreeMap<RepoPath, Repository>);

impl RepoStore for Repos {
    fn repo_mut(&mut self, path: &RepoPath) -> Option<&mut Repository> {
        self.0.get_mut(path)
    }
    fn repo_paths(&self) -> Vec<RepoPath> {
        self.0.keys().cloned().collect()
    }
}

/// One database on one replica.
pub struct Database {
    registry: Arc<Registry>,
    repos: Repos,
    /// Certificates received from servers, kept across restarts.
    certs: Option<Log>,
    sync: ClientSession,
    /// Items the last `mutate` committed (other tabs need their heads).
    last_mutated: Vec<(RepoPath, String)>,
    events: Vec<Event>,
}

impl Database {
    /// `schemas` = varint n, n × schema (binary encoding of `schema.rs`).
    pub fn new(session_seed: [u8; 32], schemas: &[u8]) -> Result<Database> {
        let mut registry = Registry::new();
        let mut r = Reader::new(schemas);
        let n = r.count("schema count", 4)?;
        for _ in 0..n {
            registry.register(Schema::decode(&mut r)?)?;
        }
        r.finish("schemas")?;
        register_schemas(&mut registry)?;
        Ok(Database {
            registry: Arc::new(registry),
            repos: Repos(BTreeMap::new()),
            certs: None,
            sync: ClientSession::new(SessionKey::from_seed(session_seed), Trust::new(Rules::default())),
            last_mutated: Vec::new(),
            events: Vec::new(),
        })
    }

    pub fn session(&self) -> &SessionKey {
        self.sync.conn.key()
    }

    /// Replaces the session key (after logging out): the next connection
    /// authenticates as the new session.
    pub fn set_session(&mut self, seed: [u8; 32]) {
        self.sync.conn.set_key(SessionKey::from_seed(seed));
        self.sync.disconnected();
    }

    /// Trusts `root` (hex public key): configured by the app, or the one
    /// remembered from the first connection. A server with another root is
    /// refused.
    pub fn trust_root(&mut self, root: &str) -> Result<()> {
        let id = SessionId(hex_key(root)?);
        id.check()?;
        self.sync.trust_mut().add_root(id);
        Ok(())
    }

    /// The user this session belongs to (id, e-mail if known) or `None`.
    pub fn user(&self) -> Option<(String, String)> {
        self.sync.conn.user()
    }

    /// Whether this session may write `repo` under the current rules.
    pub fn can_write(&self, repo: &str) -> bool {
        RepoPath::parse(repo).is_ok_and(|p| self.sync.trust().rules().can_write(&p, &self.sync.conn.me()))
    }

    /// Connection events since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        for e in self.sync.take_events() {
            self.events.push(match e {
                SyncEvent::Root(r) => Event::Root(r),
                SyncEvent::Welcome { user, email, expires } => Event::Welcome { user, email, expires },
                SyncEvent::Error { repo, code, message } => Event::Error { repo, code, message },
                SyncEvent::LoginSent(e) => Event::LoginSent(e),
                SyncEvent::LoginIs(e) => Event::LoginIs(e),
                SyncEvent::Rejected { repo, code, message } => Event::Rejected { repo, code, message },
                SyncEvent::Repos(_) => continue,
            });
        }
        std::mem::take(&mut self.events)
    }

    /// Commits from the network refused so far.
    pub fn rejected_count(&self) -> u64 {
        self.sync.rejected_count()
    }

    /// Opens a repository from its log (idempotent: an open repository is
    /// left as it is and reports nothing new). `/sys/sessions` holds the
    /// certificates this replica received.
    /// Opens a repository; with `checkpoint` storage, from its checkpoint
    /// (see `ibex_core::checkpoint`). `/sys/sessions` never has one: it is
    /// read whole into the trust store.
    pub fn open(&mut self, repo: &str, storage: Box<dyn Storage>, checkpoint: Option<Box<dyn Storage>>) -> Result<LoadReport> {
        let path = RepoPath::parse(repo)?;
        if path.as_str() == SESSIONS {
            if self.certs.is_some() {
                return Ok(LoadReport::default());
            }
            let (log, buf, scan) = Log::open(storage)?;
            let mut report = LoadReport { corrupt: scan.corrupt.clone(), truncated_bytes: scan.truncated_bytes, ..Default::default() };
            // Certificates are kept as plain commit records (kind 1).
            for (offset, _, payload) in scan.payloads(&buf) {
                // Certificates of a root this database no longer trusts, or
                // written before they were stored alone, are skipped: the
                // server sends them again when they are needed.
                match StoredCommit::parse(payload.into(), true).and_then(|c| self.sync.trust_mut().add_certificate(&c)) {
                    Ok(_) => report.commits += 1,
                    Err(e) => report.rejected.push((offset, e)),
                }
            }
            report.rejected.clear();
            self.certs = Some(log);
            return Ok(report);
        }
        if self.repos.0.contains_key(&path) {
            return Ok(LoadReport::default());
        }
        let (r, report) = match checkpoint {
            Some(ck) => Repository::open_checkpointed(path.clone(), self.registry.clone(), storage, ck)?,
            None => Repository::open(path.clone(), self.registry.clone(), storage)?,
        };
        self.repos.0.insert(path.clone(), r);
        self.sync.open(&mut self.repos, &path);
        Ok(report)
    }

    pub fn is_open(&self, repo: &str) -> bool {
        RepoPath::parse(repo).is_ok_and(|p| self.repos.0.contains_key(&p) || (p.as_str() == SESSIONS && self.certs.is_some()))
    }

    fn repo_mut(&mut self, repo: &str) -> Result<&mut Repository> {
        let path = RepoPath::parse(repo)?;
        self.repos.0.get_mut(&path).ok_or_else(|| Error::path(repo, "the repository is not open; open it first"))
    }

    /// Number of items and of commits in an open repository.
    pub fn counts(&mut self, repo: &str) -> Result<(usize, usize)> {
        let r = self.repo_mut(repo)?;
        Ok((r.len(), r.commit_count()))
    }

    /// Applies a batch of mutations (`batch.rs`) with the writer's clock
    /// `now` (clamped to the server's, see `ConnClient::commit_time`);
    /// returns one outcome per mutation. A failed mutation (one that cannot
    /// even be read included) changes nothing and does not stop the others. New commits are pushed to the server
    /// when connected (take them with [`Database::sync_frames`]).
    pub fn mutate(&mut self, batch: &[u8], now: i64) -> Result<Vec<u8>> {
        let mutations = decode_mutations(batch);
        let mut outcomes = Vec::with_capacity(mutations.len());
        self.last_mutated.clear();
        let me = self.sync.conn.me();
        let now = self.sync.conn.commit_time(now);
        let mut pushed: BTreeMap<RepoPath, Vec<CommitId>> = BTreeMap::new();
        for m in mutations {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    outcomes.push(Outcome::Failed(e));
                    continue;
                }
            };
            let session = self.session().clone();
            let allowed = self.sync.trust().rules().check_write(&m.repo, &me);
            let res = allowed.and_then(|_| self.repo_mut(m.repo.as_str())).and_then(|r| r.update(&m.key, &m.schema, &m.changes, &session, now));
            outcomes.push(match res {
                Ok(Some(id)) => {
                    pushed.entry(m.repo.clone()).or_default().push(id);
                    self.last_mutated.push((m.repo.clone(), m.key.clone()));
                    Outcome::Committed(id)
                }
                Ok(None) => Outcome::Unchanged,
                Err(e) => Outcome::Failed(e),
            });
        }
        for (path, ids) in pushed {
            self.sync.pushed(&mut self.repos, &path, &ids);
        }
        // Items written here are not "changed" for the main thread: it
        // already shows them. Remote commits will mark items changed.
        for r in self.repos.0.values_mut() {
            r.take_changed();
            r.take_integrated();
        }
        Ok(encode_outcomes(&outcomes))
    }

    /// Heads of the items the last `mutate` committed (`heads` format), for
    /// the other tabs sharing this engine.
    pub fn mutated_heads(&mut self) -> Vec<u8> {
        let items = std::mem::take(&mut self.last_mutated);
        let mut w = Writer::new();
        w.varint(items.len() as u64);
        for (path, key) in items {
            w.str(path.as_str());
            w.str(&key);
            if let Some(r) = self.repos.0.get_mut(&path) {
                r.encode_head(&key, &mut w);
            }
        }
        w.into_bytes()
    }

    /// The heads of an open repository's items `from .. from + count` in
    /// key order (`heads` in `batch.rs`): opening posts the first few
    /// before listing the rest, so a query has its first rows while the
    /// others are encoded.
    pub fn heads(&mut self, repo: &str, from: usize, count: usize) -> Result<Vec<u8>> {
        let r = self.repo_mut(repo)?;
        // In key order, the order of a query without `sortBy`: the main
        // thread's live queries then append each slice instead of placing
        // every item among those already there (Node, 100k items, a live
        // query: all loaded 330–420 → 220–250 ms), and their first rows
        // are final once the first slice arrives. From a checkpoint the
        // order costs no sort (its items are stored in it).
        let all = r.keys_in_order();
        let keys = all[from.min(all.len())..from.saturating_add(count).min(all.len())].to_vec();
        // Path, key, schema and a small value per head: sized so 100k heads
        // are not copied again and again as the buffer grows.
        let mut w = Writer::with_capacity(keys.len() * (repo.len() + 128));
        w.varint(keys.len() as u64);
        for k in &keys {
            w.str(repo);
            w.str(k);
            r.encode_head(k, &mut w);
        }
        Ok(w.into_bytes())
    }

    /// Heads of the items whose value changed other than by this replica's
    /// own mutations, since the last call.
    pub fn changed(&mut self) -> Vec<u8> {
        let mut w = Writer::new();
        let mut n = 0u64;
        let mut body = Writer::new();
        for (path, r) in &mut self.repos.0 {
            for k in r.take_changed() {
                body.str(path.as_str());
                body.str(&k);
                r.encode_head(&k, &mut body);
                n += 1;
            }
        }
        w.varint(n);
        w.raw(&body.into_bytes());
        w.into_bytes()
    }

    // ---- sync -----------------------------------------------------------

    /// The connection to the server opened.
    pub fn sync_connected(&mut self, now: i64) {
        self.sync.connected(now);
    }

    /// The connection closed (or was closed): everything is reconciled
    /// again on the next one.
    pub fn sync_disconnected(&mut self) {
        self.sync.disconnected();
    }

    /// Handles a frame from the server. `Err`: close the connection.
    pub fn sync_receive(&mut self, frame: &[u8], now: i64) -> Result<()> {
        let res = self.sync.receive(&mut self.repos, frame, now, random_nonce());
        self.keep_certificates()?;
        res
    }

    /// Timers (heartbeat, handshake timeout). `Err`: close the connection.
    pub fn sync_tick(&mut self, now: i64) -> Result<()> {
        self.sync.tick_with(&mut self.repos, now)
    }

    /// Frames to send to the server, in order.
    pub fn sync_frames(&mut self) -> Vec<Vec<u8>> {
        self.sync.take_frames()
    }

    /// Starts a round for every open repository (`db.sync()`).
    pub fn sync_now(&mut self) {
        self.sync.sync_now(&mut self.repos);
    }

    /// Stops waiting for the last `sync_now` (it was answered or timed out).
    pub fn sync_done(&mut self) {
        self.sync.sync_done();
    }

    /// The rounds of the last `sync_now` completed and everything is
    /// acknowledged, on a live connection.
    pub fn sync_complete(&self, now: i64) -> bool {
        self.sync.sync_complete(&self.repos, now)
    }

    /// Connected with a live link, every open repository reconciled on this
    /// connection, every local commit durable on the server, none refused.
    pub fn synced(&self, now: i64) -> bool {
        self.sync.synced(&self.repos, now)
    }

    /// Local commits not yet durable on the server.
    pub fn unacked(&self) -> usize {
        self.sync.unacked()
    }

    /// This replica's commits the server refused: `(repo, id hex, code, message)`.
    pub fn refused(&self) -> Vec<(String, String, String, String)> {
        self.sync.refused().into_iter().map(|(p, id, e)| (p.to_string(), id.to_hex(), e.code().to_owned(), e.to_string())).collect()
    }

    /// Repositories the server refused to let this session read.
    pub fn denied(&self) -> Vec<String> {
        self.sync.denied().into_iter().map(|p| p.to_string()).collect()
    }

    /// Asks the server to send a login link to `email`.
    pub fn login(&mut self, email: &str) -> Result<()> {
        let email = ibex_core::trust::normalize_email(email)?;
        self.sync.send_control(Frame::Login { email })
    }

    fn token(token: &str) -> Result<String> {
        if token.is_empty() || token.len() > ibex_core::sync::frame::MAX_TOKEN || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::Login("this is not a login token".into()));
        }
        Ok(token.to_owned())
    }

    /// Redeems a login link's token.
    pub fn redeem(&mut self, token: &str) -> Result<()> {
        let token = Self::token(token)?;
        self.sync.send_control(Frame::Redeem { token })
    }

    /// Asks which address a login token is for, without redeeming it.
    pub fn login_info(&mut self, token: &str) -> Result<()> {
        let token = Self::token(token)?;
        self.sync.send_control(Frame::LoginInfo { token })
    }

    /// Asks the server to expire this session's certificate.
    pub fn logout(&mut self) -> Result<()> {
        self.sync.send_control(Frame::Logout)
    }

    /// Appends certificates received since the last call to the
    /// certificate log (made durable by the next flush).
    fn keep_certificates(&mut self) -> Result<()> {
        let new = self.sync.take_certificates();
        if let Some(log) = &mut self.certs {
            for c in new {
                log.append(KIND_COMMIT, c.bytes())?;
            }
        }
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(l) = &mut self.certs {
            l.flush()?;
        }
        self.repos.0.values_mut().try_for_each(Repository::flush)
    }

    /// Flushes, then writes a checkpoint of every open repository (closing
    /// time: the next open reads no log).
    pub fn checkpoint(&mut self) -> Result<()> {
        self.flush()?;
        self.repos.0.values_mut().try_for_each(Repository::write_checkpoint)
    }

    /// Flushes and forgets a repository.
    pub fn close(&mut self, repo: &str) -> Result<()> {
        let path = RepoPath::parse(repo)?;
        if let Some(mut r) = self.repos.0.remove(&path) {
            r.flush()?;
            // Closing writes a checkpoint of everything: the next open reads
            // no log at all.
            r.write_checkpoint()?;
        }
        Ok(())
    }

    /// The repository as a log image (the on-disk format of `log.rs`, parents
    /// before children): a backup that [`Database::import`] — here or on any
    /// other replica — reads back.
    pub fn export(&mut self, repo: &str) -> Result<Vec<u8>> {
        let r = self.repo_mut(repo)?;
        // An export is the whole history: read what is only in the log.
        r.unseal()?;
        // Plain records only, under the format 1 header: builds from before
        // compact records can import it too.
        let mut out = ibex_core::log::header_of(1).to_vec();
        for c in r.commits_in_order() {
            out.extend_from_slice(&ibex_core::log::frame(KIND_COMMIT, c.bytes()));
        }
        Ok(out)
    }

    /// Merges a log image into an open repository. Every commit is decoded
    /// strictly and its signature verified before it is stored; bad ones are
    /// counted and skipped. Returns (new commits, rejected commits).
    pub fn import(&mut self, repo: &str, image: &[u8]) -> Result<(usize, usize)> {
        let scan = ibex_core::log::scan(image)?;
        let path = RepoPath::parse(repo)?;
        let trust = self.sync.trust();
        let r = self.repos.0.get_mut(&path).ok_or_else(|| Error::path(repo, "the repository is not open; open it first"))?;
        let (mut added, mut rejected) = (0, scan.corrupt.len() + usize::from(scan.truncated_bytes > 0));
        // A raw log of this repository (compact records) reads too.
        for (_, bytes) in ibex_core::compact::commits(image, &scan, path.as_str()) {
            let res = bytes.and_then(|b| StoredCommit::parse(b, true)).and_then(|c| {
                trust.verify(&c)?;
                r.insert_stored(c)
            });
            match res {
                Ok(ibex_core::Inserted::New { unblocked }) => added += 1 + unblocked,
                Ok(_) => {}
                Err(_) => rejected += 1,
            }
        }
        r.take_integrated();
        Ok((added, rejected))
    }

    /// Inserts a commit received from elsewhere (another replica): decoded
    /// strictly, signature verified, then integrated.
    pub fn receive(&mut self, repo: &str, bytes: &[u8]) -> Result<()> {
        let c = StoredCommit::parse(bytes.into(), true)?;
        self.sync.trust().verify(&c)?;
        let r = self.repo_mut(repo)?;
        r.insert_stored(c)?;
        r.take_integrated();
        Ok(())
    }
}

fn hex_key(s: &str) -> Result<[u8; 32]> {
    hex::decode(s).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| Error::BadKey(format!("`{}` is not a 64-character hex public key", s.chars().take(80).collect::<String>())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Mutation, encode_mutations};
    use ibex_core::sync::frame::{Role, auth_payload, welcome_payload};
    use ibex_core::{Certificate, Change, FieldDef, FieldType, ItemData, MemStorage, SchemaId, Value};

    /// Every item's encoded head by key: `heads` lists items in hash-map
    /// order, which differs between two opens of the same repository.
    fn heads_by_key(db: &mut Database, repo: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
        let r = db.repo_mut(repo).unwrap();
        let keys: Vec<String> = r.keys().map(str::to_owned).collect();
        keys.into_iter()
            .map(|k| {
                let mut w = Writer::new();
                assert!(r.encode_head(&k, &mut w));
                (k, w.into_bytes())
            })
            .collect()
    }

    fn schemas() -> Vec<u8> {
        let mut w = Writer::new();
        w.varint(1);
        Schema::new("task", 1).field("text", FieldDef::new(FieldType::String).required()).field("done", FieldDef::new(FieldType::Boolean).default(Value::Bool(false))).encode(&mut w);
        w.into_bytes()
    }

    fn put(key: &str, field: &str, v: Value) -> Mutation {
        Mutation { repo: RepoPath::parse("/data/todos").unwrap(), key: key.into(), schema: SchemaId::new("task", 1), changes: vec![Change::Put { field: field.into(), value: v }] }
    }

    fn outcomes(b: &[u8]) -> Vec<u8> {
        // Status bytes only (ids and messages skipped).
        let mut r = Reader::new(b);
        let n = r.varint("n").unwrap();
        (0..n)
            .map(|_| {
                let s = r.u8("s").unwrap();
                match s {
                    1 => {
                        r.take(32, "id").unwrap();
                    }
                    2 => {
                        r.str("code").unwrap();
                        r.str("msg").unwrap();
                    }
                    _ => {}
                }
                s
            })
            .collect()
    }

    #[test]
    fn mutate_reports_each_outcome_and_persists() {
        let mem = MemStorage::new();
        let mut rep = Database::new([1; 32], &schemas()).unwrap();
        rep.open("/data/todos", Box::new(mem.clone()), None).unwrap();
        let batch =
            encode_mutations(&[put("a", "text", Value::Str("milk".into())), put("a", "text", Value::Str("milk".into())), put("b", "text", Value::Num(3.0)), put("c", "nope", Value::Bool(true))]);
        assert_eq!(outcomes(&rep.mutate(&batch, 1000).unwrap()), vec![1, 0, 2, 2]);
        assert_eq!(rep.counts("/data/todos").unwrap(), (1, 1));
        assert_eq!(rep.unacked(), 1, "a local commit is unacknowledged until a server says so");
        rep.flush().unwrap();
        let mut again = Database::new([1; 32], &schemas()).unwrap();
        let report = again.open("/data/todos", Box::new(mem), None).unwrap();
        assert_eq!(report.commits, 1);
        assert_eq!(heads_by_key(&mut again, "/data/todos"), heads_by_key(&mut rep, "/data/todos"));
    }

    #[test]
    fn closing_writes_a_checkpoint_that_the_next_open_uses() {
        let (log, ck) = (MemStorage::new(), MemStorage::new());
        let mut rep = Database::new([1; 32], &schemas()).unwrap();
        let report = rep.open("/data/todos", Box::new(log.clone()), Some(Box::new(ck.clone()))).unwrap();
        assert_eq!(report.checkpoint, ibex_core::CheckpointUse::Created);
        let batch = encode_mutations(&[put("a", "text", Value::Str("milk".into())), put("b", "text", Value::Str("eggs".into()))]);
        rep.mutate(&batch, 1000).unwrap();
        let heads = heads_by_key(&mut rep, "/data/todos");
        assert_eq!(heads.len(), 2);
        rep.close("/data/todos").unwrap();
        let mut again = Database::new([1; 32], &schemas()).unwrap();
        let report = again.open("/data/todos", Box::new(log), Some(Box::new(ck))).unwrap();
        assert_eq!(report.checkpoint, ibex_core::CheckpointUse::Used { tail: 0 });
        assert_eq!(report.commits, 2);
        assert_eq!(heads_by_key(&mut again, "/data/todos"), heads);
    }

    #[test]
    fn every_batch_gets_one_outcome_per_write_even_unreadable_ones() {
        let mut rep = Database::new([1; 32], &schemas()).unwrap();
        rep.open("/data/todos", Box::new(MemStorage::new()), None).unwrap();
        // Two writes, the second cut short: the first commits, the second
        // fails alone, and nothing panics or errors the whole batch.
        let full = encode_mutations(&[put("a", "text", Value::Str("milk".into())), put("b", "text", Value::Str("eggs".into()))]);
        let cut = &full[..full.len() - 3];
        assert_eq!(outcomes(&rep.mutate(cut, 1000).unwrap()), vec![1, 2]);
        assert_eq!(rep.counts("/data/todos").unwrap().0, 1);
        // Garbage: one failure (not even the count could be read).
        assert_eq!(outcomes(&rep.mutate(&[0xff, 0xff, 0xff], 1001).unwrap()), vec![2]);
        // The engine goes on writing.
        assert_eq!(outcomes(&rep.mutate(&encode_mutations(&[put("c", "text", Value::Str("tea".into()))]), 1002).unwrap()), vec![1]);
    }

    #[test]
    fn remote_commits_are_reported_as_changed_local_ones_are_not() {
        let mut a = Database::new([1; 32], &schemas()).unwrap();
        let mut b = Database::new([2; 32], &schemas()).unwrap();
        a.open("/data/todos", Box::new(MemStorage::new()), None).unwrap();
        b.open("/data/todos", Box::new(MemStorage::new()), None).unwrap();
        a.mutate(&encode_mutations(&[put("x", "text", Value::Str("hi".into()))]), 5).unwrap();
        assert_eq!(a.changed(), vec![0]);
        let repo = a.repos.0.values().next().unwrap();
        let bytes: Vec<Vec<u8>> = repo.commit_ids().map(|id| repo.commit(&id).unwrap().bytes().to_vec()).collect();
        for c in &bytes {
            b.receive("/data/todos", c).unwrap();
        }
        let changed = b.changed();
        assert_ne!(changed, vec![0]);
        assert_eq!(changed[1..], a.heads("/data/todos", 0, usize::MAX).unwrap()[1..]);
        // A forged commit is refused.
        let mut forged = bytes[0].clone();
        let n = forged.len();
        forged[n - 1] ^= 1;
        assert_eq!(b.receive("/data/todos", &forged).unwrap_err().code(), "ERR_BAD_SIGNATURE");
    }

    #[test]
    fn export_then_import_merges_and_rejects_forgeries() {
        let mut a = Database::new([1; 32], &schemas()).unwrap();
        let mut b = Database::new([2; 32], &schemas()).unwrap();
        a.open("/data/todos", Box::new(MemStorage::new()), None).unwrap();
        b.open("/data/todos", Box::new(MemStorage::new()), None).unwrap();
        a.mutate(&encode_mutations(&[put("x", "text", Value::Str("one".into()))]), 5).unwrap();
        a.mutate(&encode_mutations(&[put("x", "text", Value::Str("two".into()))]), 6).unwrap();
        b.mutate(&encode_mutations(&[put("y", "text", Value::Str("mine".into()))]), 5).unwrap();
        let image = a.export("/data/todos").unwrap();
        assert_eq!(b.import("/data/todos", &image).unwrap(), (2, 0));
        assert_eq!(b.import("/data/todos", &image).unwrap(), (0, 0), "importing twice adds nothing");
        assert_eq!(b.counts("/data/todos").unwrap(), (2, 3));
        // A forged record (valid checksum, altered content) is rejected.
        let mut c = Database::new([3; 32], &schemas()).unwrap();
        c.open("/data/todos", Box::new(MemStorage::new()), None).unwrap();
        let scan = ibex_core::log::scan(&image).unwrap();
        let mut forged = ibex_core::log::header().to_vec();
        for (_, _, p) in scan.payloads(&image) {
            let mut p = p.to_vec();
            let i = p.len() - 70;
            p[i] ^= 1;
            forged.extend_from_slice(&ibex_core::log::frame(KIND_COMMIT, &p));
        }
        let (added, rejected) = c.import("/data/todos", &forged).unwrap();
        assert_eq!(added, 0);
        assert!(rejected >= 1);
    }

    #[test]
    fn unknown_repository_and_garbage_batches_are_errors() {
        let mut rep = Database::new([1; 32], &schemas()).unwrap();
        let out = rep.mutate(&encode_mutations(&[put("a", "text", Value::Str("x".into()))]), 1).unwrap();
        assert_eq!(outcomes(&out), vec![2]);
        assert_eq!(outcomes(&rep.mutate(&[0xff, 0xff], 1).unwrap()), vec![2]);
        assert!(Database::new([1; 32], &[5, 1, 2]).is_err());
    }

    /// Runs the handshake against a fake server holding `root`; returns
    /// the frames the database sent after the welcome.
    fn handshake(db: &mut Database, root: &SessionKey, user: &str) -> Vec<Frame> {
        db.sync_connected(1);
        db.sync_receive(&Frame::hello([1; 32], root, 1_000, Rules::default().to_string()).encode(), 1).unwrap();
        let auth = Frame::decode(&db.sync_frames()[0]).unwrap();
        let Frame::Auth { role, session, nonce, sig, .. } = auth else { panic!("expected auth") };
        session.verify(&auth_payload(role, &[1; 32], &nonce, &root.id()), &sig).unwrap();
        let proof = root.sign(&welcome_payload(Role::Client, &[1; 32], &nonce, &session));
        db.sync_receive(&Frame::Welcome { user: user.into(), email: "a@x.org".into(), expires: 10_000, time: 1_000, sig: proof }.encode(), 2).unwrap();
        db.sync_frames().iter().map(|f| Frame::decode(f).unwrap()).collect()
    }

    /// A malicious relay (it holds no root key, but can send anything it
    /// has seen): the database must refuse what the rules forbid, and a
    /// server that cannot prove it holds the root key.
    #[test]
    fn client_rejects_unauthorized_write_from_a_malicious_relay() {
        let root = SessionKey::from_seed([9; 32]);
        let (alice, bob) = (SessionKey::from_seed([2; 32]), SessionKey::from_seed([3; 32]));
        let mut reg = Registry::new();
        register_schemas(&mut reg).unwrap();
        let mut sessions = Repository::new(RepoPath::parse(SESSIONS).unwrap(), Arc::new(reg));
        let mut certs = Vec::new();
        for (k, u) in [(&alice, "alice"), (&bob, "bob")] {
            let id = Certificate { session: k.id(), owner: Some(u.into()), expires: 10_000, issued: None }.write(&mut sessions, &root, 1).unwrap().unwrap();
            certs.push(sessions.commit(&id).unwrap().bytes().to_vec());
        }
        let mut db = Database::new([2; 32], &schemas()).unwrap();
        db.open(SESSIONS, Box::new(MemStorage::new()), None).unwrap();
        db.open("/user/alice", Box::new(MemStorage::new()), None).unwrap();
        // Nothing is accepted before the handshake.
        let cert_frame = Frame::Commits { repo: RepoPath::parse(SESSIONS).unwrap(), commits: certs.clone() }.encode();
        assert_eq!(db.sync_receive(&cert_frame, 1).unwrap_err().code(), "ERR_HANDSHAKE");
        db.sync_disconnected();
        let after = handshake(&mut db, &root, "alice");
        assert!(matches!(&after[..], [Frame::Begin { .. }]), "the welcome starts a round for every open repository: {after:?}");
        assert_eq!(db.take_events()[0], Event::Root(root.id().to_hex()));
        db.sync_receive(&cert_frame, 3).unwrap();
        assert_eq!(db.user(), Some(("alice".into(), "a@x.org".into())));
        assert!(db.can_write("/user/alice") && !db.can_write("/user/bob"));
        // Bob's write to alice's repository, relayed by the malicious server.
        let mut forged_repo = Repository::new(RepoPath::parse("/user/alice").unwrap(), db.registry.clone());
        let mut f = std::collections::BTreeMap::new();
        f.insert("text".to_owned(), Value::Str("bob was here".into()));
        let id = forged_repo.write("x", &SchemaId::new("task", 1), ItemData::new(f), &bob, 5).unwrap().unwrap();
        let frame = Frame::Commits { repo: RepoPath::parse("/user/alice").unwrap(), commits: vec![forged_repo.commit(&id).unwrap().bytes().to_vec()] }.encode();
        db.sync_receive(&frame, 4).unwrap();
        assert_eq!(db.counts("/user/alice").unwrap(), (0, 0), "the forbidden commit was stored");
        assert_eq!(db.rejected_count(), 1);
        assert!(db.take_events().iter().any(|e| matches!(e, Event::Rejected { code, .. } if code == "ERR_FORBIDDEN")));
        // The relay is told, with an error frame.
        assert!(db.sync_frames().iter().any(|f| matches!(Frame::decode(f).unwrap(), Frame::Error { code, .. } if code == "ERR_FORBIDDEN")));
        // The same write by alice herself is accepted.
        let mut ok_repo = Repository::new(RepoPath::parse("/user/alice").unwrap(), db.registry.clone());
        let mut f = std::collections::BTreeMap::new();
        f.insert("text".to_owned(), Value::Str("mine".into()));
        let id = ok_repo.write("y", &SchemaId::new("task", 1), ItemData::new(f), &alice, 5).unwrap().unwrap();
        db.sync_receive(&Frame::Commits { repo: RepoPath::parse("/user/alice").unwrap(), commits: vec![ok_repo.commit(&id).unwrap().bytes().to_vec()] }.encode(), 5).unwrap();
        assert_eq!(db.counts("/user/alice").unwrap(), (1, 1));
        // Writing bob's repository locally is refused too.
        db.open("/user/bob", Box::new(MemStorage::new()), None).unwrap();
        let m = Mutation {
            repo: RepoPath::parse("/user/bob").unwrap(),
            key: "k".into(),
            schema: SchemaId::new("task", 1),
            changes: vec![Change::Put { field: "text".into(), value: Value::Str("x".into()) }],
        };
        assert_eq!(outcomes(&db.mutate(&encode_mutations(&[m]), 6).unwrap()), vec![2]);
        // A server with another root key is refused on the next connection.
        db.sync_disconnected();
        db.sync_connected(10);
        let impostor = SessionKey::from_seed([10; 32]);
        assert_eq!(db.sync_receive(&Frame::hello([2; 32], &impostor, 1, Rules::default().to_string()).encode(), 10).unwrap_err().code(), "ERR_HANDSHAKE");
        // A relay that replays the real server's hello but cannot sign the
        // welcome over this connection's nonces is refused.
        db.sync_disconnected();
        db.sync_connected(11);
        db.sync_receive(&Frame::hello([1; 32], &root, 1_000, Rules::default().to_string()).encode(), 11).unwrap();
        let _auth = db.sync_frames();
        let replayed = Frame::Welcome { user: "alice".into(), email: String::new(), expires: 10_000, time: 1, sig: [7; 64] };
        assert_eq!(db.sync_receive(&replayed.encode(), 12).unwrap_err().code(), "ERR_HANDSHAKE");
    }

    #[test]
    fn a_server_on_another_protocol_version_is_named_not_hung() {
        let root = SessionKey::from_seed([9; 32]);
        let mut db = Database::new([2; 32], &schemas()).unwrap();
        db.sync_connected(1);
        let Frame::Hello { nonce, root: r, time, rules, sig, .. } = Frame::hello([1; 32], &root, 1, String::new()) else { unreachable!() };
        let future = Frame::Hello { min: 7, max: 9, nonce, root: r, time, rules, sig };
        let e = db.sync_receive(&future.encode(), 1).unwrap_err();
        assert_eq!(e.code(), "ERR_VERSION");
        assert!(e.to_string().contains("7–9") && e.to_string().contains('2'), "{e}");
    }
}
