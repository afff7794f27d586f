//! The client side of one repository on one connection: reconciliation
//! rounds, pushing local commits, and knowing — not guessing — what the
//! server holds.
//!
//! A round: `begin` (the digest) → `in-sync` when both hold the same commits;
//! otherwise `estimate` → this side sends the first cells of its rateless
//! IBLT, sized by the estimate → the server decodes the difference (asking
//! for `more` cells, or for the `list` of keys when cells would cost more)
//! → it sends the commits this side lacks, `want`s the ones it lacks, and
//! ends with `done`. Commits made after `begin` are pushed live; the round
//! never chases them, so it ends whatever the write rate.
//!
//! **Acknowledged** means durable on the server. The server sends `in-sync`,
//! `done` and `ack` only after its storage flush, so: on `in-sync`/`done`
//! every commit this side held when the round's sketch was taken, except the
//! ones the server wanted, is durable there; the wanted ones (and pushed
//! ones) are acknowledged by `ack`. [`RepoClient::synced`] is true only when
//! a round completed on this connection, nothing is unacknowledged and the
//! server refused nothing.

use std::collections::{BTreeMap, BTreeSet};

use crate::commit::CommitId;
use crate::error::{Error, Result};
use crate::path::RepoPath;
use crate::repository::{Inserted, Repository};
use crate::stored::StoredCommit;

use super::frame::{Frame, MAX_ITEMS_PER_FRAME};
use super::riblt::{CELL_BYTES, KEY_BYTES, Keyed, initial_cells};

/// What handling one frame did.
#[derive(Debug, Default)]
pub struct Handled {
    /// Frames to send back, in order.
    pub replies: Vec<Frame>,
    /// Commits that were new here (integrated or waiting for parents).
    pub inserted: Vec<CommitId>,
    /// Commits refused (malformed, bad signature, not allowed, …).
    pub rejected: Vec<Error>,
    /// Ids of the commits the frame carried.
    pub received: Vec<CommitId>,
}

#[derive(Debug)]
struct Round {
    n: u64,
    /// Unacknowledged commits when the sketch was taken: the ones the
    /// server does not `want` are durable there once the round ends.
    covered: Vec<CommitId>,
    keyed: Option<Keyed>,
    sent_cells: u64,
    wanted: BTreeSet<CommitId>,
}

/// One repository's sync state on one connection (see module docs).
#[derive(Debug)]
pub struct RepoClient {
    path: RepoPath,
    next_round: u64,
    round: Option<Round>,
    /// The last round that completed on this connection, and the commits
    /// the server wanted in it (they are not durable there until acked).
    completed: u64,
    completed_wanted: BTreeSet<CommitId>,
    reconciled: bool,
    unacked: BTreeSet<CommitId>,
    rejected: BTreeMap<CommitId, Error>,
    /// The server refused to let this session read the repository.
    denied: Option<Error>,
    /// Scales the first batch of cells (tests force decoding failures).
    cell_factor: f64,
}

impl RepoClient {
    pub fn new(path: RepoPath) -> RepoClient {
        RepoClient {
            path,
            next_round: 1,
            round: None,
            completed: 0,
            completed_wanted: BTreeSet::new(),
            reconciled: false,
            unacked: BTreeSet::new(),
            rejected: BTreeMap::new(),
            denied: None,
            cell_factor: 1.0,
        }
    }

    pub fn path(&self) -> &RepoPath {
        &self.path
    }

    /// Sends `factor` times the estimated cells first (tests use a small
    /// factor to force `more` rounds and the fallback to a list).
    pub fn set_cell_factor(&mut self, factor: f64) {
        self.cell_factor = factor;
    }

    /// Starts a round; returns its `begin` frame and number.
    pub fn begin(&mut self, repo: &Repository) -> (Frame, u64) {
        let n = self.next_round;
        self.next_round += 1;
        let covered = self.unacked.iter().copied().filter(|id| repo.holds(id)).collect();
        self.round = Some(Round { n, covered, keyed: None, sent_cells: 0, wanted: BTreeSet::new() });
        (Frame::Begin { repo: self.path.clone(), round: n, digest: repo.digest() }, n)
    }

    /// The connection dropped: everything must be reconciled again (what was
    /// not acknowledged stays unacknowledged).
    pub fn reset(&mut self) {
        self.round = None;
        self.reconciled = false;
        self.denied = None;
    }

    /// True when a round completed on this connection, every local commit
    /// is durable on the server and the server refused none.
    pub fn synced(&self) -> bool {
        self.reconciled && self.unacked.is_empty() && self.rejected.is_empty() && self.denied.is_none()
    }

    /// The last round that completed on this connection (0: none).
    pub fn completed_round(&self) -> u64 {
        if self.reconciled { self.completed } else { 0 }
    }

    /// Whether the round numbered `n` (or a later one) has completed.
    pub fn completed(&self, n: u64) -> bool {
        self.completed >= n
    }

    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Whether a round is in progress.
    pub fn in_round(&self) -> bool {
        self.round.is_some()
    }

    /// Commits this side will send itself (a server relaying to a peer):
    /// unacknowledged until the other side says otherwise.
    pub fn mark_unacked(&mut self, ids: &[CommitId]) {
        self.unacked.extend(ids.iter().copied());
    }

    pub fn denied(&self) -> Option<&Error> {
        self.denied.as_ref()
    }

    /// Commits the server refused, with why.
    pub fn rejected(&self) -> impl Iterator<Item = (&CommitId, &Error)> {
        self.rejected.iter()
    }

    /// The server refused to let this session read the repository.
    pub fn deny(&mut self, e: Error) {
        self.round = None;
        self.denied = Some(e);
    }

    /// The server refused one of this side's commits. Refusals that can
    /// pass later (`ERR_QUOTA`: the server was busy; `ERR_STORAGE`: its
    /// disk; `ERR_UNKNOWN_SESSION`: it lost a certificate, which the session
    /// sends it) keep the commit unacknowledged, to be sent again; the
    /// others are final.
    pub fn refused(&mut self, id: CommitId, e: Error) {
        if matches!(e.code(), "ERR_QUOTA" | "ERR_STORAGE" | "ERR_PENDING_FULL" | "ERR_UNAVAILABLE" | "ERR_UNKNOWN_SESSION") {
            return;
        }
        if self.unacked.remove(&id) {
            self.rejected.insert(id, e);
        }
    }

    /// Whether the commits the server wanted in the last completed round
    /// are all acknowledged.
    pub fn wanted_acked(&self) -> bool {
        !self.any_unacked(&self.completed_wanted)
    }

    /// Whether any of `ids` is still unacknowledged.
    pub fn any_unacked(&self, ids: &BTreeSet<CommitId>) -> bool {
        ids.iter().any(|id| self.unacked.contains(id))
    }

    /// The unacknowledged commits now.
    pub fn unacked_ids(&self) -> BTreeSet<CommitId> {
        self.unacked.clone()
    }

    /// New local commits: remembered as unacknowledged, and the frames that
    /// push them (send them only on a welcomed connection).
    pub fn push(&mut self, repo: &Repository, ids: &[CommitId]) -> Vec<Frame> {
        self.unacked.extend(ids.iter().copied());
        self.commit_frames(repo, ids.to_vec())
    }

    fn commit_frames(&self, repo: &Repository, mut ids: Vec<CommitId>) -> Vec<Frame> {
        repo.parents_first(&mut ids);
        Frame::commits(&self.path, ids.iter().filter_map(|id| repo.commit(id)).map(StoredCommit::bytes))
    }

    /// Handles a repository frame from the server. `verify` is called on
    /// every received commit before it is inserted.
    pub fn handle(&mut self, repo: &mut Repository, frame: Frame, verify: &dyn Fn(&StoredCommit) -> Result<()>) -> Result<Handled> {
        if frame.repo() != Some(&self.path) || repo.path() != &self.path {
            return Err(Error::path(frame.repo().map_or("", |p| p.as_str()), format!("this sync state is for {}", self.path)));
        }
        let mut out = Handled::default();
        let current = |r: u64, me: &Self| me.round.as_ref().is_some_and(|x| x.n == r);
        match frame {
            Frame::InSync { round, .. } | Frame::Done { round, .. } if current(round, self) => {
                let r = self.round.take().expect("current round");
                for id in r.covered {
                    if !r.wanted.contains(&id) {
                        self.unacked.remove(&id);
                    }
                }
                self.reconciled = true;
                self.completed = self.completed.max(round);
                self.completed_wanted = r.wanted;
            }
            Frame::Estimate { round, salt, count, strata, .. } if current(round, self) => {
                let keyed = Keyed::new(repo.commit_ids(), salt);
                let mine = keyed.keys.len() as u64;
                let est = keyed.strata().estimate(&strata).max(count.abs_diff(mine));
                let cells = ((initial_cells(est) as f64 * self.cell_factor).ceil() as u64).max(1);
                let covered: Vec<CommitId> = self.unacked.iter().copied().filter(|id| repo.holds(id)).collect();
                let r = self.round.as_mut().expect("current round");
                r.covered = covered;
                r.keyed = Some(keyed);
                // Every key costs less than the cells when the difference is
                // a large part of this side's set.
                if cells * CELL_BYTES as u64 >= mine * KEY_BYTES as u64 {
                    out.replies = self.list(round);
                } else {
                    out.replies = self.cells(round, cells);
                }
            }
            Frame::More { round, upto, .. } if current(round, self) => {
                out.replies = if upto == 0 { self.list(round) } else { self.cells(round, upto) };
            }
            Frame::Want { round, all, keys, .. } if current(round, self) => {
                let r = self.round.as_mut().expect("current round");
                let ids: Vec<CommitId> = if all {
                    repo.commit_ids().collect()
                } else {
                    let keyed = r.keyed.as_ref().ok_or_else(|| Error::decode("want before any cells or list", 0))?;
                    keys.iter().filter_map(|k| keyed.ids.get(k).copied()).collect()
                };
                r.wanted.extend(ids.iter().copied());
                self.unacked.extend(ids.iter().copied());
                repo.load_commits(&ids)?;
                out.replies = self.commit_frames(repo, ids);
            }
            // Answers to a round that was superseded (a newer begin) are
            // ignored; the newer round covers everything.
            Frame::InSync { .. } | Frame::Done { .. } | Frame::Estimate { .. } | Frame::More { .. } | Frame::Want { .. } => {}
            Frame::Commits { commits, .. } => {
                for bytes in commits {
                    let res = StoredCommit::parse(bytes.into_boxed_slice(), false).and_then(|c| {
                        out.received.push(c.id);
                        verify(&c)?;
                        c.check_body()?;
                        let id = c.id;
                        Ok((id, repo.insert_stored(c)?))
                    });
                    match res {
                        Ok((id, Inserted::New { .. } | Inserted::Pending)) => out.inserted.push(id),
                        Ok(_) => {}
                        Err(e) => out.rejected.push(e),
                    }
                }
            }
            Frame::Ack { ids, .. } => {
                for p in ids {
                    let mut lo = [0u8; 32];
                    lo[..8].copy_from_slice(&p);
                    let hits: Vec<CommitId> = self.unacked.range(CommitId(lo)..).take_while(|id| id.prefix() == p).copied().collect();
                    for id in hits {
                        self.unacked.remove(&id);
                    }
                }
            }
            Frame::WantIds { ids, .. } => {
                let held: Vec<CommitId> = ids.into_iter().filter(|id| repo.holds(id)).collect();
                self.unacked.extend(held.iter().copied());
                // Old commits may still be only in the log (a checkpoint).
                repo.load_commits(&held)?;
                out.replies = self.commit_frames(repo, held);
            }
            Frame::Resync { .. } => {
                self.reconciled = false;
                out.replies.push(self.begin(repo).0);
            }
            other => return Err(Error::decode(format!("unexpected frame from the server: {}", super::frame::frame_name(&other.encode())), 0)),
        }
        Ok(out)
    }

    fn cells(&mut self, round: u64, upto: u64) -> Vec<Frame> {
        let r = self.round.as_mut().expect("current round");
        let Some(keyed) = &r.keyed else { return Vec::new() };
        let from = r.sent_cells;
        let upto = upto.max(from);
        r.sent_cells = upto;
        let cells = keyed.cells(from, upto);
        let step = MAX_ITEMS_PER_FRAME;
        let mut out = Vec::new();
        let mut at = from;
        for chunk in cells.chunks(step) {
            out.push(Frame::Cells { repo: self.path.clone(), round, from: at, upto, cells: chunk.to_vec() });
            at += chunk.len() as u64;
        }
        out
    }

    fn list(&mut self, round: u64) -> Vec<Frame> {
        let r = self.round.as_ref().expect("current round");
        let Some(keyed) = &r.keyed else { return Vec::new() };
        let total = keyed.keys.len() as u64;
        if total == 0 {
            return vec![Frame::List { repo: self.path.clone(), round, total, keys: Vec::new() }];
        }
        keyed.keys.chunks(MAX_ITEMS_PER_FRAME).map(|c| Frame::List { repo: self.path.clone(), round, total, keys: c.to_vec() }).collect()
    }
}
