//! The sync protocol: reconciling one repository between two peers, then
//! pushing new commits live. Transport-agnostic (the server and the worker
//! carry these frames over WebSocket binary messages).
//!
//! ```text
//! frame    = u8 type, str repo, payload
//!   1 filter   varint round, digest, bloom      "this is what I hold"
//!   2 commits  varint n, n × bytes              signed commits you lack / new ones
//!   3 in-sync  digest                           "we hold the same commits"
//! digest   = varint count, 32 B xor of ids      (repository.rs SetDigest)
//! bloom    = see bloom.rs
//! ```
//!
//! Reconciliation (both sides run the same [`Reconciler`]):
//!
//! 1. A sends `filter` (round 0): its digest and a Bloom filter of every id
//!    it holds (integrated or waiting for parents).
//! 2. The receiver compares digests. Equal → it answers `in-sync`: done.
//!    Different → it sends, parents first, every commit the filter does not
//!    contain (`commits`, chunked), then its own `filter` for round + 1.
//! 3. Repeat. A commit hidden by a false positive in one round is sent in a
//!    later one: every round hashes with a new seed, so the rounds converge
//!    (a test forces false positives). After [`MAX_ROUNDS`] it is an error.
//!
//! Every received commit is decoded strictly and passed to the caller's
//! `verify` (signature, and later certificates and rules) before it is
//! inserted; rejected commits are reported, never stored.
//!
//! ```
//! use std::sync::Arc;
//! use ibex_core::{sync::Reconciler, *};
//! let reg = Arc::new(Registry::new());
//! let mut a = Repository::new(RepoPath::parse("/data/x").unwrap(), reg.clone());
//! let mut b = Repository::new(RepoPath::parse("/data/x").unwrap(), reg);
//! let (mut ra, mut rb) = (Reconciler::new(a.path().clone(), 1), Reconciler::new(b.path().clone(), 2));
//! let hello = ra.start(&a);
//! let replies = rb.handle(&mut b, hello, &|c| c.verify()).unwrap().replies;
//! assert!(matches!(replies[0], sync::Message::InSync { .. })); // both empty
//! ```

use crate::bloom::Bloom;
use crate::codec::{Reader, Writer};
use crate::commit::CommitId;
use crate::error::{Error, Result};
use crate::path::RepoPath;
use crate::repository::{Repository, SetDigest};
use crate::stored::StoredCommit;

/// Rounds after which reconciliation gives up with an error.
pub const MAX_ROUNDS: u32 = 64;
/// Most commits in one `commits` frame.
pub const MAX_COMMITS_PER_FRAME: usize = 4096;
/// Most bytes of commits in one `commits` frame (a single larger commit is
/// sent alone).
pub const MAX_COMMIT_BYTES_PER_FRAME: usize = 4 << 20;
/// False-positive rate of the filters.
pub const DEFAULT_FPR: f64 = 0.01;

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Filter { repo: RepoPath, round: u32, digest: SetDigest, bloom: Bloom },
    Commits { repo: RepoPath, commits: Vec<Vec<u8>> },
    InSync { repo: RepoPath, digest: SetDigest },
}

const T_FILTER: u8 = 1;
const T_COMMITS: u8 = 2;
const T_IN_SYNC: u8 = 3;

fn write_digest(w: &mut Writer, d: &SetDigest) {
    w.varint(d.count);
    w.raw(&d.xor);
}

fn read_digest(r: &mut Reader) -> Result<SetDigest> {
    Ok(SetDigest { count: r.varint("digest count")?, xor: r.array("digest xor")? })
}

impl Message {
    pub fn repo(&self) -> &RepoPath {
        match self {
            Message::Filter { repo, .. } | Message::Commits { repo, .. } | Message::InSync { repo, .. } => repo,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Message::Filter { repo, round, digest, bloom } => {
                w.u8(T_FILTER);
                w.str(repo.as_str());
                w.varint((*round).into());
                write_digest(&mut w, digest);
                bloom.encode(&mut w);
            }
            Message::Commits { repo, commits } => {
                w.u8(T_COMMITS);
                w.str(repo.as_str());
                w.varint(commits.len() as u64);
                for c in commits {
                    w.bytes(c);
                }
            }
            Message::InSync { repo, digest } => {
                w.u8(T_IN_SYNC);
                w.str(repo.as_str());
                write_digest(&mut w, digest);
            }
        }
        w.into_bytes()
    }

    /// Decodes one frame; hostile input gets an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Message> {
        let mut r = Reader::new(bytes);
        let tag = r.u8("frame type")?;
        let at = r.offset();
        let repo = RepoPath::parse(r.str("repository")?).map_err(|e| Error::decode(e.to_string(), at))?;
        let msg = match tag {
            T_FILTER => Message::Filter { repo, round: r.u32("round")?, digest: read_digest(&mut r)?, bloom: Bloom::decode(&mut r)? },
            T_COMMITS => {
                let cat = r.offset();
                let n = r.count("commit count", 1)?;
                if n > MAX_COMMITS_PER_FRAME {
                    return Err(Error::decode(format!("{n} commits in one frame (at most {MAX_COMMITS_PER_FRAME})"), cat));
                }
                let mut commits = Vec::with_capacity(n);
                for _ in 0..n {
                    commits.push(r.bytes("commit")?.to_vec());
                }
                Message::Commits { repo, commits }
            }
            T_IN_SYNC => Message::InSync { repo, digest: read_digest(&mut r)? },
            t => return Err(Error::decode(format!("unknown frame type {t}"), 0)),
        };
        r.finish("frame")?;
        Ok(msg)
    }

    /// `commits` frames carrying these commits, chunked by the limits.
    pub fn commits<'a>(repo: &RepoPath, commits: impl IntoIterator<Item = &'a StoredCommit>) -> Vec<Message> {
        let mut out = Vec::new();
        let mut cur: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0;
        for c in commits {
            if !cur.is_empty() && (cur.len() == MAX_COMMITS_PER_FRAME || bytes + c.bytes().len() > MAX_COMMIT_BYTES_PER_FRAME) {
                out.push(Message::Commits { repo: repo.clone(), commits: std::mem::take(&mut cur) });
                bytes = 0;
            }
            bytes += c.bytes().len();
            cur.push(c.bytes().to_vec());
        }
        if !cur.is_empty() {
            out.push(Message::Commits { repo: repo.clone(), commits: cur });
        }
        out
    }
}

/// What handling one message did.
#[derive(Debug, Default)]
pub struct Handled {
    /// Frames to send back to the peer, in order.
    pub replies: Vec<Message>,
    /// Commits that were new here.
    pub inserted: Vec<CommitId>,
    /// Commits refused (malformed, bad signature, not allowed, …).
    pub rejected: Vec<Error>,
}

/// One side of the reconciliation of one repository with one peer.
#[derive(Debug, Clone)]
pub struct Reconciler {
    repo: RepoPath,
    seed: u64,
    fpr: f64,
    synced: bool,
}

impl Reconciler {
    /// `seed` varies the filters' hashing per session (callers pass random
    /// bits; the core has no randomness of its own).
    pub fn new(repo: RepoPath, seed: u64) -> Self {
        Reconciler { repo, seed, fpr: DEFAULT_FPR, synced: false }
    }

    /// Sets the filters' false-positive rate (tests force false positives).
    pub fn with_fpr(mut self, fpr: f64) -> Self {
        self.fpr = fpr;
        self
    }

    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The opening frame: round 0.
    pub fn start(&mut self, repo: &Repository) -> Message {
        self.synced = false;
        self.filter(repo, 0)
    }

    fn filter(&self, repo: &Repository, round: u32) -> Message {
        let ids: Vec<&CommitId> = repo.commit_ids().chain(repo.pending_ids()).collect();
        let mut bloom = Bloom::for_count(ids.len(), self.fpr, self.seed ^ u64::from(round).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for id in ids {
            bloom.insert(id);
        }
        Message::Filter { repo: self.repo.clone(), round, digest: repo.digest(), bloom }
    }

    /// Handles one frame from the peer. `verify` is called on every
    /// received commit before it is inserted.
    pub fn handle(&mut self, repo: &mut Repository, msg: Message, verify: &dyn Fn(&StoredCommit) -> Result<()>) -> Result<Handled> {
        if msg.repo() != &self.repo || repo.path() != &self.repo {
            return Err(Error::path(msg.repo().as_str(), format!("this reconciliation is for {}", self.repo)));
        }
        let mut out = Handled::default();
        match msg {
            Message::Filter { round, digest, bloom, .. } => {
                if digest == repo.digest() {
                    self.synced = true;
                    out.replies.push(Message::InSync { repo: self.repo.clone(), digest });
                } else if round >= MAX_ROUNDS {
                    return Err(Error::InvalidCommit { id: self.repo.to_string(), reason: format!("sync did not converge after {MAX_ROUNDS} rounds") });
                } else {
                    self.synced = false;
                    let missing = repo.commits_in_order().into_iter().filter(|c| !bloom.contains(&c.id));
                    out.replies = Message::commits(&self.repo, missing);
                    out.replies.push(self.filter(repo, round + 1));
                }
            }
            Message::Commits { commits, .. } => {
                for bytes in commits {
                    let res = StoredCommit::parse(bytes.into_boxed_slice(), true).and_then(|c| {
                        verify(&c)?;
                        let id = c.id;
                        Ok((id, repo.insert_stored(c)?))
                    });
                    match res {
                        Ok((id, crate::repository::Inserted::New { .. } | crate::repository::Inserted::Pending)) => out.inserted.push(id),
                        Ok(_) => {}
                        Err(e) => out.rejected.push(e),
                    }
                }
            }
            Message::InSync { digest, .. } => {
                if digest == repo.digest() {
                    self.synced = true;
                } else {
                    // Something changed while the answer travelled: go again.
                    self.synced = false;
                    out.replies.push(self.filter(repo, 1));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_frames_never_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Message::decode(&b);
        }
    }

    #[test]
    fn frames_roundtrip() {
        let repo = RepoPath::parse("/data/x").unwrap();
        let mut bloom = Bloom::for_count(10, 0.01, 3);
        bloom.insert(&CommitId([1; 32]));
        for m in [
            Message::Filter { repo: repo.clone(), round: 7, digest: SetDigest { count: 3, xor: [9; 32] }, bloom },
            Message::Commits { repo: repo.clone(), commits: vec![vec![1, 2, 3], vec![]] },
            Message::InSync { repo, digest: SetDigest::default() },
        ] {
            let b = m.encode();
            assert_eq!(Message::decode(&b).unwrap(), m);
            for cut in 0..b.len() {
                assert!(Message::decode(&b[..cut]).is_err());
            }
        }
    }
}
