//! Commits: one version of one item, content-addressed and signed.
//!
//! ```text
//! signed commit = commit bytes ‖ signature (64 bytes)
//! id            = SHA-256(commit bytes)
//! signature     = Ed25519(session key, id)
//!
//! commit bytes (format version 1):
//! ┌─────────┬──────────┬─────────┬───────────────────────┬──────────┐
//! │ ver: u8 │ repo:str │ key:str │ parents: varint n,    │ ts:      │
//! │   = 1   │          │         │ n × 32 B, ascending   │ zigzag ms│
//! ├─────────┴──────────┴─────────┴───────────────────────┴──────────┤
//! │ session: 32 B (Ed25519 public key)                              │
//! │ schema: str ns, varint version                                  │
//! │ body: u8 tag                                                    │
//! │   0 full:  u8 deleted, fields        (see value.rs)             │
//! │   1 delta: base: 32 B (one of the parents), changes (change.rs) │
//! └─────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The repository path is inside the signed bytes, so a commit cannot be
//! replayed into another repository. The decoder accepts only canonical
//! bytes (sorted parents, minimal varints, sorted fields, …), so
//! `encode(decode(b)) == b` for every accepted `b` and ids are stable.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::change::{self, Change};
use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::path::{RepoPath, check_key};
use crate::schema::SchemaId;
use crate::signing::{SessionId, SessionKey};
use crate::value::{ItemData, decode_fields, encode_fields};

/// Version byte at the start of every commit encoding.
pub const COMMIT_FORMAT: u8 = 1;
/// Most parents a commit may list (a write closes every open fork).
pub const MAX_PARENTS: usize = 1024;

/// SHA-256 of a commit's canonical bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitId(pub [u8; 32]);

impl CommitId {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 bytes (acknowledgements name commits by them).
    pub fn prefix(&self) -> [u8; 8] {
        self.0[..8].try_into().expect("8 bytes")
    }

    pub fn from_hex(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| Error::decode(format!("`{s}` is not a 64-character hex commit id"), 0))?;
        Ok(CommitId(out))
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", hex::encode(&self.0[..6]))
    }
}

/// The value a commit carries: a full item, or changes against a base.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Full(Arc<ItemData>),
    /// Changes against `base`, which must be one of the commit's parents.
    Delta {
        base: CommitId,
        changes: Vec<Change>,
    },
}

/// An unsigned commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub repo: RepoPath,
    /// Shared with the repository's index of items.
    pub key: Arc<str>,
    /// Sorted ascending, no duplicates.
    pub parents: Vec<CommitId>,
    /// Milliseconds since the Unix epoch, on the writer's clock.
    pub timestamp: i64,
    pub session: SessionId,
    pub schema: SchemaId,
    pub body: Body,
}

pub(crate) const BODY_FULL: u8 = 0;
pub(crate) const BODY_DELTA: u8 = 1;

/// Bytes of a delta body whose changes encode to `changes` bytes: tag,
/// base id, changes (as `encode` writes it).
pub(crate) fn delta_body_len(changes: usize) -> usize {
    1 + 32 + changes
}

/// Everything before the body, plus where the parents start (so a stored
/// commit can read them back without keeping a copy).
pub(crate) struct Header<'a> {
    /// Validated with [`RepoPath::check`]; borrowed so that stored commits
    /// do not allocate a path per commit.
    pub repo: &'a str,
    pub key: Arc<str>,
    pub parents: Vec<CommitId>,
    pub parents_at: usize,
    pub timestamp: i64,
    pub session: SessionId,
    pub session_at: usize,
    pub schema: SchemaId,
}

impl<'a> Header<'a> {
    pub(crate) fn decode(r: &mut Reader<'a>) -> Result<Header<'a>> {
        let at = r.offset();
        let ver = r.u8("commit format")?;
        if ver != COMMIT_FORMAT {
            return Err(Error::decode(format!("commit format {ver} is not supported (this build reads {COMMIT_FORMAT})"), at));
        }
        let rat = r.offset();
        let repo = r.str("repository path")?;
        RepoPath::check(repo).map_err(|e| Error::decode(e.to_string(), rat))?;
        let kat = r.offset();
        let key = r.str("item key")?;
        check_key(key).map_err(|e| Error::decode(e.to_string(), kat))?;
        let key: Arc<str> = key.into();
        let pat = r.offset();
        let n = r.count("parent count", 32)?;
        if n > MAX_PARENTS {
            return Err(Error::decode(format!("{n} parents (at most {MAX_PARENTS})"), pat));
        }
        let parents_at = r.offset();
        let mut parents = Vec::with_capacity(n);
        for _ in 0..n {
            let p = CommitId(r.array("parent id")?);
            if parents.last().is_some_and(|last| *last >= p) {
                return Err(Error::decode("parents not strictly ascending", pat));
            }
            parents.push(p);
        }
        let timestamp = r.zigzag("timestamp")?;
        let session_at = r.offset();
        let session = SessionId(r.array("session key")?);
        let ns: Arc<str> = r.str("schema namespace")?.into();
        let version = r.u32("schema version")?;
        Ok(Header { repo, key, parents, parents_at, timestamp, session, session_at, schema: SchemaId { ns, version } })
    }
}

/// Decodes a body; a delta's base must be one of `parents`.
pub(crate) fn decode_body(r: &mut Reader, parents: &[CommitId]) -> Result<Body> {
    let bat = r.offset();
    Ok(match r.u8("body tag")? {
        BODY_FULL => {
            let deleted = r.bool("deleted flag")?;
            Body::Full(Arc::new(ItemData { deleted, fields: decode_fields(r)? }))
        }
        BODY_DELTA => {
            let base = CommitId(r.array("delta base")?);
            if !parents.contains(&base) {
                return Err(Error::decode("delta base is not one of the parents", bat));
            }
            Body::Delta { base, changes: change::decode(r)? }
        }
        t => return Err(Error::decode(format!("unknown body tag {t}"), bat)),
    })
}

impl Commit {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(128);
        self.encode_into(&mut w);
        w.into_bytes()
    }

    fn encode_into(&self, w: &mut Writer) {
        w.u8(COMMIT_FORMAT);
        w.str(self.repo.as_str());
        w.str(&self.key);
        w.varint(self.parents.len() as u64);
        for p in &self.parents {
            w.raw(&p.0);
        }
        w.zigzag(self.timestamp);
        w.raw(&self.session.0);
        w.str(&self.schema.ns);
        w.varint(self.schema.version.into());
        match &self.body {
            Body::Full(data) => {
                w.u8(BODY_FULL);
                w.u8(data.deleted as u8);
                encode_fields(w, &data.fields);
            }
            Body::Delta { base, changes } => {
                w.u8(BODY_DELTA);
                w.raw(&base.0);
                change::encode(w, changes);
            }
        }
    }

    pub fn id(&self) -> CommitId {
        CommitId(Sha256::digest(self.encode()).into())
    }

    /// Decodes one commit from the reader (it is self-delimiting).
    pub fn decode(r: &mut Reader) -> Result<Commit> {
        let h = Header::decode(r)?;
        let body = decode_body(r, &h.parents)?;
        Ok(Commit { repo: RepoPath::parse(h.repo)?, key: h.key, parents: h.parents, timestamp: h.timestamp, session: h.session, schema: h.schema, body })
    }

    /// Signs the commit with its session's key.
    pub fn sign(self, key: &SessionKey) -> Result<SignedCommit> {
        if key.id() != self.session {
            return Err(Error::InvalidCommit { id: self.id().to_hex(), reason: format!("commit names session {} but is signed by {}", self.session, key.id()) });
        }
        let id = self.id();
        let signature = key.sign(&id.0);
        Ok(SignedCommit { commit: self, id, signature })
    }
}

/// A commit with its id and its session's signature.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCommit {
    pub commit: Commit,
    pub id: CommitId,
    pub signature: [u8; 64],
}

impl SignedCommit {
    /// `commit bytes ‖ signature`.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.commit.encode();
        b.extend_from_slice(&self.signature);
        b
    }

    /// Decodes a signed commit that occupies the whole slice. Does *not*
    /// verify the signature: see [`SignedCommit::verify`].
    pub fn decode(bytes: &[u8]) -> Result<SignedCommit> {
        let mut r = Reader::new(bytes);
        let s = Self::decode_from(&mut r, bytes)?;
        r.finish("signed commit")?;
        Ok(s)
    }

    /// Decodes a signed commit starting at the reader's position within `all`.
    pub fn decode_from(r: &mut Reader, all: &[u8]) -> Result<SignedCommit> {
        let start = r.offset();
        let commit = Commit::decode(r)?;
        let id = CommitId(Sha256::digest(&all[start..r.offset()]).into());
        let signature = r.array("signature")?;
        Ok(SignedCommit { commit, id, signature })
    }

    /// Checks the Ed25519 signature against the commit's session key.
    pub fn verify(&self) -> Result<()> {
        self.commit.session.verify(&self.id.0, &self.signature).map_err(|e| match e {
            Error::BadSignature { .. } => Error::BadSignature { id: self.id.to_hex() },
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Splice;
    use crate::value::{Scalar, Value};
    use proptest::prelude::*;

    fn key() -> SessionKey {
        SessionKey::from_seed([1; 32])
    }

    pub(crate) fn sample(body: Body, parents: Vec<CommitId>) -> Commit {
        Commit { repo: RepoPath::parse("/data/todos").unwrap(), key: "k1".into(), parents, timestamp: 1_700_000_000_000, session: key().id(), schema: SchemaId::new("task", 1), body }
    }

    fn full() -> Body {
        let mut d = ItemData::default();
        d.fields.insert("text".into(), Value::Str("milk".into()));
        d.fields.insert("tags".into(), Value::Set([Scalar::Str("a".into())].into()));
        Body::Full(Arc::new(d))
    }

    #[test]
    fn roundtrip_and_verify() {
        let c = sample(full(), vec![]).sign(&key()).unwrap();
        let bytes = c.encode();
        let d = SignedCommit::decode(&bytes).unwrap();
        assert_eq!(d, c);
        d.verify().unwrap();
        assert_eq!(d.encode(), bytes);

        let base = c.id;
        let delta = sample(Body::Delta { base, changes: vec![Change::Text { field: "t".into(), splices: vec![Splice { pos: 0, delete: 0, insert: "x".into() }] }] }, vec![base]);
        let s = delta.sign(&key()).unwrap();
        assert_eq!(SignedCommit::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let c = sample(full(), vec![]).sign(&key()).unwrap();
        let mut bytes = c.encode();
        let i = bytes.len() - 70;
        bytes[i] ^= 1;
        if let Ok(d) = SignedCommit::decode(&bytes) {
            assert_eq!(d.verify().unwrap_err().code(), "ERR_BAD_SIGNATURE");
        }
        let mut bytes = c.encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x10;
        assert!(SignedCommit::decode(&bytes).unwrap().verify().is_err());
    }

    #[test]
    fn signing_with_another_key_is_refused() {
        let e = sample(full(), vec![]).sign(&SessionKey::from_seed([2; 32])).unwrap_err();
        assert_eq!(e.code(), "ERR_INVALID_COMMIT");
    }

    #[test]
    fn structural_rules_are_enforced() {
        let p1 = CommitId([1; 32]);
        let p2 = CommitId([2; 32]);
        // Unsorted parents.
        let bad = sample(full(), vec![p2, p1]).sign(&key()).unwrap().encode();
        assert!(SignedCommit::decode(&bad).is_err());
        // Delta base outside the parents.
        let bad = sample(Body::Delta { base: p2, changes: vec![] }, vec![p1]).sign(&key()).unwrap().encode();
        assert!(SignedCommit::decode(&bad).unwrap_err().to_string().contains("delta base"));
        // Trailing garbage.
        let mut bytes = sample(full(), vec![]).sign(&key()).unwrap().encode();
        bytes.push(0);
        assert!(SignedCommit::decode(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_decode_to_err_not_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SignedCommit::decode(&b);
        }

        #[test]
        fn truncations_and_bit_flips_never_panic(cut in 0usize..400, flip in 0usize..400, bit in 0u8..8) {
            let bytes = sample(full(), vec![CommitId([9; 32])]).sign(&key()).unwrap().encode();
            let cut = cut.min(bytes.len());
            let _ = SignedCommit::decode(&bytes[..cut]);
            let mut flipped = bytes.clone();
            let i = flip % flipped.len();
            flipped[i] ^= 1 << bit;
            if let Ok(c) = SignedCommit::decode(&flipped) {
                // Whatever still decodes must fail verification or be the original.
                prop_assert!(c.verify().is_err() || flipped == bytes);
            }
        }
    }
}
