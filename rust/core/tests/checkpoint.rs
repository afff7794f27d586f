//! Checkpoints (`checkpoint.rs`): opening from a checkpoint and the log
//! after it equals opening from a full scan, whatever the history, the
//! checkpoint's age or where a crash cut the log; a torn or stale
//! checkpoint is never trusted; history, merges below the checkpoint and
//! sending old commits work from the log. The seed is printed; `IBEX_SEED`
//! replays a run.

mod common;

use std::collections::BTreeMap;

use common::*;
use ibex_core::sync::{Ctx, RepoClient, RepoServe};
use ibex_core::*;
use proptest::prelude::*;

/// A replica whose log and checkpoint live in memory.
struct Disk {
    log: MemStorage,
    ckpt: MemStorage,
}

impl Disk {
    fn new() -> Disk {
        Disk { log: MemStorage::new(), ckpt: MemStorage::new() }
    }

    fn open(&self) -> (Repository, LoadReport) {
        Repository::open_checkpointed(repo_path(), registry_v2(), Box::new(self.log.clone()), Box::new(self.ckpt.clone())).unwrap()
    }

    /// The same bytes, opened by scanning the whole log.
    fn open_full(&self) -> Repository {
        Repository::open(repo_path(), registry_v2(), Box::new(MemStorage::from_bytes(self.log.bytes()))).unwrap().0
    }
}

/// Heads, commit count, digest, commit ids, each item's history.
type Everything = (BTreeMap<String, (SchemaId, ItemData)>, usize, SetDigest, Vec<CommitId>, BTreeMap<String, Vec<CommitId>>, Vec<String>);

/// Everything a replica shows: heads, commits, history.
fn everything(r: &mut Repository) -> Everything {
    let st = state(r);
    let mut ids: Vec<CommitId> = r.commit_ids().collect();
    ids.sort();
    let keys: Vec<String> = r.keys().map(str::to_owned).collect();
    // Every item, in key order (how heads are listed to the main thread).
    let order: Vec<String> = r.keys_in_order().iter().map(|k| k.to_string()).collect();
    assert_eq!(r.len(), order.len());
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(order, sorted, "keys_in_order");
    let hist = keys.into_iter().map(|k| (k.clone(), r.history(&k).unwrap().into_iter().map(|h| h.id).collect())).collect();
    (st, r.commit_count(), r.digest(), ids, hist, order)
}

#[derive(Debug, Clone)]
enum Step {
    /// Writer `w` edits item `k` (a plain field, a set, or text).
    Edit { w: u8, k: u8, kind: u8, n: u8 },
    /// Writer `w` receives everything the store holds (closing forks).
    Catch { w: u8 },
    /// The store receives writer `w`'s commits.
    Deliver { w: u8 },
    /// The store flushes (a checkpoint may follow).
    Flush,
    /// The store writes a checkpoint now.
    Checkpoint,
    /// The store crashes (unflushed bytes lost) and reopens from its
    /// checkpoint; the reopened replica must equal a full scan.
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..3, 0u8..5, 0u8..3, any::<u8>()).prop_map(|(w, k, kind, n)| Step::Edit { w, k, kind, n }),
        2 => (0u8..3).prop_map(|w| Step::Catch { w }),
        4 => (0u8..3).prop_map(|w| Step::Deliver { w }),
        2 => Just(Step::Flush),
        1 => Just(Step::Checkpoint),
        2 => Just(Step::Reopen),
    ]
}

fn edit(r: &mut Replica, k: u8, kind: u8, n: u8) {
    let key = format!("item{k}");
    let changes = match kind {
        0 => vec![put("name", Value::Str(format!("t{n}")))],
        1 => vec![Change::SetAdd { field: "tags".into(), elems: [s(&format!("g{}", n % 7))].into() }],
        _ => {
            let len = r.field(&key, "body").map_or(0, |v| match v {
                Value::Text(t) => t.chars().count(),
                _ => 0,
            });
            vec![Change::Text { field: "body".into(), splices: vec![ibex_core::text::Splice { pos: (n as usize % (len + 1)) as u32, delete: 0, insert: "x".into() }] }]
        }
    };
    r.update(&key, &v2(), &changes);
}

fn run(steps: &[Step]) -> std::result::Result<(), TestCaseError> {
    let mut writers: Vec<Replica> = (0..3).map(|i| Replica::with_registry(10 + i, registry_v2())).collect();
    let mut disk = Disk::new();
    let (mut store, report) = disk.open();
    prop_assert_eq!(report.checkpoint, CheckpointUse::Created);
    for st in steps {
        match st {
            Step::Edit { w, k, kind, n } => edit(&mut writers[*w as usize], *k, *kind, *n),
            Step::Catch { w } => {
                store.unseal().unwrap();
                let all: Vec<SignedCommit> = store.commits_in_order().iter().map(|c| c.to_signed().unwrap()).collect();
                writers[*w as usize].receive(&all);
            }
            Step::Deliver { w } => {
                for c in writers[*w as usize].commits() {
                    store.insert(c).unwrap();
                }
            }
            Step::Flush => store.flush().unwrap(),
            Step::Checkpoint => {
                store.flush().unwrap();
                store.write_checkpoint().unwrap();
            }
            Step::Reopen => {
                // A crash: what was not flushed is gone from both files.
                let crashed = Disk { log: disk.log.crash(), ckpt: disk.ckpt.crash() };
                let (mut from_ckpt, report) = crashed.open();
                prop_assert!(report.corrupt.is_empty() && report.rejected.is_empty(), "{:?}", report);
                let mut full = crashed.open_full();
                let want = everything(&mut full);
                prop_assert_eq!(&everything(&mut from_ckpt), &want, "checkpoint + tail differs from a full scan ({:?})", report.checkpoint);
                // Continue from the reopened store: later edits and merges
                // must behave as on a fully loaded one.
                disk = crashed;
                store = from_ckpt;
            }
        }
    }
    // Everything delivered, flushed, reopened: equal to a full scan and to
    // a replica that received the commits directly.
    for w in &writers {
        for c in w.commits() {
            store.insert(c).unwrap();
        }
    }
    store.flush().unwrap();
    let final_disk = Disk { log: MemStorage::from_bytes(disk.log.bytes()), ckpt: MemStorage::from_bytes(disk.ckpt.bytes()) };
    let (mut reopened, rep) = final_disk.open();
    if std::env::var_os("IBEX_DEBUG").is_some() {
        let mut full = final_disk.open_full();
        eprintln!("report {:?}\nfull {:?}\nstore {:?}\nreopened {:?}", rep.checkpoint, state(&mut full), state(&mut store), state(&mut reopened));
    }
    let mut direct = Replica::with_registry(99, registry_v2());
    for w in &writers {
        direct.receive(&w.commits());
    }
    prop_assert_eq!(state(&mut reopened), direct.state());
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config(std::env::var("IBEX_CHECKPOINT_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(300)))]

    #[test]
    fn opening_from_a_checkpoint_equals_a_full_scan(steps in proptest::collection::vec(step(), 1..60)) {
        run(&steps)?;
    }
}

/// A store with some history, flushed and checkpointed, plus a tail.
fn store_with_history() -> (Disk, Vec<Replica>) {
    let disk = Disk::new();
    let (mut store, _) = disk.open();
    let mut a = Replica::with_registry(1, registry_v2());
    let mut b = Replica::with_registry(2, registry_v2());
    for i in 0..30 {
        edit(&mut a, i % 4, i % 3, i);
    }
    b.receive(&a.commits());
    for i in 0..10 {
        edit(&mut b, i % 4, (i + 1) % 3, i + 50);
    }
    for c in a.commits().into_iter().chain(b.commits()) {
        store.insert(c).unwrap();
    }
    store.flush().unwrap();
    store.write_checkpoint().unwrap();
    // A tail after the checkpoint (from b, who saw everything: no fork).
    edit(&mut b, 0, 0, 200);
    for c in b.commits() {
        store.insert(c).unwrap();
    }
    store.flush().unwrap();
    (disk, vec![a, b])
}

#[test]
fn opening_from_a_checkpoint_reads_no_history_until_asked() {
    let (disk, _) = store_with_history();
    let (mut r, report) = disk.open();
    assert!(matches!(report.checkpoint, CheckpointUse::Used { tail: 1 }), "{:?}", report.checkpoint);
    assert!(r.is_sealed(), "history stays in the log after opening");
    // Heads come from the checkpoint: still nothing read.
    let heads = state(&mut r);
    assert!(r.is_sealed());
    let mut full = disk.open_full();
    assert_eq!(heads, state(&mut full));
    // History is read on demand and equals the full scan's.
    for k in ["item0", "item1", "item2", "item3"] {
        let h: Vec<CommitId> = r.history(k).unwrap().into_iter().map(|e| e.id).collect();
        let want: Vec<CommitId> = full.history(k).unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(h, want, "{k}");
    }
}

#[test]
fn a_fork_below_the_checkpoint_merges_as_on_a_full_scan() {
    let (disk, writers) = store_with_history();
    // A writer that saw only an old state of item1 edits it: its commit's
    // parent is deep in the checkpoint.
    let mut late = Replica::with_registry(7, registry_v2());
    late.receive(&writers[0].commits()[..5]);
    edit(&mut late, 1, 0, 99);
    edit(&mut late, 1, 2, 98);
    let (mut r, _) = disk.open();
    let mut full = disk.open_full();
    for c in late.commits() {
        r.insert(c.clone()).unwrap();
        full.insert(c).unwrap();
    }
    assert_eq!(state(&mut r), state(&mut full));
}

#[test]
fn a_peer_gets_old_commits_from_the_log() {
    let (disk, _) = store_with_history();
    let (mut server_repo, _) = disk.open();
    assert!(server_repo.is_sealed());
    let mut client = Repository::new(repo_path(), registry_v2());
    let mut rc = RepoClient::new(repo_path());
    let mut rs = RepoServe::new();
    let ctx = Ctx { verify: &|c| c.verify(), owner: 1, now: 0, salt: 0x5eed };
    let (begin, _) = rc.begin(&client);
    let mut to_server = vec![begin];
    for _ in 0..20 {
        let mut to_client = Vec::new();
        for f in to_server.drain(..) {
            let out = rs.handle(&mut server_repo, f, &ctx).unwrap();
            to_client.extend(out.now);
            to_client.extend(ibex_core::sync::server::commit_frames(&server_repo, &out.send));
            to_client.extend(out.after_flush);
        }
        if to_client.is_empty() {
            break;
        }
        for f in to_client {
            let h = rc.handle(&mut client, f, &|_| Ok(())).unwrap();
            to_server.extend(h.replies);
        }
    }
    let mut full = disk.open_full();
    assert_eq!(client.commit_count(), full.commit_count());
    assert_eq!(state(&mut client), state(&mut full));
}

#[test]
fn a_torn_checkpoint_is_detected_at_every_byte_and_nothing_is_lost() {
    let (disk, _) = store_with_history();
    let good = disk.ckpt.bytes();
    let mut full = disk.open_full();
    let want = state(&mut full);
    for cut in (0..good.len()).step_by(7).chain([good.len() - 1]) {
        let torn = Disk { log: MemStorage::from_bytes(disk.log.bytes()), ckpt: MemStorage::from_bytes(good[..cut].to_vec()) };
        let (mut r, report) = torn.open();
        assert!(matches!(report.checkpoint, CheckpointUse::Rebuilt(_)), "cut {cut}: {:?}", report.checkpoint);
        assert_eq!(state(&mut r), want, "cut {cut}");
        // And it was rebuilt: the next open uses it.
        let (_, again) = torn.open();
        assert!(matches!(again.checkpoint, CheckpointUse::Used { .. }), "cut {cut}: {:?}", again.checkpoint);
    }
}

#[test]
fn a_stale_checkpoint_is_never_trusted() {
    let (disk, _) = store_with_history();
    let log = disk.log.bytes();
    let ckpt = disk.ckpt.bytes();
    // The log lost its end (restored from an older backup): shorter than
    // what the checkpoint covers.
    let short = Disk { log: MemStorage::from_bytes(log[..log.len() / 2].to_vec()), ckpt: MemStorage::from_bytes(ckpt.clone()) };
    let (mut r, report) = short.open();
    assert!(matches!(report.checkpoint, CheckpointUse::Rebuilt(_)), "{:?}", report.checkpoint);
    assert_eq!(state(&mut r), state(&mut short.open_full()));
    // Another log of the same length: the record at the mark differs.
    let mut other = Disk::new();
    {
        let (mut o, _) = other.open();
        let mut w = Replica::with_registry(5, registry_v2());
        for i in 0..60 {
            edit(&mut w, i % 3, 0, i);
        }
        for c in w.commits() {
            o.insert(c).unwrap();
        }
        o.flush().unwrap();
    }
    other.ckpt = MemStorage::from_bytes(ckpt);
    let (mut r, report) = other.open();
    assert!(matches!(report.checkpoint, CheckpointUse::Rebuilt(_)), "{:?}", report.checkpoint);
    assert_eq!(state(&mut r), state(&mut other.open_full()));
}

/// Found by the property test: an item whose head came from the
/// checkpoint got a new commit after another item's fork had read the whole
/// history; the old head must not come back.
#[test]
fn a_checkpointed_head_never_outlives_a_newer_commit() {
    use Step::*;
    let steps = vec![
        Edit { w: 0, k: 3, kind: 0, n: 0 },
        Edit { w: 1, k: 0, kind: 0, n: 0 },
        Deliver { w: 1 },
        Edit { w: 0, k: 0, kind: 0, n: 0 },
        Edit { w: 2, k: 3, kind: 0, n: 0 },
        Checkpoint,
        Deliver { w: 2 },
        Edit { w: 0, k: 0, kind: 0, n: 1 },
    ];
    run(&steps).unwrap();
}

/// Storage that counts writes (appends and truncations).
struct Counting(MemStorage, std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Storage for Counting {
    fn len(&mut self) -> ibex_core::Result<u64> {
        self.0.len()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> ibex_core::Result<usize> {
        self.0.read_at(offset, buf)
    }
    fn append(&mut self, data: &[u8]) -> ibex_core::Result<()> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.append(data)
    }
    fn flush(&mut self) -> ibex_core::Result<()> {
        self.0.flush()
    }
    fn truncate(&mut self, len: u64) -> ibex_core::Result<()> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.truncate(len)
    }
}

#[test]
fn closing_without_new_commits_does_not_rewrite_the_checkpoint() {
    let (disk, _) = store_with_history();
    let writes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let open = || Repository::open_checkpointed(repo_path(), registry_v2(), Box::new(disk.log.clone()), Box::new(Counting(disk.ckpt.clone(), writes.clone()))).unwrap();
    // A tail after the checkpoint: closing writes a new one.
    let (mut r, report) = open();
    assert!(matches!(report.checkpoint, CheckpointUse::Used { tail: 1 }));
    r.write_checkpoint().unwrap();
    let after_tail = writes.load(std::sync::atomic::Ordering::SeqCst);
    assert!(after_tail > 0);
    // Now current: reading, history questions and closing write nothing.
    let (mut r, report) = open();
    assert!(matches!(report.checkpoint, CheckpointUse::Used { tail: 0 }), "{:?}", report.checkpoint);
    state(&mut r);
    r.history("item1").unwrap();
    r.write_checkpoint().unwrap();
    assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), after_tail, "nothing new, nothing rewritten");
    // A new commit makes it stale again.
    let mut w = Replica::with_registry(7, registry_v2());
    edit(&mut w, 9, 0, 1);
    for c in w.commits() {
        r.insert(c).unwrap();
    }
    r.flush().unwrap();
    r.write_checkpoint().unwrap();
    assert!(writes.load(std::sync::atomic::Ordering::SeqCst) > after_tail);
}

/// Storage that counts the bytes read from it.
struct CountingReads {
    inner: MemStorage,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Storage for CountingReads {
    fn len(&mut self) -> ibex_core::Result<u64> {
        self.inner.len()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> ibex_core::Result<usize> {
        let n = self.inner.read_at(offset, buf)?;
        self.read.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
        Ok(n)
    }
    fn append(&mut self, data: &[u8]) -> ibex_core::Result<()> {
        self.inner.append(data)
    }
    fn flush(&mut self) -> ibex_core::Result<()> {
        self.inner.flush()
    }
    fn truncate(&mut self, len: u64) -> ibex_core::Result<()> {
        self.inner.truncate(len)
    }
}

#[test]
fn the_commit_table_is_read_when_first_needed_and_damage_found_then_is_rebuilt() {
    use std::sync::atomic::Ordering::SeqCst;
    let (disk, _) = store_with_history();
    {
        // A checkpoint of everything: nothing after it in the log.
        let (mut r, _) = disk.open();
        r.write_checkpoint().unwrap();
    }
    let mut full = disk.open_full();
    let want = state(&mut full);
    let history = |r: &mut Repository| -> ibex_core::Result<Vec<CommitId>> { Ok(r.history("item1")?.into_iter().map(|e| e.id).collect()) };
    let want_history = history(&mut full).unwrap();
    let len = disk.ckpt.bytes().len() as u64;

    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let open_counted = |ckpt: MemStorage| Repository::open_checkpointed(repo_path(), registry_v2(), Box::new(disk.log.clone()), Box::new(CountingReads { inner: ckpt, read: read.clone() })).unwrap();
    let (mut r, report) = open_counted(disk.ckpt.clone());
    assert_eq!(report.checkpoint, CheckpointUse::Used { tail: 0 });
    let at_open = read.load(SeqCst);
    assert!(at_open + 40 * 62 <= len, "opening read {at_open} of {len} bytes: the table too");
    // Listing the heads (what the main thread's mirror gets) needs no table.
    let keys: Vec<String> = r.keys().map(str::to_owned).collect();
    let mut w = ibex_core::codec::Writer::new();
    for k in &keys {
        r.encode_head(k, &mut w);
    }
    assert_eq!(keys.len(), 4);
    assert_eq!(read.load(SeqCst), at_open);
    // History below the checkpoint reads it, once.
    assert_eq!(history(&mut r).unwrap(), want_history);
    let after = read.load(SeqCst);
    assert!(after >= len, "{after} of {len}");
    assert_eq!(state(&mut r), want);
    assert_eq!(history(&mut r).unwrap(), want_history);
    assert_eq!(read.load(SeqCst) - after, 0, "the table is read once");

    // Damaged after opening, before it was needed: found when it is needed,
    // reported, and the next open rebuilds the checkpoint from the log.
    let good = disk.ckpt.bytes();
    let damaged = MemStorage::from_bytes(good.clone());
    let (mut r, _) = open_counted(damaged.clone());
    let mut bad = good.clone();
    let last = bad.len() - 70;
    bad[last] ^= 0x10;
    let mut handle = damaged.clone();
    handle.truncate(0).unwrap();
    handle.append(&bad).unwrap();
    handle.flush().unwrap();
    let e = history(&mut r).unwrap_err();
    assert_eq!(e.code(), "ERR_STORAGE");
    assert!(e.to_string().contains("commit table"), "{e}");
    // Flushing and closing still work: the log is durable, only the
    // checkpoint is set aside.
    r.flush().unwrap();
    r.write_checkpoint().unwrap();
    drop(r);
    let (mut again, report) = open_counted(damaged.clone());
    assert!(matches!(report.checkpoint, CheckpointUse::Rebuilt(_)), "{:?}", report.checkpoint);
    assert_eq!(state(&mut again), want);
    assert_eq!(history(&mut again).unwrap(), want_history);
}
