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
//!   Once read, a head is kept current as forks arrive at a cost that
//!   follows the new commit, not the number of leaves (`fold_in`): siblings
//!   of one base go into a field-by-field [`StarMerge`], a leaf that sorts
//!   last is folded in with one more step; both equal the full fold.
//! * **A local write** lists every current leaf as a parent, closing the
//!   fork, and gets a timestamp above all of its parents', so an edit always
//!   wins over what its writer saw.
//! * Commits are kept as [`StoredCommit`]s (bytes + parsed header); values
//!   are decoded only for items that are read, written or merged, and the
//!   head of an item is cached once computed.
//! * Signatures are *not* checked here: callers verify commits that come
//!   from the network ([`SignedCommit::verify`]) before inserting them;
//!   commits read back from this replica's own log are trusted (their
//!   records are checksummed).

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::change::{self, Change};
use crate::checkpoint::{self, SealedCommit};
use crate::commit::{Body, Commit, CommitId, SignedCommit};
use crate::error::{Error, Result};
use crate::graph::{Node, Nodes, lowest_common_ancestor};
use crate::log::{Corruption, Log, RecordMark};
use crate::merge::{StarMerge, merge3};
use crate::path::{RepoPath, check_key};
use crate::schema::{Registry, SchemaId};
use crate::signing::SessionKey;
use crate::storage::Storage;
use crate::stored::StoredCommit;
use crate::value::ItemData;

mod branches;
mod history;
use branches::hides;
pub use history::{At, Conflict, DELETED, FieldChange, HistoryEntry, Playback, Step, Written, field_changes};

/// Bytes that rebuilding one value along its delta chain may move: each
/// step of a chain can touch the whole value (a text splice moves the rest
/// of the text), so a chain may be as long as this budget over the value's
/// size, between [`MIN_CHAIN`] and [`MAX_CHAIN`] deltas.
pub const REBUILD_BUDGET: u64 = 64 << 20;
/// Every value may have chains this long (the limit before the budget).
pub const MIN_CHAIN: u16 = 256;
/// No chain is longer, however small its value (each step is a record to
/// read when the chain is below the checkpoint).
pub const MAX_CHAIN: u16 = 4096;

/// Longest delta chain accepted from others over a value of `value_bytes`
/// (the chain's full value plus its deltas: no smaller than the value).
/// This replica writes chains one shorter. Chains also end once their
/// deltas add up to the full value's size (`choose_body`), so an item whose
/// value is small next to its edits gets full values often, and a long text
/// edited a few characters at a time gets one every few hundred to few
/// thousand edits: on disk, history costs the edits plus at most as much
/// again in full values (with 255 deltas per chain, the B4 trace kept a
/// full copy of its text every 255 edits: 400 bytes per one-character edit).
pub fn max_chain(value_bytes: u32) -> u16 {
    (REBUILD_BUDGET / u64::from(value_bytes).max(1)).clamp(u64::from(MIN_CHAIN), u64::from(MAX_CHAIN)) as u16
}
/// Default bound on commits waiting for unknown parents.
pub const DEFAULT_MAX_PENDING: usize = 10_000;
/// Default bound on the bytes of commits waiting for unknown parents.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 64 << 20;
/// A new checkpoint is written at the flush after this many commits …
pub const CHECKPOINT_EVERY_COMMITS: usize = 10_000;
/// … or this many bytes of log since the last one.
pub const CHECKPOINT_EVERY_BYTES: u64 = 8 << 20;

/// The current value of an item.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// The schema version the value is expressed in (the newest known).
    pub schema: SchemaId,
    pub data: Arc<ItemData>,
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

/// How opening used the repository's checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CheckpointUse {
    /// No checkpoint storage was given.
    #[default]
    None,
    /// Opened from the checkpoint and this many log records after it.
    Used { tail: usize },
    /// A new repository: nothing to check, a first checkpoint was written.
    Created,
    /// The checkpoint could not be trusted (why); the log was scanned whole
    /// and a new checkpoint written.
    Rebuilt(String),
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
    pub checkpoint: CheckpointUse,
    /// The log was in this older format and was converted to the current
    /// one (`log.rs`, `compact.rs`) while opening.
    pub converted_from: Option<u32>,
}

#[derive(Debug, Default)]
struct ItemState {
    /// Current leaves, sorted by `(timestamp, id)`.
    leaves: Vec<CommitId>,
    /// The merged value, once computed (or known from the last write).
    head: Option<Arc<Head>>,
    /// `head` is the plain fold of the leaves in `head.schema` (no schema
    /// upgrade applied after merging), so a leaf that sorts last can be
    /// folded into it (see [`Repository::fold_in`]).
    folded: bool,
    /// When every leaf is a child of the same commit, their merge kept
    /// field by field, so each new sibling costs what it changed.
    star: Option<Box<Star>>,
    /// The head as the checkpoint holds it (schema, `deleted ‖ fields`
    /// bytes in `Repository::ckpt_buf`, folded), until the item is used.
    sealed_head: Option<(SchemaId, std::ops::Range<usize>, bool)>,
}

#[derive(Debug)]
struct Star {
    base: CommitId,
    schema: SchemaId,
    merge: StarMerge,
}

/// Who sent a waiting commit (a connection, for a server): its waiting
/// commits are bounded per owner and dropped with [`Repository::drop_pending_of`].
pub type Owner = u64;

#[derive(Debug)]
struct Waiting {
    commit: StoredCommit,
    /// Where it is in the log, if it came from there.
    at: Option<RecordMark>,
    owner: Owner,
    /// When it arrived, on the caller's clock (for [`Repository::expire_pending`]).
    since: i64,
}

#[derive(Debug, Default)]
struct Pending {
    commits: HashMap<CommitId, Waiting>,
    /// missing parent → commits waiting for it
    waiting: HashMap<CommitId, Vec<CommitId>>,
    bytes: usize,
    by_owner: HashMap<Owner, (usize, usize)>,
}

impl Pending {
    fn remove(&mut self, id: &CommitId) -> Option<(StoredCommit, Option<RecordMark>)> {
        let w = self.commits.remove(id)?;
        let n = w.commit.bytes().len();
        self.bytes -= n;
        if let Some(e) = self.by_owner.get_mut(&w.owner) {
            e.0 -= 1;
            e.1 -= n;
            if e.0 == 0 {
                self.by_owner.remove(&w.owner);
            }
        }
        Some((w.commit, w.at))
    }
}

/// The commits known from the checkpoint opened from: its table, searched
/// in place, and which of them were read into `nodes` since.
#[derive(Debug, Default)]
struct Sealed {
    table: checkpoint::Table,
    /// One bit per table record: read into `nodes`.
    hot: Vec<u64>,
    /// The table's bytes, read from the checkpoint's file the first time a
    /// commit below the checkpoint is asked about (an error: damaged).
    bytes: std::sync::OnceLock<std::result::Result<Vec<u8>, String>>,
}

/// The checkpoint table's bytes, read on first use; `None` when there is
/// no table or it could not be read (see [`Repository::sealed_error`]).
fn sealed_bytes<'a>(sealed: &'a Sealed, ck: &Option<CheckpointState>) -> Option<&'a [u8]> {
    if sealed.table.is_empty() {
        return None;
    }
    let got = sealed.bytes.get_or_init(|| {
        let Some(ck) = ck else { return Err("the checkpoint's storage is gone".into()) };
        let mut st = ck.storage.lock().unwrap_or_else(|e| e.into_inner());
        checkpoint::read_table(&mut **st, &sealed.table).map_err(|e| e.to_string())
    });
    got.as_ref().ok().map(Vec::as_slice)
}

impl Sealed {
    /// The commit whose record starts at log offset `offset`, if the
    /// checkpoint has it.
    fn id_at(&self, buf: &[u8], offset: u64) -> Option<CommitId> {
        self.table.find_offset(buf, offset).map(|i| CommitId(*self.table.id(buf, i)))
    }

    /// Where a checkpointed commit's record starts.
    fn offset_of(&self, buf: &[u8], id: &CommitId) -> Option<u64> {
        self.table.find(buf, id).map(|i| self.table.get(buf, i).offset)
    }

    fn is_hot(&self, i: usize) -> bool {
        self.hot[i / 64] >> (i % 64) & 1 == 1
    }

    fn set_hot(&mut self, i: usize) {
        self.hot[i / 64] |= 1 << (i % 64);
    }
}

/// Appends a commit to a log: as a compact record where the log's format
/// has them (`parent_at`: where a parent's record starts), else as its
/// canonical bytes.
fn append_commit(log: &mut Log, tables: &mut crate::compact::Tables, c: &StoredCommit, parent_at: impl Fn(&CommitId) -> Option<u64>) -> Result<RecordMark> {
    if log.version() < crate::log::FORMAT_VERSION {
        return log.append(crate::log::KIND_COMMIT, c.bytes());
    }
    if log.next_offset() == crate::log::HEADER_LEN as u64 {
        // The first record names the repository the compact ones belong to.
        log.append(crate::log::KIND_REPO, c.repo().as_bytes())?;
    }
    let (record, defined) = crate::compact::encode(c, log.next_offset(), parent_at, tables);
    let mark = log.append(crate::log::KIND_COMPACT, &record)?;
    // Only once the record is in the log: a failed append defines nothing.
    tables.announce(defined);
    Ok(mark)
}

/// The sort of commit orders: commits ranked by a tuple. Every closure
/// given to `sort_by_key` compiles the sort again (W9: sorting was a sixth
/// of the WASM module), so orders are expressed as ranks instead.
pub(crate) fn sort_ranked(v: &mut [(i64, u32, CommitId)]) {
    v.sort_unstable();
}

/// The checkpoint's storage and what was written since the last one.
struct CheckpointState {
    /// Behind a lock only so that the table can be read on first use from
    /// `&self` questions (`holds`, `commit_ids`); nothing else contends.
    storage: std::sync::Mutex<Box<dyn Storage>>,
    commits: usize,
    bytes: u64,
    /// The storage holds a checkpoint of everything up to the last
    /// `commits`/`bytes` (false until one is written after a rebuild or
    /// attach): with nothing new, writing it again is skipped.
    current: bool,
}

/// Bounds on the commits that wait for unknown parents.
#[derive(Debug, Clone, Copy)]
pub struct PendingLimits {
    pub max_commits: usize,
    pub max_bytes: usize,
    /// Per owner (connection).
    pub max_owner_bytes: usize,
}

impl Default for PendingLimits {
    fn default() -> Self {
        PendingLimits { max_commits: DEFAULT_MAX_PENDING, max_bytes: DEFAULT_MAX_PENDING_BYTES, max_owner_bytes: DEFAULT_MAX_PENDING_BYTES }
    }
}

/// Item keys in byte order: those at the last ordering, and those created
/// since (merged in when next asked).
#[derive(Default)]
struct KeyOrder {
    sorted: Vec<Arc<str>>,
    added: Vec<Arc<str>>,
}

/// All items of one repository.
pub struct Repository {
    path: RepoPath,
    registry: Arc<Registry>,
    nodes: Nodes,
    items: HashMap<Arc<str>, ItemState>,
    /// The item keys in order (see [`Repository::keys_in_order`]).
    order: KeyOrder,
    pending: Pending,
    limits: PendingLimits,
    log: Option<Log>,
    /// Commits integrated since the last [`Repository::take_integrated`].
    integrated: Vec<CommitId>,
    /// The last value rebuilt from a delta chain, so the next commit on the
    /// chain (or a sibling) starts from it instead of replaying the chain.
    vcache: std::sync::Mutex<Option<(CommitId, Arc<ItemData>)>>,
    /// Bytes the caller still lets integration copy while rebuilding values,
    /// and whether nothing was charged yet (`None`: unlimited); see
    /// [`Repository::set_work_budget`].
    work_budget: Option<(u64, bool)>,
    /// Keys whose head changed; not tracked while loading a log.
    changed: HashSet<Arc<str>>,
    track_changes: bool,
    digest: SetDigest,
    /// Commits of the checkpoint opened from (their records stay in the log
    /// until something needs them, then they are read into `nodes`).
    sealed: Sealed,
    /// Entries of `sealed` not read into `nodes` yet.
    cold: usize,
    /// The bytes of the checkpoint opened from (sealed heads point into it).
    ckpt_buf: Vec<u8>,
    checkpoint: Option<CheckpointState>,
    /// The log's numbered sessions and schemas (compact records).
    tables: crate::compact::Tables,
}

/// An order-independent summary of a set of commit ids — how many, and the
/// XOR of all ids — kept up to date as commits are integrated, so two
/// replicas can tell in O(1) whether they hold the same commits. (XOR is not
/// collision-resistant against someone who crafts ids on purpose; a false
/// "in sync" only delays sync until the next change.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetDigest {
    pub count: u64,
    pub xor: [u8; 32],
}

impl SetDigest {
    pub fn add(&mut self, id: &CommitId) {
        self.count += 1;
        for (x, b) in self.xor.iter_mut().zip(id.0) {
            *x ^= b;
        }
    }
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
            items: HashMap::new(),
            order: KeyOrder::default(),
            pending: Pending::default(),
            limits: PendingLimits::default(),
            log: None,
            integrated: Vec::new(),
            vcache: std::sync::Mutex::new(None),
            work_budget: None,
            changed: HashSet::new(),
            track_changes: true,
            digest: SetDigest::default(),
            sealed: Sealed::default(),
            cold: 0,
            ckpt_buf: Vec::new(),
            checkpoint: None,
            tables: Default::default(),
        }
    }

    /// Opens a repository persisted in `storage`: scans the log (checksums,
    /// torn tail, corrupt records) and integrates every commit without
    /// re-verifying signatures or decoding values (both were checked when
    /// the commit first entered this replica); appends new commits from then
    /// on.
    pub fn open(path: RepoPath, registry: Arc<Registry>, storage: Box<dyn Storage>) -> Result<(Self, LoadReport)> {
        let (log, buf, scan) = Log::open(storage)?;
        let mut repo = Repository::new(path, registry);
        repo.nodes.reserve(scan.records.len());
        repo.items.reserve(scan.records.len());
        let mut report = LoadReport { corrupt: scan.corrupt.clone(), truncated_bytes: scan.truncated_bytes, ..Default::default() };
        repo.load(&buf, &scan, &mut report);
        // Items were reserved one per record; long histories need fewer.
        repo.items.shrink_to_fit();
        repo.log = Some(log);
        Ok((repo, report))
    }

    /// Opens a repository with a checkpoint beside its log (see
    /// `checkpoint.rs`): from the checkpoint and the log records after it
    /// when it can be trusted — O(items) — else by scanning the whole log,
    /// after which a new checkpoint is written. Either way the result is
    /// the same repository; `report.checkpoint` says which path was taken.
    ///
    /// A log in an older format (`log.rs`) is converted on the way, unless
    /// its scan found damage (then it is kept as it is, damage included,
    /// and appended to in its own format). The old bytes are first kept in
    /// the checkpoint's file (`checkpoint::encode_journal`), so a crash in
    /// the middle of the rewrite loses nothing: the next open restores the
    /// log from them and converts again.
    pub fn open_checkpointed(path: RepoPath, registry: Arc<Registry>, mut log: Box<dyn Storage>, mut checkpoint: Box<dyn Storage>) -> Result<(Self, LoadReport)> {
        let why = match checkpoint::read(&mut *checkpoint) {
            checkpoint::Found::Journal(old) => {
                log.truncate(0)?;
                log.append(&old)?;
                log.flush()?;
                return Self::rebuild(path, registry, log, checkpoint, Some("converting the log to the current format was cut short: it was restored and converted again".into()));
            }
            checkpoint::Found::Nothing => None,
            checkpoint::Found::Damaged(why) => Some(why),
            checkpoint::Found::Checkpoint(ck, _) if ck.repo != path.as_str() => Some(format!("it belongs to {}", ck.repo)),
            checkpoint::Found::Checkpoint(ck, head) => match Log::open_after(log, ck.mark)? {
                Ok((log, tail, scan)) => {
                    // Records after the checkpoint may name parents below it:
                    // its table is needed now, and must be sound.
                    let table = if scan.records.is_empty() || ck.commits.is_empty() {
                        None
                    } else {
                        match checkpoint::read_table(&mut *checkpoint, &ck.commits) {
                            Ok(t) => Some(t),
                            Err(e) => return Self::rebuild(path, registry, log.into_storage(), checkpoint, Some(e.to_string())),
                        }
                    };
                    let mut repo = Self::from_checkpoint(path, registry, *ck, head);
                    if let Some(t) = table {
                        let _ = repo.sealed.bytes.set(Ok(t));
                    }
                    let mut report = LoadReport { corrupt: scan.corrupt.clone(), truncated_bytes: scan.truncated_bytes, ..Default::default() };
                    // The log first: tail commits may read their parents from it.
                    repo.log = Some(log);
                    repo.checkpoint = Some(CheckpointState { storage: std::sync::Mutex::new(checkpoint), commits: scan.records.len(), bytes: 0, current: true });
                    repo.load(&tail, &scan, &mut report);
                    report.commits = repo.commit_count();
                    report.checkpoint = CheckpointUse::Used { tail: scan.records.len() };
                    return Ok((repo, report));
                }
                Err(log) => return Self::rebuild(path, registry, log, checkpoint, Some("it is stale: the log does not hold what it covers".into())),
            },
        };
        Self::rebuild(path, registry, log, checkpoint, why)
    }

    /// Opens by scanning the log, then writes a new checkpoint.
    fn rebuild(path: RepoPath, registry: Arc<Registry>, log: Box<dyn Storage>, checkpoint: Box<dyn Storage>, why: Option<String>) -> Result<(Self, LoadReport)> {
        let (mut repo, mut report) = Self::open(path, registry, log)?;
        repo.checkpoint = Some(CheckpointState { storage: std::sync::Mutex::new(checkpoint), commits: 0, bytes: 0, current: false });
        let version = repo.log.as_ref().map_or(crate::log::FORMAT_VERSION, Log::version);
        if version < crate::log::FORMAT_VERSION && report.corrupt.is_empty() && report.rejected.is_empty() && report.pending == 0 {
            repo.convert_log()?;
            report.converted_from = Some(version);
        }
        report.checkpoint = match why {
            Some(why) => CheckpointUse::Rebuilt(why),
            None if report.commits == 0 => CheckpointUse::Created,
            None => CheckpointUse::Rebuilt("there was none".into()),
        };
        repo.write_checkpoint()?;
        Ok((repo, report))
    }

    /// Rewrites the log (everything in it is in `nodes`, in log order by
    /// their marks) in the current format, compact records throughout.
    fn convert_log(&mut self) -> Result<()> {
        let (Some(log), Some(ck)) = (&mut self.log, &mut self.checkpoint) else { return Ok(()) };
        let old = log.read_durable()?;
        // First the old bytes where a crash finds them.
        let st = ck.storage.get_mut().unwrap_or_else(|e| e.into_inner());
        st.truncate(0)?;
        st.append(&checkpoint::encode_journal(&old))?;
        st.flush()?;
        ck.current = false;
        let mut order: Vec<(i64, u32, CommitId)> = Vec::with_capacity(self.nodes.len());
        for (id, n) in &self.nodes {
            let at = n.at.ok_or_else(|| Error::Storage(format!("commit {} has no place in the log", id.to_hex())))?;
            order.push((at.offset as i64, 0, *id));
        }
        sort_ranked(&mut order);
        let mut image = crate::log::header().to_vec();
        image.extend_from_slice(&crate::log::frame(crate::log::KIND_REPO, self.path.as_str().as_bytes()));
        let mut tables = crate::compact::Tables::default();
        let mut last = None;
        // Where each commit lands in the new log: a parent is named by its
        // new place only once written (a parent later in the old log — never
        // written so by Ibex — is named by its id).
        let mut placed: HashMap<CommitId, u64> = HashMap::with_capacity(order.len());
        for (_, _, id) in order {
            let at = image.len() as u64;
            let (record, defined) = crate::compact::encode(&self.nodes[&id].commit, at, |p| placed.get(p).copied(), &tables);
            placed.insert(id, at);
            tables.announce(defined);
            let framed = crate::log::frame(crate::log::KIND_COMPACT, &record);
            let mark = RecordMark { offset: at, len: (record.len() + 1) as u32, crc: u32::from_le_bytes(framed[4..8].try_into().expect("4 bytes")) };
            image.extend_from_slice(&framed);
            self.nodes.get_mut(&id).expect("listed above").at = Some(mark);
            last = Some(mark);
        }
        log.replace(&image, last)?;
        self.tables = tables;
        Ok(())
    }

    fn from_checkpoint(path: RepoPath, registry: Arc<Registry>, ck: checkpoint::Checkpoint, bytes: Vec<u8>) -> Self {
        let mut repo = Repository::new(path, registry);
        repo.digest = ck.digest;
        repo.tables = ck.tables;
        repo.cold = ck.commits.len();
        repo.sealed = Sealed { hot: vec![0; ck.commits.len().div_ceil(64)], table: ck.commits, bytes: Default::default() };
        repo.items.reserve(ck.items.len());
        // The registry's answer for the last namespace seen (items of a
        // repository share a few): two map lookups by string per item
        // were a tenth of opening 100k items.
        let mut last: Option<(SchemaId, bool, SchemaId)> = None;
        // Whether the checkpoint's items were out of key order (one written
        // before they were stored sorted).
        let mut unsorted = false;
        for it in ck.items {
            let head = it.head.and_then(|(schema, range, folded)| {
                let (keep, shared) = match &last {
                    Some((s, keep, shared)) if *s == schema => (*keep, shared.clone()),
                    _ => {
                        // A head in an older version than the app knows now is
                        // recomputed (upgraded) when used, not taken as it was;
                        // one in a newer version (an app rolled back) is
                        // recomputed from what this replica sees (branches.rs).
                        let keep = repo.registry.latest(&schema.ns).is_none_or(|l| l.version == schema.version);
                        let shared = repo.registry.intern(&schema.ns).map_or_else(|| schema.clone(), |ns| SchemaId { ns, version: schema.version });
                        last = Some((schema.clone(), keep, shared.clone()));
                        (keep, shared)
                    }
                };
                keep.then_some((shared, range, folded))
            });
            if repo.order.sorted.last().is_some_and(|last| **last >= *it.key) {
                unsorted = true;
            }
            repo.order.sorted.push(it.key.clone());
            repo.items.insert(it.key, ItemState { leaves: it.leaves, sealed_head: head, ..Default::default() });
        }
        if unsorted {
            // A checkpoint written before items were stored in key order.
            repo.order.sorted.sort_unstable();
        }
        repo.ckpt_buf = bytes;
        repo
    }

    /// Integrates the commit records of a scanned log region.
    fn load(&mut self, buf: &[u8], scan: &crate::log::Scan, report: &mut LoadReport) {
        self.track_changes = false;
        // Parents of compact records in this region, by log offset.
        let mut seen = crate::compact::Seen::default();
        // The repository the log says its compact records belong to, when
        // it is not this one.
        let mut foreign: Option<String> = None;
        for ((offset, _, range), (_, kind, payload)) in scan.records.iter().zip(scan.payloads(buf)) {
            // The payload range starts after the record header and kind byte.
            let mark = RecordMark { offset: *offset, len: (range.end - range.start + 1) as u32, crc: 0 };
            if kind == crate::log::KIND_REPO {
                let named = String::from_utf8_lossy(payload);
                foreign = (named != self.path.as_str()).then(|| named.into_owned());
                continue;
            }
            let parsed = if let (crate::log::KIND_COMPACT, Some(other)) = (kind, &foreign) {
                Err(Error::InvalidCommit { id: String::new(), reason: format!("belongs to {other}, not {} (the log says so)", self.path) })
            } else if kind == crate::log::KIND_COMPACT {
                let sealed = &self.sealed;
                let buf = sealed_bytes(sealed, &self.checkpoint);
                crate::compact::expand(payload, *offset, self.path.as_str(), &mut self.tables, |o| seen.get(o).or_else(|| buf.and_then(|b| sealed.id_at(b, o))))
                    .and_then(|(bytes, id)| StoredCommit::parse_known(bytes, id))
            } else {
                StoredCommit::parse(payload.into(), false)
            };
            let res = parsed.and_then(|c| {
                seen.push(*offset, c.id);
                self.insert_stored_inner(c, false, 0, 0, Some(mark))
            });
            match res {
                Ok(_) => report.commits += 1,
                Err(e) => report.rejected.push((*offset, e)),
            }
        }
        report.pending = self.pending.commits.len();
        report.commits -= report.pending;
        self.track_changes = true;
        self.integrated.clear();
    }

    /// Integrates commits this replica verified when they first entered it
    /// and kept outside a log (a server's shared database, read back) with
    /// their ids: as when opening a log, ids are not hashed again,
    /// signatures not checked again and values not decoded. Each is parsed
    /// (header only) and must belong here.
    /// With `quiet` (loading at open) nothing is reported by
    /// [`Repository::take_integrated`]; otherwise the new ones are, as for
    /// any insert. Returns the commits integrated or waiting, and the ones
    /// refused (malformed or of another repository) with why.
    pub fn insert_trusted(&mut self, commits: impl IntoIterator<Item = (CommitId, Box<[u8]>)>, quiet: bool) -> (usize, Vec<Error>) {
        if quiet {
            self.track_changes = false;
        }
        let mut ok = 0;
        let mut refused = Vec::new();
        for (id, bytes) in commits {
            match StoredCommit::parse_known(bytes, id).and_then(|c| self.insert_stored_inner(c, false, 0, 0, None)) {
                Ok(_) => ok += 1,
                Err(e) => refused.push(e),
            }
        }
        if quiet {
            self.track_changes = true;
            self.integrated.clear();
        }
        (ok, refused)
    }

    /// Writes a checkpoint of everything durable now (over the previous
    /// one). Needs the log flushed; computes every item's head first.
    pub fn write_checkpoint(&mut self) -> Result<()> {
        match &self.checkpoint {
            None => return Ok(()),
            // Nothing since the one on storage (a database closed without
            // writes): rewriting it would cost a file write and an fsync
            // that grow with the history, for nothing.
            Some(ck) if ck.current && ck.commits == 0 && ck.bytes == 0 => return Ok(()),
            Some(_) => {}
        }
        let Some(log) = &self.log else { return Ok(()) };
        if !log.is_synced() {
            return Err(Error::Storage("a checkpoint covers only what is durable: flush the log first".into()));
        }
        let mark = log.last_record();
        // In key order: opening lists them in that order without sorting.
        let keys = self.keys_in_order().to_vec();
        for k in &keys {
            let item = &self.items[k];
            if item.head.is_none() && item.sealed_head.is_none() {
                // An item whose head was never computed (or was dropped).
                self.head(k);
            }
        }
        let mut commits: Vec<SealedCommit> = Vec::with_capacity(self.nodes.len() + self.cold);
        for (id, n) in &self.nodes {
            let Some(at) = n.at else {
                return Err(Error::Storage(format!("commit {} has no place in the log", id.to_hex())));
            };
            commits.push(SealedCommit { id: *id, offset: at.offset, len: at.len, generation: n.generation, depth: n.depth, chain_bytes: n.chain_bytes, value_bytes: n.value_bytes });
        }
        if self.cold > 0 {
            // The commits still only in the old checkpoint: read its table
            // before the file is overwritten (and never write one without).
            let Some(buf) = sealed_bytes(&self.sealed, &self.checkpoint) else {
                // Found damaged: the file is emptied (the next open scans
                // the log and writes a sound one). Not an error for the
                // flush or close that asked: the log is durable.
                self.distrust_checkpoint();
                return Ok(());
            };
            commits.extend((0..self.sealed.table.len()).filter(|i| !self.sealed.is_hot(*i)).map(|i| self.sealed.table.get(buf, i)));
        }
        commits.sort_unstable_by_key(|c| c.id);
        let mut heads: Vec<Option<Vec<u8>>> = Vec::with_capacity(keys.len());
        for k in &keys {
            let item = &self.items[k];
            heads.push(item.head.as_ref().map(|h| {
                let mut w = crate::codec::Writer::new();
                w.u8(h.data.deleted as u8);
                crate::value::encode_fields(&mut w, &h.data.fields);
                w.into_bytes()
            }));
        }
        let mut items = Vec::with_capacity(keys.len());
        let ckpt = &self.ckpt_buf;
        for (k, head) in keys.iter().zip(&heads) {
            let item = &self.items[k];
            let h = match (&item.head, head, &item.sealed_head) {
                (Some(h), Some(b), _) => Some((&h.schema, &b[..], item.folded)),
                (None, _, Some((schema, range, folded))) => Some((schema, &ckpt[range.clone()], *folded)),
                _ => None,
            };
            items.push((&**k, &item.leaves[..], h));
        }
        let bytes = checkpoint::encode(&checkpoint::Contents { repo: self.path.as_str(), mark, digest: self.digest, commits: &commits, tables: &self.tables, items });
        let ck = self.checkpoint.as_mut().expect("checked above");
        let st = ck.storage.get_mut().unwrap_or_else(|e| e.into_inner());
        st.truncate(0)?;
        st.append(&bytes)?;
        st.flush()?;
        ck.commits = 0;
        ck.bytes = 0;
        ck.current = true;
        Ok(())
    }

    pub fn path(&self) -> &RepoPath {
        &self.path
    }

    /// Whether commits are written to a log.
    pub fn is_persistent(&self) -> bool {
        self.log.is_some()
    }

    /// Bytes written since the last successful flush (0: all durable).
    pub fn unsynced_bytes(&self) -> usize {
        self.log.as_ref().map_or(0, Log::unsynced)
    }

    /// Starts persisting an in-memory repository to an empty `storage`:
    /// every commit held so far is written (parents first), then new ones
    /// as they come. A server creates a repository's file only when its
    /// first commit is accepted, so reading a name creates nothing.
    pub fn persist_to(&mut self, storage: Box<dyn Storage>) -> Result<()> {
        let (mut log, buf, _) = Log::open(storage)?;
        if buf.len() > crate::log::HEADER_LEN {
            return Err(Error::Storage("persist_to needs an empty log".into()));
        }
        let ids: Vec<CommitId> = self.commits_in_order().iter().map(|c| c.id).collect();
        self.tables = Default::default();
        for id in ids {
            let nodes = &self.nodes;
            let mark = append_commit(&mut log, &mut self.tables, &nodes[&id].commit, |p| nodes.get(p).and_then(|n| n.at).map(|m| m.offset))?;
            // Where it lives, for a checkpoint to point at.
            self.nodes.get_mut(&id).expect("listed above").at = Some(mark);
        }
        self.log = Some(log);
        Ok(())
    }

    /// Gives a repository that was created in memory and then persisted
    /// (`persist_to`) a checkpoint beside its log, written from the next
    /// `write_checkpoint` or flush on (whatever the storage held is replaced).
    pub fn attach_checkpoint(&mut self, storage: Box<dyn Storage>) {
        if self.checkpoint.is_none() {
            self.checkpoint = Some(CheckpointState { storage: std::sync::Mutex::new(storage), commits: self.nodes.len(), bytes: 0, current: false });
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Sets the bound on commits waiting for unknown parents.
    pub fn set_max_pending(&mut self, n: usize) {
        self.limits.max_commits = n;
    }

    /// Sets every bound on commits waiting for unknown parents.
    pub fn set_pending_limits(&mut self, limits: PendingLimits) {
        self.limits = limits;
    }

    /// Bytes of commits waiting for unknown parents.
    pub fn pending_bytes(&self) -> usize {
        self.pending.bytes
    }

    /// Drops every waiting commit `owner` sent (its connection closed: it
    /// will send them again, with their parents, when it reconciles).
    pub fn drop_pending_of(&mut self, owner: Owner) -> usize {
        let ids: Vec<CommitId> = self.pending.commits.iter().filter(|(_, w)| w.owner == owner).map(|(id, _)| *id).collect();
        self.drop_pending(&ids)
    }

    /// Drops waiting commits that arrived before `before` (caller's clock).
    pub fn expire_pending(&mut self, before: i64) -> usize {
        let ids: Vec<CommitId> = self.pending.commits.iter().filter(|(_, w)| w.since < before).map(|(id, _)| *id).collect();
        self.drop_pending(&ids)
    }

    fn drop_pending(&mut self, ids: &[CommitId]) -> usize {
        for id in ids {
            if let Some((c, _)) = self.pending.remove(id) {
                for p in c.parents() {
                    if let Some(v) = self.pending.waiting.get_mut(&p) {
                        v.retain(|w| w != id);
                        if v.is_empty() {
                            self.pending.waiting.remove(&p);
                        }
                    }
                }
            }
        }
        ids.len()
    }

    /// Parents that waiting commits need and this replica lacks.
    pub fn missing_parents(&self) -> Vec<CommitId> {
        let mut v: Vec<CommitId> = self.pending.waiting.keys().filter(|p| !self.is_integrated(p) && !self.pending.commits.contains_key(*p)).copied().collect();
        v.sort();
        v
    }

    /// Limits the bytes of values integration may copy while rebuilding
    /// delta chains, until the next call (`None`: no limit). A server sets
    /// it per received frame, so a frame of many siblings on a long chain
    /// over a large value is cut short (`ERR_QUOTA`, and the rest comes in
    /// a later round) instead of stalling it. The first commit always
    /// passes.
    pub fn set_work_budget(&mut self, bytes: Option<u64>) {
        self.work_budget = bytes.map(|b| (b, true));
    }

    /// Commits integrated since the last call (unblocked waiting commits
    /// included), in integration order: parents before children.
    pub fn take_integrated(&mut self) -> Vec<CommitId> {
        std::mem::take(&mut self.integrated)
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
        self.nodes.len() + self.cold
    }

    /// Number of commits waiting for unknown parents.
    pub fn pending_count(&self) -> usize {
        self.pending.commits.len()
    }

    /// Every item key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.items.keys().map(|k| &**k)
    }

    /// The item keys in byte order (a query's order without `sortBy`, so
    /// a main thread loading them in this order appends instead of
    /// inserting). Costs no sort after opening from a checkpoint (its items
    /// are stored in this order); items created since are sorted and merged
    /// in at the next call.
    pub fn keys_in_order(&mut self) -> &[Arc<str>] {
        let o = &mut self.order;
        if !o.added.is_empty() {
            o.added.sort_unstable();
            let old = std::mem::take(&mut o.sorted);
            let mut merged = Vec::with_capacity(old.len() + o.added.len());
            let (mut a, mut b) = (old.into_iter().peekable(), o.added.drain(..).peekable());
            loop {
                let next = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) if x <= y => a.next(),
                    (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                    (Some(_), None) => a.next(),
                    (None, None) => break,
                };
                merged.extend(next);
            }
            o.sorted = merged;
        }
        &o.sorted
    }

    pub fn contains_commit(&self, id: &CommitId) -> bool {
        self.is_integrated(id) || self.pending.commits.contains_key(id)
    }

    /// Whether a commit is integrated here: in memory, or in the checkpoint
    /// opened from (not counting commits waiting for their parents).
    pub fn holds(&self, id: &CommitId) -> bool {
        self.is_integrated(id)
    }

    fn is_integrated(&self, id: &CommitId) -> bool {
        self.nodes.contains_key(id) || self.sealed_at(id).is_some()
    }

    /// The checkpoint's table could not be read (damaged since opening):
    /// empties the checkpoint's file, so the next open scans the log and
    /// writes a sound one, and says why.
    fn distrust_checkpoint(&mut self) -> Error {
        let why = match self.sealed.bytes.get() {
            Some(Err(e)) => e.clone(),
            _ => "the checkpoint's commit table could not be read".into(),
        };
        if let Some(ck) = &mut self.checkpoint {
            let st = ck.storage.get_mut().unwrap_or_else(|e| e.into_inner());
            let _ = st.truncate(0).and_then(|_| st.flush());
            ck.current = false;
        }
        Error::Storage(why)
    }

    fn sealed_at(&self, id: &CommitId) -> Option<usize> {
        if self.cold == 0 {
            return None;
        }
        let buf = sealed_bytes(&self.sealed, &self.checkpoint)?;
        self.sealed.table.find(buf, id).filter(|i| !self.sealed.is_hot(*i))
    }

    /// An integrated commit held in memory. After opening from a checkpoint
    /// most commits stay in the log: [`Repository::load_commits`] reads the
    /// ones a caller is about to need.
    pub fn commit(&self, id: &CommitId) -> Option<&StoredCommit> {
        self.nodes.get(id).map(|n| &n.commit)
    }

    /// Reads the given commits from the log into memory (those that are
    /// only in the checkpoint), so [`Repository::commit`] has them.
    pub fn load_commits(&mut self, ids: &[CommitId]) -> Result<()> {
        if self.cold > 0 {
            for id in ids {
                self.hot(id)?;
            }
        }
        Ok(())
    }

    /// Whether some commits are still only in the checkpoint (and the log).
    pub fn is_sealed(&self) -> bool {
        self.cold > 0
    }

    /// Reads a commit known only from the checkpoint into memory; false if
    /// it is not integrated at all.
    fn hot(&mut self, id: &CommitId) -> Result<bool> {
        if self.nodes.contains_key(id) {
            return Ok(true);
        }
        let Some(i) = self.sealed_at(id) else {
            return if self.cold > 0 && sealed_bytes(&self.sealed, &self.checkpoint).is_none() { Err(self.distrust_checkpoint()) } else { Ok(false) };
        };
        let buf = sealed_bytes(&self.sealed, &self.checkpoint).expect("found in it");
        let s = self.sealed.table.get(buf, i);
        let log = self.log.as_mut().ok_or_else(|| Error::Storage("a checkpointed repository without its log".into()))?;
        let mut c = match log.read_record(s.mark())? {
            (crate::log::KIND_COMPACT, payload) => {
                let sealed = &self.sealed;
                // Parents of a checkpointed commit are checkpointed too.
                let (bytes, id) = crate::compact::expand(&payload, s.offset, self.path.as_str(), &mut self.tables, |o| sealed.id_at(buf, o))?;
                if id != s.id {
                    return Err(Error::Storage(format!("the log record at {} expands to commit {}, not {} as the checkpoint says", s.offset, id.to_hex(), s.id.to_hex())));
                }
                StoredCommit::parse_known(bytes, id)?
            }
            (_, bytes) => StoredCommit::parse_known(bytes.into_boxed_slice(), s.id)?,
        };
        if let Some(ns) = self.registry.intern(&c.schema.ns) {
            c.schema.ns = ns;
        }
        let key = self.items.get_key_value(&*c.key).map(|(k, _)| k.clone());
        if let Some(k) = key {
            // One copy of the key for the item and all its commits.
            c.key = k;
        }
        self.nodes.insert(*id, Node { commit: c, generation: s.generation, depth: s.depth, chain_bytes: s.chain_bytes, value_bytes: s.value_bytes, at: Some(s.mark()) });
        self.sealed.set_hot(i);
        self.cold -= 1;
        Ok(true)
    }

    /// Makes an item ready for writes and merges: its leaves in memory and
    /// its checkpointed head decoded.
    fn warm_item(&mut self, key: &str) -> Result<()> {
        let Some(item) = self.items.get(key) else { return Ok(()) };
        if self.cold > 0 {
            for l in item.leaves.clone() {
                self.hot(&l)?;
            }
        }
        let item = self.items.get_mut(key).expect("present");
        if let Some((schema, range, folded)) = item.sealed_head.take() {
            let bytes = &self.ckpt_buf[range];
            let mut r = crate::codec::Reader::new(bytes);
            let deleted = r.bool("deleted")?;
            let fields = crate::value::decode_fields(&mut r)?;
            item.head = Some(Arc::new(Head { schema, data: Arc::new(ItemData { deleted, fields }) }));
            item.folded = folded;
        }
        Ok(())
    }

    /// Reads every commit still only in the checkpoint into memory: what a
    /// merge below the checkpoint, the whole history or an export needs.
    pub fn unseal(&mut self) -> Result<()> {
        if self.cold == 0 {
            return Ok(());
        }
        let Some(buf) = sealed_bytes(&self.sealed, &self.checkpoint) else { return Err(self.distrust_checkpoint()) };
        let ids: Vec<CommitId> = (0..self.sealed.table.len()).filter(|i| !self.sealed.is_hot(*i)).map(|i| CommitId(*self.sealed.table.id(buf, i))).collect();
        for id in ids {
            self.hot(&id)?;
        }
        Ok(())
    }

    /// Count and XOR of the integrated commits' ids.
    pub fn digest(&self) -> SetDigest {
        self.digest
    }

    /// Ids of commits waiting for unknown parents.
    pub fn pending_ids(&self) -> impl Iterator<Item = &CommitId> {
        self.pending.commits.keys()
    }

    /// Every integrated commit held in memory, parents before children (by
    /// generation); call [`Repository::unseal`] first for all of them.
    pub fn commits_in_order(&self) -> Vec<&StoredCommit> {
        let mut ranked: Vec<(i64, u32, CommitId)> = self.nodes.values().map(|n| (i64::from(n.generation), 0, n.commit.id)).collect();
        sort_ranked(&mut ranked);
        ranked.iter().map(|(_, _, id)| &self.nodes[id].commit).collect()
    }

    /// Sorts integrated commit ids parents first (by generation), dropping
    /// ids this replica does not hold.
    pub fn parents_first(&self, ids: &mut Vec<CommitId>) {
        ids.retain(|id| self.is_integrated(id));
        let mut ranked: Vec<(i64, u32, CommitId)> = ids.iter().map(|id| (i64::from(self.generation(id)), 0, *id)).collect();
        sort_ranked(&mut ranked);
        ids.clear();
        ids.extend(ranked.into_iter().map(|(_, _, id)| id));
        ids.dedup();
    }

    fn generation(&self, id: &CommitId) -> u32 {
        match self.nodes.get(id) {
            Some(n) => n.generation,
            None => match (self.sealed_at(id), sealed_bytes(&self.sealed, &self.checkpoint)) {
                (Some(i), Some(buf)) => self.sealed.table.get(buf, i).generation,
                _ => 0,
            },
        }
    }

    /// Every integrated commit id (in memory or only in the checkpoint), in
    /// no particular order.
    pub fn commit_ids(&self) -> impl Iterator<Item = CommitId> + '_ {
        let buf = if self.cold == 0 { None } else { sealed_bytes(&self.sealed, &self.checkpoint) };
        let cold = buf.map_or(0, |_| self.sealed.table.len());
        self.nodes.keys().copied().chain((0..cold).filter(|i| !self.sealed.is_hot(*i)).map(move |i| CommitId(*self.sealed.table.id(buf.expect("cold > 0 only with the table"), i))))
    }

    /// Current leaves of an item, sorted by `(timestamp, id)`.
    pub fn leaves(&self, key: &str) -> Vec<CommitId> {
        self.items.get(key).map(|i| i.leaves.clone()).unwrap_or_default()
    }

    /// Keys whose head changed since the last call (loading a log does not
    /// count: everything is new then).
    pub fn take_changed(&mut self) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self.changed.drain().collect();
        v.sort();
        v
    }

    /// Makes everything written so far durable in storage; then, when
    /// enough was written since the last one, a new checkpoint.
    pub fn flush(&mut self) -> Result<()> {
        match &mut self.log {
            Some(log) => log.flush()?,
            None => return Ok(()),
        }
        if self.checkpoint.as_ref().is_some_and(|c| c.commits >= CHECKPOINT_EVERY_COMMITS || c.bytes >= CHECKPOINT_EVERY_BYTES) {
            self.write_checkpoint()?;
        }
        Ok(())
    }

    /// Integrates a decoded commit (see [`Repository::insert_stored`]).
    pub fn insert(&mut self, c: SignedCommit) -> Result<Inserted> {
        self.insert_stored(StoredCommit::from_signed(&c))
    }

    /// Integrates a commit (see module docs): its value is reconstructed and
    /// validated against its schema when the schema is known. The caller has
    /// verified its signature if it came from elsewhere. Invalid commits are
    /// rejected with an error and leave the repository unchanged.
    pub fn insert_stored(&mut self, c: StoredCommit) -> Result<Inserted> {
        self.insert_stored_inner(c, true, 0, 0, None)
    }

    /// [`Repository::insert_stored`] for a commit that came from `owner`
    /// at `now` (caller's clock): if it must wait for parents, it counts
    /// against that owner's bound and expires with it.
    pub fn insert_from(&mut self, c: StoredCommit, owner: Owner, now: i64) -> Result<Inserted> {
        self.insert_stored_inner(c, true, owner, now, None)
    }

    /// `at`: where the commit already is in the log (opening), else it is
    /// appended when integrated.
    fn insert_stored_inner(&mut self, c: StoredCommit, validate: bool, owner: Owner, now: i64, at: Option<RecordMark>) -> Result<Inserted> {
        if c.repo() != self.path.as_str() {
            return Err(Self::reject(&c.id, format!("belongs to {}, not {}", c.repo(), self.path)));
        }
        if self.contains_commit(&c.id) {
            return Ok(Inserted::Duplicate);
        }
        let missing: Vec<CommitId> = c.parents().filter(|p| !self.is_integrated(p)).collect();
        if !missing.is_empty() {
            let n = c.bytes().len();
            let lim = self.limits;
            let own = self.pending.by_owner.get(&owner).copied().unwrap_or((0, 0));
            if self.pending.commits.len() >= lim.max_commits || self.pending.bytes + n > lim.max_bytes || own.1 + n > lim.max_owner_bytes {
                return Err(Error::PendingFull { limit: lim.max_commits });
            }
            for m in missing {
                self.pending.waiting.entry(m).or_default().push(c.id);
            }
            self.pending.bytes += n;
            let e = self.pending.by_owner.entry(owner).or_insert((0, 0));
            e.0 += 1;
            e.1 += n;
            self.pending.commits.insert(c.id, Waiting { commit: c, at, owner, since: now });
            return Ok(Inserted::Pending);
        }
        let id = c.id;
        self.integrate(c, validate, at)?;
        // Integrate descendants that were waiting for this commit, iteratively.
        let mut unblocked = 0;
        let mut ready = vec![id];
        while let Some(done) = ready.pop() {
            for w in self.pending.waiting.remove(&done).unwrap_or_default() {
                let Some(pc) = self.pending.commits.get(&w) else { continue };
                if pc.commit.parents().all(|p| self.is_integrated(&p)) {
                    let (pc, at) = self.pending.remove(&w).expect("checked above");
                    // A waiting commit that turns out invalid is dropped; the
                    // one that unblocked it stays integrated.
                    if self.integrate(pc, validate, at).is_ok() {
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

    /// Integrates a commit whose parents are all present. With `validate`,
    /// its value is reconstructed and checked against its schema.
    fn integrate(&mut self, mut c: StoredCommit, validate: bool, at: Option<RecordMark>) -> Result<()> {
        let id = c.id;
        // Commits from a checkpoint are read from the log as they become
        // needed: the parents, and the item's leaves and head. A commit
        // that forks the item will be merged against older commits: read
        // them all (the first fork after opening pays what opening saved).
        if self.cold > 0 || self.items.get(&*c.key).is_some_and(|i| i.sealed_head.is_some()) {
            for p in c.parents() {
                self.hot(&p)?;
            }
            // The checkpoint's head becomes the item's (it is what the new
            // commit is merged into); left sealed it would go stale.
            self.warm_item(&c.key)?;
            let forks = self.items.get(&*c.key).is_some_and(|i| i.leaves.iter().any(|l| !c.parents().any(|p| p == *l)));
            if forks {
                self.unseal()?;
            }
        }
        // Share the namespace name with the registry instead of keeping one
        // copy per commit.
        if let Some(ns) = self.registry.intern(&c.schema.ns) {
            c.schema.ns = ns;
        }
        let mut generation = 0;
        for p in c.parents() {
            let pn = &self.nodes[&p];
            if pn.commit.key != c.key {
                return Err(Self::reject(&id, format!("parent {} belongs to item `{}`", p.to_hex(), pn.commit.key)));
            }
            generation = generation.max(pn.generation);
        }
        let body = u32::try_from(c.body_len()).unwrap_or(u32::MAX);
        let (depth, chain_bytes, value_bytes) = match c.delta_base() {
            None => (0, 0, body),
            Some(base) => self.nodes[&base].extended_by(body),
        };
        if depth > max_chain(value_bytes) {
            return Err(Self::reject(
                &id,
                format!("delta chain of {depth} over a value of {value_bytes} bytes: longer than {} (a rebuild may move at most {REBUILD_BUDGET} bytes)", max_chain(value_bytes)),
            ));
        }
        let value = if validate {
            let v = self.value_from_body(&c)?;
            if let Some(schema) = self.registry.get(&c.schema) {
                schema.validate(&v).map_err(|e| Self::reject(&id, e.to_string()))?;
            }
            Some(v)
        } else if let Some(base) = c.delta_base()
            && self.items.get(&*c.key).is_some_and(|i| i.leaves == [base] && i.head.is_some())
        {
            // Trusted (our own log), but the head it extends is known: keep
            // the head current at the cost of the delta (the head moves, it
            // is not copied) instead of dropping it — after opening from a
            // checkpoint, recomputing it would read the history.
            Some(self.value_from_body(&c)?)
        } else {
            None
        };
        let at = match (&mut self.log, at) {
            (Some(log), None) => {
                let (nodes, sealed, ck) = (&self.nodes, &self.sealed, &self.checkpoint);
                // The table is read only for a parent that is not in memory.
                let mark = append_commit(log, &mut self.tables, &c, |p| nodes.get(p).and_then(|n| n.at).map(|m| m.offset).or_else(|| sealed_bytes(sealed, ck).and_then(|b| sealed.offset_of(b, p))))?;
                if let Some(ck) = &mut self.checkpoint {
                    ck.commits += 1;
                    ck.bytes += u64::from(mark.len) + 8;
                }
                Some(mark)
            }
            (_, at) => at,
        };
        let key = c.key.clone();
        let (ts, schema) = (c.timestamp, c.schema.clone());
        let parents: Vec<CommitId> = c.parents().collect();
        self.nodes.insert(id, Node { commit: c, generation: generation + 1, depth, chain_bytes, value_bytes, at });
        self.digest.add(&id);
        if self.track_changes {
            self.integrated.push(id);
        }
        if !self.items.contains_key(&key) {
            self.order.added.push(key.clone());
        }
        let nodes = &self.nodes;
        let item = self.items.entry(key.clone()).or_default();
        let before = item.leaves.len();
        item.leaves.retain(|l| !parents.contains(l));
        let replaced = item.leaves.len() != before;
        let pos = item.leaves.partition_point(|l| (nodes[l].commit.timestamp, *l) < (ts, id));
        item.leaves.insert(pos, id);
        let last = pos + 1 == item.leaves.len();
        let latest = self.registry.latest(&schema.ns).is_none_or(|l| l.version <= schema.version);
        let registry = &self.registry;
        if item.leaves.iter().any(|l| hides(registry, &nodes[l].commit.schema)) {
            // A commit in a schema version newer than this replica knows is
            // not part of the value it shows (branches.rs): recomputed on read.
            (item.head, item.star, item.folded) = (None, None, false);
        } else if item.leaves.len() == 1 {
            // A linear history (the common case) knows its new head already.
            item.star = None;
            item.head = value.filter(|_| latest).map(|v| Arc::new(Head { schema, data: v }));
            item.folded = item.head.is_some();
        } else {
            self.fold_in(&key, id, &parents, replaced, last, latest, value);
        }
        if self.track_changes {
            self.changed.insert(key);
        }
        Ok(())
    }

    /// Keeps a computed head current when a commit forks its item, at a
    /// cost that follows the commit, not the number of leaves:
    /// * a new child of the base every leaf shares (W writers who all
    ///   edited the same version) is added to the item's [`StarMerge`];
    /// * a leaf that sorts last and replaced no leaf is folded into the
    ///   head with one [`merge3`] against its lowest common ancestor with
    ///   the other leaves — exactly the last step of the full fold;
    /// * anything else (a merge commit, a leaf sorting before others, a
    ///   schema change) drops the head, recomputed when next read.
    ///
    /// Heads nobody read are left uncomputed (a server never pays for them).
    #[allow(clippy::too_many_arguments)]
    fn fold_in(&mut self, key: &Arc<str>, id: CommitId, parents: &[CommitId], replaced: bool, last: bool, latest: bool, value: Option<Arc<ItemData>>) {
        let item = &self.items[key];
        let schema = &self.nodes[&id].commit.schema;
        let order = (self.nodes[&id].commit.timestamp, id);
        let star_fits = latest && !replaced && item.star.as_ref().is_some_and(|s| parents == [s.base] && s.schema == *schema);
        let append = !star_fits && latest && !replaced && last && item.folded && item.head.as_ref().is_some_and(|h| h.schema == *schema);
        let computed = if star_fits || append { value.map_or_else(|| self.value_of(&id), Ok).ok() } else { None };
        let Some(v) = computed else {
            let item = self.items.get_mut(key).expect("present");
            (item.head, item.star, item.folded) = (None, None, false);
            return;
        };
        if star_fits {
            let item = self.items.get_mut(key).expect("present");
            // Drop the head first: it shares the star's value, which is then
            // updated in place instead of copied.
            let prev = item.head.take();
            let star = item.star.as_mut().expect("checked above");
            if star.merge.add(order, &v) {
                item.head = Some(Arc::new(Head { schema: star.schema.clone(), data: star.merge.value() }));
                item.folded = true;
                return;
            }
            // A change the star cannot hold (text): fold it pairwise.
            (item.head, item.star) = (prev, None);
        }
        let item = &self.items[key];
        let (Some(head), true) = (item.head.clone(), last && item.folded) else {
            let item = self.items.get_mut(key).expect("present");
            (item.head, item.star, item.folded) = (None, None, false);
            return;
        };
        let version = schema.version;
        let others: Vec<CommitId> = item.leaves.iter().filter(|l| **l != id && self.nodes[*l].commit.schema.ns == schema.ns).copied().collect();
        let base = match lowest_common_ancestor(&self.nodes, &others, id) {
            Some(b) if self.nodes[&b].commit.schema.ns == schema.ns => self.value_at(&b, version),
            _ => Ok(ItemData::default()),
        };
        let item_head = base.map(|base| Arc::new(Head { schema: head.schema.clone(), data: Arc::new(merge3(&base, &head.data, &v)) }));
        let item = self.items.get_mut(key).expect("present");
        item.star = None;
        match item_head {
            Ok(h) => (item.head, item.folded) = (Some(h), true),
            Err(_) => (item.head, item.folded) = (None, false),
        }
    }

    /// Charges `bytes` of value copying to the work budget. The first
    /// charge after [`Repository::set_work_budget`] always passes, so every
    /// frame makes progress however large one value is.
    fn charge(&mut self, id: &CommitId, bytes: u64) -> Result<()> {
        if let Some((left, first)) = &mut self.work_budget {
            if *left < bytes && !*first {
                return Err(Error::Quota(format!("commit {} needs rebuilding {bytes} bytes of values, more than one frame may cost here; it is taken in a later round", id.to_hex())));
            }
            *left = left.saturating_sub(bytes);
            *first = false;
        }
        Ok(())
    }

    /// The value of `base` for a delta on it, owned: taken from the item's
    /// head when `base` is its only leaf (a linear history: no copy at
    /// all), else rebuilt or copied, and charged to the work budget.
    fn base_for_delta(&mut self, base: &CommitId, id: &CommitId, body: usize) -> Result<ItemData> {
        let node = &self.nodes[base];
        let key = node.commit.key.clone();
        let schema = node.commit.schema.clone();
        let value_bytes = u64::from(node.value_bytes);
        if let Some(item) = self.items.get_mut(&key)
            && item.leaves == [*base]
            && item.head.as_ref().is_some_and(|h| h.schema == schema)
        {
            let head = item.head.take().expect("checked above");
            let data = Arc::try_unwrap(head).map(|h| h.data).unwrap_or_else(|h| h.data.clone());
            {
                let mut cache = self.vcache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.as_ref().is_some_and(|(cid, _)| cid == base) {
                    *cache = None;
                }
            }
            if Arc::strong_count(&data) == 1 {
                self.charge(id, body as u64)?;
                return Ok(Arc::try_unwrap(data).unwrap_or_else(|d| (*d).clone()));
            }
            // Shared elsewhere (a caller holds the head): copy it.
            self.charge(id, value_bytes + body as u64)?;
            return Ok((*data).clone());
        }
        // A value held already costs its copy; a rebuild costs up to one
        // value per step of the chain (a text splice moves the text).
        let steps = if self.known_value(base, &self.nodes[base]).is_some() { 1 } else { u64::from(self.nodes[base].depth) + 1 };
        self.charge(id, value_bytes * steps + body as u64)?;
        Ok(Arc::unwrap_or_clone(self.value_of(base)?))
    }

    /// The value carried by a commit that is not integrated yet.
    fn value_from_body(&mut self, c: &StoredCommit) -> Result<Arc<ItemData>> {
        Ok(match c.body()? {
            Body::Full(d) => d,
            Body::Delta { base, changes } => {
                let mut v = self.base_for_delta(&base, &c.id, c.body_len())?;
                change::apply_in_place(&mut v, &changes).map_err(|e| Self::reject(&c.id, e))?;
                // Not cached here: it usually becomes the item's head, and a
                // second reference would force a copy on the next delta.
                Arc::new(v)
            }
        })
    }

    /// A value this replica holds without rebuilding it: the head of a
    /// single-leaf item, or the last rebuilt value.
    fn known_value(&self, id: &CommitId, node: &Node) -> Option<Arc<ItemData>> {
        if let Some(item) = self.items.get(&node.commit.key)
            && item.leaves == [*id]
            && let Some(h) = &item.head
            && h.schema == node.commit.schema
        {
            return Some(h.data.clone());
        }
        match &*self.vcache.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((cid, v)) if cid == id => Some(v.clone()),
            _ => None,
        }
    }

    /// The value a commit carries, in its own schema version.
    ///
    /// Rebuilding walks the delta chain back to a full value (or a value
    /// already known), copies that once and applies the deltas in place, so
    /// its cost is one value plus the deltas, not one value per step.
    pub fn value_of(&self, id: &CommitId) -> Result<Arc<ItemData>> {
        let node = self.nodes.get(id).ok_or_else(|| Error::MissingCommit { id: id.to_hex(), missing: id.to_hex() })?;
        if let Some(v) = self.known_value(id, node) {
            return Ok(v);
        }
        let mut chain: Vec<Vec<Change>> = Vec::new();
        let mut cur = node;
        let mut cur_id = *id;
        let base = loop {
            if cur_id != *id
                && let Some(v) = self.known_value(&cur_id, cur)
            {
                break v;
            }
            match cur.commit.body()? {
                Body::Full(d) => break d,
                Body::Delta { base, changes } => {
                    chain.push(changes);
                    cur_id = base;
                    cur = &self.nodes[&base];
                }
            }
        };
        let mut v = Arc::unwrap_or_clone(base);
        for changes in chain.iter().rev() {
            change::apply_in_place(&mut v, changes).map_err(|e| Self::reject(id, e))?;
        }
        let v = Arc::new(v);
        *self.vcache.lock().unwrap_or_else(|e| e.into_inner()) = Some((*id, v.clone()));
        Ok(v)
    }

    /// The upgraded value of a commit at `version` of its namespace.
    fn value_at(&self, id: &CommitId, version: u32) -> Result<ItemData> {
        let schema = &self.nodes[id].commit.schema;
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
        if item.sealed_head.is_some() || self.cold > 0 {
            // The checkpoint's head; or, without one, a merge that may reach
            // below the checkpoint: everything it could need is read first.
            // Storage that fails here reads as absent, as below.
            self.warm_item(key).ok()?;
            if let Some(h) = &self.items[key].head {
                return Some(h.clone());
            }
            self.unseal().ok()?;
        }
        let item = self.items.get(key)?;
        if item.leaves.iter().any(|l| self.nodes.get(l).is_some_and(|n| hides(&self.registry, &n.commit.schema))) {
            let visible = self.visible_leaves(key).ok()?;
            let head = Arc::new(self.merge_heads(&visible).ok()?.0);
            let item = self.items.get_mut(key).expect("present");
            (item.head, item.star, item.folded) = (Some(head.clone()), None, false);
            return Some(head);
        }
        let item = self.items.get(key)?;
        if let Some(star) = self.star_of(&item.leaves) {
            let head = Arc::new(Head { schema: star.schema.clone(), data: star.merge.value() });
            let item = self.items.get_mut(key).expect("present");
            (item.head, item.star, item.folded) = (Some(head.clone()), Some(Box::new(star)), true);
            return Some(head);
        }
        let (head, folded) = match self.merge_heads(&item.leaves) {
            Ok((h, folded)) => (Arc::new(h), folded),
            // Values of integrated commits always reconstruct (they did when
            // they entered this replica), so this is unreachable in practice;
            // an item that cannot be computed reads as absent rather than panic.
            Err(_) => return None,
        };
        let item = self.items.get_mut(key).expect("present");
        (item.head, item.folded) = (Some(head.clone()), folded);
        Some(head)
    }

    /// The head of `key` computed from scratch by the pairwise fold, with
    /// no cache, star or incremental step: what the incremental paths must
    /// equal (tests compare them).
    #[doc(hidden)]
    pub fn head_by_full_fold(&self, key: &str) -> Option<Head> {
        self.merge_heads(&self.items.get(key)?.leaves).ok().map(|(h, _)| h)
    }

    /// The [`StarMerge`] of `leaves` when there are several, every one is a
    /// child of the same commit alone and in the same, newest known schema
    /// version, and none changes text; it equals [`Repository::merge_heads`]
    /// then (same fold, same base for every step).
    fn star_of(&self, leaves: &[CommitId]) -> Option<Star> {
        let [first, ..] = leaves else { return None };
        if leaves.len() < 2 {
            return None;
        }
        let c = &self.nodes[first].commit;
        let schema = c.schema.clone();
        let mut ps = c.parents();
        let (Some(base), None) = (ps.next(), ps.next()) else { return None };
        if self.registry.latest(&schema.ns).is_some_and(|l| l.version != schema.version) {
            return None;
        }
        for l in leaves {
            let c = &self.nodes[l].commit;
            let mut ps = c.parents();
            if c.schema != schema || ps.next() != Some(base) || ps.next().is_some() {
                return None;
            }
        }
        let base_value = if self.nodes[&base].commit.schema.ns == schema.ns { self.value_at(&base, schema.version).ok()? } else { ItemData::default() };
        let mut merge = StarMerge::new(base_value);
        for l in leaves {
            if !merge.add((self.nodes[l].commit.timestamp, *l), &*self.value_of(l).ok()?) {
                return None;
            }
        }
        Some(Star { base, schema, merge })
    }

    /// Appends the encoded head of `key` — `str ns, varint version,
    /// u8 deleted, fields` (value.rs) — to `w`; false if the item does not
    /// exist. An item with one full-value leaf in the newest known version
    /// is copied from its commit without decoding; others are merged (and
    /// their head cached).
    pub fn encode_head(&mut self, key: &str, w: &mut crate::codec::Writer) -> bool {
        let Some(item) = self.items.get(key) else { return false };
        if item.head.is_none()
            && let Some((schema, range, _)) = &item.sealed_head
        {
            // From the checkpoint, as stored: no decoding.
            w.str(&schema.ns);
            w.varint(schema.version.into());
            w.raw(&self.ckpt_buf[range.clone()]);
            return true;
        }
        if item.head.is_none()
            && let [only] = item.leaves.as_slice()
            && let Some(node) = self.nodes.get(only)
        {
            let c = &node.commit;
            if let Some(bytes) = c.full_value_bytes()
                && self.registry.latest(&c.schema.ns).is_none_or(|l| l.version == c.schema.version)
            {
                w.str(&c.schema.ns);
                w.varint(c.schema.version.into());
                w.raw(bytes);
                return true;
            }
        }
        let Some(h) = self.head(key) else { return false };
        w.str(&h.schema.ns);
        w.varint(h.schema.version.into());
        w.u8(h.data.deleted as u8);
        crate::value::encode_fields(w, &h.data.fields);
        true
    }

    /// Deterministic merge of a set of commits of one item (see module docs).
    /// Also says whether the head is the plain fold (no upgrade after it).
    fn merge_heads(&self, ids: &[CommitId]) -> Result<(Head, bool)> {
        if let [only] = ids {
            // Fast path (almost every item): one leaf already in the newest
            // known version needs neither a merge nor a copy.
            let schema = &self.nodes[only].commit.schema;
            if self.registry.latest(&schema.ns).is_none_or(|l| l.version <= schema.version) {
                return Ok((Head { schema: schema.clone(), data: self.value_of(only)? }, true));
            }
        }
        let mut all = ids.to_vec();
        self.by_time(&mut all);
        let newest = &self.nodes[all.last().expect("an item has at least one leaf")].commit.schema;
        // Merge in the newest schema version among the leaves of that
        // namespace; leaves of another namespace (two writers used the same
        // key with different schemas) are superseded by the newest leaf.
        let ns = newest.ns.clone();
        let leaves: Vec<CommitId> = all.iter().filter(|l| self.nodes[*l].commit.schema.ns == ns).copied().collect();
        let version = leaves.iter().map(|l| self.nodes[l].commit.schema.version).max().unwrap_or(newest.version);
        let mut acc = self.value_at(&leaves[0], version)?;
        for (i, leaf) in leaves.iter().enumerate().skip(1) {
            let base = match lowest_common_ancestor(&self.nodes, &leaves[..i], *leaf) {
                Some(b) if self.nodes[&b].commit.schema.ns == ns => self.value_at(&b, version)?,
                _ => ItemData::default(),
            };
            acc = merge3(&base, &acc, &self.value_at(leaf, version)?);
        }
        // Present the value in the newest version this replica knows.
        let latest = self.registry.latest(&ns).map(|s| s.version).unwrap_or(version).max(version);
        let (data, reached) = self.registry.upgrade(acc, &SchemaId::new(ns.clone(), version), latest);
        Ok((Head { schema: SchemaId::new(ns, reached), data: Arc::new(data) }, reached == version))
    }

    /// Writes a new value of `key` as a commit signed by `session`. Returns
    /// `None` when the value equals the current head (nothing to commit).
    /// `now` is the writer's clock in milliseconds.
    pub fn write(&mut self, key: &str, schema: &SchemaId, data: ItemData, session: &SessionKey, now: i64) -> Result<Option<CommitId>> {
        self.write_body(key, schema, data, session, now, false)
    }

    /// [`Repository::write`] with a full value, never a delta: for commits
    /// that must be readable alone (certificates travel one at a time).
    pub fn write_full(&mut self, key: &str, schema: &SchemaId, data: ItemData, session: &SessionKey, now: i64) -> Result<Option<CommitId>> {
        self.write_body(key, schema, data, session, now, true)
    }

    fn write_body(&mut self, key: &str, schema: &SchemaId, data: ItemData, session: &SessionKey, now: i64, full: bool) -> Result<Option<CommitId>> {
        let def = self.registry.get(schema).ok_or_else(|| Error::UnknownSchema(schema.to_string()))?.clone();
        self.write_checked(key, schema, data, session, now, full, Some(&def))
    }

    /// Writes a value made from the item's own history (a revert, a
    /// restored version): validated against its schema when this replica
    /// knows it, written as it is when not (a server knows no app schemas).
    pub(crate) fn write_trusted(&mut self, key: &str, schema: &SchemaId, data: ItemData, session: &SessionKey, now: i64) -> Result<Option<CommitId>> {
        let def = self.registry.get(schema).cloned();
        self.write_checked(key, schema, data, session, now, false, def.as_deref())
    }

    #[allow(clippy::too_many_arguments)]
    fn write_checked(&mut self, key: &str, schema: &SchemaId, mut data: ItemData, session: &SessionKey, now: i64, full: bool, def: Option<&crate::schema::Schema>) -> Result<Option<CommitId>> {
        check_key(key)?;
        // The new commit lists the leaves as parents: read them if they are
        // still only in the checkpoint.
        self.warm_item(key)?;
        data.normalize();
        if let Some(def) = def {
            def.validate(&data)?;
        }
        if self.base_for_write(key, schema)? == data && self.head(key).is_some_and(|h| h.schema == *schema) {
            return Ok(None);
        }
        // A replica writes on what it sees: commits in a newer version of
        // the schema than it knows stay out of its parents (branches.rs).
        let mut parents = self.visible_leaves(key)?;
        let max_parent_ts = parents.iter().map(|p| self.nodes[p].commit.timestamp).max();
        let timestamp = max_parent_ts.map_or(now, |t| now.max(t.saturating_add(1)));
        let body = if full { Body::Full(Arc::new(data.clone())) } else { self.choose_body(&parents, schema, &data)? };
        parents.sort();
        let schema = self.registry.intern(&schema.ns).map_or_else(|| schema.clone(), |ns| SchemaId { ns, version: schema.version });
        let commit = Commit { repo: self.path.clone(), key: key.into(), parents, timestamp, session: session.id(), schema, body };
        let signed = commit.sign(session)?;
        let id = signed.id;
        // Already validated above.
        self.insert_stored_inner(StoredCommit::from_signed(&signed), false, 0, 0, None)?;
        let item = self.items.get_mut(key).expect("just written");
        if item.leaves.len() == 1 && self.registry.latest(&signed.commit.schema.ns).is_none_or(|l| l.version <= signed.commit.schema.version) {
            item.head = Some(Arc::new(Head { schema: signed.commit.schema, data: Arc::new(data) }));
            item.folded = true;
        }
        Ok(Some(id))
    }

    /// Applies changes to the current head (or an empty item) and writes the
    /// result.
    pub fn update(&mut self, key: &str, schema: &SchemaId, changes: &[Change], session: &SessionKey, now: i64) -> Result<Option<CommitId>> {
        let current = self.base_for_write(key, schema)?;
        let data =
            change::apply(&current, changes).map_err(|reason| Error::Validation { schema: schema.to_string(), field: changes.iter().find_map(Change::field).unwrap_or("$item").to_owned(), reason })?;
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
            if node.commit.schema == *schema && node.depth < MAX_CHAIN - 1 {
                let changes = change::diff(&*self.value_of(base)?, data);
                let mut d = crate::codec::Writer::new();
                change::encode(&mut d, &changes);
                let mut f = crate::codec::Writer::new();
                crate::value::encode_fields(&mut f, &data.fields);
                // The chain as `integrate` will record it.
                let (depth, _, value_bytes) = node.extended_by(u32::try_from(crate::commit::delta_body_len(d.len())).unwrap_or(u32::MAX));
                if d.len() * 100 <= f.len() * 85 && node.chain_bytes as usize + d.len() <= f.len() && depth < max_chain(value_bytes) {
                    return Ok(Body::Delta { base: *base, changes });
                }
            }
        }
        Ok(Body::Full(Arc::new(data.clone())))
    }
}
