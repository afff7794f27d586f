//! Compact commit records: how a repository's log (format 2) stores a
//! signed commit with what the log already knows left out. Expanding a
//! record gives back the commit's exact canonical bytes (`commit.rs`), so
//! ids, signatures and what peers receive are unchanged; only the bytes on
//! disk shrink (a one-character text edit: ~213 → ~100 bytes, framing and
//! signature included).
//!
//! ```text
//! record kind 2 = key: str
//!               ‖ parents: varint n ‖ n × ref      (ascending by id, as in the commit)
//!               ‖ timestamp: zigzag ms
//!               ‖ session: entry(32 B key)
//!               ‖ schema: entry(str ns ‖ varint version)
//!               ‖ body: u8 0 ‖ deleted ‖ fields    (a full value, as in the commit)
//!                     | u8 1 ‖ varint i ‖ changes  (a delta on parent i)
//!               ‖ signature (64 B)
//! ref    = varint d, d > 0: the commit whose record starts d bytes before this one
//!        | varint 0 ‖ 32 B id                      (a parent not in this log)
//! entry  = varint 0 ‖ varint number ‖ value        (defines `number` for this log)
//!        | varint number + 1                       (defined by an earlier record)
//! ```
//!
//! The timestamp stays absolute (a 6-byte varint for today's dates): a
//! record must expand on its own when read by offset, and a delta from its
//! parent's timestamp would need the parent's record read first.
//!
//! Left out entirely: the repository path (named once, by the log's first
//! record, kind 3: a log opened as another repository's is refused, not
//! expanded into commits whose ids and signatures do not match) and the
//! format byte (always 1 when expanded). Left to the hash: the id.
//!
//! Numbers are given in order of first use in a log and defined with their
//! number, so a damaged record that defined one leaves a hole, never a
//! shifted table: later references to it fail clearly ("session 3 is not
//! defined") instead of expanding to another session. A writer defines an
//! entry again the first time it uses it after opening the log, so a damaged
//! definition costs at most the commits of one run. The tables are kept in
//! memory (a few per repository) and in the checkpoint; parents below a
//! checkpoint are found through its table of commits by log offset.

use std::collections::HashMap;
use std::hash::Hash;

use sha2::{Digest, Sha256};

use crate::codec::{Reader, Writer};
use crate::commit::{BODY_DELTA, BODY_FULL, COMMIT_FORMAT, CommitId, MAX_PARENTS};
use crate::error::{Error, Result};
use crate::schema::SchemaId;
use crate::signing::SessionId;
use crate::stored::StoredCommit;

const SIG: usize = 64;

/// Values numbered by first use in one log (sessions, schemas).
#[derive(Debug, Clone)]
pub struct Dict<T> {
    values: Vec<Option<T>>,
    index: HashMap<T, u32>,
    /// Defined by a record this process wrote (see the module comment).
    announced: Vec<bool>,
}

/// Equal when they name the same values (what was announced is this
/// process's business).
impl<T: PartialEq> PartialEq for Dict<T> {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

impl<T> Default for Dict<T> {
    fn default() -> Self {
        Dict { values: Vec::new(), index: HashMap::new(), announced: Vec::new() }
    }
}

impl<T: Clone + Eq + Hash> Dict<T> {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn get(&self, n: u32) -> Option<&T> {
        self.values.get(n as usize).and_then(Option::as_ref)
    }

    /// Every number's value, holes as `None` (for a checkpoint).
    pub fn values(&self) -> &[Option<T>] {
        &self.values
    }

    /// Records that `n` names `v`: from a definition read back, or a
    /// checkpoint. A number already naming another value is damage.
    pub fn define(&mut self, n: u32, v: T) -> Result<()> {
        let i = n as usize;
        // Numbers are dense (given in order of first use): one far past the
        // end is damage, not a reason to allocate.
        if i > self.values.len() + 1024 {
            return Err(Error::decode(format!("table number {n} is far past the {} defined", self.values.len()), 0));
        }
        if i >= self.values.len() {
            self.values.resize(i + 1, None);
            self.announced.resize(i + 1, false);
        }
        match &self.values[i] {
            Some(old) if *old != v => Err(Error::decode(format!("table number {n} is defined twice, differently"), 0)),
            Some(_) => Ok(()),
            None => {
                self.index.insert(v.clone(), n);
                self.values[i] = Some(v);
                Ok(())
            }
        }
    }

    /// How a record written now names `v`: `(number, define it here)`.
    fn entry(&self, v: &T) -> (u32, bool) {
        match self.index.get(v) {
            Some(&n) => (n, !self.announced[n as usize]),
            None => (self.values.len() as u32, true),
        }
    }

    /// After the record naming `v` as `n` was appended.
    fn announce(&mut self, n: u32, v: &T) {
        if self.get(n).is_none() {
            // `entry` gave a fresh number: the next one.
            let _ = self.define(n, v.clone());
        }
        self.announced[n as usize] = true;
    }
}

/// A log's tables: what compact records name by number.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tables {
    pub sessions: Dict<SessionId>,
    pub schemas: Dict<SchemaId>,
}

/// What appending an encoded record defines (applied once it is appended).
#[derive(Debug)]
pub struct Defined {
    session: (u32, SessionId),
    schema: (u32, SchemaId),
}

impl Tables {
    pub fn announce(&mut self, d: Defined) {
        self.sessions.announce(d.session.0, &d.session.1);
        self.schemas.announce(d.schema.0, &d.schema.1);
    }
}

fn write_entry(w: &mut Writer, (n, define): (u32, bool), value: impl FnOnce(&mut Writer)) {
    if define {
        w.varint(0);
        w.varint(n.into());
        value(w);
    } else {
        w.varint(u64::from(n) + 1);
    }
}

/// Encodes `c`, whose record will start at log offset `at`, as a compact
/// record. `parent_at` gives the log offset of a parent's record (`None`:
/// not in this log). The returned [`Defined`] goes to
/// [`Tables::announce`] once the record is appended.
pub fn encode(c: &StoredCommit, at: u64, parent_at: impl Fn(&CommitId) -> Option<u64>, tables: &Tables) -> (Vec<u8>, Defined) {
    let body = c.body_bytes();
    let mut w = Writer::with_capacity(96 + body.len());
    w.str(&c.key);
    w.varint(c.parents().len() as u64);
    let mut base = None;
    let delta = c.delta_base();
    for (i, p) in c.parents().enumerate() {
        if Some(p) == delta {
            base = Some(i);
        }
        match parent_at(&p).filter(|&o| o < at) {
            Some(o) => w.varint(at - o),
            None => {
                w.varint(0);
                w.raw(&p.0);
            }
        }
    }
    w.zigzag(c.timestamp);
    let session = c.session();
    let s = tables.sessions.entry(&session);
    write_entry(&mut w, s, |w| w.raw(&session.0));
    let m = tables.schemas.entry(&c.schema);
    write_entry(&mut w, m, |w| {
        w.str(&c.schema.ns);
        w.varint(c.schema.version.into());
    });
    match base {
        // The base is a parent (checked when the commit was parsed).
        Some(i) => {
            w.u8(BODY_DELTA);
            w.varint(i as u64);
            w.raw(&body[1 + 32..]);
        }
        None => w.raw(body),
    }
    w.raw(&c.signature());
    (w.into_bytes(), Defined { session: (s.0, session), schema: (m.0, c.schema.clone()) })
}

fn read_entry<T: Clone + Eq + Hash>(r: &mut Reader, dict: &mut Dict<T>, what: &str, value: impl FnOnce(&mut Reader) -> Result<T>) -> Result<T> {
    let at = r.offset();
    match r.u32(what)? {
        0 => {
            let n = r.u32(what)?;
            let v = value(r)?;
            dict.define(n, v.clone()).map_err(|e| Error::decode(format!("{what}: {e}"), at))?;
            Ok(v)
        }
        n => dict.get(n - 1).cloned().ok_or_else(|| Error::decode(format!("{what} {} is not defined in this log (the record that defined it is damaged)", n - 1), at)),
    }
}

/// Expands the compact record at log offset `at` back to `commit bytes ‖
/// signature` of repository `repo`, and the commit's id (the hash of those
/// bytes). `id_at` names the commit whose record starts at an offset;
/// definitions in the record are added to `tables`.
pub fn expand(payload: &[u8], at: u64, repo: &str, tables: &mut Tables, id_at: impl Fn(u64) -> Option<CommitId>) -> Result<(Box<[u8]>, CommitId)> {
    if payload.len() < SIG {
        return Err(Error::decode("compact commit shorter than its signature", payload.len()));
    }
    let (head, sig) = payload.split_at(payload.len() - SIG);
    let mut r = Reader::new(head);
    let key = r.str("item key")?;
    let pat = r.offset();
    let n = r.count("parent count", 1)?;
    if n > MAX_PARENTS {
        return Err(Error::decode(format!("{n} parents (at most {MAX_PARENTS})"), pat));
    }
    // Parents are resolved last: the session and schema this record
    // defines must be recorded even when a parent's record is damaged, or
    // every later commit of that session would be lost with it.
    let mut refs: Vec<(usize, u64, Option<CommitId>)> = Vec::with_capacity(n);
    for _ in 0..n {
        let rat = r.offset();
        refs.push(match r.varint("parent")? {
            0 => (rat, 0, Some(CommitId(r.array("parent id")?))),
            d => (rat, d, None),
        });
    }
    let timestamp = r.zigzag("timestamp")?;
    let session = read_entry(&mut r, &mut tables.sessions, "session", |r| Ok(SessionId(r.array("session key")?)))?;
    let schema = read_entry(&mut r, &mut tables.schemas, "schema", |r| {
        let ns = r.str("schema namespace")?;
        Ok(SchemaId::new(ns, r.u32("schema version")?))
    })?;
    let bat = r.offset();
    let base = match r.u8("body tag")? {
        BODY_FULL => None,
        BODY_DELTA => Some(r.varint("delta base")? as usize),
        t => return Err(Error::decode(format!("unknown body tag {t}"), bat)),
    };
    let mut parents = Vec::with_capacity(n);
    for (rat, d, id) in refs {
        parents.push(match id {
            Some(id) => id,
            None => at.checked_sub(d).and_then(&id_at).ok_or_else(|| Error::decode(format!("parent record {d} bytes back is not a commit of this log"), rat))?,
        });
    }
    if parents.windows(2).any(|p| p[0] >= p[1]) {
        return Err(Error::decode("parents not strictly ascending", pat));
    }
    let mut w = Writer::with_capacity(payload.len() + 128);
    w.u8(COMMIT_FORMAT);
    w.str(repo);
    w.str(key);
    w.varint(n as u64);
    for p in &parents {
        w.raw(&p.0);
    }
    w.zigzag(timestamp);
    w.raw(&session.0);
    w.str(&schema.ns);
    w.varint(schema.version.into());
    match base {
        None => w.u8(BODY_FULL),
        Some(i) => {
            let base = parents.get(i).ok_or_else(|| Error::decode("delta base is not one of the parents", bat))?;
            w.u8(BODY_DELTA);
            w.raw(&base.0);
        }
    }
    w.raw(r.take(r.remaining(), "body")?);
    let mut bytes = w.into_bytes();
    let id = CommitId(Sha256::digest(&bytes).into());
    bytes.extend_from_slice(sig);
    Ok((bytes.into_boxed_slice(), id))
}

/// Offsets → ids of the commits read so far in one pass over a log, in
/// log order (so a binary search finds a parent).
#[derive(Debug, Default)]
pub struct Seen(Vec<(u64, CommitId)>);

impl Seen {
    pub fn push(&mut self, at: u64, id: CommitId) {
        debug_assert!(self.0.last().is_none_or(|l| l.0 < at));
        self.0.push((at, id));
    }

    pub fn get(&self, at: u64) -> Option<CommitId> {
        self.0.binary_search_by_key(&at, |e| e.0).ok().map(|i| self.0[i].1)
    }
}

/// The commits of a log image, in log order, as `(record offset, commit
/// bytes ‖ signature)` — compact records expanded, plain ones as they are.
/// For reading a whole log outside a repository (an import, a backup).
/// Compact records belong to the repository the log names, else `repo`.
pub fn commits(buf: &[u8], scan: &crate::log::Scan, repo: &str) -> Vec<(u64, Result<Box<[u8]>>)> {
    let mut tables = Tables::default();
    let mut seen = Seen::default();
    let mut out = Vec::with_capacity(scan.records.len());
    let mut repo = repo;
    for (at, kind, payload) in scan.payloads(buf) {
        let res = match kind {
            crate::log::KIND_REPO => {
                repo = std::str::from_utf8(payload).unwrap_or(repo);
                continue;
            }
            crate::log::KIND_COMPACT => expand(payload, at, repo, &mut tables, |o| seen.get(o)).map(|(b, id)| {
                seen.push(at, id);
                b
            }),
            _ => {
                let b: Box<[u8]> = payload.into();
                if b.len() > SIG {
                    seen.push(at, CommitId(Sha256::digest(&b[..b.len() - SIG]).into()));
                }
                Ok(b)
            }
        };
        out.push((at, res));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Change;
    use crate::commit::{Body, Commit};
    use crate::path::RepoPath;
    use crate::signing::SessionKey;
    use crate::text::Splice;
    use crate::value::{ItemData, Value};
    use proptest::prelude::*;
    use std::sync::Arc;

    const REPO: &str = "/data/notes";

    fn commit(key: &str, parents: Vec<CommitId>, body: Body, seed: u8, ts: i64) -> StoredCommit {
        let k = SessionKey::from_seed([seed; 32]);
        let c = Commit { repo: RepoPath::parse(REPO).unwrap(), key: key.into(), parents, timestamp: ts, session: k.id(), schema: SchemaId::new("doc", 1), body };
        StoredCommit::from_signed(&c.sign(&k).unwrap())
    }

    /// A chain of commits written to one log image: (offset, record) pairs
    /// and the commits.
    fn write(commits: &[StoredCommit]) -> (Vec<(u64, Vec<u8>)>, Tables) {
        let mut tables = Tables::default();
        let mut at = 12u64;
        let mut offsets: HashMap<CommitId, u64> = HashMap::new();
        let mut out = Vec::new();
        for c in commits {
            let (rec, d) = encode(c, at, |p| offsets.get(p).copied(), &tables);
            tables.announce(d);
            offsets.insert(c.id, at);
            out.push((at, rec.clone()));
            at += 9 + rec.len() as u64;
        }
        (out, tables)
    }

    fn read(records: &[(u64, Vec<u8>)]) -> Vec<Result<(Box<[u8]>, CommitId)>> {
        let mut tables = Tables::default();
        let mut seen = Seen::default();
        records
            .iter()
            .map(|(at, rec)| {
                let r = expand(rec, *at, REPO, &mut tables, |o| seen.get(o));
                if let Ok((_, id)) = &r {
                    seen.push(*at, *id);
                }
                r
            })
            .collect()
    }

    fn text(s: &str) -> Body {
        let mut d = ItemData::default();
        d.fields.insert("text".into(), Value::Text(s.into()));
        Body::Full(Arc::new(d))
    }

    fn edit(base: CommitId, pos: u32) -> Body {
        Body::Delta { base, changes: vec![Change::Text { field: "text".into(), splices: vec![Splice { pos, delete: 0, insert: "x".into() }] }] }
    }

    #[test]
    fn a_one_character_edit_takes_well_under_150_bytes_signature_and_framing_included() {
        let first = commit("d", vec![], text("hello"), 1, 1_700_000_000_000);
        let second = commit("d", vec![first.id], edit(first.id, 5), 1, 1_700_000_000_150);
        let third = commit("d", vec![second.id], edit(second.id, 6), 1, 1_700_000_000_300);
        let (records, _) = write(&[first, second, third.clone()]);
        let framed = 9 + records[2].1.len();
        println!("one-character edit: {framed} bytes in the log (canonical: {})", third.bytes().len() + 9);
        assert!(framed <= 110, "{framed} bytes (canonical: {})", third.bytes().len() + 9);
    }

    #[test]
    fn undefined_numbers_and_missing_parents_are_clear_errors() {
        let a = commit("d", vec![], text("a"), 1, 10);
        let b = commit("d", vec![a.id], edit(a.id, 1), 1, 20);
        let (records, _) = write(&[a, b]);
        // The session defined (by the first record), the parent's record gone.
        let mut tables = Tables::default();
        expand(&records[0].1, records[0].0, REPO, &mut tables, |_| None).unwrap();
        let e = expand(&records[1].1, records[1].0, REPO, &mut tables, |_| None).unwrap_err().to_string();
        assert!(e.contains("is not a commit of this log"), "{e}");
        // Without the record that defined the session.
        let mut tables = Tables::default();
        let e = expand(&records[1].1, records[1].0, REPO, &mut tables, |_| Some(CommitId([7; 32]))).unwrap_err().to_string();
        assert!(e.contains("session 0 is not defined"), "{e}");
    }

    #[test]
    fn a_record_whose_parent_is_lost_still_defines_its_session() {
        // Session 2's first commit edits an item whose last record is lost;
        // its later commits (other items) must still read.
        let a = commit("d", vec![], text("a"), 1, 10);
        let b = commit("d", vec![a.id], edit(a.id, 1), 1, 20);
        let c = commit("d", vec![b.id], edit(b.id, 2), 2, 30);
        let other = commit("e", vec![], text("z"), 2, 40);
        let (records, _) = write(&[a, b, c, other.clone()]);
        let mut kept = records.clone();
        kept.remove(1);
        let got = read(&kept);
        assert!(got[1].as_ref().unwrap_err().to_string().contains("is not a commit of this log"));
        let (bytes, id) = got[2].as_ref().unwrap();
        assert_eq!((&**bytes, *id), (other.bytes(), other.id));
    }

    #[test]
    fn a_huge_parent_count_is_refused_before_allocating() {
        let mut w = Writer::new();
        w.str("k");
        w.varint(5_000_000);
        let mut rec = w.into_bytes();
        rec.resize(5_000_000 + 200, 1);
        let e = expand(&rec, 100, REPO, &mut Tables::default(), |_| None).unwrap_err().to_string();
        assert!(e.contains("parents (at most"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Any history — several sessions, forks, merges, full values and
        /// deltas — expands back to exactly the bytes and ids it was made of.
        #[test]
        fn expanding_gives_back_the_exact_commits(ops in proptest::collection::vec((0u8..3, 0usize..8, any::<bool>(), 0i64..1_000_000), 1..40)) {
            let mut commits: Vec<StoredCommit> = Vec::new();
            for (i, (seed, back, merge, dt)) in ops.into_iter().enumerate() {
                let mut parents: Vec<CommitId> = Vec::new();
                if let Some(p) = commits.len().checked_sub(1 + back % commits.len().max(1)).and_then(|j| commits.get(j)) {
                    parents.push(p.id);
                }
                if merge && let Some(last) = commits.last() && !parents.contains(&last.id) {
                    parents.push(last.id);
                }
                // A parent from outside the log now and then.
                if i % 7 == 3 {
                    parents.push(CommitId([i as u8; 32]));
                }
                parents.sort();
                let body = match parents.first() {
                    Some(&b) if i % 3 != 0 => edit(b, 0),
                    _ => text(&"é".repeat(i)),
                };
                commits.push(commit(if i % 2 == 0 { "a" } else { "b" }, parents, body, seed + 1, 1_700_000_000_000 - 500_000 + dt));
            }
            let (records, _) = write(&commits);
            for (c, r) in commits.iter().zip(read(&records)) {
                let (bytes, id) = r.unwrap();
                prop_assert_eq!(&*bytes, c.bytes());
                prop_assert_eq!(id, c.id);
            }
        }

        #[test]
        fn random_records_are_errors_not_panics(rec in proptest::collection::vec(any::<u8>(), 0..300), at in 0u64..10_000) {
            let mut tables = Tables::default();
            let _ = expand(&rec, at, REPO, &mut tables, |o| (o % 3 == 0).then_some(CommitId([1; 32])));
        }
    }
}
