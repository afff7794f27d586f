//! A commit as a replica keeps it: its signed bytes with the header parsed
//! and the body decoded only on demand.
//!
//! Decoded values (maps of fields, sets, strings) cost an order of magnitude
//! more memory than their encoding. A repository holds every commit of its
//! history but needs decoded values only for items that are read, written or
//! merged, so it keeps commits in this form: the bytes go to disk and over
//! the network unchanged, and `body()` decodes when a value is needed.
//!
//! Bytes layout: `commit bytes ‖ signature (64)` (see `commit.rs`).

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::codec::Reader;
use crate::commit::{BODY_DELTA, Body, CommitId, Header, SignedCommit, decode_body};
use crate::error::{Error, Result};
use crate::schema::SchemaId;
use crate::signing::SessionId;

/// A signed commit kept as bytes, with its header parsed.
#[derive(Debug, Clone)]
pub struct StoredCommit {
    bytes: Box<[u8]>,
    pub id: CommitId,
    pub key: Arc<str>,
    pub timestamp: i64,
    pub schema: SchemaId,
    repo_len: u16,
    parents_at: u32,
    n_parents: u16,
    session_at: u32,
    body_at: u32,
}

const SIG: usize = 64;

impl StoredCommit {
    /// Parses `commit bytes ‖ signature`. With `check_body` the body is
    /// decoded too, so malformed input is rejected now; without it (records
    /// from this replica's own checksummed log) the body is left for later.
    /// Does not verify the signature: see [`StoredCommit::verify`].
    pub fn parse(bytes: Box<[u8]>, check_body: bool) -> Result<StoredCommit> {
        Self::parse_inner(bytes, check_body, None)
    }

    /// Parses a commit read back from this replica's own storage whose id
    /// is already known (from a checkpoint), so it is not hashed again. The
    /// record's checksum stands for the bytes being the same.
    pub fn parse_known(bytes: Box<[u8]>, id: CommitId) -> Result<StoredCommit> {
        Self::parse_inner(bytes, false, Some(id))
    }

    fn parse_inner(bytes: Box<[u8]>, check_body: bool, known: Option<CommitId>) -> Result<StoredCommit> {
        if bytes.len() < SIG {
            return Err(Error::decode("signed commit shorter than its signature", bytes.len()));
        }
        let commit_len = bytes.len() - SIG;
        let commit = &bytes[..commit_len];
        let mut r = Reader::new(commit);
        let h = Header::decode(&mut r)?;
        let body_at = r.offset();
        if check_body {
            decode_body(&mut r, &h.parents)?;
            r.finish("commit")?;
        } else if r.is_empty() {
            return Err(r.err("missing body"));
        }
        let too_big = |_| Error::decode("commit too large", 0);
        Ok(StoredCommit {
            id: known.unwrap_or_else(|| CommitId(Sha256::digest(commit).into())),
            key: h.key,
            timestamp: h.timestamp,
            schema: h.schema,
            // Paths are at most 2 × 128 + 2 bytes (path.rs).
            repo_len: h.repo.len() as u16,
            parents_at: u32::try_from(h.parents_at).map_err(too_big)?,
            n_parents: h.parents.len() as u16,
            session_at: u32::try_from(h.session_at).map_err(too_big)?,
            body_at: u32::try_from(body_at).map_err(too_big)?,
            bytes,
        })
    }

    /// Stores a decoded commit (encodes it once).
    pub fn from_signed(c: &SignedCommit) -> StoredCommit {
        let s = Self::parse(c.encode().into_boxed_slice(), false).expect("our own encoding parses");
        debug_assert_eq!(s.id, c.id);
        s
    }

    /// `commit bytes ‖ signature`, as written to logs and sent to peers.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn commit_bytes(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - SIG]
    }

    /// The repository path, as written in the commit.
    pub fn repo(&self) -> &str {
        // Format byte, varint length, then the path (validated by `parse`).
        let at = 1 + crate::codec::varint_len(self.repo_len.into());
        std::str::from_utf8(&self.bytes[at..at + self.repo_len as usize]).unwrap_or_default()
    }

    pub fn parents(&self) -> impl ExactSizeIterator<Item = CommitId> + '_ {
        let at = self.parents_at as usize;
        (0..self.n_parents as usize).map(move |i| {
            let mut id = [0u8; 32];
            id.copy_from_slice(&self.bytes[at + 32 * i..at + 32 * (i + 1)]);
            CommitId(id)
        })
    }

    pub fn has_parent(&self, id: &CommitId) -> bool {
        self.parents().any(|p| p == *id)
    }

    pub fn session(&self) -> SessionId {
        let at = self.session_at as usize;
        let mut s = [0u8; 32];
        s.copy_from_slice(&self.bytes[at..at + 32]);
        SessionId(s)
    }

    pub fn signature(&self) -> [u8; 64] {
        let mut s = [0u8; 64];
        s.copy_from_slice(&self.bytes[self.bytes.len() - SIG..]);
        s
    }

    /// The delta base, read without decoding the body.
    pub fn delta_base(&self) -> Option<CommitId> {
        let at = self.body_at as usize;
        if self.bytes.get(at) != Some(&BODY_DELTA) {
            return None;
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(self.bytes.get(at + 1..at + 33)?);
        Some(CommitId(id))
    }

    /// The body as encoded: tag, then a full value or a delta's base and
    /// changes (what a compact log record keeps of it).
    pub(crate) fn body_bytes(&self) -> &[u8] {
        &self.commit_bytes()[self.body_at as usize..]
    }

    /// Encoded size of the body (a full value, or a delta's base and changes).
    pub fn body_len(&self) -> usize {
        self.commit_bytes().len().saturating_sub(self.body_at as usize)
    }

    /// For a full commit, `deleted ‖ fields` exactly as encoded — which is
    /// also how a head value is sent to the main thread, so the common case
    /// needs no decoding at all.
    pub fn full_value_bytes(&self) -> Option<&[u8]> {
        let at = self.body_at as usize;
        let commit = self.commit_bytes();
        (commit.get(at) == Some(&crate::commit::BODY_FULL)).then(|| &commit[at + 1..])
    }

    /// Decodes the body strictly, only to reject malformed ones (a commit
    /// parsed without `check_body`, once its signature was verified).
    pub fn check_body(&self) -> Result<()> {
        self.body().map(|_| ())
    }

    /// Decodes the body.
    pub fn body(&self) -> Result<Body> {
        let commit = self.commit_bytes();
        let mut r = Reader::new(&commit[self.body_at as usize..]);
        let parents: Vec<CommitId> = self.parents().collect();
        let b = decode_body(&mut r, &parents)?;
        r.finish("commit body")?;
        Ok(b)
    }

    /// The whole commit, decoded.
    pub fn to_signed(&self) -> Result<SignedCommit> {
        SignedCommit::decode(&self.bytes)
    }

    /// Checks the Ed25519 signature against the commit's session key.
    pub fn verify(&self) -> Result<()> {
        self.session().verify(&self.id.0, &self.signature()).map_err(|e| match e {
            Error::BadSignature { .. } => Error::BadSignature { id: self.id.to_hex() },
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::Commit;
    use crate::path::RepoPath;
    use crate::signing::SessionKey;
    use crate::value::{ItemData, Value};

    #[test]
    fn stored_form_reads_back_every_part() {
        let key = SessionKey::from_seed([2; 32]);
        let mut d = ItemData::default();
        d.fields.insert("t".into(), Value::Str("x".into()));
        let parents = vec![CommitId([1; 32]), CommitId([3; 32])];
        let c = Commit {
            repo: RepoPath::parse("/data/things").unwrap(),
            key: "k9".into(),
            parents: parents.clone(),
            timestamp: -7,
            session: key.id(),
            schema: SchemaId::new("s", 4),
            body: Body::Delta { base: parents[1], changes: vec![crate::change::Change::Deleted(true)] },
        }
        .sign(&key)
        .unwrap();
        let s = StoredCommit::parse(c.encode().into_boxed_slice(), true).unwrap();
        assert_eq!(s.id, c.id);
        assert_eq!(&*s.key, "k9");
        assert_eq!(s.repo(), "/data/things");
        assert_eq!(s.timestamp, -7);
        assert_eq!(s.schema, SchemaId::new("s", 4));
        assert_eq!(s.parents().collect::<Vec<_>>(), parents);
        assert_eq!(s.session(), key.id());
        assert_eq!(s.delta_base(), Some(parents[1]));
        assert_eq!(s.body().unwrap(), c.commit.body);
        assert_eq!(s.to_signed().unwrap(), c);
        s.verify().unwrap();
        assert_eq!(StoredCommit::from_signed(&c).bytes(), s.bytes());
    }

    #[test]
    fn lazy_parse_defers_body_errors_full_parse_rejects_them() {
        let key = SessionKey::from_seed([2; 32]);
        let c = Commit {
            repo: RepoPath::parse("/data/x").unwrap(),
            key: "k".into(),
            parents: vec![],
            timestamp: 1,
            session: key.id(),
            schema: SchemaId::new("s", 1),
            body: Body::Full(Arc::new(ItemData::default())),
        }
        .sign(&key)
        .unwrap();
        let mut b = c.encode();
        let body_tag = b.len() - 64 - 3;
        b[body_tag] = 7;
        assert!(StoredCommit::parse(b.clone().into_boxed_slice(), true).is_err());
        let lazy = StoredCommit::parse(b.into_boxed_slice(), false).unwrap();
        assert_eq!(lazy.body().unwrap_err().code(), "ERR_DECODE");
        assert!(StoredCommit::parse(vec![1; 10].into_boxed_slice(), false).is_err());
    }
}
