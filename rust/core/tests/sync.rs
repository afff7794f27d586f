//! Reconciliation between two replicas over the sync protocol: frames are
//! encoded and decoded on every hop, as over a real connection.

mod common;

use std::collections::VecDeque;

use common::*;
use ibex_core::sync::{Message, Reconciler};
use ibex_core::*;

/// Runs a reconciliation to quiescence; returns the number of frames and
/// bytes exchanged, and the rejections each side saw.
fn reconcile(a: &mut Replica, b: &mut Replica, ra: &mut Reconciler, rb: &mut Reconciler) -> (usize, usize, Vec<Error>) {
    let mut queue: VecDeque<(bool, Vec<u8>)> = VecDeque::new();
    queue.push_back((true, ra.start(&a.repo).encode()));
    let (mut frames, mut bytes, mut rejected) = (0, 0, Vec::new());
    while let Some((to_b, frame)) = queue.pop_front() {
        frames += 1;
        bytes += frame.len();
        assert!(frames < 2_000, "no quiescence");
        let msg = Message::decode(&frame).unwrap();
        let (repo, rec) = if to_b { (&mut b.repo, &mut *rb) } else { (&mut a.repo, &mut *ra) };
        match rec.handle(repo, msg, &|c| c.verify()) {
            Ok(h) => {
                rejected.extend(h.rejected);
                for r in h.replies {
                    queue.push_back((!to_b, r.encode()));
                }
            }
            Err(e) => {
                rejected.push(e);
                break;
            }
        }
    }
    (frames, bytes, rejected)
}

fn diverged() -> (Replica, Replica) {
    let mut a = Replica::new(1);
    let mut b = Replica::new(2);
    for i in 0..40 {
        a.update(&format!("shared{i}"), &v1(), &[put("count", Value::Num(i as f64))]);
    }
    exchange(&mut a, &mut b);
    for i in 0..25 {
        a.update(&format!("a{i}"), &v1(), &[put("title", Value::Str(format!("from a {i}")))]);
        b.update(&format!("b{i}"), &v1(), &[put("title", Value::Str(format!("from b {i}")))]);
    }
    for i in 0..10 {
        a.update(&format!("shared{i}"), &v1(), &[put("title", Value::Str("a".into()))]);
        b.update(&format!("shared{i}"), &v1(), &[put("done", Value::Bool(true))]);
        // Chains: the second edit's parent is only on one side.
        b.update(&format!("shared{i}"), &v1(), &[put("count", Value::Num(100.0))]);
    }
    (a, b)
}

#[test]
fn divergent_replicas_converge() {
    let (mut a, mut b) = diverged();
    let (mut ra, mut rb) = (Reconciler::new(repo_path(), 11), Reconciler::new(repo_path(), 22));
    let (frames, bytes, rejected) = reconcile(&mut a, &mut b, &mut ra, &mut rb);
    assert!(rejected.is_empty(), "{rejected:?}");
    assert!(ra.is_synced() && rb.is_synced());
    assert_eq!(a.repo.digest(), b.repo.digest());
    assert_eq!(a.state(), b.state());
    assert_eq!(a.repo.pending_count() + b.repo.pending_count(), 0);
    assert!(frames <= 12, "{frames} frames");
    println!("converged in {frames} frames, {bytes} bytes");
    // Already in sync: one filter, one in-sync.
    let (frames, _, _) = reconcile(&mut a, &mut b, &mut ra, &mut rb);
    assert_eq!(frames, 2);
}

#[test]
fn forced_false_positives_still_converge() {
    // A filter with a 50% false-positive rate hides about half of the
    // missing commits in each round, including parents of other commits.
    let (mut a, mut b) = diverged();
    let (mut ra, mut rb) = (Reconciler::new(repo_path(), 5).with_fpr(0.5), Reconciler::new(repo_path(), 6).with_fpr(0.5));
    let (frames, _, rejected) = reconcile(&mut a, &mut b, &mut ra, &mut rb);
    assert!(rejected.is_empty(), "{rejected:?}");
    assert!(frames > 4, "false positives should have cost extra rounds ({frames} frames)");
    assert_eq!(a.state(), b.state());
    assert_eq!(a.repo.pending_count() + b.repo.pending_count(), 0);
}

#[test]
fn forged_commits_are_rejected_and_never_stored() {
    let mut a = Replica::new(1);
    let mut b = Replica::new(2);
    let id = a.update("k", &v1(), &[put("count", Value::Num(1.0))]).unwrap();
    let mut forged = a.repo.commit(&id).unwrap().bytes().to_vec();
    let n = forged.len();
    forged[n - 1] ^= 1;
    let mut rb = Reconciler::new(repo_path(), 1);
    let h = rb.handle(&mut b.repo, Message::Commits { repo: repo_path(), commits: vec![forged, vec![1, 2, 3]] }, &|c| c.verify()).unwrap();
    assert_eq!(h.rejected.len(), 2);
    assert_eq!(h.rejected[0].code(), "ERR_BAD_SIGNATURE");
    assert_eq!(h.rejected[1].code(), "ERR_DECODE");
    assert_eq!(b.repo.commit_count() + b.repo.pending_count(), 0);
}

#[test]
fn live_commits_are_pushed_and_frames_for_another_repository_refused() {
    let mut a = Replica::new(1);
    let mut b = Replica::new(2);
    let mut rb = Reconciler::new(repo_path(), 1);
    let id = a.update("k", &v1(), &[put("title", Value::Str("live".into()))]).unwrap();
    for m in Message::commits(&repo_path(), [a.repo.commit(&id).unwrap()]) {
        let h = rb.handle(&mut b.repo, Message::decode(&m.encode()).unwrap(), &|c| c.verify()).unwrap();
        assert_eq!(h.inserted, vec![id]);
    }
    assert_eq!(b.field("k", "title"), Some(Value::Str("live".into())));
    let other = Message::InSync { repo: RepoPath::parse("/data/other").unwrap(), digest: SetDigest::default() };
    assert_eq!(rb.handle(&mut b.repo, other, &|c| c.verify()).unwrap_err().code(), "ERR_PATH");
}

#[test]
fn large_histories_are_chunked_into_bounded_frames() {
    let mut a = Replica::new(1);
    let b_empty = Replica::new(2);
    for i in 0..5_000 {
        a.update(&format!("k{i}"), &v1(), &[put("count", Value::Num(i as f64))]);
    }
    let mut b = b_empty;
    let (mut ra, mut rb) = (Reconciler::new(repo_path(), 1), Reconciler::new(repo_path(), 2));
    let (_, bytes, rejected) = reconcile(&mut a, &mut b, &mut ra, &mut rb);
    assert!(rejected.is_empty());
    assert_eq!(b.repo.commit_count(), 5_000);
    assert!(bytes < 5_000 * 300, "{bytes} bytes for 5,000 small commits");
}
