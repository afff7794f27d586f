//! Checkpoints: what opening a repository needs, kept beside its log, so
//! opening costs O(items) instead of O(history) (DESIGN.md §5).
//!
//! ```text
//! checkpoint = magic "IBEXCKPT" (8) ‖ format u32 LE (= 2) ‖ head length u32 LE
//!          ‖ head ‖ crc32(head) u32 LE ‖ table
//! head   = str repo ‖ mark ‖ digest ‖ varint n ‖ u32 LE crc32(table) ‖ tables
//!          ‖ varint m ‖ m × item
//! table  = n × commit ‖ n × u32 LE index        (read when first needed, not at open)
//! mark   = u8 0                                  (the log held no record)
//!        | u8 1 ‖ varint offset ‖ varint len ‖ u32 LE crc
//!                                                (the last record covered, as in the log)
//! digest = varint count ‖ 32 B xor               (of every commit id)
//! commit = 32 B id ‖ u64 offset ‖ u32 len       (where its record is; all LE)
//!          ‖ u32 generation ‖ u16 depth ‖ u32 chain_bytes ‖ u32 value_bytes
//!                                                (58 bytes, sorted by id, every integrated
//!                                                commit; fixed size so it is searched
//!                                                in place, never decoded whole)
//! index  = the commits' places in the table, in log order (a compact
//!          record names its parents by log offset: this finds them)
//! tables = varint s ‖ s × (u8 0 | u8 1 ‖ 32 B session key)
//!          ‖ varint k ‖ k × (u8 0 | u8 1 ‖ str ns ‖ varint version)
//!                                                (the log's numbered sessions and
//!                                                schemas, compact.rs; 0 = a hole)
//! item   = str key ‖ varint k ‖ k × 32 B leaf id ‖ head
//! head   = u8 0                                  (not computed when written)
//!        | u8 1 or 2 ‖ str ns ‖ varint version ‖ bytes (u8 deleted ‖ fields, value.rs)
//!                                                (1: the plain merge of the leaves in
//!                                                that version; 2: upgraded after it)
//! ```
//!
//! A checkpoint covers the log up to the end of `mark`'s record; opening
//! reads its head (not the table: its size grows with the history, and
//! opening needs only the items), checks that the file is as long as the
//! head says, that the log still holds the mark's record there (length and
//! checksum), and integrates only the records after it. The table is read
//! and checked against its checksum the first time a commit below the
//! checkpoint is needed (history, a deep merge, a peer, the next checkpoint). Commit bodies stay
//! in the log and are read by offset when a merge, history or a peer needs
//! them. A checkpoint that is torn (checksum), from another format, or
//! stale (the log is shorter or differs at the mark) is never trusted: the
//! log is scanned whole and a new checkpoint written. Checkpoints are
//! written whole over the previous one right after a log flush; a crash in
//! the middle leaves a torn one, which opening detects.

use std::ops::Range;

use crate::codec::{Reader, Writer};
use crate::commit::CommitId;
use crate::compact::Tables;
use crate::error::{Error, Result};
use crate::log::RecordMark;
use crate::repository::SetDigest;
use crate::schema::SchemaId;
use crate::storage::Storage;

pub const MAGIC: [u8; 8] = *b"IBEXCKPT";
/// Format 1 (before compact logs) is not read: such a checkpoint is
/// rebuilt, which is also when its log is converted.
pub const FORMAT_VERSION: u32 = 2;

/// A commit as a checkpoint knows it: where it is and what the graph needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedCommit {
    pub id: CommitId,
    pub offset: u64,
    pub len: u32,
    pub generation: u32,
    pub depth: u16,
    pub chain_bytes: u32,
    pub value_bytes: u32,
}

/// Bytes of one commit record in the table.
pub const COMMIT_RECORD: usize = 58;

impl SealedCommit {
    pub fn mark(&self) -> RecordMark {
        RecordMark { offset: self.offset, len: self.len, crc: 0 }
    }

    fn write(&self, w: &mut Writer) {
        w.raw(&self.id.0);
        w.raw(&self.offset.to_le_bytes());
        w.raw(&self.len.to_le_bytes());
        w.raw(&self.generation.to_le_bytes());
        w.raw(&self.depth.to_le_bytes());
        w.raw(&self.chain_bytes.to_le_bytes());
        w.raw(&self.value_bytes.to_le_bytes());
    }

    /// Reads the record at the start of `b` (`COMMIT_RECORD` bytes).
    pub fn read(b: &[u8]) -> SealedCommit {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        SealedCommit {
            id: CommitId(b[..32].try_into().expect("32 bytes")),
            offset: u64::from_le_bytes(b[32..40].try_into().expect("8 bytes")),
            len: u32_at(40),
            generation: u32_at(44),
            depth: u16::from_le_bytes(b[48..50].try_into().expect("2 bytes")),
            chain_bytes: u32_at(50),
            value_bytes: u32_at(54),
        }
    }
}

/// The commit table of a checkpoint, searched in place in its bytes (read
/// from the file at `file_at` when first needed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// Number of commits.
    pub n: usize,
    /// Where the table starts in the checkpoint's file.
    pub file_at: u64,
    /// CRC-32 of the table's bytes (kept in the head).
    pub crc: u32,
}

impl Table {
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Bytes of the table in the file.
    pub fn byte_len(&self) -> usize {
        self.n * (COMMIT_RECORD + 4)
    }

    /// Checks bytes read from the file for this table.
    pub fn check(&self, buf: &[u8]) -> Result<()> {
        if buf.len() != self.byte_len() || crc32fast::hash(buf) != self.crc {
            return Err(Error::Storage("the checkpoint's commit table is damaged (checksum mismatch); reopening rebuilds it from the log".into()));
        }
        // Binary search trusts the order: check it (cheap next to reading).
        if (1..self.n).any(|i| self.id(buf, i - 1) >= self.id(buf, i)) {
            return Err(Error::Storage("the checkpoint's commit table is out of order; reopening rebuilds it from the log".into()));
        }
        Ok(())
    }

    /// The id of record `i`.
    pub fn id<'a>(&self, buf: &'a [u8], i: usize) -> &'a [u8; 32] {
        let at = i * COMMIT_RECORD;
        buf[at..at + 32].try_into().expect("32 bytes")
    }

    pub fn get(&self, buf: &[u8], i: usize) -> SealedCommit {
        let at = i * COMMIT_RECORD;
        SealedCommit::read(&buf[at..at + COMMIT_RECORD])
    }

    /// The record whose commit starts at log offset `offset`.
    pub fn find_offset(&self, buf: &[u8], offset: u64) -> Option<usize> {
        let n = self.n;
        let place = |k: usize| {
            let at = n * COMMIT_RECORD + 4 * k;
            u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize
        };
        let offset_of = |i: usize| {
            let at = i * COMMIT_RECORD + 32;
            u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
        };
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            // A damaged index (the checksum held) finds nothing; never panics.
            let i = place(mid);
            if i >= n {
                return None;
            }
            match offset_of(i).cmp(&offset) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(i),
            }
        }
        None
    }

    /// Binary search by id.
    pub fn find(&self, buf: &[u8], id: &CommitId) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.id(buf, mid).cmp(&id.0) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }
}

/// An item as a checkpoint knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedItem {
    pub key: std::sync::Arc<str>,
    pub leaves: Vec<CommitId>,
    /// The head's schema and where its `deleted ‖ fields` bytes are in the
    /// checkpoint (kept there, not decoded, until the item is used).
    pub head: Option<(SchemaId, Range<usize>, bool)>,
}

/// A decoded checkpoint (heads still point into its bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The repository's path (its log's compact records leave it out).
    pub repo: String,
    pub mark: Option<RecordMark>,
    pub digest: SetDigest,
    pub commits: Table,
    pub tables: Tables,
    pub items: Vec<SealedItem>,
}

/// An item to write: key, leaves, head (schema, `deleted ‖ fields`, folded).
pub type ItemEntry<'a> = (&'a str, &'a [CommitId], Option<(&'a SchemaId, &'a [u8], bool)>);

/// What to write: every commit and item, heads already encoded.
pub struct Contents<'a> {
    pub repo: &'a str,
    pub mark: Option<RecordMark>,
    pub digest: SetDigest,
    /// Sorted by id.
    pub commits: &'a [SealedCommit],
    pub tables: &'a Tables,
    pub items: Vec<ItemEntry<'a>>,
}

pub fn encode(c: &Contents) -> Vec<u8> {
    let mut table = Writer::with_capacity(c.commits.len() * (COMMIT_RECORD + 4));
    for s in c.commits {
        s.write(&mut table);
    }
    // Ranked as every commit order is (one sort in the module: W9).
    let mut order: Vec<(i64, u32, CommitId)> = c.commits.iter().enumerate().map(|(i, s)| (s.offset as i64, i as u32, CommitId([0; 32]))).collect();
    crate::repository::sort_ranked(&mut order);
    for (_, i, _) in order {
        table.raw(&i.to_le_bytes());
    }
    let table = table.into_bytes();
    let mut w = Writer::with_capacity(64 + c.items.len() * 96);
    w.str(c.repo);
    match c.mark {
        None => w.u8(0),
        Some(m) => {
            w.u8(1);
            w.varint(m.offset);
            w.varint(m.len.into());
            w.raw(&m.crc.to_le_bytes());
        }
    }
    w.varint(c.digest.count);
    w.raw(&c.digest.xor);
    w.varint(c.commits.len() as u64);
    w.raw(&crc32fast::hash(&table).to_le_bytes());
    w.varint(c.tables.sessions.len() as u64);
    for s in c.tables.sessions.values() {
        match s {
            None => w.u8(0),
            Some(s) => {
                w.u8(1);
                w.raw(&s.0);
            }
        }
    }
    w.varint(c.tables.schemas.len() as u64);
    for s in c.tables.schemas.values() {
        match s {
            None => w.u8(0),
            Some(s) => {
                w.u8(1);
                w.str(&s.ns);
                w.varint(s.version.into());
            }
        }
    }
    w.varint(c.items.len() as u64);
    for (key, leaves, head) in &c.items {
        w.str(key);
        w.varint(leaves.len() as u64);
        for l in *leaves {
            w.raw(&l.0);
        }
        match head {
            None => w.u8(0),
            Some((schema, bytes, folded)) => {
                w.u8(if *folded { 1 } else { 2 });
                w.str(&schema.ns);
                w.varint(schema.version.into());
                w.bytes(bytes);
            }
        }
    }
    let head = w.into_bytes();
    let mut out = Vec::with_capacity(PREFIX + head.len() + 4 + table.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&crc32fast::hash(&head).to_le_bytes());
    out.extend_from_slice(&table);
    out
}

/// Magic, format and head length.
pub const PREFIX: usize = 16;

/// What a checkpoint's file holds.
pub enum Found {
    /// An empty file.
    Nothing,
    /// A conversion's journal (see [`encode_journal`]): the log bytes.
    Journal(Vec<u8>),
    /// A checkpoint, and the bytes its items' heads point into (the table
    /// is still in the file).
    Checkpoint(Box<Checkpoint>, Vec<u8>),
    /// Not to be trusted, and why.
    Damaged(String),
}

/// Reads what opening needs from a checkpoint's file: the head, not the
/// table. Every way it can be wrong is `Damaged` (the caller then scans the
/// log): never a panic, never a partial result.
pub fn read(storage: &mut dyn Storage) -> Found {
    match read_inner(storage) {
        Ok(f) => f,
        Err(e) => Found::Damaged(e.to_string()),
    }
}

fn read_inner(storage: &mut dyn Storage) -> Result<Found> {
    let len = storage.len()?;
    if len == 0 {
        return Ok(Found::Nothing);
    }
    let mut prefix = [0u8; PREFIX];
    let got = read_at_most(storage, 0, &mut prefix)?;
    if prefix[..got.min(8)] == JOURNAL_MAGIC[..got.min(8)] && got >= 8 {
        let all = storage.read_all()?;
        return Ok(match decode_journal(&all) {
            Some(log) => Found::Journal(log.to_vec()),
            None => Found::Damaged("a journal torn while it was written".into()),
        });
    }
    if got < PREFIX || prefix[..8] != MAGIC {
        return Err(Error::Storage("checkpoint is not an Ibex checkpoint (or is torn)".into()));
    }
    let version = u32::from_le_bytes(prefix[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(Error::Storage(format!("checkpoint has format {version}, this build reads {FORMAT_VERSION}")));
    }
    let head_len = u32::from_le_bytes(prefix[12..16].try_into().expect("4 bytes")) as u64;
    if head_len + 4 > len - PREFIX as u64 {
        return Err(Error::Storage("checkpoint is torn (shorter than its head)".into()));
    }
    let mut buf = vec![0u8; PREFIX + head_len as usize + 4];
    read_at_most(storage, 0, &mut buf)?;
    let ck = decode(&buf)?;
    if ck.commits.file_at + ck.commits.byte_len() as u64 != len {
        return Err(Error::Storage(format!("checkpoint is torn or stale: {len} bytes, its head says {}", ck.commits.file_at + ck.commits.byte_len() as u64)));
    }
    Ok(Found::Checkpoint(Box::new(ck), buf))
}

/// Reads up to `buf.len()` bytes at `offset`; how many there were.
fn read_at_most(storage: &mut dyn Storage, offset: u64, buf: &mut [u8]) -> Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        let n = storage.read_at(offset + at as u64, &mut buf[at..])?;
        if n == 0 {
            break;
        }
        at += n;
    }
    Ok(at)
}

/// Reads a checkpoint's table from its file and checks it.
pub fn read_table(storage: &mut dyn Storage, table: &Table) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; table.byte_len()];
    if read_at_most(storage, table.file_at, &mut buf)? != buf.len() {
        return Err(Error::Storage("the checkpoint's commit table is cut short; reopening rebuilds it from the log".into()));
    }
    table.check(&buf)?;
    Ok(buf)
}

/// Decodes and checks a checkpoint's prefix and head (`buf` may hold the
/// table after them, or not).
pub fn decode(buf: &[u8]) -> Result<Checkpoint> {
    let bad = |what: &str| Error::Storage(format!("checkpoint {what}"));
    if buf.len() < PREFIX + 4 || buf[..8] != MAGIC {
        return Err(bad("is not an Ibex checkpoint (or is torn)"));
    }
    let version = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(bad(&format!("has format {version}, this build reads {FORMAT_VERSION}")));
    }
    let head_len = u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes")) as usize;
    if PREFIX.checked_add(head_len).and_then(|n| n.checked_add(4)).is_none_or(|end| buf.len() < end) {
        return Err(bad("is torn (shorter than its head)"));
    }
    let body = &buf[PREFIX..PREFIX + head_len];
    let crc = u32::from_le_bytes(buf[PREFIX + head_len..PREFIX + head_len + 4].try_into().expect("4 bytes"));
    if crc32fast::hash(body) != crc {
        return Err(bad("checksum mismatch (torn or damaged)"));
    }
    let mut r = Reader::new(body);
    let repo = r.str("repository")?.to_owned();
    let mark = match r.u8("mark")? {
        0 => None,
        1 => {
            let offset = r.varint("mark offset")?;
            let len = u32::try_from(r.varint("mark length")?).map_err(|_| r.err("mark length"))?;
            let crc = u32::from_le_bytes(r.array::<4>("mark crc")?);
            Some(RecordMark { offset, len, crc })
        }
        _ => return Err(r.err("mark tag")),
    };
    let count = r.varint("digest count")?;
    let xor = r.array::<32>("digest")?;
    let n = usize::try_from(r.varint("commits")?).map_err(|_| r.err("commits"))?;
    if n.checked_mul(COMMIT_RECORD + 4).is_none_or(|b| b > u32::MAX as usize) {
        return Err(r.err("commit count"));
    }
    let table_crc = u32::from_le_bytes(r.array::<4>("table crc")?);
    let commits = Table { n, file_at: (PREFIX + head_len + 4) as u64, crc: table_crc };
    let small = |v: u64, what: &str, r: &Reader| u32::try_from(v).map_err(|_| r.err(what));
    let mut tables = Tables::default();
    let k = r.count("sessions", 1)?;
    for i in 0..k as u32 {
        if r.bool("session present")? {
            let s = crate::signing::SessionId(r.array("session key")?);
            tables.sessions.define(i, s).map_err(|_| r.err("session table"))?;
        }
    }
    let k = r.count("schemas", 1)?;
    for i in 0..k as u32 {
        if r.bool("schema present")? {
            let ns = r.str("schema namespace")?;
            let version = r.u32("schema version")?;
            tables.schemas.define(i, SchemaId::new(ns, version)).map_err(|_| r.err("schema table"))?;
        }
    }
    let m = r.count("items", 3)?;
    let mut items = Vec::with_capacity(m);
    // Heads of a repository share a few namespaces: one string for each.
    let mut last_ns: Option<std::sync::Arc<str>> = None;
    for _ in 0..m {
        let key: std::sync::Arc<str> = r.str("item key")?.into();
        let k = r.count("leaves", 32)?;
        let mut leaves = Vec::with_capacity(k);
        for _ in 0..k {
            leaves.push(CommitId(r.array::<32>("leaf id")?));
        }
        let head = match r.u8("head tag")? {
            0 => None,
            tag @ (1 | 2) => {
                let name = r.str("head namespace")?;
                let ns = match &last_ns {
                    Some(n) if **n == *name => n.clone(),
                    _ => {
                        let n: std::sync::Arc<str> = name.into();
                        last_ns = Some(n.clone());
                        n
                    }
                };
                let version = small(r.varint("head version")?, "head version", &r)?;
                let len = r.varint("head length")? as usize;
                let at = r.offset();
                r.take(len, "head")?;
                // Offsets into `buf` (the head starts after the prefix).
                Some((SchemaId::new(ns, version), PREFIX + at..PREFIX + at + len, tag == 1))
            }
            _ => return Err(r.err("head tag")),
        };
        items.push(SealedItem { key, leaves, head });
    }
    r.finish("checkpoint")?;
    Ok(Checkpoint { repo, mark, digest: SetDigest { count, xor }, commits, tables, items })
}

/// A log's old bytes, kept in the checkpoint's file while the log is
/// rewritten in a newer format (the storage trait has no rename, and the
/// checkpoint is the one file that may be overwritten: it can always be
/// rebuilt). Found when opening, it means the rewrite was cut short: the
/// log is restored from it and converted again.
///
/// ```text
/// journal = magic "IBEXJRNL" ‖ varint len ‖ log bytes ‖ crc32(log bytes) u32 LE
/// ```
pub const JOURNAL_MAGIC: [u8; 8] = *b"IBEXJRNL";

pub fn encode_journal(log: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(log.len() + 24);
    w.raw(&JOURNAL_MAGIC);
    w.bytes(log);
    w.raw(&crc32fast::hash(log).to_le_bytes());
    w.into_bytes()
}

/// The log bytes of a complete journal; `None` for anything else (a
/// checkpoint, or a journal torn while it was written — the log was not
/// touched yet then).
pub fn decode_journal(buf: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(buf.strip_prefix(&JOURNAL_MAGIC)?);
    let log = r.bytes("journal").ok()?;
    let crc = u32::from_le_bytes(r.array::<4>("journal crc").ok()?);
    (r.is_empty() && crc32fast::hash(log) == crc).then_some(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let commits = [
            SealedCommit { id: CommitId([1; 32]), offset: 12, len: 300, generation: 1, depth: 0, chain_bytes: 0, value_bytes: 200 },
            SealedCommit { id: CommitId([2; 32]), offset: 320, len: 90, generation: 2, depth: 1, chain_bytes: 40, value_bytes: 240 },
        ];
        let leaves = [CommitId([2; 32])];
        let schema = SchemaId::new("task", 3);
        encode(&Contents {
            repo: "/data/x",
            mark: Some(RecordMark { offset: 320, len: 90, crc: 0xdead_beef }),
            digest: SetDigest { count: 2, xor: [3; 32] },
            commits: &commits,
            tables: &Tables::default(),
            items: vec![("k", &leaves, Some((&schema, &[0u8, 0][..], true))), ("other", &[], None)],
        })
    }

    #[test]
    fn round_trips() {
        let all = sample();
        let c = decode(&all).unwrap();
        assert_eq!(c.repo, "/data/x");
        let mut st = crate::storage::MemStorage::from_bytes(all.clone());
        let Found::Checkpoint(head, hb) = read(&mut st) else { panic!("not read") };
        assert_eq!(*head, c);
        assert!(hb.len() < all.len(), "the table is not read at open");
        let b = read_table(&mut st, &c.commits).unwrap();
        assert_eq!(c.mark, Some(RecordMark { offset: 320, len: 90, crc: 0xdead_beef }));
        assert_eq!(c.commits.len(), 2);
        assert_eq!(c.commits.find(&b, &CommitId([2; 32])), Some(1));
        assert_eq!(c.commits.get(&b, 1), SealedCommit { id: CommitId([2; 32]), offset: 320, len: 90, generation: 2, depth: 1, chain_bytes: 40, value_bytes: 240 });
        assert_eq!(c.commits.find(&b, &CommitId([9; 32])), None);
        assert_eq!(c.commits.find_offset(&b, 320), Some(1));
        assert_eq!(c.commits.find_offset(&b, 12), Some(0));
        assert_eq!(c.commits.find_offset(&b, 13), None);
        assert_eq!(c.items[0].leaves, vec![CommitId([2; 32])]);
        let (schema, range, folded) = c.items[0].head.clone().unwrap();
        assert!(folded);
        assert_eq!(schema, SchemaId::new("task", 3));
        assert_eq!(&hb[range], &[0u8, 0]);
        assert_eq!(c.items[1].head, None);
    }

    #[test]
    fn torn_or_flipped_at_any_byte_is_refused() {
        let b = sample();
        // Refused when opening (the head), or when the table is first read.
        let refused = |x: Vec<u8>| {
            let mut st = crate::storage::MemStorage::from_bytes(x);
            match read(&mut st) {
                Found::Checkpoint(c, _) => read_table(&mut st, &c.commits).is_err(),
                Found::Journal(_) => false,
                Found::Nothing | Found::Damaged(_) => true,
            }
        };
        assert!(!refused(b.clone()));
        for cut in 0..b.len() {
            assert!(refused(b[..cut].to_vec()), "cut at {cut}");
        }
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 0x40;
            assert!(refused(x), "flip at {i}");
        }
        // Longer than it says (a stale tail): refused at open.
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(read(&mut crate::storage::MemStorage::from_bytes(longer)), Found::Damaged(_)));
    }
}
