//! A repository: every item's commit DAG, head values, local writes,
//! history, and (optionally) its append-only log.
//!
//! * **Integration** ([`Repository::insert`]) is idempotent: a commit already
//!   known is a no-op. A commit whose parents are not known yet waits in a
//!   bounded pending set and is integrated when they arrive, so arrival
//!   order never matters.
//! * **Head value** of an item = the deterministic merge of its leaves:
//!   leaves sorted by `(timestamp, id)` are folded one by one with
//!   [`merge3`], each step using the lowest common ancestor of what was merged
//!   so far and the next leaf as base, after upgrading every side to the
//!   newest schema version involved (then to the newest version known).
//! * **A local write** lists every current leaf as a parent, closing the
//!   fork, and gets a timestamp above all of its parents', so an edit always
//!   wins over what its writer saw.
//! * Signatures are *not* checked here: callers verify commits that come
//!   from the network ([`SignedCommit::verify`]) before inserting them;
//!   commits read back from this replica's own log are trusted (their
//!   records are checksummed).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::change::{self, Change};
use crate::commit::{Body, Commit, CommitId, SignedCommit};
use crate::error::{Error, Result};
use crate::graph::{Node, Nodes, lowest_common_ancestor};
use crate::log::{Corruption, Log};
use crate::merge::merge3;
use crate::path::{RepoPath, check_key};
use crate::schema::{Registry, SchemaId};
use crate::signing::{SessionId, SessionKey};
use crate::storage::Storage;
use crate::value::ItemData;

/// Longest delta chain this replica writes before writing a full value.
pub const WRITE_MAX_DEPTH: u16 = 32;
/// Longest delta chain accepted from others.
pub const ACCEPT_MAX_DEPTH: u16 = 256;
/// Default bound on commits waiting for unknown parents.
pub const DEFAULT_MAX_PENDING: usize = 10_000;

/// The current value of an item.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// The schema version the value is expressed in (the newest known).
    pub schema: SchemaId,
    pub data: Arc<ItemData>,
    /// The leaves it was merged from, sorted by `(timestamp, id)`.
    pub leaves: Vec<CommitId>,
}

/// One entry of an item's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub id: CommitId,
    pub session: SessionId,
    pub timestamp: i64,
    pub parents: Vec<CommitId>,
    pub schema: SchemaId,
    /// Fields this commit changed relative to its parents' merged value;
    /// `"$deleted"` stands for the soft-delete flag.
    pub changed: Vec<String>,
}

/// What [`Repository::insert`] did with a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Integrated, together with this many waiting descendants it unblocked.
    New { unblocked: usize },
    /// Already known: nothing changed.
    Duplicate,
    /// Parked until its missing parents arrive.
    Pending,
}

/// What opening a log found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    pub commits: usize,
    /// Damaged records in the middle of the log, skipped.
    pub corrupt: Vec<Corruption>,
    /// Bytes of an incomplete final record that were cut off.
    pub truncated_bytes: u64,
    /// Records that passed their checksum but could not be integrated.
    pub rejected: Vec<(u64, Error)>,
    /// Commits whose parents were lost to corruption.
    pub pending: usize,
}

#[derive(Debug, Default)]
struct ItemState {
    /// Sorted by `(timestamp, id)`.
    leaves: Vec<CommitId>,
    /// Values of the current leaves, in their own schema versions.
    leaf_values: HashMap<CommitId, Arc<ItemData>>,
    head: Option<Arc<Head>>,
    commits: Vec<CommitId>,
}

#[derive(Debug, Default)]
struct Pending {
    commits: HashMap<CommitId, SignedCommit>,
    /// missing parent → commits waiting for it
    waiting: HashMap<CommitId, Vec<CommitId>>,
}

/// All items of one repository.
pub struct Repository {
    path: RepoPath,
    registry: Arc<Registry>,
    nodes: Nodes,
    items: BTreeMap<String, ItemState>,
    pending: Pending,
    max_pending: usize,
    log: Option<Log>,
    changed: HashSet<String>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository").field("path", &self.path).field("items", &self.items.len()).field("commits", &self.nodes.len()).finish()
    }
}

impl Repository {
    /// An empty, in-memory repository.
    pub fn new(path: RepoPath, registry: Arc<Registry>) -> Self {
        Repository {
            path,
            registry,
            nodes: Nodes::new(),
            items: BTreeMap::new(),
            pending: Pending::default(),
            max_pending: DEFAULT_MAX_PENDING,
            log: None,
            changed: HashSet::new(),
        }
    }

    /// Opens a repository persisted in `storage`: scans the log (checksums,
    /// torn tail, corrupt records), integrates every commit without
    /// re-verifying signatures, and appends new commits from then on.
    pub fn open(path: RepoPath, registry: Arc<Registry>, storage: Box<dyn Storage>) -> Result<(Self, LoadReport)> {
        let (log, scan) = Log::open(storage)?;
        let mut repo = Repository::new(path, registry);
        let mut report = LoadReport { corrupt: scan.corrupt, truncated_bytes: scan.truncated_bytes, ..Default::default() };
        for (offset, payload) in scan.records {
            let res = SignedCommit::decode(&payload).and_then(|c| repo.integrate_loaded(c));
            match res {
                Ok(()) => report.commits += 1,
                Err(e) => report.rejected.push((offset, e)),
            }
        }
        report.pending = repo.pending.commits.len();
        repo.log = Some(log);
        repo.changed.clear();
        Ok((repo, report))
    }

    fn integrate_loaded(&mut self, c: SignedCommit) -> Result<()> {
        if c.commit.repo != self.path {
            return Err(Error::InvalidCommit { id: c.id.to_hex(), reason: format!("belongs to {}, not {}", c.commit.repo, self.path) });
        }
        // Local records were validated when they first entered; skip it.
        self.insert_inner(c, false).map(|_| ())
    }

    pub fn path(&self) -> &RepoPath {
        &self.path
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Sets the bound on commits waiting for unknown parents.
    pub fn set_max_pending(&mut self, n: usize) {
        self.max_pending = n;
    }

    /// Number of items (including soft-deleted ones).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of integrated commits.
    pub fn commit_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of commits waiting for unknown parents.
    pub fn pending_count(&self) -> usize {
        self.pending.commits.len()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.items.keys().map(String::as_str)
    }

    pub fn contains_commit(&self, id: &CommitId) -> bool {
        self.nodes.contains_key(id) || self.pending.commits.contains_key(id)
    }

    pub fn commit(&self, id: &CommitId) -> Option<&Arc<SignedCommit>> {
        self.nodes.get(id).map(|n| &n.commit)
    }

    /// Every integrated commit id, in no particular order.
    pub fn commit_ids(&self) -> impl Iterator<Item = &CommitId> {
        self.nodes.keys()
    }

    /// Current leaves of an item, sorted by `(timestamp, id)`.
    pub fn leaves(&self, key: &str) -> &[CommitId] {
        self.items.get(key).map(|i| i.leaves.as_slice()).unwrap_or_default()
    }

    /// Keys whose head changed since the last call.
    pub fn take_changed(&mut self) -> Vec<String> {
        let mut v: Vec<String> = self.changed.drain().collect();
        v.sort();
        v
    }

    /// Makes everything written so far durable in storage.
    pub fn flush(&mut self) -> Result<()> {
        match &mut self.log {
            Some(log) => log.flush(),
            None => Ok(()),
        }
    }

    /// Integrates a commit (see module docs). The caller has verified its
    /// signature if it came from elsewhere. Invalid commits are rejected
    /// with an error and leave the repository unchanged.
    pub fn insert(&mut self, c: SignedCommit) -> Result<Inserted> {
        if c.commit.repo != self.path {
            return Err(Error::InvalidCommit { id: c.id.to_hex(), reason: format!("belongs to {}, not {}", c.commit.repo, self.path) });
        }
        self.insert_inner(c, true)
    }

    fn insert_inner(&mut self, c: SignedCommit, validate: bool) -> Result<Inserted> {
        if self.contains_commit(&c.id) {
            return Ok(Inserted::Duplicate);
        }
        let missing: Vec<CommitId> = c.commit.parents.iter().filter(|p| !self.nodes.contains_key(p)).copied().collect();
        if !missing.is_empty() {
            if self.pending.commits.len() >= self.max_pending {
                return Err(Error::PendingFull { limit: self.max_pending });
            }
            for m in missing {
                self.pending.waiting.entry(m).or_default().push(c.id);
            }
            self.pending.commits.insert(c.id, c);
            return Ok(Inserted::Pending);
        }
        let id = c.id;
        self.integrate(c, validate)?;
        // Integrate descendants that were waiting for this commit, iteratively.
        let mut unblocked = 0;
        let mut ready = vec![id];
        while let Some(done) = ready.pop() {
            for w in self.pending.waiting.remove(&done).unwrap_or_default() {
                let Some(pc) = self.pending.commits.get(&w) else { continue };
                if pc.commit.parents.iter().all(|p| self.nodes.contains_key(p)) {
                    let pc = self.pending.commits.remove(&w).expect("checked above");
                    // A waiting commit that turns out invalid is dropped; the
                    // one that unblocked it stays integrated.
                    if self.integrate(pc, validate).is_ok() {
                        unblocked += 1;
                        ready.push(w);
                    }
                }
            }
        }
        Ok(Inserted::New { unblocked })
    }

    fn reject(id: &CommitId, reason: impl Into<String>) -> Error {
        Error::InvalidCommit { id: id.to_hex(), reason: reason.into() }
    }

    /// Integrates a commit whose parents are all present.
    fn integrate(&mut self, c: SignedCommit, validate: bool) -> Result<()> {
        let id = c.id;
        let key = c.commit.key.clone();
        let mut generation = 0;
        for p in &c.commit.parents {
            let pn = &self.nodes[p];
            if pn.commit.commit.key != key {
                return Err(Self::reject(&id, format!("parent {} belongs to item `{}`", p.to_hex(), pn.commit.commit.key)));
            }
            generation = generation.max(pn.generation);
        }
        let (value, depth) = match &c.commit.body {
            Body::Full(d) => (d.clone(), 0),
            Body::Delta { base, changes } => {
                let depth = self.nodes[base].depth + 1;
                if depth > ACCEPT_MAX_DEPTH {
                    return Err(Self::reject(&id, format!("delta chain longer than {ACCEPT_MAX_DEPTH}")));
                }
                let base_val = self.value_of(base)?;
                let v = change::apply(&base_val, changes).map_err(|e| Self::reject(&id, e))?;
                (Arc::new(v), depth)
            }
        };
        if validate && let Some(schema) = self.registry.get(&c.commit.schema) {
            schema.validate(&value).map_err(|e| Self::reject(&id, e.to_string()))?;
        }
        if let Some(log) = &mut self.log {
            log.append_commit(&c)?;
        }
        let ts = c.commit.timestamp;
        let parents = c.commit.parents.clone();
        self.nodes.insert(id, Node { commit: Arc::new(c), generation: generation + 1, depth });
        let item = self.items.entry(key.clone()).or_default();
        item.leaves.retain(|l| !parents.contains(l));
        for p in &parents {
            item.leaf_values.remove(p);
        }
        let pos = item.leaves.partition_point(|l| {
            let n = &self.nodes[l];
            (n.commit.commit.timestamp, *l) < (ts, id)
        });
        item.leaves.insert(pos, id);
        item.leaf_values.insert(id, value);
        item.commits.push(id);
        item.head = None;
        self.changed.insert(key);
        Ok(())
    }

    /// The value a commit carries, in its own schema version.
    pub fn value_of(&self, id: &CommitId) -> Result<Arc<ItemData>> {
        let node = self.nodes.get(id).ok_or_else(|| Error::MissingCommit { id: id.to_hex(), missing: id.to_hex() })?;
        if let Some(v) = self.items.get(&node.commit.commit.key).and_then(|i| i.leaf_values.get(id)) {
            return Ok(v.clone());
        }
        // Walk the delta chain back to a full value, then apply forwards.
        let mut chain: Vec<&Vec<Change>> = Vec::new();
        let mut cur = node;
        let base = loop {
            match &cur.commit.commit.body {
                Body::Full(d) => break d.clone(),
                Body::Delta { base, changes } => {
                    chain.push(changes);
                    cur = &self.nodes[base];
                }
            }
        };
        let mut v = (*base).clone();
        for changes in chain.into_iter().rev() {
            v = change::apply(&v, changes).map_err(|e| Self::reject(id, e))?;
        }
        Ok(Arc::new(v))
    }

    /// The upgraded value of a commit at `version` of its namespace.
    fn value_at(&self, id: &CommitId, version: u32) -> Result<ItemData> {
        let schema = &self.nodes[id].commit.commit.schema;
        let v = (*self.value_of(id)?).clone();
        Ok(self.registry.upgrade(v, schema, version).0)
    }

    /// The current value of an item, or `None` if it has no commits.
    /// Soft-deleted items have a head with `data.deleted == true`.
    pub fn head(&mut self, key: &str) -> Option<Arc<Head>> {
        let item = self.items.get(key)?;
        if let Some(h) = &item.head {
            return Some(h.clone());
        }
        let leaves = item.leaves.clone();
        let head = match self.merge_heads(&leaves) {
            Ok(h) => Arc::new(h),
            // Values of integrated commits always reconstruct (they did when
            // they were integrated), so this is unreachable in practice; an
            // item that cannot be computed reads as absent rather than panic.
            Err(_) => return None,
        };
        self.items.get_mut(key).expect("present").head = Some(head.clone());
        Some(head)
    }

    /// Deterministic merge of a set of commits of one item (see module docs).
    fn merge_heads(&self, ids: &[CommitId]) -> Result<Head> {
        let mut all = ids.to_vec();
        all.sort_by_key(|l| (self.nodes[l].commit.commit.timestamp, *l));
        let newest = &self.nodes[all.last().expect("an item has at least one leaf")].commit.commit.schema;
        // Merge in the newest schema version among the leaves of that
        // namespace; leaves of another namespace (two writers used the same
        // key with different schemas) are superseded by the newest leaf.
        let ns = newest.ns.clone();
        let leaves: Vec<CommitId> = all.iter().filter(|l| self.nodes[*l].commit.commit.schema.ns == ns).copied().collect();
        let version = leaves.iter().map(|l| self.nodes[l].commit.commit.schema.version).max().unwrap_or(newest.version);
        let mut acc = self.value_at(&leaves[0], version)?;
        for (i, leaf) in leaves.iter().enumerate().skip(1) {
            let base = match lowest_common_ancestor(&self.nodes, &leaves[..i], *leaf) {
                Some(b) if self.nodes[&b].commit.commit.schema.ns == ns => self.value_at(&b, version)?,
                _ => ItemData::default(),
            };
            acc = merge3(&base, &acc, &self.value_at(leaf, version)?);
        }
        // Present the value in the newest version this replica knows.
        let latest = self.registry.latest(&ns).map(|s| s.version).unwrap_or(version).max(version);
        let (data, reached) = self.registry.upgrade(acc, &SchemaId::new(ns.clone(), version), latest);
        Ok(Head { schema: SchemaId::new(ns, reached), data: Arc::new(data), leaves: all })
    }

    /// Writes a new value of `key` as a commit signed by `session`. Returns
    /// `None` when the value equals the current head (nothing to commit).
    /// `now` is the writer's clock in milliseconds.
    pub fn write(&mut self, key: &str, schema: &SchemaId, mut data: ItemData, session: &SessionKey, now: i64) -> Result<Option<CommitId>> {
        check_key(key)?;
        let def = self.registry.get(schema).ok_or_else(|| Error::UnknownSchema(schema.to_string()))?.clone();
        data.normalize();
        def.validate(&data)?;
        if self.base_for_write(key, schema)? == data && self.head(key).is_some_and(|h| h.schema == *schema) {
            return Ok(None);
        }
        let mut parents = self.leaves(key).to_vec();
        let max_parent_ts = parents.iter().map(|p| self.nodes[p].commit.commit.timestamp).max();
        let timestamp = max_parent_ts.map_or(now, |t| now.max(t.saturating_add(1)));
        let body = self.choose_body(&parents, schema, &data)?;
        parents.sort();
        let commit = Commit { repo: self.path.clone(), key: key.to_owned(), parents, timestamp, session: session.id(), schema: schema.clone(), body };
        let signed = commit.sign(session)?;
        let id = signed.id;
        self.insert_inner(signed, false)?;
        Ok(Some(id))
    }

    /// Applies changes to the current head (or an empty item) and writes the
    /// result.
    pub fn update(&mut self, key: &str, schema: &SchemaId, changes: &[Change], session: &SessionKey, now: i64) -> Result<Option<CommitId>> {
        let current = self.base_for_write(key, schema)?;
        let data = change::apply(&current, changes).map_err(|reason| Error::Validation { schema: schema.to_string(), field: changes.iter().find_map(Change::field).unwrap_or("$item").to_owned(), reason })?;
        self.write(key, schema, data, session, now)
    }

    /// The value a write with `schema` starts from: the head in that
    /// version, or a new item with the schema's defaults when the item does
    /// not exist or had another namespace (the write then replaces it).
    fn base_for_write(&mut self, key: &str, schema: &SchemaId) -> Result<ItemData> {
        let registry = self.registry.clone();
        let new_item = || {
            let mut d = ItemData::default();
            if let Some(def) = registry.get(schema) {
                def.apply_defaults(&mut d);
            }
            d
        };
        let Some(head) = self.head(key) else { return Ok(new_item()) };
        if head.schema.ns != schema.ns {
            return Ok(new_item());
        }
        if head.schema.version > schema.version {
            return Err(Error::Schema {
                schema: schema.to_string(),
                reason: format!("item `{key}` is already at {}; writes must use that version or newer (register it on this replica)", head.schema),
            });
        }
        Ok(self.registry.upgrade((*head.data).clone(), &head.schema, schema.version).0)
    }

    /// Delta against the newest leaf when it is same-schema, the chain is
    /// short and the delta is clearly smaller than the full value.
    fn choose_body(&self, leaves: &[CommitId], schema: &SchemaId, data: &ItemData) -> Result<Body> {
        if let Some(base) = leaves.last() {
            let node = &self.nodes[base];
            if node.commit.commit.schema == *schema && node.depth < WRITE_MAX_DEPTH {
                let changes = change::diff(&*self.value_of(base)?, data);
                let mut d = crate::codec::Writer::new();
                change::encode(&mut d, &changes);
                let mut f = crate::codec::Writer::new();
                crate::value::encode_fields(&mut f, &data.fields);
                if d.len() * 100 <= f.len() * 85 {
                    return Ok(Body::Delta { base: *base, changes });
                }
            }
        }
        Ok(Body::Full(Arc::new(data.clone())))
    }

    /// The history of an item, oldest first (parents before children).
    pub fn history(&self, key: &str) -> Result<Vec<HistoryEntry>> {
        let Some(item) = self.items.get(key) else { return Ok(Vec::new()) };
        let mut ids = item.commits.clone();
        ids.sort_by_key(|id| {
            let n = &self.nodes[id];
            (n.generation, n.commit.commit.timestamp, *id)
        });
        ids.iter().map(|id| self.history_entry(id)).collect()
    }

    fn history_entry(&self, id: &CommitId) -> Result<HistoryEntry> {
        let c = &self.nodes[id].commit.commit;
        let changed = match (&c.body, c.parents.as_slice()) {
            // A delta on its only parent lists exactly what it changed.
            (Body::Delta { changes, .. }, [_]) => {
                let mut f: Vec<String> = changes.iter().map(|ch| ch.field().unwrap_or("$deleted").to_owned()).collect();
                f.dedup();
                f
            }
            _ => {
                let latest = self.registry.latest(&c.schema.ns).map_or(c.schema.version, |s| s.version).max(c.schema.version);
                let before = if c.parents.is_empty() {
                    ItemData::default()
                } else {
                    let h = self.merge_heads(&c.parents)?;
                    self.registry.upgrade((*h.data).clone(), &h.schema, latest).0
                };
                let after = self.value_at(id, latest)?;
                change::diff(&before, &after).iter().map(|ch| ch.field().unwrap_or("$deleted").to_owned()).collect()
            }
        };
        Ok(HistoryEntry { id: *id, session: c.session, timestamp: c.timestamp, parents: c.parents.clone(), schema: c.schema.clone(), changed })
    }
}
