//! Faults against the real server in-process (numbered as in the fault
//! review): commits arriving out of order, repositories created after
//! peering started, damaged logs, full disks, concurrent writers, one
//! broken repository among healthy ones. Crashes, freezes and partitions
//! of the real binary are in `process.rs`; random combinations of all of
//! them in ibex-core's `simulation.rs`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::*;
use ibex_core::sync::frame::Frame;
use ibex_core::*;
use ibex_server::config::StorageFactory;

// 4. A commit that arrived before its parent was not relayed when the
//    parent arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f04_a_commit_that_arrived_before_its_parent_is_relayed_when_the_parent_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let mut observer = Client::new(2);
    observer.connect(srv.addr).await;
    observer.sync().await;
    let mut a = Client::new(1);
    let parent = a.write("k", "title", Value::Str("parent".into()));
    let child = a.write("k", "title", Value::Str("child".into()));
    a.connect(srv.addr).await;
    let bytes = |id: &CommitId, a: &Client| a.repo().commit(id).unwrap().bytes().to_vec();
    // The child first (it waits for its parent), then the parent.
    a.send(&Frame::Commits { repo: repo_path(), commits: vec![bytes(&child, &a)] }).await;
    a.listen(Duration::from_millis(200)).await;
    a.send(&Frame::Commits { repo: repo_path(), commits: vec![bytes(&parent, &a)] }).await;
    let t0 = Instant::now();
    while !observer.repo().contains_commit(&child) {
        assert!(t0.elapsed() < Duration::from_secs(3), "the unblocked child was not relayed");
        observer.receive_one(Duration::from_millis(100)).await;
    }
    assert_eq!(observer.state()[0].1.fields.get("title"), Some(&Value::Str("child".into())));
    srv.stop().await;
}

// 5. A repository created on one server after peering started was never
//    replicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f05_a_repository_created_after_peering_started_reaches_the_peer() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a_srv = server(da.path()).await;
    let b_srv = peered(db.path(), a_srv.addr).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (writer_on, reader_on, name) in [(a_srv.addr, b_srv.addr, "/data/made-on-a"), (b_srv.addr, a_srv.addr, "/data/made-on-b")] {
        let path = RepoPath::parse(name).unwrap();
        let mut w = Client::with_repo(1, path.clone());
        w.connect(writer_on).await;
        for i in 0..20 {
            w.write(&format!("k{i}"), "title", Value::Str(format!("{i}")));
        }
        w.sync().await;
        let want = w.state();
        let mut r = Client::with_repo(2, path);
        r.connect(reader_on).await;
        sync_until(&mut r, &want).await;
    }
    b_srv.stop().await;
    a_srv.stop().await;
}

/// Damages the first byte of a file.
fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0xff;
    std::fs::write(path, b).unwrap();
}

// 6. A damaged log header made data unreachable; middle damage was silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f06_damaged_logs_are_set_aside_reported_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    for i in 0..10 {
        a.write(&format!("k{i}"), "title", Value::Str(format!("{i}")));
    }
    a.sync().await;
    let want = a.state();
    srv.stop().await;
    a.disconnect().await;
    // Both a data log's and /sys/sessions' headers damaged.
    flip(&dir.path().join("data/todos.log"), 0);
    flip(&dir.path().join("sys/sessions.log"), 3);
    let srv = server(dir.path()).await;
    // The server started; the damaged files were kept for inspection.
    let aside = |d: &str| std::fs::read_dir(dir.path().join(d)).unwrap().flatten().any(|e| e.file_name().to_string_lossy().contains(".damaged-"));
    a.connect(srv.addr).await;
    a.sync().await;
    assert!(aside("data") && aside("sys"), "damaged logs were not moved aside");
    assert!(srv.metrics.damaged_logs.load(Relaxed) >= 2);
    let (_, m) = http_get(srv.addr, "/metrics").await;
    assert!(m.lines().any(|l| l.starts_with("ibex_damaged_logs_total") && !l.ends_with(" 0")), "{m}");
    // a restored both (its commits, its certificate); a new client sees all.
    let mut b = Client::new(2);
    b.connect(srv.addr).await;
    sync_until(&mut b, &want).await;
    assert!(b.rejected.is_empty(), "{:?}", b.rejected);
    srv.stop().await;
    // Damage in the middle of a log is reported too.
    let log = dir.path().join("data/todos.log");
    let len = std::fs::metadata(&log).unwrap().len() as usize;
    flip(&log, len / 2);
    let srv = server(dir.path()).await;
    let mut c = Client::new(3);
    c.connect(srv.addr).await;
    c.sync().await;
    assert!(srv.metrics.damaged_logs.load(Relaxed) >= 1, "mid-log damage went unreported");
    srv.stop().await;
}

/// Files whose writes and flushes fail while `full` is set (a full disk).
struct FullDisk(Arc<AtomicBool>);

struct FullFile(FileStorage, Arc<AtomicBool>);

impl Storage for FullFile {
    fn len(&mut self) -> Result<u64> {
        self.0.len()
    }
    fn read_at(&mut self, o: u64, b: &mut [u8]) -> Result<usize> {
        self.0.read_at(o, b)
    }
    fn append(&mut self, d: &[u8]) -> Result<()> {
        if self.1.load(Relaxed) {
            self.0.append(&d[..d.len() / 2])?;
            return Err(Error::Storage("No space left on device (os error 28)".into()));
        }
        self.0.append(d)
    }
    fn flush(&mut self) -> Result<()> {
        if self.1.load(Relaxed) {
            return Err(Error::Storage("No space left on device (os error 28)".into()));
        }
        self.0.flush()
    }
    fn truncate(&mut self, len: u64) -> Result<()> {
        self.0.truncate(len)
    }
}

impl StorageFactory for FullDisk {
    fn open(&self, path: &Path) -> Result<Box<dyn Storage>> {
        Ok(Box::new(FullFile(FileStorage::open_private(path)?, self.0.clone())))
    }
}

// 7. A full disk: sync() resolved while nothing was stored; the backlog
//    waited for traffic after space returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f07_a_full_disk_refuses_acknowledgements_and_flushes_its_backlog_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(AtomicBool::new(false));
    let f = full.clone();
    let srv = server_with(dir.path(), move |c| c.storage = Some(Arc::new(FullDisk(f)))).await;
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    a.write("before", "title", Value::Str("fine".into()));
    a.sync().await;
    full.store(true, Relaxed);
    for i in 0..5 {
        a.write(&format!("k{i}"), "title", Value::Str("while full".into()));
    }
    let r = a.try_sync(Duration::from_secs(2)).await;
    assert!(r.is_err(), "sync() resolved while the server could not store anything");
    assert!(a.session.unacked() >= 5);
    assert!(a.errors.iter().any(|(_, c)| c == "ERR_STORAGE"), "the client was not told: {:?}", a.errors);
    // Space returns; nobody writes; the backlog is flushed and acknowledged.
    full.store(false, Relaxed);
    let t0 = Instant::now();
    while a.session.unacked() > 0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "the backlog was not flushed after space returned");
        a.receive_one(Duration::from_millis(100)).await;
    }
    a.sync().await;
    srv.stop().await;
    // And it is on disk: a restarted server has everything.
    let srv = server(dir.path()).await;
    let mut b = Client::new(2);
    b.connect(srv.addr).await;
    b.sync().await;
    assert_eq!(b.state().len(), 6);
    srv.stop().await;
}

// 8. Reconciliation gave up under concurrent writers ("did not converge
//    after 64 rounds").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f08_rounds_end_while_three_writers_write_every_5_ms() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let addr = srv.addr;
    let mut tasks = Vec::new();
    for n in 1..=3u8 {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(n);
            c.connect(addr).await;
            let t0 = Instant::now();
            let mut i = 0;
            let mut rounds = 0;
            while t0.elapsed() < Duration::from_secs(3) {
                i += 1;
                c.write(&format!("c{n}-{}", i % 40), "title", Value::Str(format!("{i}")));
                c.flush_out().await;
                c.receive_one(Duration::from_millis(5)).await;
                if i % 40 == 0 {
                    // A round while everyone keeps writing: it must end.
                    c.try_sync(Duration::from_secs(5)).await.unwrap_or_else(|e| panic!("client {n}: {e}"));
                    rounds += 1;
                }
            }
            assert!(c.ws.is_some(), "client {n} was disconnected: {:?}", c.closed);
            (c, rounds)
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        let (c, rounds) = t.await.unwrap();
        assert!(rounds >= 3);
        clients.push(c);
    }
    for c in clients.iter_mut() {
        c.sync().await;
    }
    for c in clients.iter_mut() {
        c.sync().await;
    }
    let want = clients[0].state();
    for c in clients.iter_mut() {
        assert_eq!(c.state(), want);
        assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    }
    srv.stop().await;
}

// 8b. A client joining a busy repository had valid commits refused
//     (a commit before its writer's certificate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f08b_a_client_joining_a_repository_of_many_writers_refuses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    for n in 1..=5u8 {
        let mut w = Client::new(n);
        w.connect(srv.addr).await;
        for i in 0..200 {
            w.write(&format!("w{n}-{i}"), "title", Value::Str(format!("{i}")));
        }
        w.sync().await;
    }
    for n in 10..15u8 {
        let mut j = Client::new(n);
        j.connect(srv.addr).await;
        j.sync().await;
        assert_eq!(j.repo().commit_count(), 1000);
        assert!(j.rejected.is_empty(), "valid commits refused: {:?}", j.rejected);
    }
    srv.stop().await;
}

// 9. One damaged repository blocked a client's other repositories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f09_a_repository_that_fails_on_the_server_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    // A log that cannot be opened (a directory where the file should be).
    std::fs::create_dir_all(dir.path().join("data/broken.log/x")).unwrap();
    let srv = server(dir.path()).await;
    let broken = RepoPath::parse("/data/broken").unwrap();
    let mut a = Client::new(1);
    a.add_repo(&broken);
    a.connect(srv.addr).await;
    a.write("k", "title", Value::Str("healthy".into()));
    a.flush_out().await;
    a.listen(Duration::from_secs(1)).await;
    assert!(a.ws.is_some(), "the connection was dropped because of another repository");
    assert!(a.errors.iter().any(|(r, c)| r == "/data/broken" && c == "ERR_STORAGE"), "{:?}", a.errors);
    let mut b = Client::new(2);
    b.connect(srv.addr).await;
    b.sync().await;
    assert_eq!(b.state().len(), 1, "a write to the healthy repository did not reach anyone");
    srv.stop().await;
}

// Checkpoints on the server: written beside each data log when a
// repository closes (not for /sys/sessions, read whole into the trust
// store); a restart opens from them; a torn one is never trusted: the log
// is scanned, nothing is lost, and a whole checkpoint is written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f11_checkpoints_beside_each_log_and_a_torn_one_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    for i in 0..50 {
        a.write(&format!("k{i}"), "title", Value::Str(format!("item {i}")));
    }
    a.sync().await;
    let want = a.state();
    srv.stop().await;
    a.disconnect().await;
    let ckpt = dir.path().join("data/todos.ckpt");
    let whole = std::fs::read(&ckpt).expect("a checkpoint beside data/todos.log");
    assert!(whole.starts_with(b"IBEXCKPT"), "not a checkpoint: {} bytes", whole.len());
    assert!(!dir.path().join("sys/sessions.ckpt").exists());

    // Reopened from the checkpoint: a new client gets everything.
    let srv = server(dir.path()).await;
    let mut b = Client::new(2);
    b.connect(srv.addr).await;
    sync_until(&mut b, &want).await;
    srv.stop().await;
    b.disconnect().await;

    // Torn: half of it. Everything is still served, and it is rewritten.
    std::fs::write(&ckpt, &whole[..whole.len() / 2]).unwrap();
    let srv = server(dir.path()).await;
    let mut c = Client::new(3);
    c.connect(srv.addr).await;
    sync_until(&mut c, &want).await;
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    srv.stop().await;
    assert_eq!(std::fs::read(&ckpt).unwrap().len(), whole.len(), "the torn checkpoint was not rebuilt");
}
