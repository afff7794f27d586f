//! The server side of one repository on one connection (the other half of
//! `client.rs`): answers rounds, takes in pushed commits, and says which
//! frames may only leave after the storage flush (`in-sync`, `done`, `ack`:
//! the words that mean "durable here").
//!
//! Sans-I/O: the host (the server's repository actor, the simulation)
//! passes frames in and sends what comes out; it relays integrated commits
//! to other subscribers ([`Repository::take_integrated`]), puts certificates
//! before commits, checks read rules and quotas.

use std::collections::HashSet;

use crate::commit::CommitId;
use crate::error::{Error, Result};
use crate::repository::{Inserted, Owner, Repository};
use crate::stored::StoredCommit;

use super::frame::Frame;
use super::riblt::{Decoder, Key, Keyed, initial_cells};

/// Context of one call.
pub struct Ctx<'a> {
    /// Checks a received commit (signature, certificate, rules, clock).
    pub verify: &'a dyn Fn(&StoredCommit) -> Result<()>,
    /// Who sent the frame (bounds and expires its waiting commits).
    pub owner: Owner,
    /// The host's clock, for waiting commits.
    pub now: i64,
    /// Salt of this repository's keys (random per repository and process).
    pub salt: u64,
}

/// What handling one frame produced.
#[derive(Debug, Default)]
pub struct Served {
    /// Commits to send first, parents first: ids, so a host can turn them
    /// into frames as its connection drains instead of copying a whole
    /// history at once ([`commit_frames`] does it in one go).
    pub send: Vec<CommitId>,
    /// Send now, in order, after `send`.
    pub now: Vec<Frame>,
    /// Send after the next successful flush, in order (after `now`).
    pub after_flush: Vec<Frame>,
    /// Commits refused, with the id when the commit decoded that far.
    pub rejected: Vec<(Option<CommitId>, Error)>,
    /// Commits that were new here (integrated or waiting).
    pub accepted: usize,
    /// Ids of the commits the frame carried (the sender has them: a host
    /// relays it only the *other* commits they unblocked).
    pub received: Vec<CommitId>,
}

#[derive(Debug)]
struct Round {
    n: u64,
    keyed: Keyed,
    decoder: Decoder,
    /// The client sends cells up to here before we look again.
    upto: u64,
    list: Option<(u64, Vec<Key>)>,
    client_count: u64,
}

/// One connection's state for one repository (see module docs).
#[derive(Debug, Default)]
pub struct RepoServe {
    round: Option<Round>,
    subscribed: bool,
    /// Caps the cells of a round (tests force the fallback to a list).
    cap: Option<u64>,
}

impl RepoServe {
    pub fn new() -> RepoServe {
        RepoServe::default()
    }

    /// Most cells a round may use before the list of keys is asked for
    /// instead: twice both sets (beyond that the list is cheaper), or less.
    pub fn set_max_cells(&mut self, cap: Option<u64>) {
        self.cap = cap;
    }

    fn max_cells(&self, server: u64, client: u64) -> u64 {
        let natural = ((server + client) * 2).max(64);
        self.cap.map_or(natural, |c| c.min(natural))
    }

    /// Whether this connection asked for the repository (and gets relays).
    pub fn subscribed(&self) -> bool {
        self.subscribed
    }

    /// Whether a round is in progress.
    pub fn in_round(&self) -> bool {
        self.round.is_some()
    }

    pub fn handle(&mut self, repo: &mut Repository, frame: Frame, ctx: &Ctx) -> Result<Served> {
        let path = repo.path().clone();
        if frame.repo() != Some(&path) {
            return Err(Error::path(frame.repo().map_or("", |p| p.as_str()), format!("this state is for {path}")));
        }
        let mut out = Served::default();
        match frame {
            Frame::Begin { round, digest, .. } => {
                self.subscribed = true;
                self.round = None;
                let mine = repo.digest();
                if digest == mine {
                    out.after_flush.push(Frame::InSync { repo: path, round });
                } else if digest.count == 0 {
                    // The client holds nothing: everything, no sketch.
                    let mut ids: Vec<CommitId> = repo.commit_ids().collect();
                    repo.parents_first(&mut ids);
                    out.send = ids;
                    out.after_flush.push(Frame::Done { repo: path, round });
                } else if mine.count == 0 {
                    out.now.push(Frame::Want { repo: path.clone(), round, all: true, keys: Vec::new() });
                    out.after_flush.push(Frame::Done { repo: path, round });
                } else {
                    let keyed = Keyed::new(repo.commit_ids(), ctx.salt);
                    let strata = keyed.strata();
                    out.now.push(Frame::Estimate { repo: path, round, salt: ctx.salt, count: mine.count, strata });
                    self.round = Some(Round { n: round, keyed, decoder: Decoder::new(), upto: 0, list: None, client_count: digest.count });
                }
            }
            Frame::Cells { round, from, upto, cells, .. } => {
                let Some((s_count, c_count)) = self.round.as_ref().filter(|r| r.n == round).map(|r| (r.keyed.keys.len() as u64, r.client_count)) else { return Ok(out) };
                // A client may send up to `natural` cells; past `cap`, the
                // list of keys is asked for instead.
                let natural = ((s_count + c_count) * 2).max(64);
                let cap = self.max_cells(s_count, c_count);
                let r = self.round.as_mut().expect("checked above");
                let have = r.decoder.len();
                if from != have || upto < from + cells.len() as u64 || upto > natural {
                    return Err(Error::decode(format!("cells {from}..{upto} out of order (have {have})"), 0));
                }
                r.upto = r.upto.max(upto);
                let ours = r.keyed.cells(from, from + cells.len() as u64);
                r.decoder.extend(&ours, &cells);
                if r.decoder.decoded() {
                    let (ours, theirs) = r.decoder.difference();
                    self.finish(repo, ours, theirs, &mut out);
                } else if r.decoder.len() >= r.upto {
                    let have = r.decoder.len();
                    let next = (have * 2).max(have + initial_cells(r.decoder.remaining_estimate()));
                    let upto = if next > cap { 0 } else { next };
                    out.now.push(Frame::More { repo: path, round, upto });
                }
            }
            Frame::List { round, total, keys, .. } => {
                let Some(r) = self.round.as_mut().filter(|r| r.n == round) else { return Ok(out) };
                let (want_total, list) = r.list.get_or_insert_with(|| (total, Vec::new()));
                if *want_total != total || list.len() + keys.len() > total as usize {
                    return Err(Error::decode("list longer than announced", 0));
                }
                list.extend(keys);
                if list.len() as u64 == total {
                    let theirs: HashSet<Key> = list.iter().copied().collect();
                    let only_ours: Vec<Key> = r.keyed.keys.iter().filter(|k| !theirs.contains(*k)).copied().collect();
                    let only_theirs: Vec<Key> = theirs.iter().filter(|k| !r.keyed.ids.contains_key(*k)).copied().collect();
                    self.finish(repo, only_ours, only_theirs, &mut out);
                }
            }
            Frame::Commits { commits, .. } => {
                let mut ack = Vec::new();
                let mut waiting = Vec::new();
                for bytes in commits {
                    let parsed = StoredCommit::parse(bytes.into_boxed_slice(), false);
                    let id = parsed.as_ref().ok().map(|c| c.id);
                    out.received.extend(id);
                    // Cheap checks first: the header is parsed, the signature
                    // and certificate checked on the raw bytes; only then is
                    // the body decoded (linear) and the value rebuilt.
                    let res = parsed.and_then(|c| {
                        (ctx.verify)(&c)?;
                        c.check_body()?;
                        repo.insert_from(c, ctx.owner, ctx.now)
                    });
                    match res {
                        Ok(Inserted::New { .. }) => {
                            out.accepted += 1;
                            ack.extend(id);
                        }
                        Ok(Inserted::Duplicate) => match id {
                            Some(id) if repo.holds(&id) => ack.push(id),
                            Some(id) => waiting.push(id),
                            None => {}
                        },
                        Ok(Inserted::Pending) => {
                            out.accepted += 1;
                            waiting.extend(id);
                        }
                        Err(e) => out.rejected.push((id, e)),
                    }
                }
                // Waiting commits unblocked by this frame are durable once
                // flushed too.
                ack.extend(waiting.iter().filter(|id| repo.holds(id)).copied());
                if !ack.is_empty() {
                    out.after_flush.extend(Frame::chunked_ids(&path, &ack, true));
                }
                let missing = repo.missing_parents();
                if !missing.is_empty() && waiting.iter().any(|id| !repo.holds(id)) {
                    out.now.extend(Frame::chunked_ids(&path, &missing, false));
                }
            }
            Frame::WantIds { ids, .. } => {
                let mut ids = ids;
                repo.parents_first(&mut ids);
                out.send = ids;
            }
            other => return Err(Error::decode(format!("unexpected frame from a client: {}", super::frame::frame_name(&other.encode())), 0)),
        }
        // What is sent may still be only in the log (a checkpoint).
        repo.load_commits(&out.send)?;
        Ok(out)
    }

    fn finish(&mut self, repo: &Repository, ours: Vec<Key>, theirs: Vec<Key>, out: &mut Served) {
        let r = self.round.take().expect("a round");
        let path = repo.path().clone();
        let mut ids: Vec<CommitId> = ours.iter().filter_map(|k| r.keyed.ids.get(k).copied()).collect();
        repo.parents_first(&mut ids);
        out.send = ids;
        if !theirs.is_empty() {
            for chunk in theirs.chunks(super::frame::MAX_ITEMS_PER_FRAME) {
                out.now.push(Frame::Want { repo: path.clone(), round: r.n, all: false, keys: chunk.to_vec() });
            }
        }
        out.after_flush.push(Frame::Done { repo: path, round: r.n });
    }
}

/// `commits` frames for `ids` (held ones, in the given order).
pub fn commit_frames(repo: &Repository, ids: &[CommitId]) -> Vec<Frame> {
    Frame::commits(repo.path(), ids.iter().filter_map(|id| repo.commit(id)).map(StoredCommit::bytes))
}
