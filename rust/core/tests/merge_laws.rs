//! Merge laws, by property test (DESIGN.md §4 "required properties"):
//! 3–5 replicas make random edits to every field type (with some items
//! moving to schema v2 mid-way), exchange random subsets of commits in random
//! order (children before parents included), then receive everything.
//! Afterwards every replica must show identical heads, re-delivery must be a
//! no-op, and a replica reopened from its log must equal the live one.
//! The seed is printed; `IBEX_SEED=<n>` replays a run.

mod common;

use common::*;
use ibex_core::text::Splice;
use ibex_core::*;
use proptest::prelude::*;

const ITEMS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Edit {
    Title(Option<String>),
    Count(i8),
    Done(bool),
    Due(i32),
    TagAdd(u8),
    TagRemove(u8),
    AttrPut(u8, u8),
    AttrRemove(u8),
    BodyInsert(u16, String),
    BodyDelete(u16, u8),
    Link(u8),
    Deleted(bool),
    UpgradeToV2(i8),
}

#[derive(Debug, Clone)]
enum Op {
    Edit {
        replica: usize,
        item: usize,
        edit: Edit,
    },
    /// Deliver the commits of `from` selected by `mask`, shuffled by `order`.
    Sync {
        from: usize,
        to: usize,
        mask: u64,
        order: u64,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        proptest::option::of("[a-c]{0,3}").prop_map(Edit::Title),
        any::<i8>().prop_map(Edit::Count),
        any::<bool>().prop_map(Edit::Done),
        any::<i32>().prop_map(Edit::Due),
        (0u8..4).prop_map(Edit::TagAdd),
        (0u8..4).prop_map(Edit::TagRemove),
        (0u8..3, 0u8..3).prop_map(|(k, v)| Edit::AttrPut(k, v)),
        (0u8..3).prop_map(Edit::AttrRemove),
        (any::<u16>(), "[xyzé]{1,3}").prop_map(|(p, s)| Edit::BodyInsert(p, s)),
        (any::<u16>(), 1u8..4).prop_map(|(p, n)| Edit::BodyDelete(p, n)),
        (0u8..3).prop_map(Edit::Link),
        prop::bool::weighted(0.3).prop_map(Edit::Deleted),
        any::<i8>().prop_map(Edit::UpgradeToV2),
    ]
}

fn ops(replicas: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (0..replicas, 0..ITEMS.len(), edit()).prop_map(|(replica, item, edit)| Op::Edit { replica, item, edit }),
        1 => (0..replicas, 0..replicas, any::<u64>(), any::<u64>()).prop_map(|(from, to, mask, order)| Op::Sync { from, to, mask, order }),
    ];
    proptest::collection::vec(op, 1..30)
}

/// Turns an edit into changes against what the replica currently sees.
fn apply_edit(r: &mut Replica, key: &str, e: &Edit) {
    let head = r.head(key);
    let at_v2 = head.as_ref().is_some_and(|h| h.schema.version == 2) || matches!(e, Edit::UpgradeToV2(_));
    let schema = if at_v2 { v2() } else { v1() };
    let title = if at_v2 { "name" } else { "title" };
    let body = head.as_ref().and_then(|h| match h.data.fields.get("body") {
        Some(Value::Text(t)) => Some(t.chars().count()),
        _ => None,
    });
    let tag = |t: u8| s(&format!("t{t}"));
    let changes = match e.clone() {
        Edit::Title(Some(t)) => vec![put(title, Value::Str(t))],
        Edit::Title(None) => vec![Change::Remove { field: title.into() }],
        Edit::Count(n) => vec![put("count", Value::Num(n.into()))],
        Edit::Done(b) => vec![put("done", Value::Bool(b))],
        Edit::Due(d) => vec![put("due", Value::Date(d.into()))],
        Edit::TagAdd(t) => vec![Change::SetAdd { field: "tags".into(), elems: [tag(t)].into() }],
        Edit::TagRemove(t) => vec![Change::SetRemove { field: "tags".into(), elems: [tag(t)].into() }],
        Edit::AttrPut(k, v) => vec![Change::MapPut { field: "attrs".into(), key: format!("k{k}"), value: Scalar::Num(v.into()) }],
        Edit::AttrRemove(k) => vec![Change::MapRemove { field: "attrs".into(), key: format!("k{k}") }],
        Edit::BodyInsert(p, ins) => {
            let len = body.unwrap_or(0);
            vec![Change::Text { field: "body".into(), splices: vec![Splice { pos: (p as usize % (len + 1)) as u32, delete: 0, insert: ins }] }]
        }
        Edit::BodyDelete(p, n) => match body {
            Some(len) if len > 0 => {
                let pos = p as usize % len;
                vec![Change::Text { field: "body".into(), splices: vec![Splice { pos: pos as u32, delete: (n as usize).min(len - pos) as u32, insert: String::new() }] }]
            }
            _ => vec![],
        },
        Edit::Link(i) => vec![put("link", Value::Ref(format!("/data/test/{}", ITEMS[i as usize])))],
        Edit::Deleted(d) => vec![Change::Deleted(d)],
        Edit::UpgradeToV2(p) => vec![put("prio", Value::Num(p.into()))],
    };
    r.update(key, &schema, &changes);
}

fn run(n: usize, ops: &[Op], final_order: u64) -> std::result::Result<(), TestCaseError> {
    let mut reps: Vec<Replica> = (0..n)
        .map(|i| {
            let mut r = Replica::persistent(i as u8 + 1);
            r.repo = {
                let storage = r.storage.clone().unwrap();
                Repository::open(repo_path(), registry_v2(), Box::new(storage)).unwrap().0
            };
            r
        })
        .collect();
    for op in ops {
        match op {
            Op::Edit { replica, item, edit } => apply_edit(&mut reps[*replica], ITEMS[*item], edit),
            Op::Sync { from, to, mask, order } => {
                let mut picked: Vec<SignedCommit> = reps[*from].commits().into_iter().enumerate().filter(|(i, _)| mask >> (i % 64) & 1 == 1).map(|(_, c)| c).collect();
                shuffle(&mut picked, *order);
                // The receiver's clock follows what it saw (as a real clock would).
                let seen = picked.iter().map(|c| c.commit.timestamp).max().unwrap_or(0);
                let to_r = &mut reps[*to];
                to_r.clock = to_r.clock.max(seen);
                to_r.receive(&picked);
            }
        }
    }
    let mut all: Vec<SignedCommit> = Vec::new();
    for r in &reps {
        for c in r.commits() {
            if !all.iter().any(|x| x.id == c.id) {
                all.push(c);
            }
        }
    }
    for (i, r) in reps.iter_mut().enumerate() {
        let mut order = all.clone();
        shuffle(&mut order, final_order.wrapping_add(i as u64 * 7919));
        r.receive(&order);
    }
    let want = reps[0].state();
    for r in &mut reps {
        prop_assert_eq!(r.repo.pending_count(), 0);
        prop_assert_eq!(r.repo.commit_count(), all.len());
        prop_assert_eq!(&r.state(), &want, "replicas holding the same commits differ");
        // Re-applying every commit is a no-op.
        for c in &all {
            prop_assert_eq!(r.repo.insert(c.clone()).unwrap(), Inserted::Duplicate);
        }
        prop_assert_eq!(&r.state(), &want);
        // Reopening from the log reproduces the state.
        r.repo.flush().unwrap();
        let crashed = r.storage.as_ref().unwrap().crash();
        let (mut reopened, report) = Repository::open(repo_path(), registry_v2(), Box::new(crashed)).unwrap();
        prop_assert!(report.corrupt.is_empty() && report.rejected.is_empty());
        prop_assert_eq!(&state(&mut reopened), &want, "reopened replica differs from the live one");
    }
    // A fresh replica that receives everything in yet another order agrees.
    let mut fresh = Replica::with_registry(99, registry_v2());
    let mut order = all.clone();
    order.reverse();
    fresh.receive(&order);
    prop_assert_eq!(fresh.state(), want);
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config(2000))]

    #[test]
    fn replicas_converge_whatever_the_delivery_order(n in 3usize..=5, ops in ops(5), final_order in any::<u64>()) {
        let ops: Vec<Op> = ops.into_iter().map(|op| match op {
            Op::Edit { replica, item, edit } => Op::Edit { replica: replica % n, item, edit },
            Op::Sync { from, to, mask, order } => Op::Sync { from: from % n, to: to % n, mask, order },
        }).collect();
        run(n, &ops, final_order)?;
    }
}

/// Merging is commutative at the level users see: two forks merged in
/// either delivery order give the same head, on both sides.
#[test]
fn two_way_merge_is_commutative() {
    let mut a = Replica::new(1);
    let mut b = Replica::new(2);
    a.update("k", &v1(), &[put("body", Value::Text("abc".into())), put("tags", Value::Set([s("x")].into()))]);
    exchange(&mut a, &mut b);
    a.update("k", &v1(), &[put("body", Value::Text("aXbc".into())), Change::SetAdd { field: "tags".into(), elems: [s("a")].into() }]);
    b.update("k", &v1(), &[put("body", Value::Text("abYc".into())), Change::SetRemove { field: "tags".into(), elems: [s("x")].into() }]);
    let (ca, cb) = (a.commits(), b.commits());
    let mut ab = Replica::new(3);
    ab.receive(&ca);
    ab.receive(&cb);
    let mut ba = Replica::new(4);
    ba.receive(&cb);
    ba.receive(&ca);
    assert_eq!(ab.state(), ba.state());
    assert_eq!(ab.field("k", "body"), Some(Value::Text("aXbYc".into())));
    assert_eq!(ab.field("k", "tags"), Some(Value::Set([s("a")].into())));
}

/// One concurrent writer's shape in [`many_writers`].
#[derive(Debug, Clone)]
enum Shape {
    /// One edit on the base: a sibling of every other such writer.
    OnBase(Edit),
    /// Two edits in a row (the leaf's parent is not the base).
    Chain(Edit, Edit),
    /// Saw the previous writer's commits, then edited (closes a fork).
    AfterPrevious(Edit),
}

fn shape(forks: u32, text: bool) -> impl Strategy<Value = Shape> {
    // Without text, every plain sibling can be merged field by field.
    let on_base = edit().prop_map(move |e| match e {
        Edit::BodyInsert(..) | Edit::BodyDelete(..) if !text => Shape::OnBase(Edit::Count(0)),
        e => Shape::OnBase(e),
    });
    prop_oneof![
        100 => on_base,
        forks => (edit(), edit()).prop_map(|(a, b)| Shape::Chain(a, b)),
        forks => edit().prop_map(Shape::AfterPrevious),
    ]
}

fn many_writers() -> impl Strategy<Value = (Vec<(Shape, u16)>, bool, u64, u64)> {
    // Per case, how often a writer is not a plain sibling: never (every
    // leaf a child of the base), rarely, or often; whether plain siblings
    // edit text; and whether the base is in the newest schema version (else
    // some writers upgrade it).
    (prop_oneof![Just(0u32), Just(2), Just(30)], any::<bool>())
        .prop_flat_map(|(forks, text)| (proptest::collection::vec((shape(forks, text), any::<u16>()), 100..300), prop::bool::weighted(0.7), any::<u64>(), any::<u64>()))
}

proptest! {
    #![proptest_config(proptest_config(24))]

    /// Hundreds of concurrent writers, received one commit at a time in two
    /// random orders with the head read after every commit (so it is kept
    /// up to date incrementally), and all at once: every head equals the
    /// pairwise fold computed from scratch.
    #[test]
    fn hundreds_of_concurrent_writers_fold_incrementally_to_the_full_merge((writers, newest, order_a, order_b) in many_writers()) {
        let mut base = Replica::with_registry(1, registry_v2());
        let (schema, title) = if newest { (v2(), "name") } else { (v1(), "title") };
        base.update("k", &schema, &[put(title, Value::Str("base".into())), put("tags", Value::Set([s("t0")].into())), put("body", Value::Text("xyz".into()))]);
        let base_commits = base.commits();
        let mut all: Vec<SignedCommit> = Vec::new();
        let mut previous: Vec<SignedCommit> = Vec::new();
        for (i, (shape, skew)) in writers.iter().enumerate() {
            let mut w = Replica::with_registry(2, registry_v2());
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            w.key = SessionKey::from_seed(seed);
            // Writers' clocks disagree, so arrival order is not sort order.
            w.clock = 1_000 + i64::from(*skew % 2_000);
            w.receive(&base_commits);
            match shape {
                Shape::OnBase(e) => apply_edit(&mut w, "k", e),
                Shape::Chain(a, b) => {
                    apply_edit(&mut w, "k", a);
                    apply_edit(&mut w, "k", b);
                }
                Shape::AfterPrevious(e) => {
                    w.receive(&previous);
                    apply_edit(&mut w, "k", e);
                }
            }
            let mine: Vec<SignedCommit> = w.commits().into_iter().filter(|c| !all.iter().chain(&base_commits).any(|x| x.id == c.id)).collect();
            all.extend(mine.iter().cloned());
            previous = w.commits();
        }
        let mut heads = Vec::new();
        for (n, order) in [(3u8, order_a), (4, order_b)] {
            let mut r = Replica::with_registry(n, registry_v2());
            r.receive(&base_commits);
            r.head("k");
            let mut commits = all.clone();
            shuffle(&mut commits, order);
            for (step, c) in commits.iter().enumerate() {
                r.receive(std::slice::from_ref(c));
                let h = r.head("k").unwrap();
                if step % 64 == 0 {
                    let full = r.repo.head_by_full_fold("k").unwrap();
                    prop_assert_eq!(&*h, &full, "incremental head differs from the full fold after {} commits", step + 1);
                }
            }
            let h = r.head("k").unwrap();
            prop_assert_eq!(&*h, &r.repo.head_by_full_fold("k").unwrap());
            heads.push(h);
        }
        let mut at_once = Replica::with_registry(5, registry_v2());
        at_once.receive(&base_commits);
        at_once.receive(&all);
        heads.push(at_once.head("k").unwrap());
        prop_assert_eq!(&heads[0], &heads[1]);
        prop_assert_eq!(&heads[0], &heads[2]);
    }
}
