//! History as a feature (repository/history.rs): values before and after,
//! time travel, revert, conflicts, audit and playback — scenarios, then
//! properties over random multi-session histories. The seed is printed;
//! `IBEX_SEED=<n>` replays a run.

mod common;

use std::collections::BTreeMap;

use common::*;
use ibex_core::*;
use proptest::prelude::*;

fn str_(x: &str) -> Value {
    Value::Str(x.into())
}

/// Two replicas that start from the same created item.
fn forked() -> (Replica, Replica) {
    let mut a = Replica::new(1);
    let mut b = Replica::new(2);
    a.update("k", &v1(), &[put("title", str_("t")), put("count", Value::Num(1.0))]);
    exchange(&mut a, &mut b);
    b.clock = a.clock;
    (a, b)
}

#[test]
fn history_entries_carry_values_before_and_after() {
    let mut a = Replica::new(1);
    a.update("k", &v1(), &[put("title", str_("milk"))]);
    a.update("k", &v1(), &[put("title", str_("oat milk")), put("count", Value::Num(2.0))]);
    a.update("k", &v1(), &[Change::Deleted(true)]);
    let h = a.repo.history("k").unwrap();
    assert_eq!(h.len(), 3);
    let created = &h[0];
    assert_eq!(created.key.as_ref(), "k");
    assert!(created.changes.iter().any(|c| c.field == "title" && c.before.is_none() && c.after == Some(str_("milk"))));
    let edit = &h[1];
    assert_eq!(edit.changed, vec!["count", "title"]);
    assert_eq!(edit.changes[1], FieldChange { field: "title".into(), before: Some(str_("milk")), after: Some(str_("oat milk")) });
    assert_eq!(edit.changes[0].before, None);
    assert_eq!(h[2].changes, vec![FieldChange { field: "$deleted".into(), before: Some(Value::Bool(false)), after: Some(Value::Bool(true)) }]);
}

#[test]
fn an_item_at_a_commit_or_a_time() {
    let mut a = Replica::new(1);
    let c1 = a.update("k", &v1(), &[put("title", str_("one"))]).unwrap();
    let t1 = a.clock;
    a.update("k", &v1(), &[put("title", str_("two"))]).unwrap();
    assert_eq!(a.repo.item_at("k", At::Commit(c1)).unwrap().unwrap().data.fields["title"], str_("one"));
    assert_eq!(a.repo.item_at("k", At::Time(t1)).unwrap().unwrap().data.fields["title"], str_("one"));
    assert_eq!(a.repo.item_at("k", At::Time(t1 + 5)).unwrap().unwrap().data.fields["title"], str_("one"));
    assert_eq!(a.repo.item_at("k", At::Time(a.clock)).unwrap().unwrap().data.fields["title"], str_("two"));
    assert_eq!(a.repo.item_at("k", At::Time(t1 - 1)).unwrap(), None, "before its creation");
    // A commit of another item is named in the error.
    let other = a.update("j", &v1(), &[put("title", str_("x"))]).unwrap();
    let e = a.repo.item_at("k", At::Commit(other)).unwrap_err();
    assert_eq!(e.code(), "ERR_NOT_FOUND");
    assert!(e.to_string().contains(&other.to_hex()) && e.to_string().contains("`k`"), "{e}");
}

#[test]
fn a_commit_stamped_before_its_parent_appears_with_it() {
    // A commit stamped before the commit it descends from (its writer's
    // clock ran behind; local writes never do this, other writers might)
    // cannot have been there any earlier than its parent.
    let mut a = Replica::new(1);
    let parent = a.update("k", &v1(), &[put("title", str_("t"))]).unwrap();
    let t_parent = a.clock;
    let key = SessionKey::from_seed([9; 32]);
    let skewed = Commit {
        repo: repo_path(),
        key: "k".into(),
        parents: vec![parent],
        timestamp: t_parent - 500,
        session: key.id(),
        schema: v1(),
        body: Body::Full(std::sync::Arc::new(ItemData::new([("title".to_string(), str_("skewed"))].into()))),
    }
    .sign(&key)
    .unwrap();
    a.repo.insert(skewed).unwrap();
    assert_eq!(a.repo.item_at("k", At::Time(t_parent - 1)).unwrap(), None);
    assert_eq!(a.repo.item_at("k", At::Time(t_parent)).unwrap().unwrap().data.fields["title"], str_("skewed"));
}

#[test]
fn restore_writes_the_old_value_as_a_new_commit() {
    let mut a = Replica::new(1);
    let c1 = a.update("k", &v1(), &[put("title", str_("one")), put("count", Value::Num(1.0))]).unwrap();
    a.update("k", &v1(), &[put("title", str_("two")), Change::Remove { field: "count".into() }]);
    a.clock += 10;
    let id = a.repo.restore("k", c1, &a.key.clone(), a.clock).unwrap().unwrap();
    let h = a.head("k").unwrap();
    assert_eq!(h.data.fields["title"], str_("one"));
    assert_eq!(h.data.fields["count"], Value::Num(1.0));
    assert_eq!(a.repo.history("k").unwrap().last().unwrap().id, id, "history is appended to, never rewritten");
    assert_eq!(a.repo.commit_count(), 3);
}

#[test]
fn reverting_keeps_later_edits_of_others_and_reverting_the_revert_restores() {
    let (mut a, mut b) = forked();
    // b (the session to revert) changes title and count; a then changes count again.
    let bad = b.update("k", &v1(), &[put("title", str_("vandalized")), put("count", Value::Num(99.0))]).unwrap();
    a.receive(&b.commits());
    a.clock = b.clock;
    a.update("k", &v1(), &[put("count", Value::Num(3.0))]);
    let before = a.state();
    a.clock += 10;
    let revert = a.repo.revert(&[bad], &a.key.clone(), a.clock).unwrap();
    assert_eq!(revert.len(), 1);
    assert_eq!(a.field("k", "title"), Some(str_("t")), "b's edit nobody touched since is undone");
    assert_eq!(a.field("k", "count"), Some(Value::Num(3.0)), "a's later edit stays");
    a.clock += 10;
    a.repo.revert(&revert, &a.key.clone(), a.clock).unwrap();
    assert_eq!(a.state(), before, "reverting the revert gives back the head");
}

#[test]
fn reverting_a_creation_deletes_the_item() {
    let mut a = Replica::new(1);
    let c = a.update("k", &v1(), &[put("title", str_("spam"))]).unwrap();
    a.clock += 10;
    a.repo.revert(&[c], &a.key.clone(), a.clock).unwrap();
    let h = a.head("k").unwrap();
    assert!(h.data.deleted);
    assert_eq!(h.data.fields["title"], str_("spam"), "soft-deleted: values and history stay");
}

#[test]
fn reverting_text_removes_only_that_sessions_characters() {
    let (mut a, mut b) = forked();
    a.update("k", &v1(), &[put("body", Value::Text("hello world".into()))]);
    b.receive(&a.commits());
    b.clock = a.clock;
    let bad = b.update("k", &v1(), &[put("body", Value::Text("hello XXX world".into()))]).unwrap();
    a.receive(&b.commits());
    a.clock = b.clock;
    a.update("k", &v1(), &[put("body", Value::Text("hello XXX world!".into()))]);
    a.clock += 10;
    a.repo.revert(&[bad], &a.key.clone(), a.clock).unwrap();
    assert_eq!(a.field("k", "body"), Some(Value::Text("hello world!".into())));
}

#[test]
fn a_long_history_is_read_a_page_at_a_time() {
    // A text written a character at a time: each entry carries the whole
    // text before and after, so the history is read in pages.
    let mut a = Replica::new(1);
    let mut body = String::new();
    for i in 0..1_500 {
        body.push(char::from(b'a' + (i % 26) as u8));
        a.update("k", &v1(), &[put("body", Value::Text(body.clone()))]);
    }
    let all = a.repo.history("k").unwrap();
    assert_eq!(all.len(), 1_500);
    let (newest, total) = a.repo.history_page("k", None, 10).unwrap();
    assert_eq!(total, 1_500);
    assert_eq!(newest, all[1_490..].to_vec(), "the newest page is the history's tail");
    // Pages chained by their first entry cover the history exactly once.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let (page, _) = a.repo.history_page("k", before, 400).unwrap();
        if page.is_empty() {
            break;
        }
        before = Some(page[0].id);
        pages.push(page);
    }
    assert_eq!(pages.len(), 4);
    let joined: Vec<HistoryEntry> = pages.into_iter().rev().flatten().collect();
    assert_eq!(joined, all);
    let last = &all[1_499].changes[0];
    assert_eq!((last.before.as_ref(), last.after.as_ref()), (Some(&Value::Text(body[..1_499].into())), Some(&Value::Text(body.clone()))));
    assert_eq!(a.repo.history_page("k", None, 0).unwrap(), (vec![], 1_500));
    let other = a.update("j", &v1(), &[put("title", str_("x"))]).unwrap();
    assert_eq!(a.repo.history_page("k", Some(other), 5).unwrap_err().code(), "ERR_NOT_FOUND");
}

#[test]
fn a_lost_concurrent_value_is_a_conflict_until_the_field_is_written_again() {
    let (mut a, mut b) = forked();
    a.update("k", &v1(), &[put("title", str_("from a"))]);
    b.clock += 100;
    b.update("k", &v1(), &[put("title", str_("from b"))]);
    exchange(&mut a, &mut b);
    let c = a.repo.conflicts("k").unwrap();
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].field, "title");
    assert_eq!(c[0].winner.value, Some(str_("from b")));
    assert_eq!(c[0].winner.session, b.key.id());
    assert_eq!(c[0].losers.len(), 1);
    assert_eq!(c[0].losers[0].value, Some(str_("from a")));
    assert_eq!(c[0].losers[0].session, a.key.id());
    assert_eq!(b.repo.conflicts("k").unwrap(), c, "every replica sees the same conflict");
    // Writing another field closes the fork but settles nothing.
    a.clock = b.clock + 10;
    a.update("k", &v1(), &[put("count", Value::Num(5.0))]);
    assert_eq!(a.repo.conflicts("k").unwrap().len(), 1);
    // Writing the field settles it.
    a.update("k", &v1(), &[put("title", str_("agreed"))]);
    assert_eq!(a.repo.conflicts("k").unwrap(), vec![]);
}

#[test]
fn merged_fields_are_not_conflicts() {
    let (mut a, mut b) = forked();
    a.update("k", &v1(), &[put("tags", Value::Set([s("x")].into())), put("count", Value::Num(2.0))]);
    b.update("k", &v1(), &[put("tags", Value::Set([s("y")].into())), put("title", str_("b"))]);
    exchange(&mut a, &mut b);
    assert_eq!(a.repo.conflicts("k").unwrap(), vec![], "set additions are both kept; different fields do not collide");
}

#[test]
fn audit_lists_one_sessions_changes_across_items() {
    let (mut a, mut b) = forked();
    b.update("k", &v1(), &[put("title", str_("b1"))]);
    b.update("j", &v1(), &[put("title", str_("b2"))]);
    a.update("k", &v1(), &[put("count", Value::Num(7.0))]);
    exchange(&mut a, &mut b);
    let bs = b.key.id();
    let log = a.repo.audit(|c| c.session() == bs).unwrap();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|e| e.session == bs));
    let keys: Vec<&str> = log.iter().map(|e| e.key.as_ref()).collect();
    assert!(keys.contains(&"k") && keys.contains(&"j"));
    assert!(log.iter().any(|e| e.changes.iter().any(|c| c.field == "title" && c.after == Some(str_("b1")) && c.before == Some(str_("t")))));
    assert_eq!(a.repo.audit(|_| true).unwrap().len(), a.repo.commit_count());
}

#[test]
fn history_of_a_checkpointed_repository_reads_only_that_item() {
    let storage = MemStorage::new();
    let ck = MemStorage::new();
    let key = SessionKey::from_seed([1; 32]);
    {
        let (mut r, _) = Repository::open_checkpointed(repo_path(), registry(), Box::new(storage.clone()), Box::new(ck.clone())).unwrap();
        for i in 0..50 {
            r.update(&format!("i{i}"), &v1(), &[put("count", Value::Num(i as f64))], &key, 1_000 + i).unwrap();
            r.update(&format!("i{i}"), &v1(), &[put("count", Value::Num(i as f64 + 0.5))], &key, 2_000 + i).unwrap();
        }
        r.flush().unwrap();
        r.write_checkpoint().unwrap();
    }
    let (mut r, _) = Repository::open_checkpointed(repo_path(), registry(), Box::new(storage), Box::new(ck)).unwrap();
    assert!(r.is_sealed());
    let leaf = r.leaves("i7")[0];
    let h = r.history("i7").unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[1].changes[0].before, Some(Value::Num(7.0)));
    assert!(r.is_sealed(), "the other items' commits stayed in the log");
    assert!(r.commit(&leaf).is_some(), "the item's commits were read");
    // A question about the whole repository reads everything.
    assert_eq!(r.audit(|_| true).unwrap().len(), 100);
    let snap = r.snapshot_at(1_500).unwrap();
    assert_eq!(snap.len(), 50);
    let i0 = snap.iter().find(|(k, _)| k.as_ref() == "i0").unwrap();
    assert_eq!(i0.1.data.fields["count"], Value::Num(0.0), "as it was at 1,500: before its second write");
    // Writes after that still see the item's latest value.
    r.update("i7", &v1(), &[put("title", str_("x"))], &key, 3_000).unwrap();
    assert_eq!(r.head("i7").unwrap().data.fields["count"], Value::Num(7.5));
    assert_eq!(r.history("i7").unwrap().len(), 3);
}

// ---- properties ----------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    /// Replica edits item: 0 title, 1 count, 2 tag add, 3 body insert, 4 done, 5 delete/restore.
    Edit { replica: usize, item: usize, what: u8, n: u8 },
    /// `to` receives everything `from` has.
    Sync { from: usize, to: usize },
    /// A replica's clock jumps (possibly backwards: skewed clocks).
    Clock { replica: usize, delta: i16 },
}

const ITEMS: [&str; 3] = ["a", "b", "c"];

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => (0usize..3, 0usize..3, 0u8..6, any::<u8>()).prop_map(|(replica, item, what, n)| Op::Edit { replica, item, what, n }),
        2 => (0usize..3, 0usize..3).prop_map(|(from, to)| Op::Sync { from, to }),
        1 => (0usize..3, any::<i16>()).prop_map(|(replica, delta)| Op::Clock { replica, delta }),
    ];
    proptest::collection::vec(op, 1..40)
}

fn edit(r: &mut Replica, item: &str, what: u8, n: u8) {
    let cur = r.head(item);
    let changes = match what {
        0 => vec![put("title", str_(&format!("t{}", n % 4)))],
        1 => vec![put("count", Value::Num(f64::from(n % 5)))],
        2 => vec![Change::SetAdd { field: "tags".into(), elems: [s(&format!("x{}", n % 3))].into() }],
        3 => {
            let body = cur.as_ref().and_then(|h| match h.data.fields.get("body") {
                Some(Value::Text(t)) => Some(t.clone()),
                _ => None,
            });
            let mut b = body.unwrap_or_default();
            let at = if b.is_empty() { 0 } else { usize::from(n) % (b.len() + 1) };
            b.insert_str(at, &format!("{}", n % 10));
            vec![put("body", Value::Text(b))]
        }
        4 => vec![put("done", Value::Bool(n.is_multiple_of(2)))],
        _ => vec![Change::Deleted(cur.is_some_and(|h| !h.data.deleted) && n.is_multiple_of(3))],
    };
    r.update(item, &v1(), &changes);
}

fn play(ops: &[Op]) -> Vec<Replica> {
    let mut rs: Vec<Replica> = (1..=3).map(Replica::new).collect();
    for op in ops {
        match op {
            Op::Edit { replica, item, what, n } => edit(&mut rs[*replica], ITEMS[*item], *what, *n),
            Op::Sync { from, to } if from != to => {
                let c = rs[*from].commits();
                rs[*to].receive(&c);
            }
            Op::Sync { .. } => {}
            Op::Clock { replica, delta } => rs[*replica].clock += i64::from(*delta) / 64,
        }
    }
    // Everyone ends up with everything.
    let all: Vec<SignedCommit> = rs.iter().flat_map(Replica::commits).collect();
    for r in &mut rs {
        r.receive(&all);
    }
    rs
}

/// Fields (and the flag) a session changed in each item, per history.
fn touched(r: &mut Replica, session: SessionId) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in r.repo.audit(|c| c.session() == session).unwrap() {
        let f = out.entry(e.key.to_string()).or_default();
        f.extend(e.changed.iter().cloned());
        if e.parents.is_empty() {
            // Reverting a creation deletes the item.
            f.push("$deleted".into());
        }
    }
    out
}

fn field(data: &ItemData, f: &str) -> Option<Value> {
    if f == "$deleted" { Some(Value::Bool(data.deleted)) } else { data.fields.get(f).cloned() }
}

proptest! {
    #![proptest_config(proptest_config(300))]

    #[test]
    fn revert_of_a_session_then_of_the_revert(ops in ops(), victim in 0usize..3, reverter in 0usize..3) {
        let mut rs = play(&ops);
        let session = rs[victim].key.id();
        let r = &mut rs[reverter];
        let head = r.state();
        let touched = touched(r, session);
        let targets: Vec<CommitId> = r.repo.audit(|c| c.session() == session).unwrap().iter().map(|e| e.id).collect();
        r.clock += 10;
        let key = r.key.clone();
        let revert = r.repo.revert(&targets, &key, r.clock).unwrap();
        let after = r.state();
        // Fields the session never changed are as they were.
        for (item, (_, data)) in &after {
            let (_, old) = &head[item];
            let names: Vec<String> = old.fields.keys().chain(data.fields.keys()).cloned().chain(["$deleted".to_string()]).collect();
            for f in names {
                if !touched.get(item).is_some_and(|t| t.contains(&f)) {
                    prop_assert_eq!(field(data, &f), field(old, &f), "item {} field {} changed though the session never touched it", item, f);
                }
            }
        }
        // Reverting the revert gives back the head.
        r.clock += 10;
        r.repo.revert(&revert, &key, r.clock).unwrap();
        prop_assert_eq!(r.state(), head);
    }

    #[test]
    fn concurrent_edits_during_a_revert_merge_like_any_edit(ops in ops(), victim in 0usize..3, item in 0usize..3, n in any::<u8>()) {
        let mut rs = play(&ops);
        let session = rs[victim].key.id();
        let targets: Vec<CommitId> = rs[0].repo.audit(|c| c.session() == session).unwrap().iter().map(|e| e.id).collect();
        rs[0].clock += 10;
        let (key, clock) = (rs[0].key.clone(), rs[0].clock);
        rs[0].repo.revert(&targets, &key, clock).unwrap();
        edit(&mut rs[1], ITEMS[item], 0, n);
        let all: Vec<SignedCommit> = rs.iter().flat_map(Replica::commits).collect();
        for r in &mut rs {
            r.receive(&all);
        }
        let want = rs[0].state();
        prop_assert_eq!(rs[1].state(), want.clone());
        prop_assert_eq!(rs[2].state(), want);
    }

    #[test]
    fn time_travel_equals_a_replica_that_had_only_those_commits(ops in ops(), pick in any::<u16>()) {
        let mut rs = play(&ops);
        let all = rs[0].commits();
        if all.is_empty() {
            return Ok(());
        }
        let mut times: Vec<i64> = all.iter().map(|c| c.commit.timestamp).collect();
        times.sort();
        let t = times[usize::from(pick) % times.len()] + i64::from(pick % 3) - 1;
        let mut fresh = Replica::new(9);
        // Only the commits stamped up to t (those whose parents are later wait).
        let upto: Vec<SignedCommit> = all.iter().filter(|c| c.commit.timestamp <= t).cloned().collect();
        for c in &upto {
            fresh.repo.insert(c.clone()).unwrap();
        }
        let want = fresh.state();
        for item in ITEMS {
            let got = rs[0].repo.item_at(item, At::Time(t)).unwrap().map(|h| (h.schema.clone(), (*h.data).clone()));
            prop_assert_eq!(got, want.get(item).cloned(), "item {} at {}", item, t);
        }
        let snap: BTreeMap<String, (SchemaId, ItemData)> = rs[0].repo.snapshot_at(t).unwrap().into_iter().map(|(k, h)| (k.to_string(), (h.schema, (*h.data).clone()))).collect();
        prop_assert_eq!(snap, want);
    }

    #[test]
    fn playback_starts_at_the_snapshot_and_ends_at_the_heads(ops in ops(), pick in any::<u16>()) {
        let mut rs = play(&ops);
        let all = rs[0].commits();
        if all.is_empty() {
            return Ok(());
        }
        let from = all[usize::from(pick) % all.len()].commit.timestamp;
        let p = rs[0].repo.playback(from, i64::MAX).unwrap();
        let mut view: BTreeMap<String, (SchemaId, ItemData)> = p.start.iter().map(|(k, h)| (k.to_string(), (h.schema.clone(), (*h.data).clone()))).collect();
        let start: BTreeMap<String, (SchemaId, ItemData)> = rs[0].repo.snapshot_at(from).unwrap().into_iter().map(|(k, h)| (k.to_string(), (h.schema, (*h.data).clone()))).collect();
        prop_assert_eq!(&view, &start);
        let mut last = i64::MIN;
        for s in &p.steps {
            prop_assert!(s.time > from && s.time >= last, "steps come in time order after `from`");
            last = s.time;
            view.insert(s.key.to_string(), (s.head.schema.clone(), (*s.head.data).clone()));
        }
        prop_assert_eq!(view, rs[0].state());
    }
}

#[test]
fn merges_after_history_questions_on_a_checkpointed_repository_are_unchanged() {
    // Replica a writes; its log and checkpoint are reopened as `r`; history
    // questions read commits from the log and put them back; then forks
    // from b arrive and must merge exactly as on a replica that never
    // asked (which keeps everything in memory).
    let mut a = Replica::new(1);
    for i in 0..20 {
        a.update(&format!("i{i}"), &v1(), &[put("title", str_("a")), put("body", Value::Text("hello".into()))]);
    }
    let mut b = Replica::new(2);
    exchange(&mut a, &mut b);
    let (storage, ck) = (MemStorage::new(), MemStorage::new());
    {
        let (mut r, _) = Repository::open_checkpointed(repo_path(), registry(), Box::new(storage.clone()), Box::new(ck.clone())).unwrap();
        for c in a.commits() {
            r.insert(c).unwrap();
        }
        r.flush().unwrap();
        r.write_checkpoint().unwrap();
    }
    let (mut r, _) = Repository::open_checkpointed(repo_path(), registry(), Box::new(storage), Box::new(ck)).unwrap();
    assert!(r.is_sealed());
    r.history("i3").unwrap();
    r.audit(|_| true).unwrap();
    r.conflicts("i4").unwrap();
    r.snapshot_at(i64::MAX).unwrap();
    for i in 0..20 {
        b.update(&format!("i{i}"), &v1(), &[put("body", Value::Text(format!("hello b{i}")))]);
        a.update(&format!("i{i}"), &v1(), &[put("title", str_("a2"))]);
    }
    for c in b.commits().into_iter().chain(a.commits()) {
        r.insert(c).unwrap();
    }
    exchange(&mut a, &mut b);
    assert_eq!(state(&mut r), a.state());
    assert_eq!(r.history("i9").unwrap(), a.repo.history("i9").unwrap());
}
