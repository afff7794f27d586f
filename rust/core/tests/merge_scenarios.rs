//! GoatDB's merge scenarios 1–11 (reference/goatdb-notes.md §9), as
//! contracts of the public API, plus the behaviours DESIGN.md §3–4 promise.

mod common;

use std::sync::Arc;

use common::*;
use ibex_core::*;

/// Two replicas that start from the same created item.
fn forked(fields: &[(&str, Value)]) -> (Replica, Replica) {
    let mut a = Replica::new(1);
    let mut b = Replica::new(2);
    let changes: Vec<Change> = fields.iter().map(|(f, v)| put(f, v.clone())).collect();
    a.update("k", &v1(), &changes).unwrap();
    exchange(&mut a, &mut b);
    b.clock = a.clock;
    (a, b)
}

#[test]
fn s01_edits_to_different_fields_are_both_kept() {
    let (mut a, mut b) = forked(&[("title", Value::Str("t".into())), ("count", Value::Num(1.0))]);
    a.update("k", &v1(), &[put("title", Value::Str("from a".into()))]);
    b.update("k", &v1(), &[put("count", Value::Num(2.0))]);
    exchange(&mut a, &mut b);
    for r in [&mut a, &mut b] {
        assert_eq!(r.field("k", "title"), Some(Value::Str("from a".into())));
        assert_eq!(r.field("k", "count"), Some(Value::Num(2.0)));
        assert_eq!(r.repo.leaves("k").len(), 2, "the fork stays open until someone writes");
    }
}

#[test]
fn s02_same_field_later_timestamp_wins_and_edit_beats_removal() {
    let (mut a, mut b) = forked(&[("title", Value::Str("t".into()))]);
    a.update("k", &v1(), &[put("title", Value::Str("early".into()))]);
    b.clock += 100;
    b.update("k", &v1(), &[put("title", Value::Str("late".into()))]);
    exchange(&mut a, &mut b);
    assert_eq!(a.field("k", "title"), Some(Value::Str("late".into())));
    assert_eq!(b.field("k", "title"), Some(Value::Str("late".into())));

    // Removal (later) versus edit (earlier): the edit wins anyway.
    let (mut a, mut b) = forked(&[("title", Value::Str("t".into()))]);
    a.update("k", &v1(), &[put("title", Value::Str("edited".into()))]);
    b.clock += 100;
    b.update("k", &v1(), &[Change::Remove { field: "title".into() }]);
    exchange(&mut a, &mut b);
    assert_eq!(a.field("k", "title"), Some(Value::Str("edited".into())));
    assert_eq!(a.state(), b.state());
}

#[test]
fn s02b_equal_timestamps_are_broken_by_commit_id() {
    let (mut a, mut b) = forked(&[("count", Value::Num(0.0))]);
    let ia = a.update("k", &v1(), &[put("count", Value::Num(1.0))]).unwrap();
    let ib = b.update("k", &v1(), &[put("count", Value::Num(2.0))]).unwrap();
    assert_eq!(a.clock, b.clock);
    exchange(&mut a, &mut b);
    let winner = if ia > ib { 1.0 } else { 2.0 };
    assert_eq!(a.field("k", "count"), Some(Value::Num(winner)));
    assert_eq!(b.field("k", "count"), Some(Value::Num(winner)));
}

#[test]
fn s03_sets_union_additions_and_removal_applies() {
    let (mut a, mut b) = forked(&[("tags", Value::Set([s("base"), s("keep")].into()))]);
    a.update("k", &v1(), &[Change::SetAdd { field: "tags".into(), elems: [s("a")].into() }]);
    a.update("k", &v1(), &[Change::SetRemove { field: "tags".into(), elems: [s("base")].into() }]);
    b.update("k", &v1(), &[Change::SetAdd { field: "tags".into(), elems: [s("b")].into() }]);
    exchange(&mut a, &mut b);
    let want = Some(Value::Set([s("a"), s("b"), s("keep")].into()));
    assert_eq!(a.field("k", "tags"), want);
    assert_eq!(b.field("k", "tags"), want);
}

#[test]
fn s04_maps_merge_per_key_and_edit_beats_delete() {
    let (mut a, mut b) = forked(&[("attrs", Value::Map([("x".into(), s("0")), ("y".into(), s("0"))].into()))]);
    a.update("k", &v1(), &[Change::MapPut { field: "attrs".into(), key: "x".into(), value: s("a") }]);
    a.update("k", &v1(), &[Change::MapRemove { field: "attrs".into(), key: "y".into() }]);
    b.clock += 100;
    b.update("k", &v1(), &[Change::MapPut { field: "attrs".into(), key: "y".into(), value: s("b") }]);
    b.update("k", &v1(), &[Change::MapRemove { field: "attrs".into(), key: "x".into() }]);
    exchange(&mut a, &mut b);
    // x: a edited, b (later) removed → the edit wins; y: a removed, b edited → b.
    let want = Some(Value::Map([("x".into(), s("a")), ("y".into(), s("b"))].into()));
    assert_eq!(a.field("k", "attrs"), want);
    assert_eq!(b.field("k", "attrs"), want);
}

#[test]
fn s05_text_inserts_at_the_same_place_both_survive() {
    let (mut a, mut b) = forked(&[("body", Value::Text("hello world".into()))]);
    a.update("k", &v1(), &[put("body", Value::Text("hello big world".into()))]);
    b.clock += 5;
    b.update("k", &v1(), &[put("body", Value::Text("hello new world".into()))]);
    exchange(&mut a, &mut b);
    assert_eq!(a.field("k", "body"), Some(Value::Text("hello big new world".into())));
    assert_eq!(a.state(), b.state());

    // Delete + insert at the same position: the insertion is kept.
    let (mut a, mut b) = forked(&[("body", Value::Text("abcdef".into()))]);
    a.update("k", &v1(), &[put("body", Value::Text("af".into()))]);
    b.update("k", &v1(), &[put("body", Value::Text("abcXYZdef".into()))]);
    exchange(&mut a, &mut b);
    assert_eq!(a.field("k", "body"), Some(Value::Text("aXYZf".into())));
}

#[test]
fn s06_three_peers_in_any_order_converge_and_redelivery_is_a_noop() {
    let mut peers: Vec<Replica> = (1..=3).map(Replica::new).collect();
    peers[0].update("k", &v1(), &[put("count", Value::Num(0.0)), put("body", Value::Text("base".into()))]);
    let first = peers[0].commits();
    for p in &mut peers[1..] {
        p.receive(&first);
    }
    for (i, p) in peers.iter_mut().enumerate() {
        p.clock += i as i64;
        p.update("k", &v1(), &[put("count", Value::Num(i as f64 + 1.0))]);
        p.update("k", &v1(), &[put("body", Value::Text(format!("base{i}")))]);
        p.update("k", &v1(), &[Change::SetAdd { field: "tags".into(), elems: [s(&format!("t{i}"))].into() }]);
    }
    let all: Vec<SignedCommit> = peers.iter().flat_map(|p| p.commits()).collect();
    // Each peer receives everything in a different order (forward, reverse,
    // interleaved) — children before parents included.
    let orders: [Vec<SignedCommit>; 3] = [all.clone(), all.iter().rev().cloned().collect(), all.iter().step_by(2).chain(all.iter().skip(1).step_by(2)).cloned().collect()];
    for (p, order) in peers.iter_mut().zip(orders) {
        p.receive(&order);
    }
    let want = peers[0].state();
    for p in &mut peers {
        assert_eq!(p.state(), want);
        assert_eq!(p.repo.pending_count(), 0);
        // Re-delivering every commit changes nothing.
        let n = p.repo.commit_count();
        for c in all.clone() {
            assert_eq!(p.repo.insert(c).unwrap(), Inserted::Duplicate);
        }
        assert_eq!((p.repo.commit_count(), p.state()), (n, want.clone()));
    }
    let tags = want["k"].1.fields["tags"].clone();
    assert_eq!(tags, Value::Set([s("t0"), s("t1"), s("t2")].into()));
}

#[test]
fn s07_concurrent_creation_of_the_same_key_merges_from_an_empty_base() {
    let mut a = Replica::new(1);
    let mut b = Replica::new(2);
    a.update("same", &v1(), &[put("title", Value::Str("a".into())), put("tags", Value::Set([s("x")].into()))]);
    b.clock += 1;
    b.update("same", &v1(), &[put("count", Value::Num(9.0)), put("tags", Value::Set([s("y")].into()))]);
    exchange(&mut a, &mut b);
    let h = a.head("same").unwrap();
    assert_eq!(h.data.fields["title"], Value::Str("a".into()));
    assert_eq!(h.data.fields["count"], Value::Num(9.0));
    assert_eq!(h.data.fields["tags"], Value::Set([s("x"), s("y")].into()));
    assert_eq!(a.state(), b.state());
}

#[test]
fn s08_schema_upgrade_in_the_middle_of_a_merge() {
    // a runs the old app (knows all@1 only); b and c the new one (all@1, all@2).
    let mut a = Replica::new(1);
    let mut b = Replica::with_registry(2, registry_v2());
    let mut c = Replica::with_registry(3, registry_v2());
    a.update("k", &v1(), &[put("title", Value::Str("milk".into())), put("count", Value::Num(1.0))]);
    exchange(&mut a, &mut b);
    b.clock = a.clock;
    // a edits the old-named field with v1 while b writes v2.
    a.update("k", &v1(), &[put("title", Value::Str("oat milk".into()))]);
    let mut up = (*b.head("k").unwrap().data).clone();
    assert!(up.fields.contains_key("name") && !up.fields.contains_key("title"), "heads are upgraded on read");
    assert_eq!(up.fields.get("prio"), Some(&Value::Num(0.0)), "a field introduced by v2 gets its default");
    up.fields.insert("prio".into(), Value::Num(5.0));
    b.write("k", &v2(), up);
    let all: Vec<SignedCommit> = a.commits().into_iter().chain(b.commits()).collect();
    b.receive(&all);
    c.receive(&all.iter().rev().cloned().collect::<Vec<_>>());
    for r in [&mut b, &mut c] {
        let h = r.head("k").unwrap();
        assert_eq!(h.schema, v2(), "the merge happens in the newest version involved");
        assert_eq!(h.data.fields.get("name"), Some(&Value::Str("oat milk".into())), "the v1 edit lands in the renamed field");
        assert_eq!(h.data.fields.get("prio"), Some(&Value::Num(5.0)));
        assert!(!h.data.fields.contains_key("title"));
    }
    assert_eq!(b.state(), c.state());
    // Schema branches (repository/branches.rs): the old app keeps its
    // branch — v2's commits are stored but hidden from it — and keeps
    // writing with v1; the new app sees those writes, upgraded.
    a.receive(&b.commits());
    let h = a.head("k").unwrap();
    assert_eq!(h.schema, v1(), "the old app never gets a value it cannot read");
    assert_eq!(h.data.fields.get("title"), Some(&Value::Str("oat milk".into())));
    assert!(!h.data.fields.contains_key("prio"));
    a.update("k", &v1(), &[put("count", Value::Num(2.0))]).expect("the old app keeps writing");
    b.receive(&a.commits());
    let h = b.head("k").unwrap();
    assert_eq!(h.schema, v2());
    assert_eq!(h.data.fields.get("count"), Some(&Value::Num(2.0)), "v2 sees v1's later write");
    assert_eq!(h.data.fields.get("prio"), Some(&Value::Num(5.0)), "and keeps its own");
    assert_eq!(h.data.fields.get("name"), Some(&Value::Str("oat milk".into())));
    let h = a.head("k").unwrap();
    assert!(!h.data.fields.contains_key("prio") && h.schema == v1(), "one way: v1 still does not see v2");
}

#[test]
fn s09_a_delta_that_does_not_apply_is_rejected_and_the_last_good_value_stays() {
    let mut a = Replica::new(1);
    let base = a.update("k", &v1(), &[put("body", Value::Text("abc".into()))]).unwrap();
    let before = a.state();
    // A forged delta (validly signed) splicing past the end of the text.
    let key = SessionKey::from_seed([66; 32]);
    let bad = Commit {
        repo: repo_path(),
        key: "k".into(),
        parents: vec![base],
        timestamp: 5_000,
        session: key.id(),
        schema: v1(),
        body: Body::Delta { base, changes: vec![Change::Text { field: "body".into(), splices: vec![text::Splice { pos: 99, delete: 1, insert: String::new() }] }] },
    }
    .sign(&key)
    .unwrap();
    let e = a.repo.insert(bad.clone()).unwrap_err();
    assert_eq!(e.code(), "ERR_INVALID_COMMIT");
    assert!(!a.repo.contains_commit(&bad.id));
    assert_eq!(a.state(), before);

    // A delta producing a value its schema forbids is rejected the same way.
    let invalid = Commit { body: Body::Delta { base, changes: vec![put("count", Value::Str("not a number".into()))] }, ..bad.commit.clone() }.sign(&key).unwrap();
    assert!(a.repo.insert(invalid).unwrap_err().to_string().contains("count"));
    assert_eq!(a.state(), before);
}

#[test]
fn s10_a_missing_parent_parks_the_commit_until_it_arrives() {
    let mut a = Replica::new(1);
    a.update("k", &v1(), &[put("count", Value::Num(1.0))]);
    a.update("k", &v1(), &[put("count", Value::Num(2.0))]);
    a.update("k", &v1(), &[put("count", Value::Num(3.0))]);
    let c = a.commits();
    let mut b = Replica::new(2);
    b.receive(&c[..1]);
    assert_eq!(b.repo.insert(c[2].clone()).unwrap(), Inserted::Pending);
    assert_eq!(b.field("k", "count"), Some(Value::Num(1.0)), "the head ignores commits it cannot place");
    assert_eq!(b.repo.insert(c[1].clone()).unwrap(), Inserted::New { unblocked: 1 });
    assert_eq!(b.field("k", "count"), Some(Value::Num(3.0)));
    assert_eq!(b.repo.pending_count(), 0);

    // The pending set is bounded.
    let mut tiny = Replica::new(3);
    tiny.repo.set_max_pending(1);
    tiny.repo.insert(c[1].clone()).unwrap();
    assert_eq!(tiny.repo.insert(c[2].clone()).unwrap_err().code(), "ERR_PENDING_FULL");
}

#[test]
fn s11_a_local_write_wins_over_what_it_saw_even_with_a_slow_clock() {
    let (mut a, mut b) = forked(&[("title", Value::Str("t".into()))]);
    b.clock += 1_000_000;
    b.update("k", &v1(), &[put("title", Value::Str("remote".into()))]);
    exchange(&mut a, &mut b);
    // a's clock is far behind b's, but its write follows what it saw.
    let id = a.update("k", &v1(), &[put("title", Value::Str("local".into()))]).unwrap();
    let c = a.repo.commit(&id).unwrap();
    assert!(c.timestamp > b.clock - 1);
    assert_eq!(c.parents().len(), 1);
    exchange(&mut a, &mut b);
    assert_eq!(b.field("k", "title"), Some(Value::Str("local".into())));
}

#[test]
fn a_write_closes_every_open_fork() {
    let (mut a, mut b) = forked(&[("count", Value::Num(0.0))]);
    a.update("k", &v1(), &[put("count", Value::Num(1.0))]);
    b.update("k", &v1(), &[put("title", Value::Str("b".into()))]);
    exchange(&mut a, &mut b);
    assert_eq!(a.repo.leaves("k").len(), 2);
    let id = a.update("k", &v1(), &[put("done", Value::Bool(true))]).unwrap();
    assert_eq!(a.repo.leaves("k"), &[id]);
    assert_eq!(a.repo.commit(&id).unwrap().parents().len(), 2);
    let h = a.head("k").unwrap();
    assert_eq!(h.data.fields["count"], Value::Num(1.0));
    assert_eq!(h.data.fields["title"], Value::Str("b".into()));
}

#[test]
fn writing_the_current_value_makes_no_commit() {
    let mut a = Replica::new(1);
    a.update("k", &v1(), &[put("count", Value::Num(1.0))]).unwrap();
    assert_eq!(a.update("k", &v1(), &[put("count", Value::Num(1.0))]), None);
    assert_eq!(a.repo.commit_count(), 1);
}

#[test]
fn soft_delete_keeps_the_item_and_its_history() {
    let mut a = Replica::new(1);
    a.update("k", &v1(), &[put("title", Value::Str("x".into()))]);
    a.update("k", &v1(), &[Change::Deleted(true)]);
    let h = a.head("k").unwrap();
    assert!(h.data.deleted);
    assert_eq!(h.data.fields["title"], Value::Str("x".into()));
    a.update("k", &v1(), &[Change::Deleted(false)]);
    assert!(!a.head("k").unwrap().data.deleted);
    let hist = a.repo.history("k").unwrap();
    assert_eq!(hist.len(), 3);
    assert_eq!(hist[1].changed, vec!["$deleted".to_string()]);
}

#[test]
fn history_lists_author_time_and_changed_fields() {
    let (mut a, mut b) = forked(&[("title", Value::Str("t".into())), ("count", Value::Num(1.0))]);
    a.update("k", &v1(), &[put("count", Value::Num(2.0))]);
    b.update("k", &v1(), &[put("title", Value::Str("b".into())), put("tags", Value::Set([s("x")].into()))]);
    exchange(&mut a, &mut b);
    a.update("k", &v1(), &[put("done", Value::Bool(true))]);
    let h = a.repo.history("k").unwrap();
    assert_eq!(h.len(), 4);
    assert_eq!(h[0].changed, vec!["count", "done", "title"], "creation lists every field it set (done via its default)");
    let by_b = h.iter().find(|e| e.session == b.key.id()).unwrap();
    assert_eq!(by_b.changed, vec!["tags", "title"]);
    let last = h.last().unwrap();
    assert_eq!(last.parents.len(), 2);
    assert_eq!(last.changed, vec!["done"], "a merging write lists only its own edits");
    assert!(h.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
}

#[test]
fn invalid_local_writes_change_nothing() {
    let mut a = Replica::new(1);
    a.update("k", &v1(), &[put("count", Value::Num(1.0))]);
    let before = a.state();
    let e = a.repo.update("k", &v1(), &[put("count", Value::Str("x".into()))], &a.key.clone(), 5).unwrap_err();
    assert_eq!(e.code(), "ERR_VALIDATION");
    assert!(e.to_string().contains("`count`"), "{e}");
    let e = a.repo.update("k", &v1(), &[put("nope", Value::Bool(true))], &a.key.clone(), 5).unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
    let e = a.repo.update("bad key!", &v1(), &[], &a.key.clone(), 5).unwrap_err();
    assert_eq!(e.code(), "ERR_PATH");
    let e = a.repo.update("k", &SchemaId::new("nope", 1), &[], &a.key.clone(), 5).unwrap_err();
    assert_eq!(e.code(), "ERR_UNKNOWN_SCHEMA");
    let e = a.repo.update("k", &v1(), &[Change::SetAdd { field: "count".into(), elems: [s("x")].into() }], &a.key.clone(), 5).unwrap_err();
    assert_eq!(e.code(), "ERR_VALIDATION");
    assert_eq!(a.state(), before);
}

#[test]
fn a_delta_chain_longer_than_a_rebuild_may_cost_is_refused() {
    // Forged deltas of ~50 bytes on a small item: a chain n deep holds
    // ~50·n bytes of value, so it is refused once n > 64 MiB / (50·n),
    // near 1,150 deltas — longer than the old fixed 256, far below 4,096.
    let mut a = Replica::new(1);
    let mut base = a.update("k", &v1(), &[put("count", Value::Num(0.0))]).unwrap();
    let key = SessionKey::from_seed([9; 32]);
    let mut refused = None;
    for n in 1..=4_096u32 {
        let c = Commit {
            repo: repo_path(),
            key: "k".into(),
            parents: vec![base],
            timestamp: 10 + i64::from(n),
            session: key.id(),
            schema: v1(),
            body: Body::Delta { base, changes: vec![put("count", Value::Num(f64::from(n)))] },
        }
        .sign(&key)
        .unwrap();
        let id = c.id;
        match a.repo.insert(c) {
            Ok(_) => base = id,
            Err(e) => {
                refused = Some((n, e));
                break;
            }
        }
    }
    let (n, e) = refused.expect("a 4,096-deep chain was accepted");
    assert!((900..1_400).contains(&n), "refused at depth {n}");
    assert_eq!(e.code(), "ERR_INVALID_COMMIT");
    assert!(e.to_string().contains("delta chain"), "{e}");
    // Nothing of the refused commit was kept; the chain below it reads back.
    assert_eq!(a.field("k", "count"), Some(Value::Num(f64::from(n - 1))));
}

#[test]
fn commits_for_another_repository_or_item_are_rejected() {
    let mut a = Replica::new(1);
    let id = a.update("k", &v1(), &[put("count", Value::Num(1.0))]).unwrap();
    let key = SessionKey::from_seed([9; 32]);
    let other_repo =
        Commit { repo: RepoPath::parse("/data/other").unwrap(), key: "k".into(), parents: vec![], timestamp: 1, session: key.id(), schema: v1(), body: Body::Full(Arc::new(ItemData::default())) };
    assert_eq!(a.repo.insert(other_repo.clone().sign(&key).unwrap()).unwrap_err().code(), "ERR_INVALID_COMMIT");
    let cross_item = Commit { repo: repo_path(), key: "other".into(), parents: vec![id], ..other_repo }.sign(&key).unwrap();
    assert!(a.repo.insert(cross_item).unwrap_err().to_string().contains("belongs to item"));
}

#[test]
fn long_edit_sequences_use_bounded_delta_chains() {
    let mut a = Replica::new(1);
    let mut text = String::from("start");
    for i in 0..200 {
        text.insert_str(text.len() / 2, &i.to_string());
        a.update("doc", &v1(), &[put("body", Value::Text(text.clone()))]);
    }
    let commits = a.commits();
    let fulls = commits.iter().filter(|c| matches!(c.commit.body, Body::Full(_))).count();
    // Deltas of ~45 bytes (base id, change) on a text growing to ~500: a
    // chain ends once its deltas add up to the full value's size.
    assert!((10..=60).contains(&fulls), "full values bound delta chains by size, got {fulls} of 200");
    let mut big = Replica::new(3);
    let mut long = "x".repeat(100_000);
    for i in 0..1_500 {
        long.insert(i * 7, 'y');
        big.update("doc", &v1(), &[put("body", Value::Text(long.clone()))]);
    }
    // Chains over a 100 KB value may be ~670 deltas long (a rebuild moves
    // at most REBUILD_BUDGET bytes): a full value every ~670 edits, not
    // every 255 (then 6 of 1,500).
    assert_eq!(ibex_core::repository::max_chain(100_000), 671);
    let fulls = big.commits().iter().filter(|c| matches!(c.commit.body, Body::Full(_))).count();
    assert!((2..=3).contains(&fulls), "a long text edited by keystrokes: a full value every ~670 deltas, got {fulls} of 1,500");
    // What a writer writes, every replica accepts (the bound is computed
    // from the commits alone, the same way on both sides).
    let mut c = Replica::new(4);
    c.receive(&big.commits());
    assert_eq!(c.field("doc", "body"), Some(Value::Text(long.clone())));
    let mut b = Replica::new(2);
    b.receive(&commits);
    assert_eq!(b.field("doc", "body"), Some(Value::Text(text)));
}
