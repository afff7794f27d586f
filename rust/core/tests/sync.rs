//! Reconciliation between a client and a server over the sync protocol
//! (`ibex_core::sync`): frames are encoded and decoded on every hop, as over
//! a real connection. The server side's "after the flush" frames are sent
//! after a flush of its repository (storage is in memory here).

mod common;

use std::collections::VecDeque;

use common::*;
use ibex_core::sync::frame::Frame;
use ibex_core::sync::{Ctx, RepoClient, RepoServe};
use ibex_core::*;
use proptest::prelude::*;

struct Wire {
    frames: usize,
    /// Bytes of frames other than commits, and of commits.
    overhead: usize,
    commit_bytes: usize,
    /// Times the client waited for the server (begin, cells/list, want).
    round_trips: usize,
    rejected: Vec<Error>,
}

/// Runs one round (and any live pushes `between` makes) to quiescence.
/// `between(step, a, b)` may write on either side while frames travel;
/// new local commits of the client are pushed live.
fn round(a: &mut Replica, ca: &mut RepoClient, b: &mut Replica, sb: &mut RepoServe, mut between: impl FnMut(usize, &mut Replica, &mut Replica) -> Vec<CommitId>) -> Wire {
    let mut to_server: VecDeque<Vec<u8>> = VecDeque::new();
    let mut to_client: VecDeque<Vec<u8>> = VecDeque::new();
    to_server.push_back(ca.begin(&a.repo).0.encode());
    let mut w = Wire { frames: 0, overhead: 0, commit_bytes: 0, round_trips: 1, rejected: Vec::new() };
    let mut step = 0;
    while !to_server.is_empty() || !to_client.is_empty() {
        step += 1;
        assert!(step < 10_000, "no quiescence");
        let pushed = between(step, a, b);
        if !pushed.is_empty() {
            for f in ca.push(&a.repo, &pushed) {
                to_server.push_back(f.encode());
            }
        }
        if let Some(f) = to_server.pop_front() {
            w.frames += 1;
            let frame = Frame::decode(&f).unwrap();
            if matches!(frame, Frame::Commits { .. }) {
                w.commit_bytes += f.len()
            } else {
                w.overhead += f.len()
            }
            if matches!(frame, Frame::Cells { .. } | Frame::List { .. }) && matches!(frame, Frame::Cells { from: 0, .. } | Frame::List { .. }) {
                w.round_trips += 1;
            }
            let ctx = Ctx { verify: &|c| c.verify(), owner: 1, now: 0, salt: 0x5eed };
            let served = sb.handle(&mut b.repo, frame, &ctx).unwrap();
            w.rejected.extend(served.rejected.into_iter().map(|(_, e)| e));
            b.repo.flush().unwrap();
            to_client.extend(ibex_core::sync::server::commit_frames(&b.repo, &served.send).iter().map(Frame::encode));
            to_client.extend(served.now.iter().map(Frame::encode));
            to_client.extend(served.after_flush.iter().map(Frame::encode));
        }
        if let Some(f) = to_client.pop_front() {
            w.frames += 1;
            let frame = Frame::decode(&f).unwrap();
            if matches!(frame, Frame::Commits { .. }) {
                w.commit_bytes += f.len()
            } else {
                w.overhead += f.len()
            }
            if matches!(frame, Frame::More { .. }) {
                w.round_trips += 1;
            }
            let h = ca.handle(&mut a.repo, frame, &|c| c.verify()).unwrap();
            w.rejected.extend(h.rejected);
            to_server.extend(h.replies.iter().map(Frame::encode));
        }
    }
    w
}

fn quiet(_: usize, _: &mut Replica, _: &mut Replica) -> Vec<CommitId> {
    Vec::new()
}

/// Two replicas sharing `common` items, then `a_only` and `b_only` new ones.
fn diverged(common: usize, a_only: usize, b_only: usize) -> (Replica, Replica) {
    let mut a = Replica::new(1);
    let mut b = Replica::new(2);
    for i in 0..common {
        a.update(&format!("shared{i}"), &v1(), &[put("count", Value::Num(i as f64))]);
    }
    exchange(&mut a, &mut b);
    for i in 0..a_only {
        a.update(&format!("a{i}"), &v1(), &[put("title", Value::Str(format!("from a {i}")))]);
    }
    for i in 0..b_only {
        b.update(&format!("b{i}"), &v1(), &[put("title", Value::Str(format!("from b {i}")))]);
        // Edits of shared items: chains whose parents exist on one side only.
        if i < common / 2 {
            b.update(&format!("shared{i}"), &v1(), &[put("done", Value::Bool(true))]);
        }
    }
    (a, b)
}

fn converged(a: &mut Replica, b: &mut Replica) {
    assert_eq!(a.repo.digest(), b.repo.digest());
    assert_eq!(a.state(), b.state());
    assert_eq!(a.repo.pending_count() + b.repo.pending_count(), 0);
}

#[test]
fn divergent_replicas_converge_in_two_round_trips() {
    let (mut a, mut b) = diverged(2_000, 20, 25);
    let (mut ca, mut sb) = (RepoClient::new(repo_path()), RepoServe::new());
    let w = round(&mut a, &mut ca, &mut b, &mut sb, quiet);
    assert!(w.rejected.is_empty(), "{:?}", w.rejected);
    converged(&mut a, &mut b);
    assert!(ca.synced(), "everything of a's is acknowledged");
    assert!(w.round_trips <= 2, "{} round trips", w.round_trips);
    // 70 differing commits: the sketch is a small multiple of that, far
    // below the 2,000 commits held.
    assert!(w.overhead < 70 * 17 * 3 + 1_000, "{} bytes of overhead", w.overhead);
    // Already in sync: begin + in-sync, about 60 bytes each.
    let w = round(&mut a, &mut ca, &mut b, &mut sb, quiet);
    assert_eq!(w.frames, 2);
    assert!(w.overhead < 120, "{}", w.overhead);
}

#[test]
fn an_empty_side_sends_or_receives_everything_without_a_sketch() {
    let (mut a, _) = diverged(0, 300, 0);
    let mut b = Replica::new(2);
    let (mut ca, mut sb) = (RepoClient::new(repo_path()), RepoServe::new());
    let w = round(&mut a, &mut ca, &mut b, &mut sb, quiet);
    converged(&mut a, &mut b);
    assert!(ca.synced());
    // begin, want-all, done, and acks (8 bytes per commit): no sketch.
    assert!(w.overhead < 300 + 300 * 8, "{}", w.overhead);
    // The other way round: a fresh client of a full server.
    let mut c = Replica::new(3);
    let mut cc = RepoClient::new(repo_path());
    let w = round(&mut c, &mut cc, &mut b, &mut sb, quiet);
    converged(&mut c, &mut b);
    assert!(w.overhead < 300, "{}", w.overhead);
}

#[test]
fn too_few_cells_ask_for_more_and_then_for_the_list() {
    // First batch a tenth of the estimate: the server asks for more.
    let (mut a, mut b) = diverged(1_000, 60, 60);
    let (mut ca, mut sb) = (RepoClient::new(repo_path()), RepoServe::new());
    ca.set_cell_factor(0.1);
    let w = round(&mut a, &mut ca, &mut b, &mut sb, quiet);
    assert!(w.round_trips > 2, "a forced decoding failure must cost a round trip");
    converged(&mut a, &mut b);
    // A server that caps its cells below what is needed falls back to the
    // list of keys, and still converges.
    let (mut a, mut b) = diverged(1_000, 60, 60);
    let (mut ca, mut sb) = (RepoClient::new(repo_path()), RepoServe::new());
    ca.set_cell_factor(0.1);
    sb.set_max_cells(Some(20));
    let w = round(&mut a, &mut ca, &mut b, &mut sb, quiet);
    assert!(w.overhead > 1_000 * 12, "the list of 1,000+ keys was sent ({} bytes)", w.overhead);
    converged(&mut a, &mut b);
    assert!(ca.synced());
}

#[test]
fn a_round_ends_while_both_sides_keep_writing() {
    // Writers on both sides commit on every step of the exchange; the round
    // must still end (it compares a snapshot), and live pushes plus one more
    // round converge.
    let (mut a, mut b) = diverged(500, 40, 40);
    let (mut ca, mut sb) = (RepoClient::new(repo_path()), RepoServe::new());
    let mut n = 0;
    let w = round(&mut a, &mut ca, &mut b, &mut sb, |step, a, b| {
        if step > 200 {
            return Vec::new();
        }
        n += 1;
        b.update(&format!("busy-b{n}"), &v1(), &[put("count", Value::Num(n as f64))]);
        a.update(&format!("busy-a{n}"), &v1(), &[put("count", Value::Num(n as f64))]).into_iter().collect()
    });
    assert!(w.rejected.is_empty(), "{:?}", w.rejected);
    assert!(ca.unacked() == 0, "every pushed commit was acknowledged");
    // b's writes during the round reach a through the next round (a server
    // relays them live; here there is no relay).
    let w = round(&mut a, &mut ca, &mut b, &mut sb, quiet);
    assert!(w.rejected.is_empty());
    converged(&mut a, &mut b);
}

#[test]
fn forged_and_malformed_commits_are_refused_and_never_stored() {
    let mut a = Replica::new(1);
    let mut b = Replica::new(2);
    let id = a.update("k", &v1(), &[put("count", Value::Num(1.0))]).unwrap();
    let mut forged = a.repo.commit(&id).unwrap().bytes().to_vec();
    let n = forged.len();
    forged[n - 1] ^= 1;
    let mut sb = RepoServe::new();
    let ctx = Ctx { verify: &|c| c.verify(), owner: 1, now: 0, salt: 1 };
    let s = sb.handle(&mut b.repo, Frame::Commits { repo: repo_path(), commits: vec![forged, vec![1, 2, 3]] }, &ctx).unwrap();
    assert_eq!(s.rejected.len(), 2);
    assert_eq!(s.rejected[0].1.code(), "ERR_BAD_SIGNATURE");
    assert_eq!(s.rejected[0].0, Some(id), "the refusal names the commit");
    assert_eq!(s.rejected[1].1.code(), "ERR_DECODE");
    assert!(s.after_flush.is_empty(), "nothing refused is acknowledged");
    assert_eq!(b.repo.commit_count() + b.repo.pending_count(), 0);
}

#[test]
fn hostile_round_frames_are_errors_not_panics() {
    let (mut a, mut b) = diverged(50, 5, 5);
    let mut ca = RepoClient::new(repo_path());
    let mut sb = RepoServe::new();
    let ctx = Ctx { verify: &|c| c.verify(), owner: 1, now: 0, salt: 3 };
    let (begin, round_n) = ca.begin(&a.repo);
    let s = sb.handle(&mut b.repo, begin, &ctx).unwrap();
    assert!(matches!(s.now[0], Frame::Estimate { .. }));
    // Cells out of order, or more than the sets could need: refused.
    let lie = Frame::Cells { repo: repo_path(), round: round_n, from: 5, upto: 6, cells: vec![Default::default()] };
    assert_eq!(sb.handle(&mut b.repo, lie, &ctx).unwrap_err().code(), "ERR_DECODE");
    let huge = Frame::Cells { repo: repo_path(), round: round_n, from: 0, upto: 1 << 40, cells: vec![Default::default()] };
    assert_eq!(sb.handle(&mut b.repo, huge, &ctx).unwrap_err().code(), "ERR_DECODE");
    // A list longer than it said.
    let list = Frame::List { repo: repo_path(), round: round_n, total: 1, keys: vec![Default::default(); 2] };
    assert_eq!(sb.handle(&mut b.repo, list, &ctx).unwrap_err().code(), "ERR_DECODE");
    // Frames only a server sends, sent to a server.
    assert!(sb.handle(&mut b.repo, Frame::Done { repo: repo_path(), round: 1 }, &ctx).is_err());
    // A server frame for another repository, at a client.
    let other = Frame::InSync { repo: RepoPath::parse("/data/other").unwrap(), round: 1 };
    assert_eq!(ca.handle(&mut a.repo, other, &|c| c.verify()).unwrap_err().code(), "ERR_PATH");
    // Answers to a stale round are ignored.
    assert!(ca.handle(&mut a.repo, Frame::Done { repo: repo_path(), round: 999 }, &|c| c.verify()).unwrap().replies.is_empty());
    assert!(!ca.synced());
}

#[test]
fn large_histories_are_chunked_into_bounded_frames() {
    let (mut a, _) = diverged(0, 5_000, 0);
    let mut b = Replica::new(2);
    let (mut ca, mut sb) = (RepoClient::new(repo_path()), RepoServe::new());
    let w = round(&mut a, &mut ca, &mut b, &mut sb, quiet);
    assert!(w.rejected.is_empty());
    assert_eq!(b.repo.commit_count(), 5_000);
    assert!(w.commit_bytes < 5_000 * 300, "{} bytes for 5,000 small commits", w.commit_bytes);
}

proptest! {
    #![proptest_config(proptest_config(24))]

    /// Random histories on both sides (random or one-sided divergence,
    /// random first-batch sizes forcing failures): one round always
    /// converges, with every client commit acknowledged.
    #[test]
    fn any_divergence_converges(common in 0usize..300, a_only in 0usize..80, b_only in 0usize..80, factor in prop::sample::select(vec![0.05, 0.3, 1.0, 3.0]), cap in prop::option::of(8u64..200)) {
        let (mut a, mut b) = diverged(common, a_only, b_only);
        let (mut ca, mut sb) = (RepoClient::new(repo_path()), RepoServe::new());
        ca.set_cell_factor(factor);
        sb.set_max_cells(cap);
        let w = round(&mut a, &mut ca, &mut b, &mut sb, quiet);
        prop_assert!(w.rejected.is_empty());
        prop_assert_eq!(a.repo.digest(), b.repo.digest());
        prop_assert_eq!(a.state(), b.state());
        prop_assert!(ca.synced());
    }
}
