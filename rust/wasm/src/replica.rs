//! What the worker's engine does, in plain Rust (no JS types), so it is
//! tested natively: the open repositories of one database, the session that
//! signs this replica's commits, the batch protocol of `batch.rs`, and this
//! replica's side of the connection to the server: the handshake
//! (`ibex_core::handshake`), then reconciliation, with every received
//! commit checked by `Trust::verify` — the client trusts the server for
//! nothing it can check itself (signatures, certificates, write rules).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ibex_core::codec::{Reader, Writer};
use ibex_core::handshake::{Control, is_control};
use ibex_core::sync::{Message, Reconciler};
use ibex_core::trust::{SESSIONS, register_schemas};
use ibex_core::{CommitId, Error, HistoryEntry, LoadReport, Principal, Registry, RepoPath, Repository, Result, Rules, Schema, SessionId, SessionKey, Storage, Trust};

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
    /// A commit from the server failed verification and was dropped.
    Rejected { repo: String, code: String, message: String },
}

/// Error frames sent back per received frame (the rest are counted).
const MAX_ERRORS_PER_FRAME: usize = 8;

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // Seeds only vary Bloom hashing; a fixed fallback is safe.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

use crate::batch::{Outcome, decode_mutations, encode_outcomes};

/// One database on one replica.
pub struct Replica {
    registry: Arc<Registry>,
    session: SessionKey,
    repos: BTreeMap<RepoPath, Repository>,
    /// Sync with the server: one reconciliation per repository.
    sync: BTreeMap<RepoPath, Reconciler>,
    /// Local commits not yet pushed to the server, per repository.
    to_push: BTreeMap<RepoPath, Vec<CommitId>>,
    /// Items the last `mutate` committed (other tabs need their heads).
    last_mutated: Vec<(RepoPath, String)>,
    /// Trusted roots, the server's rules, known certificates.
    trust: Trust,
    /// The current connection: hello seen (root and rules known)…
    hello: Option<([u8; 32], SessionId)>,
    /// …and welcome received (this session is certified).
    welcomed: bool,
    /// The user of this session, from the last welcome: (id, e-mail).
    user: Option<(String, String)>,
    /// Repositories the server refused to let this session read.
    denied: BTreeSet<RepoPath>,
    events: Vec<Event>,
    /// Commits from the network that failed verification, ever.
    rejected: u64,
}

impl Replica {
    /// `schemas` = varint n, n × schema (binary encoding of `schema.rs`).
    pub fn new(session_seed: [u8; 32], schemas: &[u8]) -> Result<Replica> {
        let mut registry = Registry::new();
        let mut r = Reader::new(schemas);
        let n = r.count("schema count", 4)?;
        for _ in 0..n {
            registry.register(Schema::decode(&mut r)?)?;
        }
        r.finish("schemas")?;
        register_schemas(&mut registry)?;
        Ok(Replica {
            registry: Arc::new(registry),
            session: SessionKey::from_seed(session_seed),
            repos: BTreeMap::new(),
            sync: BTreeMap::new(),
            to_push: BTreeMap::new(),
            last_mutated: Vec::new(),
            trust: Trust::new(Rules::default()),
            hello: None,
            welcomed: false,
            user: None,
            denied: BTreeSet::new(),
            events: Vec::new(),
            rejected: 0,
        })
    }

    pub fn session(&self) -> &SessionKey {
        &self.session
    }

    /// Replaces the session key (after logging out): the next connection
    /// authenticates as the new session.
    pub fn set_session(&mut self, seed: [u8; 32]) {
        self.session = SessionKey::from_seed(seed);
        self.user = None;
        self.sync_reset();
    }

    /// Trusts `root` (hex public key): configured by the app, or the one
    /// remembered from the first connection. A server with another root is
    /// refused.
    pub fn trust_root(&mut self, root: &str) -> Result<()> {
        let id = SessionId(hex_key(root)?);
        id.check()?;
        self.trust.add_root(id);
        Ok(())
    }

    /// Who this replica's session is, for the write rules: its certificate's
    /// user, or anonymous (a new replica writes before it is first
    /// certified; the server judges those commits when they arrive).
    fn me(&self) -> Principal {
        let id = self.session.id();
        if self.trust.is_root(&id) {
            return Principal::Root;
        }
        Principal::Session { user: self.trust.certificate(&id).and_then(|c| c.owner.clone()) }
    }

    /// The user this session belongs to (id, e-mail if known) or `None`.
    pub fn user(&self) -> Option<(String, String)> {
        if let Some((u, e)) = &self.user
            && !u.is_empty()
        {
            return Some((u.clone(), e.clone()));
        }
        let owner = self.trust.certificate(&self.session.id())?.owner.clone()?;
        Some((owner, String::new()))
    }

    /// Whether this session may write `repo` under the current rules.
    pub fn can_write(&self, repo: &str) -> bool {
        RepoPath::parse(repo).is_ok_and(|p| self.trust.rules().can_write(&p, &self.me()))
    }

    /// Connection events since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Commits from the network refused so far.
    pub fn rejected_count(&self) -> u64 {
        self.rejected
    }

    /// A `login` frame asking the server for a link.
    pub fn login_frame(&self, email: &str) -> Result<Vec<u8>> {
        Ok(Control::Login { email: ibex_core::handshake::normalize_email(email)? }.encode())
    }

    /// A `redeem` frame for the token of a login link.
    pub fn redeem_frame(&self, token: &str) -> Result<Vec<u8>> {
        if token.is_empty() || token.len() > ibex_core::handshake::MAX_TOKEN || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::Login("this is not a login token".into()));
        }
        Ok(Control::Redeem { token: token.to_owned() }.encode())
    }

    pub fn logout_frame(&self) -> Vec<u8> {
        Control::Logout.encode()
    }

    /// Opens a repository from its log (idempotent: an open repository is
    /// left as it is and reports nothing new).
    pub fn open(&mut self, repo: &str, storage: Box<dyn Storage>) -> Result<LoadReport> {
        let path = RepoPath::parse(repo)?;
        if self.repos.contains_key(&path) {
            return Ok(LoadReport::default());
        }
        let (mut r, report) = Repository::open(path.clone(), self.registry.clone(), storage)?;
        if path.as_str() == SESSIONS {
            self.trust.refresh_all(&mut r);
        }
        self.repos.insert(path, r);
        Ok(report)
    }

    pub fn is_open(&self, repo: &str) -> bool {
        RepoPath::parse(repo).is_ok_and(|p| self.repos.contains_key(&p))
    }

    fn repo_mut(&mut self, repo: &str) -> Result<&mut Repository> {
        let path = RepoPath::parse(repo)?;
        self.repos.get_mut(&path).ok_or_else(|| Error::path(repo, "the repository is not open; open it first"))
    }

    /// Number of items and of commits in an open repository.
    pub fn counts(&mut self, repo: &str) -> Result<(usize, usize)> {
        let r = self.repo_mut(repo)?;
        Ok((r.len(), r.commit_count()))
    }

    /// Applies a batch of mutations (`batch.rs`) with the writer's clock
    /// `now`; returns one outcome per mutation. A failed mutation changes
    /// nothing and does not stop the others.
    pub fn mutate(&mut self, batch: &[u8], now: i64) -> Result<Vec<u8>> {
        let mutations = decode_mutations(batch)?;
        let mut outcomes = Vec::with_capacity(mutations.len());
        self.last_mutated.clear();
        let me = self.me();
        for m in mutations {
            let session = self.session.clone();
            let allowed = self.trust.rules().check_write(&m.repo, &me);
            let res = allowed.and_then(|_| self.repo_mut(m.repo.as_str())).and_then(|r| r.update(&m.key, &m.schema, &m.changes, &session, now));
            outcomes.push(match res {
                Ok(Some(id)) => {
                    self.to_push.entry(m.repo.clone()).or_default().push(id);
                    self.last_mutated.push((m.repo.clone(), m.key.clone()));
                    Outcome::Committed(id)
                }
                Ok(None) => Outcome::Unchanged,
                Err(e) => Outcome::Failed(e),
            });
        }
        // Items written here are not "changed" for the main thread: it
        // already shows them. Remote commits will mark items changed.
        for r in self.repos.values_mut() {
            r.take_changed();
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
            if let Some(r) = self.repos.get_mut(&path) {
                r.encode_head(&key, &mut w);
            }
        }
        w.into_bytes()
    }

    /// Every head of an open repository (`heads` in `batch.rs`).
    pub fn heads(&mut self, repo: &str) -> Result<Vec<u8>> {
        let r = self.repo_mut(repo)?;
        let keys: Vec<Arc<str>> = r.keys().map(Arc::from).collect();
        let mut w = Writer::with_capacity(keys.len() * 64);
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
        for (path, r) in &mut self.repos {
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

    /// The opening frame of a reconciliation of `repo` with the server
    /// (`rust/core/src/sync.rs`); local commits made before it need no
    /// separate push. Empty until the server has welcomed this session
    /// (the welcome starts every open repository).
    pub fn sync_start(&mut self, repo: &str, seed: u64) -> Result<Vec<u8>> {
        let path = RepoPath::parse(repo)?;
        let r = self.repos.get(&path).ok_or_else(|| Error::path(repo, "the repository is not open; open it first"))?;
        if !self.welcomed || self.denied.contains(&path) {
            return Ok(Vec::new());
        }
        let rec = self.sync.entry(path.clone()).or_insert_with(|| Reconciler::new(path.clone(), seed));
        self.to_push.remove(&path);
        Ok(rec.start(r).encode())
    }

    /// Handles a frame from the server; returns the frames to send back
    /// (`varint n, n × bytes`). Received commits are verified first.
    pub fn sync_handle(&mut self, frame: &[u8]) -> Result<Vec<u8>> {
        let replies = if is_control(frame) { self.control(frame)? } else { self.sync_frame(frame)? };
        let mut w = Writer::new();
        w.varint(replies.len() as u64);
        for r in replies {
            w.bytes(&r);
        }
        Ok(w.into_bytes())
    }

    fn control(&mut self, frame: &[u8]) -> Result<Vec<Vec<u8>>> {
        match Control::decode(frame)? {
            hello @ Control::Hello { .. } => {
                let (nonce, root, rules) = hello.verify_hello()?;
                if self.trust.has_roots() && !self.trust.is_root(&root) {
                    return Err(Error::Handshake(format!("the server's root key {} is not the one this database trusts; refusing to sync", root.to_hex())));
                }
                if !self.trust.is_root(&root) {
                    self.trust.add_root(root);
                    self.events.push(Event::Root(root.to_hex()));
                }
                self.trust.set_rules(Rules::parse(rules)?);
                self.hello = Some((*nonce, root));
                self.welcomed = false;
                Ok(vec![Control::auth(&self.session, nonce, &root).encode()])
            }
            Control::Welcome { user, email, expires } => {
                if self.hello.is_none() {
                    return Err(Error::Handshake("welcome before hello".into()));
                }
                self.welcomed = true;
                self.user = Some((user.clone(), email.clone()));
                self.events.push(Event::Welcome { user, email, expires });
                // Certificates first: they decide whether other commits are valid.
                let mut paths: Vec<RepoPath> = self.repos.keys().filter(|p| !self.denied.contains(*p)).cloned().collect();
                paths.sort_by_key(|p| p.as_str() != SESSIONS);
                let mut out = Vec::new();
                for p in paths {
                    let f = self.sync_start(p.as_str(), random_seed())?;
                    if !f.is_empty() {
                        out.push(f);
                    }
                }
                Ok(out)
            }
            Control::Error { repo, code, message } => {
                if code == "ERR_FORBIDDEN"
                    && let Ok(p) = RepoPath::parse(&repo)
                {
                    self.sync.remove(&p);
                    self.denied.insert(p);
                }
                self.events.push(Event::Error { repo, code, message });
                Ok(Vec::new())
            }
            Control::LoginSent { email } => {
                self.events.push(Event::LoginSent(email));
                Ok(Vec::new())
            }
            other => Err(Error::Handshake(format!("unexpected frame from the server: {other:?}"))),
        }
    }

    fn sync_frame(&mut self, frame: &[u8]) -> Result<Vec<Vec<u8>>> {
        if self.hello.is_none() {
            return Err(Error::Handshake("sync frame before hello".into()));
        }
        let msg = Message::decode(frame)?;
        let path = msg.repo().clone();
        let Some(repo) = self.repos.get_mut(&path) else {
            // Not open here (closed meanwhile): nothing to do.
            return Ok(Vec::new());
        };
        let rec = self.sync.entry(path.clone()).or_insert_with(|| Reconciler::new(path.clone(), random_seed()));
        let trust = &self.trust;
        let handled = rec.handle(repo, msg, &|c| trust.verify(c))?;
        if path.as_str() == SESSIONS && !handled.inserted.is_empty() {
            let keys: BTreeSet<String> = handled.inserted.iter().filter_map(|id| repo.commit(id).map(|c| c.key.to_string())).collect();
            self.trust.refresh(repo, keys.iter().map(String::as_str));
        }
        let mut out: Vec<Vec<u8>> = Vec::new();
        self.rejected += handled.rejected.len() as u64;
        for (i, e) in handled.rejected.iter().enumerate() {
            if i < MAX_ERRORS_PER_FRAME {
                self.events.push(Event::Rejected { repo: path.to_string(), code: e.code().into(), message: e.to_string() });
                out.push(Control::error(path.as_str(), e).encode());
            }
        }
        out.extend(handled.replies.iter().map(Message::encode));
        Ok(out)
    }

    /// True when the server welcomed this session, every open repository it
    /// may read has completed a reconciliation, and nothing local is
    /// waiting to be pushed.
    pub fn synced(&self) -> bool {
        self.welcomed
            && self.repos.keys().filter(|p| !self.denied.contains(*p)).all(|p| self.sync.get(p).is_some_and(Reconciler::is_synced))
            && self.to_push.iter().all(|(p, ids)| ids.is_empty() || self.denied.contains(p))
    }

    /// Repositories the server refused to let this session read.
    pub fn denied(&self) -> impl Iterator<Item = &str> {
        self.denied.iter().map(RepoPath::as_str)
    }

    /// Frames carrying local commits made since the last call (live push).
    pub fn push_frames(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (path, ids) in std::mem::take(&mut self.to_push) {
            let Some(r) = self.repos.get(&path) else { continue };
            out.extend(Message::commits(&path, ids.iter().filter_map(|id| r.commit(id))).iter().map(Message::encode));
        }
        out
    }

    /// The connection dropped: every repository must reconcile again, after
    /// a new handshake.
    pub fn sync_reset(&mut self) {
        self.sync.clear();
        self.hello = None;
        self.welcomed = false;
        self.denied.clear();
    }

    /// Makes everything written so far durable.
    pub fn flush(&mut self) -> Result<()> {
        self.repos.values_mut().try_for_each(Repository::flush)
    }

    pub fn history(&mut self, repo: &str, key: &str) -> Result<Vec<HistoryEntry>> {
        self.repo_mut(repo)?.history(key)
    }

    /// Flushes and forgets a repository.
    pub fn close(&mut self, repo: &str) -> Result<()> {
        let path = RepoPath::parse(repo)?;
        if let Some(mut r) = self.repos.remove(&path) {
            r.flush()?;
        }
        Ok(())
    }

    /// The repository as a log image (the on-disk format of `log.rs`, parents
    /// before children): a backup that [`Replica::import`] — here or on any
    /// other replica — reads back.
    pub fn export(&mut self, repo: &str) -> Result<Vec<u8>> {
        let r = self.repo_mut(repo)?;
        let mut out = ibex_core::log::header().to_vec();
        for c in r.commits_in_order() {
            out.extend_from_slice(&ibex_core::log::frame(ibex_core::log::KIND_COMMIT, c.bytes()));
        }
        Ok(out)
    }

    /// Merges a log image into an open repository. Every commit is decoded
    /// strictly and its signature verified before it is stored; bad ones are
    /// counted and skipped. Returns (new commits, rejected commits).
    pub fn import(&mut self, repo: &str, image: &[u8]) -> Result<(usize, usize)> {
        let scan = ibex_core::log::scan(image)?;
        let path = RepoPath::parse(repo)?;
        let trust = &self.trust;
        let r = self.repos.get_mut(&path).ok_or_else(|| Error::path(repo, "the repository is not open; open it first"))?;
        let (mut added, mut rejected) = (0, scan.corrupt.len() + usize::from(scan.truncated_bytes > 0));
        for (_, payload) in scan.payloads(image) {
            let res = ibex_core::StoredCommit::parse(payload.into(), true).and_then(|c| {
                trust.verify(&c)?;
                r.insert_stored(c)
            });
            match res {
                Ok(ibex_core::Inserted::New { unblocked }) => added += 1 + unblocked,
                Ok(_) => {}
                Err(_) => rejected += 1,
            }
        }
        Ok((added, rejected))
    }

    /// Inserts a commit received from elsewhere (another replica): decoded
    /// strictly, signature verified, then integrated.
    pub fn receive(&mut self, repo: &str, bytes: &[u8]) -> Result<()> {
        let c = ibex_core::StoredCommit::parse(bytes.into(), true)?;
        self.trust.verify(&c)?;
        self.repo_mut(repo)?.insert_stored(c).map(|_| ())
    }
}

fn hex_key(s: &str) -> Result<[u8; 32]> {
    hex::decode(s).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| Error::BadKey(format!("`{}` is not a 64-character hex public key", s.chars().take(80).collect::<String>())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Mutation, encode_mutations};
    use ibex_core::{Change, FieldDef, FieldType, MemStorage, SchemaId, Value};

    fn schemas() -> Vec<u8> {
        let mut w = Writer::new();
        w.varint(1);
        Schema::new("task", 1)
            .field("text", FieldDef::new(FieldType::String).required())
            .field("done", FieldDef::new(FieldType::Boolean).default(Value::Bool(false)))
            .encode(&mut w);
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
        let mut rep = Replica::new([1; 32], &schemas()).unwrap();
        rep.open("/data/todos", Box::new(mem.clone())).unwrap();
        let batch = encode_mutations(&[
            put("a", "text", Value::Str("milk".into())),
            put("a", "text", Value::Str("milk".into())),
            put("b", "text", Value::Num(3.0)),
            put("c", "nope", Value::Bool(true)),
        ]);
        assert_eq!(outcomes(&rep.mutate(&batch, 1000).unwrap()), vec![1, 0, 2, 2]);
        assert_eq!(rep.counts("/data/todos").unwrap(), (1, 1));
        rep.flush().unwrap();
        let mut again = Replica::new([1; 32], &schemas()).unwrap();
        let report = again.open("/data/todos", Box::new(mem)).unwrap();
        assert_eq!(report.commits, 1);
        assert_eq!(again.heads("/data/todos").unwrap(), rep.heads("/data/todos").unwrap());
    }

    #[test]
    fn remote_commits_are_reported_as_changed_local_ones_are_not() {
        let mut a = Replica::new([1; 32], &schemas()).unwrap();
        let mut b = Replica::new([2; 32], &schemas()).unwrap();
        a.open("/data/todos", Box::new(MemStorage::new())).unwrap();
        b.open("/data/todos", Box::new(MemStorage::new())).unwrap();
        a.mutate(&encode_mutations(&[put("x", "text", Value::Str("hi".into()))]), 5).unwrap();
        assert_eq!(a.changed(), vec![0]);
        let repo = a.repos.values().next().unwrap();
        let bytes: Vec<Vec<u8>> = repo.commit_ids().map(|id| repo.commit(id).unwrap().bytes().to_vec()).collect();
        for c in &bytes {
            b.receive("/data/todos", c).unwrap();
        }
        let changed = b.changed();
        assert_ne!(changed, vec![0]);
        assert_eq!(changed[1..], a.heads("/data/todos").unwrap()[1..]);
        // A forged commit is refused.
        let mut forged = bytes[0].clone();
        let n = forged.len();
        forged[n - 1] ^= 1;
        assert_eq!(b.receive("/data/todos", &forged).unwrap_err().code(), "ERR_BAD_SIGNATURE");
    }

    #[test]
    fn export_then_import_merges_and_rejects_forgeries() {
        let mut a = Replica::new([1; 32], &schemas()).unwrap();
        let mut b = Replica::new([2; 32], &schemas()).unwrap();
        a.open("/data/todos", Box::new(MemStorage::new())).unwrap();
        b.open("/data/todos", Box::new(MemStorage::new())).unwrap();
        a.mutate(&encode_mutations(&[put("x", "text", Value::Str("one".into()))]), 5).unwrap();
        a.mutate(&encode_mutations(&[put("x", "text", Value::Str("two".into()))]), 6).unwrap();
        b.mutate(&encode_mutations(&[put("y", "text", Value::Str("mine".into()))]), 5).unwrap();
        let image = a.export("/data/todos").unwrap();
        assert_eq!(b.import("/data/todos", &image).unwrap(), (2, 0));
        assert_eq!(b.import("/data/todos", &image).unwrap(), (0, 0), "importing twice adds nothing");
        assert_eq!(b.counts("/data/todos").unwrap(), (2, 3));
        // A forged record (valid checksum, altered content) is rejected.
        let mut c = Replica::new([3; 32], &schemas()).unwrap();
        c.open("/data/todos", Box::new(MemStorage::new())).unwrap();
        let scan = ibex_core::log::scan(&image).unwrap();
        let mut forged = ibex_core::log::header().to_vec();
        for (_, p) in scan.payloads(&image) {
            let mut p = p.to_vec();
            let i = p.len() - 70;
            p[i] ^= 1;
            forged.extend_from_slice(&ibex_core::log::frame(ibex_core::log::KIND_COMMIT, &p));
        }
        let (added, rejected) = c.import("/data/todos", &forged).unwrap();
        assert_eq!(added, 0);
        assert!(rejected >= 1);
    }

    #[test]
    fn unknown_repository_and_garbage_batches_are_errors() {
        let mut rep = Replica::new([1; 32], &schemas()).unwrap();
        let out = rep.mutate(&encode_mutations(&[put("a", "text", Value::Str("x".into()))]), 1).unwrap();
        assert_eq!(outcomes(&out), vec![2]);
        assert!(rep.mutate(&[0xff, 0xff], 1).is_err());
        assert!(Replica::new([1; 32], &[5, 1, 2]).is_err());
    }

    /// A malicious relay (it holds no root key, but can send anything it
    /// has seen): the replica must refuse what the rules forbid.
    #[test]
    fn client_rejects_unauthorized_write_from_a_malicious_relay() {
        use ibex_core::{Certificate, ItemData};
        let root = SessionKey::from_seed([9; 32]);
        let (alice, bob) = (SessionKey::from_seed([2; 32]), SessionKey::from_seed([3; 32]));
        let mut reg = Registry::new();
        register_schemas(&mut reg).unwrap();
        let mut sessions = Repository::new(RepoPath::parse(SESSIONS).unwrap(), Arc::new(reg));
        for (k, u) in [(&alice, "alice"), (&bob, "bob")] {
            Certificate { session: k.id(), owner: Some(u.into()), expires: 10_000 }.write(&mut sessions, &root, 1).unwrap();
        }
        let mut rep = Replica::new([2; 32], &schemas()).unwrap();
        rep.open(SESSIONS, Box::new(MemStorage::new())).unwrap();
        rep.open("/user/alice", Box::new(MemStorage::new())).unwrap();
        // Nothing is accepted before the handshake.
        let certs = Message::commits(sessions.path(), sessions.commits_in_order()).remove(0).encode();
        assert_eq!(rep.sync_handle(&certs).unwrap_err().code(), "ERR_HANDSHAKE");
        let replies = rep.sync_handle(&Control::hello([1; 32], &root, Rules::default().to_string()).encode()).unwrap();
        let mut r = Reader::new(&replies);
        assert_eq!(r.varint("n").unwrap(), 1);
        let auth = Control::decode(r.bytes("auth").unwrap()).unwrap();
        assert_eq!(auth.verify_auth(&[1; 32], &root.id()).unwrap(), rep.session().id());
        assert_eq!(rep.take_events(), vec![Event::Root(root.id().to_hex())]);
        rep.sync_handle(&certs).unwrap();
        rep.sync_handle(&Control::Welcome { user: "alice".into(), email: "a@x.org".into(), expires: 10_000 }.encode()).unwrap();
        assert_eq!(rep.user(), Some(("alice".into(), "a@x.org".into())));
        assert!(rep.can_write("/user/alice") && !rep.can_write("/user/bob"));
        // Bob's write to alice's repository, relayed by the malicious server.
        let mut forged_repo = Repository::new(RepoPath::parse("/user/alice").unwrap(), rep.registry.clone());
        let mut f = std::collections::BTreeMap::new();
        f.insert("text".to_owned(), Value::Str("bob was here".into()));
        forged_repo.write("x", &SchemaId::new("task", 1), ItemData::new(f), &bob, 5).unwrap();
        let frame = Message::commits(forged_repo.path(), forged_repo.commits_in_order()).remove(0).encode();
        let replies = rep.sync_handle(&frame).unwrap();
        assert_eq!(rep.counts("/user/alice").unwrap(), (0, 0), "the forbidden commit was stored");
        assert_eq!(rep.rejected_count(), 1);
        assert!(matches!(&rep.take_events()[..], [Event::Welcome { .. }, Event::Rejected { code, .. }] if code == "ERR_FORBIDDEN"));
        // The relay is told, with an error frame.
        let mut r = Reader::new(&replies);
        assert_eq!(r.varint("n").unwrap(), 1);
        assert!(matches!(Control::decode(r.bytes("e").unwrap()).unwrap(), Control::Error { code, .. } if code == "ERR_FORBIDDEN"));
        // The same write by alice herself is accepted.
        let mut ok_repo = Repository::new(RepoPath::parse("/user/alice").unwrap(), rep.registry.clone());
        let mut f = std::collections::BTreeMap::new();
        f.insert("text".to_owned(), Value::Str("mine".into()));
        ok_repo.write("y", &SchemaId::new("task", 1), ItemData::new(f), &alice, 5).unwrap();
        rep.sync_handle(&Message::commits(ok_repo.path(), ok_repo.commits_in_order()).remove(0).encode()).unwrap();
        assert_eq!(rep.counts("/user/alice").unwrap(), (1, 1));
        // Writing bob's repository locally is refused too.
        rep.open("/user/bob", Box::new(MemStorage::new())).unwrap();
        let m = Mutation { repo: RepoPath::parse("/user/bob").unwrap(), key: "k".into(), schema: SchemaId::new("task", 1), changes: vec![Change::Put { field: "text".into(), value: Value::Str("x".into()) }] };
        assert_eq!(outcomes(&rep.mutate(&encode_mutations(&[m]), 6).unwrap()), vec![2]);
        // A server with another root key is refused on the next connection.
        rep.sync_reset();
        let impostor = SessionKey::from_seed([10; 32]);
        assert_eq!(rep.sync_handle(&Control::hello([2; 32], &impostor, Rules::default().to_string()).encode()).unwrap_err().code(), "ERR_HANDSHAKE");
    }
}
