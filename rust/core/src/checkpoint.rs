//! Checkpoints: what opening a repository needs, kept beside its log, so
//! opening costs O(items) instead of O(history) (DESIGN.md §5).
//!
//! ```text
//! checkpoint = magic "IBEXCKPT" (8) ‖ format u32 LE (= 2) ‖ body ‖ crc32(body) u32 LE
//! body   = str repo ‖ mark ‖ digest ‖ varint n ‖ n × commit ‖ n × u32 LE index ‖ tables
//!          ‖ varint m ‖ m × item
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
//! reads it, checks that the log still holds that record there (length and
//! checksum), and integrates only the records after it. Commit bodies stay
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

/// The commit table of a checkpoint, searched in place.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// Where the records are in the checkpoint's bytes.
    pub at: Range<usize>,
    /// Where the index in log order is (`len()` u32s).
    pub by_offset: Range<usize>,
}

impl Table {
    pub fn len(&self) -> usize {
        self.at.len() / COMMIT_RECORD
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// The id of record `i`.
    pub fn id<'a>(&self, buf: &'a [u8], i: usize) -> &'a [u8; 32] {
        let at = self.at.start + i * COMMIT_RECORD;
        buf[at..at + 32].try_into().expect("32 bytes")
    }

    pub fn get(&self, buf: &[u8], i: usize) -> SealedCommit {
        let at = self.at.start + i * COMMIT_RECORD;
        SealedCommit::read(&buf[at..at + COMMIT_RECORD])
    }

    /// The record whose commit starts at log offset `offset`.
    pub fn find_offset(&self, buf: &[u8], offset: u64) -> Option<usize> {
        let place = |k: usize| {
            let at = self.by_offset.start + 4 * k;
            u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize
        };
        let offset_of = |i: usize| {
            let at = self.at.start + i * COMMIT_RECORD + 32;
            u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
        };
        let n = self.len();
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
        let (mut lo, mut hi) = (0, self.len());
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
    let mut w = Writer::with_capacity(64 + c.commits.len() * 48 + c.items.len() * 96);
    w.raw(&MAGIC);
    w.raw(&FORMAT_VERSION.to_le_bytes());
    let body_at = w.len();
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
    for s in c.commits {
        s.write(&mut w);
    }
    let mut order: Vec<u32> = (0..c.commits.len() as u32).collect();
    order.sort_unstable_by_key(|&i| c.commits[i as usize].offset);
    for i in order {
        w.raw(&i.to_le_bytes());
    }
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
    let mut out = w.into_bytes();
    let crc = crc32fast::hash(&out[body_at..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes and checks a checkpoint. Every way it can be wrong is an error
/// (the caller then scans the log): never a panic, never a partial result.
pub fn decode(buf: &[u8]) -> Result<Checkpoint> {
    let bad = |what: &str| Error::Storage(format!("checkpoint {what}"));
    if buf.len() < 16 || buf[..8] != MAGIC {
        return Err(bad("is not an Ibex checkpoint (or is torn)"));
    }
    let version = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(bad(&format!("has format {version}, this build reads {FORMAT_VERSION}")));
    }
    let body = &buf[12..buf.len() - 4];
    let crc = u32::from_le_bytes(buf[buf.len() - 4..].try_into().expect("4 bytes"));
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
    let n = r.count("commits", COMMIT_RECORD + 4)?;
    let start = 12 + r.offset();
    r.take(n * COMMIT_RECORD, "commit table")?;
    let index = 12 + r.offset();
    r.take(n * 4, "commit index")?;
    let commits = Table { at: start..start + n * COMMIT_RECORD, by_offset: index..index + n * 4 };
    // Binary search trusts the order: check it (cheap next to reading).
    for i in 1..n {
        if commits.id(buf, i - 1) >= commits.id(buf, i) {
            return Err(r.err("commits out of order"));
        }
    }
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
                // Offsets into `buf` (the body starts at 12).
                Some((SchemaId::new(ns, version), 12 + at..12 + at + len, tag == 1))
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
        let b = sample();
        let c = decode(&b).unwrap();
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
        assert_eq!(&b[range], &[0u8, 0]);
        assert_eq!(c.items[1].head, None);
    }

    #[test]
    fn torn_or_flipped_at_any_byte_is_refused() {
        let b = sample();
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 0x40;
            assert!(decode(&x).is_err(), "flip at {i}");
        }
    }
}
