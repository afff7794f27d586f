//! Crash and corruption recovery of a repository's log (DESIGN.md §5):
//! a torn final record at every byte offset, a flipped bit at every byte,
//! real files, and unflushed writes lost to a crash.

mod common;

use common::*;
use ibex_core::*;
use ibex_core::{compact, log};

/// A flushed log with commits on two items, and the commits in log order.
fn sample_log() -> (Vec<u8>, Vec<CommitId>) {
    let mut r = Replica::persistent(1);
    r.update("a", &v1(), &[put("title", Value::Str("first".into()))]);
    r.update("b", &v1(), &[put("tags", Value::Set([s("x"), s("y")].into())), put("body", Value::Text("hello".into()))]);
    r.update("a", &v1(), &[put("count", Value::Num(2.0))]);
    r.update("b", &v1(), &[put("body", Value::Text("hello world".into()))]);
    r.update("a", &v1(), &[Change::Deleted(true)]);
    r.repo.flush().unwrap();
    let bytes = r.storage.as_ref().unwrap().bytes();
    let ids = commits_of(&bytes).iter().map(|c| c.id).collect();
    (bytes, ids)
}

/// Where each commit's record starts (the record naming the repository
/// left out).
fn commit_starts(bytes: &[u8]) -> Vec<usize> {
    log::scan(bytes).unwrap().records.iter().filter(|(_, k, _)| *k != log::KIND_REPO).map(|(o, _, _)| *o as usize).collect()
}

/// The commits of a log image in log order (compact records expanded).
fn commits_of(bytes: &[u8]) -> Vec<SignedCommit> {
    let scan = log::scan(bytes).unwrap();
    compact::commits(bytes, &scan, repo_path().as_str()).into_iter().map(|(_, c)| SignedCommit::decode(&c.unwrap()).unwrap()).collect()
}

fn open(bytes: Vec<u8>) -> Result<(Repository, LoadReport, MemStorage)> {
    let storage = MemStorage::from_bytes(bytes);
    let (repo, report) = Repository::open(repo_path(), registry(), Box::new(storage.clone()))?;
    Ok((repo, report, storage))
}

/// Every commit among the first `n` of the log must be present.
fn state_of_prefix(bytes: &[u8], n: usize) -> std::collections::BTreeMap<String, (SchemaId, ItemData)> {
    let mut r = Repository::new(repo_path(), registry());
    for c in commits_of(bytes).into_iter().take(n) {
        r.insert(c).unwrap();
    }
    state(&mut r)
}

#[test]
fn torn_last_record_at_every_offset_keeps_all_complete_records() {
    let (full, ids) = sample_log();
    let scan = log::scan(&full).unwrap();
    let last_start = scan.records.last().unwrap().0 as usize;
    let want = state_of_prefix(&full, ids.len() - 1);
    for cut in last_start..full.len() {
        let (mut repo, report, storage) = open(full[..cut].to_vec()).unwrap();
        assert_eq!(report.truncated_bytes, (cut - last_start) as u64, "cut at {cut}");
        assert_eq!(report.commits, ids.len() - 1, "cut at {cut}");
        assert!(report.corrupt.is_empty());
        assert_eq!(state(&mut repo), want, "cut at {cut}");
        assert_eq!(storage.bytes(), full[..last_start], "the torn tail is cut off the file");
        // The log keeps working: a new write lands after the cut and survives reopening.
        let key = SessionKey::from_seed([9; 32]);
        repo.update("c", &v1(), &[put("count", Value::Num(7.0))], &key, 10_000).unwrap();
        repo.flush().unwrap();
        let (mut again, report, _) = open(storage.bytes()).unwrap();
        assert_eq!((report.commits, report.truncated_bytes), (ids.len(), 0));
        assert_eq!(state(&mut again), state(&mut repo));
    }
}

#[test]
fn a_flipped_bit_anywhere_never_panics_and_keeps_what_precedes_it() {
    let (full, ids) = sample_log();
    let starts = commit_starts(&full);
    for at in 0..full.len() {
        for bit in [0u8, 3, 7] {
            let mut bytes = full.clone();
            bytes[at] ^= 1 << bit;
            match open(bytes) {
                Err(e) => {
                    assert!(at < log::HEADER_LEN, "only a damaged header refuses to open (byte {at}): {e}");
                    assert_eq!(e.code(), "ERR_LOG_HEADER");
                }
                Ok((repo, report, _)) => {
                    // The record holding byte `at` (CRC-32 detects every single-bit error).
                    let Some(hit) = starts.iter().rposition(|s| *s <= at) else {
                        // The record naming the repository: the commits
                        // are read as this repository's, all of them.
                        assert!(ids.iter().all(|id| repo.contains_commit(id)), "byte {at}: lost a commit to damage before them");
                        continue;
                    };
                    for (i, id) in ids.iter().enumerate() {
                        if i < hit {
                            assert!(repo.contains_commit(id), "byte {at} bit {bit}: lost commit {i} before the damage");
                        }
                    }
                    assert!(!repo.contains_commit(&ids[hit]), "byte {at}: a damaged record was accepted");
                    let accounted = report.corrupt.len() + usize::from(report.truncated_bytes > 0);
                    assert!(accounted >= 1, "byte {at}: damage not reported");
                }
            }
        }
    }
}

#[test]
fn damage_in_the_middle_is_reported_and_later_records_survive() {
    let (full, ids) = sample_log();
    let starts = commit_starts(&full);
    // Damage the second commit's record; records 3.. are intact.
    let mut bytes = full.clone();
    bytes[starts[1] + 12] ^= 0xff;
    let (repo, report, storage) = open(bytes.clone()).unwrap();
    assert_eq!(report.corrupt.len(), 1);
    assert_eq!(report.corrupt[0].offset, starts[1] as u64);
    assert!(repo.contains_commit(&ids[0]) && !repo.contains_commit(&ids[1]));
    // Record 3 (item "a") does not depend on record 2 (item "b"): present.
    assert!(repo.contains_commit(&ids[2]));
    // Item "b"'s later commit names its parent by the damaged record's
    // place in the log: it cannot be read without it (its id is the hash of
    // bytes that hold the parent's id). Reported, not invented; peers that
    // hold both send them again.
    assert!(!repo.commit_ids().any(|c| c == ids[3]));
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].0, starts[3] as u64);
    assert!(report.rejected[0].1.to_string().contains("is not a commit of this log"), "{}", report.rejected[0].1);
    assert_eq!(storage.bytes(), bytes, "nothing after mid-log damage is truncated");
}

#[test]
fn file_backed_repository_reopens_equal_and_crash_loses_only_unflushed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/test.log");
    let key = SessionKey::from_seed([4; 32]);
    let live = {
        let (mut repo, _) = Repository::open(repo_path(), registry(), Box::new(FileStorage::open(&path).unwrap())).unwrap();
        for i in 0..50 {
            repo.update(&format!("k{}", i % 7), &v1(), &[put("count", Value::Num(i as f64)), put("body", Value::Text(format!("text {i}")))], &key, 1_000 + i).unwrap();
        }
        repo.flush().unwrap();
        state(&mut repo)
    };
    let (mut reopened, report) = Repository::open(repo_path(), registry(), Box::new(FileStorage::open(&path).unwrap())).unwrap();
    assert_eq!(report.commits, 50);
    assert_eq!(state(&mut reopened), live);

    let mem = MemStorage::new();
    let (mut repo, _) = Repository::open(repo_path(), registry(), Box::new(mem.clone())).unwrap();
    repo.update("durable", &v1(), &[put("count", Value::Num(1.0))], &key, 1).unwrap();
    repo.flush().unwrap();
    repo.update("lost", &v1(), &[put("count", Value::Num(2.0))], &key, 2).unwrap();
    let (mut after_crash, _) = Repository::open(repo_path(), registry(), Box::new(mem.crash())).unwrap();
    assert!(after_crash.head("durable").is_some());
    assert!(after_crash.head("lost").is_none());
}

#[test]
fn commits_from_another_repository_in_a_log_are_rejected_not_loaded() {
    let (full, ids) = sample_log();
    let elsewhere = RepoPath::parse("/data/elsewhere").unwrap();
    let (mut repo, report) = Repository::open(elsewhere, registry(), Box::new(MemStorage::from_bytes(full))).unwrap();
    assert_eq!(repo.commit_count(), 0);
    assert!(repo.head("a").is_none());
    assert_eq!(report.rejected.len(), ids.len());
    assert!(report.rejected[0].1.to_string().contains("belongs to /data/test"), "{}", report.rejected[0].1);
}

/// Commits kept outside a log (a server's shared database) load back as
/// from a log: the same heads, in any order, and nothing reported as new
/// when quiet; a commit of another repository or a malformed one is
/// refused with an error.
#[test]
fn trusted_commits_load_back_like_a_log() {
    let mut r = Replica::new(1);
    r.update("a", &v1(), &[put("title", Value::Str("first".into()))]);
    r.update("b", &v1(), &[put("body", Value::Text("hello".into()))]);
    r.update("a", &v1(), &[put("count", Value::Num(2.0))]);
    let rows: Vec<(CommitId, Box<[u8]>)> = r.repo.commits_in_order().iter().map(|c| (c.id, c.bytes().to_vec().into_boxed_slice())).collect();
    let want = r.state();
    let mut quiet = Repository::new(repo_path(), registry());
    assert_eq!(quiet.insert_trusted(rows.clone(), true), (3, vec![]));
    assert!(quiet.take_integrated().is_empty());
    assert_eq!(state(&mut quiet), want);
    // Children before parents still load (they wait for them), and a
    // non-quiet load reports what it integrated.
    let mut loud = Repository::new(repo_path(), registry());
    let (n, refused) = loud.insert_trusted(rows.iter().rev().cloned(), false);
    assert_eq!((n, refused.len()), (3, 0));
    assert_eq!(loud.take_integrated().len(), 3);
    assert_eq!(state(&mut loud), want);
    let mut other = Repository::new(RepoPath::parse("/data/other").unwrap(), registry());
    let (n, refused) = other.insert_trusted(rows.iter().take(1).cloned().chain([(CommitId([7; 32]), vec![1u8, 2, 3].into_boxed_slice())]), false);
    assert_eq!((n, refused.len()), (0, 2));
    assert_eq!(other.commit_count(), 0);
}
