//! Log formats (`log.rs`, `compact.rs`): a log written by format 1 — kept
//! as a fixture, `fixtures/log-v1`, written by the build before compact
//! records — opens with every commit, converts to format 2 when it has a
//! checkpoint beside it (and survives a crash at every step of that), stays
//! in format 1 without one; a log from a newer format is refused untouched;
//! a compact log keeps the commits' exact bytes, ids and signatures.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use ibex_core::*;
use ibex_core::{compact, log};

const V1_LOG: &[u8] = include_bytes!("fixtures/log-v1/log");
const V1_CHECKPOINT: &[u8] = include_bytes!("fixtures/log-v1/checkpoint");

/// The fixture's commits, read as format 1 stores them (canonical bytes),
/// each signature verified.
fn fixture_commits() -> Vec<SignedCommit> {
    let scan = log::scan(V1_LOG).unwrap();
    assert_eq!(scan.version, 1);
    scan.payloads(V1_LOG)
        .map(|(_, kind, p)| {
            assert_eq!(kind, log::KIND_COMMIT);
            let c = SignedCommit::decode(p).unwrap();
            c.verify().unwrap();
            c
        })
        .collect()
}

/// What a replica that received the fixture's commits shows.
fn expected() -> std::collections::BTreeMap<String, (SchemaId, ItemData)> {
    let mut r = Replica::with_registry(50, registry_v2());
    r.receive(&fixture_commits());
    r.state()
}

/// The commits of a log image as stored (compact records expanded).
fn commits_in(bytes: &[u8]) -> Vec<SignedCommit> {
    let scan = log::scan(bytes).unwrap();
    compact::commits(bytes, &scan, repo_path().as_str()).into_iter().map(|(_, c)| SignedCommit::decode(&c.unwrap()).unwrap()).collect()
}

fn open(log: &MemStorage, ckpt: &MemStorage) -> ibex_core::Result<(Repository, LoadReport)> {
    Repository::open_checkpointed(repo_path(), registry_v2(), Box::new(log.clone()), Box::new(ckpt.clone()))
}

#[test]
fn the_fixture_is_what_it_claims() {
    let commits = fixture_commits();
    assert_eq!(commits.len(), 59);
    let want = expected();
    assert_eq!(want["item1"].1.fields["name"], Value::Str("t200".into()));
    assert_eq!(want["item2"].1.fields["body"], Value::Text("éééééééé".into()));
    assert!(want["item3"].1.deleted);
    assert!(commits.iter().any(|c| c.commit.parents.len() == 2), "a fork was closed");
    assert!(commits.iter().any(|c| matches!(c.commit.body, Body::Delta { .. })));
}

#[test]
fn a_format_1_log_opens_and_converts_keeping_every_commit_byte_for_byte() {
    let (log_s, ckpt) = (MemStorage::from_bytes(V1_LOG.to_vec()), MemStorage::from_bytes(V1_CHECKPOINT.to_vec()));
    let (mut r, report) = open(&log_s, &ckpt).unwrap();
    assert_eq!(report.converted_from, Some(1));
    assert_eq!(report.commits, 59);
    assert!(report.corrupt.is_empty() && report.rejected.is_empty());
    // The old checkpoint is from format 1: not trusted, rebuilt.
    assert!(matches!(&report.checkpoint, CheckpointUse::Rebuilt(why) if why.contains("format 1")), "{:?}", report.checkpoint);
    assert_eq!(state(&mut r), expected());

    let converted = log_s.bytes();
    let scan = log::scan(&converted).unwrap();
    assert_eq!(scan.version, log::FORMAT_VERSION);
    assert!(scan.payloads(&converted).skip(1).all(|(_, k, _)| k == log::KIND_COMPACT));
    // Exactly the same commits (bytes, ids, signatures), in the same order.
    let after = commits_in(&converted);
    assert_eq!(after, fixture_commits());
    after.iter().for_each(|c| c.verify().unwrap());
    println!("format 1: {} bytes, format 2: {} bytes, 59 commits", V1_LOG.len(), converted.len());
    assert!(converted.len() * 2 < V1_LOG.len() + V1_LOG.len() / 5, "compact records: {} bytes, format 1: {}", converted.len(), V1_LOG.len());

    // Writes continue in the new format, and reopening uses the checkpoint.
    let key = SessionKey::from_seed([9; 32]);
    r.update("item0", &v2(), &[put("name", Value::Str("after".into()))], &key, 99_000).unwrap();
    r.flush().unwrap();
    drop(r);
    let (mut again, report) = open(&log_s, &ckpt).unwrap();
    assert!(matches!(report.checkpoint, CheckpointUse::Used { tail: 1 }), "{:?}", report.checkpoint);
    assert_eq!(report.converted_from, None);
    assert_eq!(again.head("item0").unwrap().data.fields["name"], Value::Str("after".into()));
    // History below the checkpoint is read from compact records.
    let mut full = Repository::open(repo_path(), registry_v2(), Box::new(MemStorage::from_bytes(log_s.bytes()))).unwrap().0;
    for k in ["item0", "item1", "item2", "item3"] {
        let h: Vec<CommitId> = again.history(k).unwrap().into_iter().map(|e| e.id).collect();
        let want: Vec<CommitId> = full.history(k).unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(h, want, "{k}");
        assert!(!h.is_empty());
    }
    assert_eq!(state(&mut again), state(&mut full));
}

#[test]
fn a_format_1_log_without_a_checkpoint_stays_readable_by_the_build_that_wrote_it() {
    let s = MemStorage::from_bytes(V1_LOG.to_vec());
    let (mut r, report) = Repository::open(repo_path(), registry_v2(), Box::new(s.clone())).unwrap();
    assert_eq!((report.commits, report.converted_from), (59, None));
    let key = SessionKey::from_seed([9; 32]);
    r.update("item0", &v2(), &[put("name", Value::Str("after".into()))], &key, 99_000).unwrap();
    r.flush().unwrap();
    let bytes = s.bytes();
    let scan = log::scan(&bytes).unwrap();
    assert_eq!(scan.version, 1);
    assert!(scan.payloads(&bytes).all(|(_, k, _)| k == log::KIND_COMMIT), "only records format 1 knows");
    assert_eq!(scan.records.len(), 60);
}

#[test]
fn a_log_from_a_newer_format_is_refused_untouched() {
    let mut newer = V1_LOG.to_vec();
    newer[8] = (log::FORMAT_VERSION + 1) as u8;
    let s = MemStorage::from_bytes(newer.clone());
    let e = open(&s, &MemStorage::new()).unwrap_err();
    assert_eq!(e.code(), "ERR_LOG_HEADER");
    assert!(e.to_string().contains("newer than this build supports"), "{e}");
    assert_eq!(s.bytes(), newer);
}

#[test]
fn a_compact_log_opened_as_another_repository_is_refused_not_expanded() {
    let (log_s, ckpt) = (MemStorage::from_bytes(V1_LOG.to_vec()), MemStorage::from_bytes(V1_CHECKPOINT.to_vec()));
    open(&log_s, &ckpt).unwrap();
    let elsewhere = RepoPath::parse("/data/elsewhere").unwrap();
    // With its checkpoint (which names the repository) and without.
    let (mut r, report) = Repository::open_checkpointed(elsewhere.clone(), registry_v2(), Box::new(MemStorage::from_bytes(log_s.bytes())), Box::new(MemStorage::from_bytes(ckpt.bytes()))).unwrap();
    assert_eq!(r.commit_count(), 0);
    assert!(matches!(&report.checkpoint, CheckpointUse::Rebuilt(why) if why.contains("belongs to /data/test")), "{:?}", report.checkpoint);
    assert_eq!(report.rejected.len(), 59);
    assert!(report.rejected[0].1.to_string().contains("belongs to /data/test"), "{}", report.rejected[0].1);
    assert!(r.head("item1").is_none());
}

/// Storage that refuses every operation once a shared budget is spent: a
/// crash at that point (what was flushed stays).
struct Cut {
    inner: MemStorage,
    left: Arc<AtomicUsize>,
}

impl Cut {
    fn step(&self) -> ibex_core::Result<()> {
        self.left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).map(|_| ()).map_err(|_| Error::Storage("crashed".into()))
    }
}

impl Storage for Cut {
    fn len(&mut self) -> ibex_core::Result<u64> {
        self.inner.len()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> ibex_core::Result<usize> {
        self.inner.read_at(offset, buf)
    }
    fn append(&mut self, data: &[u8]) -> ibex_core::Result<()> {
        self.step()?;
        self.inner.append(data)
    }
    fn flush(&mut self) -> ibex_core::Result<()> {
        self.step()?;
        self.inner.flush()
    }
    fn truncate(&mut self, len: u64) -> ibex_core::Result<()> {
        self.step()?;
        self.inner.truncate(len)
    }
}

#[test]
fn a_crash_at_any_step_of_a_conversion_loses_nothing() {
    let want = expected();
    let (mut completed, mut restored) = (false, 0);
    for budget in 0.. {
        let (log_s, ckpt) = (MemStorage::from_bytes(V1_LOG.to_vec()), MemStorage::from_bytes(V1_CHECKPOINT.to_vec()));
        let left = Arc::new(AtomicUsize::new(budget));
        let res = Repository::open_checkpointed(repo_path(), registry_v2(), Box::new(Cut { inner: log_s.clone(), left: left.clone() }), Box::new(Cut { inner: ckpt.clone(), left: left.clone() }));
        let finished = res.is_ok();
        drop(res);
        // Power cut: only what was flushed remains; then a normal open.
        let (log_s, ckpt) = (log_s.crash(), ckpt.crash());
        let (mut r, report) = open(&log_s, &ckpt).unwrap_or_else(|e| panic!("after a crash at step {budget}: {e}"));
        assert!(report.corrupt.is_empty() && report.rejected.is_empty(), "step {budget}: {report:?}");
        if matches!(&report.checkpoint, CheckpointUse::Rebuilt(why) if why.contains("cut short")) {
            restored += 1;
        }
        assert_eq!(state(&mut r), want, "after a crash at step {budget}");
        assert_eq!(commits_in(&log_s.bytes()), fixture_commits(), "step {budget}");
        assert_eq!(log::scan(&log_s.bytes()).unwrap().version, log::FORMAT_VERSION, "step {budget}: converted by the reopen");
        if finished {
            completed = true;
            break;
        }
    }
    assert!(completed);
    // Some crashes fell inside the rewrite itself: the journal restored it.
    assert!(restored >= 2, "{restored}");
}
