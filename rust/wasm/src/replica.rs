//! What the worker's engine does, in plain Rust (no JS types), so it is
//! tested natively: the open repositories of one database, the session that
//! signs this replica's commits, and the batch protocol of `batch.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use ibex_core::codec::{Reader, Writer};
use ibex_core::sync::{Message, Reconciler};
use ibex_core::{CommitId, Error, HistoryEntry, LoadReport, Registry, RepoPath, Repository, Result, Schema, SessionKey, Storage};

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
        Ok(Replica { registry: Arc::new(registry), session: SessionKey::from_seed(session_seed), repos: BTreeMap::new(), sync: BTreeMap::new(), to_push: BTreeMap::new(), last_mutated: Vec::new() })
    }

    pub fn session(&self) -> &SessionKey {
        &self.session
    }

    /// Opens a repository from its log (idempotent: an open repository is
    /// left as it is and reports nothing new).
    pub fn open(&mut self, repo: &str, storage: Box<dyn Storage>) -> Result<LoadReport> {
        let path = RepoPath::parse(repo)?;
        if self.repos.contains_key(&path) {
            return Ok(LoadReport::default());
        }
        let (r, report) = Repository::open(path.clone(), self.registry.clone(), storage)?;
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
        for m in mutations {
            let session = self.session.clone();
            let res = self.repo_mut(m.repo.as_str()).and_then(|r| r.update(&m.key, &m.schema, &m.changes, &session, now));
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
    /// separate push.
    pub fn sync_start(&mut self, repo: &str, seed: u64) -> Result<Vec<u8>> {
        let path = RepoPath::parse(repo)?;
        let r = self.repos.get(&path).ok_or_else(|| Error::path(repo, "the repository is not open; open it first"))?;
        let rec = self.sync.entry(path.clone()).or_insert_with(|| Reconciler::new(path.clone(), seed));
        self.to_push.remove(&path);
        Ok(rec.start(r).encode())
    }

    /// Handles a frame from the server; returns the frames to send back
    /// (`varint n, n × bytes`). Received commits are verified first.
    pub fn sync_handle(&mut self, frame: &[u8]) -> Result<Vec<u8>> {
        let msg = Message::decode(frame)?;
        let path = msg.repo().clone();
        let repo = self.repos.get_mut(&path).ok_or_else(|| Error::path(path.as_str(), "the repository is not open"))?;
        let rec = self.sync.entry(path.clone()).or_insert_with(|| Reconciler::new(path.clone(), 0x5eed));
        let handled = rec.handle(repo, msg, &|c| c.verify())?;
        let mut w = Writer::new();
        w.varint(handled.replies.len() as u64);
        for r in handled.replies {
            w.bytes(&r.encode());
        }
        Ok(w.into_bytes())
    }

    /// True when every open repository has completed a reconciliation with
    /// the server and nothing local is waiting to be pushed.
    pub fn synced(&self) -> bool {
        self.repos.keys().all(|p| self.sync.get(p).is_some_and(Reconciler::is_synced)) && self.to_push.values().all(Vec::is_empty)
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

    /// The connection dropped: every repository must reconcile again.
    pub fn sync_reset(&mut self) {
        self.sync.clear();
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
        let r = self.repo_mut(repo)?;
        let (mut added, mut rejected) = (0, scan.corrupt.len() + usize::from(scan.truncated_bytes > 0));
        for (_, payload) in scan.payloads(image) {
            let res = ibex_core::StoredCommit::parse(payload.into(), true).and_then(|c| {
                c.verify()?;
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
        c.verify()?;
        self.repo_mut(repo)?.insert_stored(c).map(|_| ())
    }
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
}
