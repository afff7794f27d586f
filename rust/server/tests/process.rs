//! Faults of the real `ibex-server` binary (numbered as in the fault
//! review): `kill -9` right after an acknowledgement, a frozen server
//! (SIGSTOP), silent partitions and cuts through a TCP proxy while writers
//! write, and a real full disk (a small tmpfs, where the machine allows
//! mounting one). Clients speak the real protocol (`common::Client`).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ibex_core::sync::session::Timers;
use ibex_core::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Proc {
    child: Child,
    addr: SocketAddr,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn spawn_server(data: &Path, port: u16, extra: &[&str]) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_ibex-server"))
        .args(["--port", &port.to_string(), "--host", "127.0.0.1", "--data"])
        .arg(data)
        .arg("--root-key")
        .arg(shared_key())
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ibex-server binary");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t0 = Instant::now();
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            let (status, _) = http_get(addr, "/healthz").await;
            if status.contains("200") {
                break;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "the server did not start");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    Proc { child, addr }
}

impl Proc {
    fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
        if sig == libc::SIGSTOP {
            // kill() returns before every thread has stopped; on a loaded
            // machine one can still answer a frame. Wait for the event.
            let stopped = || {
                std::fs::read_dir(format!("/proc/{}/task", self.child.id())).into_iter().flatten().flatten().all(|t| {
                    let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                    // The state follows the parenthesised command name.
                    stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()).is_some_and(|st| st == "T" || st == "t")
                })
            };
            let t0 = Instant::now();
            while !stopped() {
                assert!(t0.elapsed() < Duration::from_secs(5), "the server did not stop on SIGSTOP");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn quick(c: &mut Client) {
    c.session.conn.set_timers(Timers { ping_interval: 500, pong_timeout: 700, handshake_timeout: 2_000 });
}

// 2. The server acknowledged before its write was durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f02_kill_9_right_after_an_acknowledgement_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut srv = spawn_server(dir.path(), port, &[]).await;
    let mut written = Vec::new();
    for run in 0..10 {
        let mut a = Client::new(1);
        a.connect(srv.addr).await;
        let id = a.write(&format!("run{run}"), "title", Value::Str(format!("acknowledged {run}")));
        a.flush_out().await;
        let t0 = Instant::now();
        while a.session.unacked() > 0 {
            assert!(t0.elapsed() < Duration::from_secs(5), "no acknowledgement");
            a.receive_one(Duration::from_millis(20)).await;
        }
        // The acknowledgement is in: kill the server at once, and forget the
        // client (nobody could restore the write).
        srv.kill9();
        drop(a);
        written.push(id);
        srv = spawn_server(dir.path(), port, &[]).await;
    }
    let mut b = Client::new(2);
    b.connect(srv.addr).await;
    b.sync().await;
    for id in &written {
        assert!(b.repo().contains_commit(id), "an acknowledged write was lost to kill -9");
    }
}

// 1. "Synced" was claimed while the server was frozen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f01_a_frozen_server_is_never_reported_as_synced() {
    let dir = tempfile::tempdir().unwrap();
    let srv = spawn_server(dir.path(), free_port(), &[]).await;
    let mut a = Client::new(1);
    quick(&mut a);
    a.connect(srv.addr).await;
    a.write("k", "title", Value::Str("before".into()));
    a.sync().await;
    assert!(a.session.synced(&a.repos, a.now()));
    srv.signal(libc::SIGSTOP);
    a.write("k2", "title", Value::Str("while frozen".into()));
    let r = a.try_sync(Duration::from_secs(2)).await;
    assert!(r.is_err(), "sync() resolved against a frozen server");
    // Nothing answers pings: "synced" turns false and the link is dropped.
    a.listen(Duration::from_secs(2)).await;
    assert!(!a.session.synced(&a.repos, a.now()));
    srv.signal(libc::SIGCONT);
    let t0 = Instant::now();
    loop {
        if a.ws.is_none() {
            let _ = a.try_connect(srv.addr).await;
        }
        if a.try_sync(Duration::from_secs(2)).await.is_ok() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "no sync after the server woke up");
    }
}

/// A TCP proxy whose links can be cut (mid-frame), stalled or silently
/// partitioned (bytes held, nobody told).
#[derive(Clone)]
struct Proxy {
    addr: SocketAddr,
    partitioned: Arc<AtomicBool>,
    cut: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = Proxy { addr: l.local_addr().unwrap(), partitioned: Arc::new(AtomicBool::new(false)), cut: Arc::new(Mutex::new(Vec::new())) };
        let q = p.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = l.accept().await {
                let Ok(out) = TcpStream::connect(target).await else { continue };
                let (mut ri, mut wi) = inbound.into_split();
                let (mut ro, mut wo) = out.into_split();
                let pa = q.partitioned.clone();
                let pb = q.partitioned.clone();
                let a = tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = ri.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        while pa.load(Relaxed) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        if wo.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let b = tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = ro.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        while pb.load(Relaxed) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        if wi.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                q.cut.lock().unwrap().extend([a.abort_handle(), b.abort_handle()]);
            }
        });
        p
    }

    /// Drops every link now, whatever is in flight.
    fn cut(&self) {
        for h in self.cut.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

/// Keeps a client connected through `addr` and writing every `every`,
/// until `stop`; returns it (with what it wrote).
async fn writer(n: u8, addr: SocketAddr, stop: Arc<AtomicBool>, every: Duration) -> (Client, usize) {
    let mut c = Client::new(n);
    quick(&mut c);
    let mut i = 0;
    while !stop.load(Relaxed) {
        if c.ws.is_none() {
            if c.try_connect(addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        }
        i += 1;
        c.write(&format!("w{n}-{i}"), "title", Value::Str(format!("{i}")));
        c.listen(every).await;
    }
    (c, i)
}

// 1 & 3. A silent partition was not noticed, and could leave a replica
//        permanently behind: five writers through proxies, with cuts mid-
//        frame, a stall and a partition, all converge to every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f03_writers_through_cuts_stalls_and_a_silent_partition_all_converge() {
    let dir = tempfile::tempdir().unwrap();
    let srv = spawn_server(dir.path(), free_port(), &[]).await;
    let mut proxies = Vec::new();
    for _ in 0..5 {
        proxies.push(Proxy::start(srv.addr).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (n, p) in proxies.iter().enumerate() {
        tasks.push(tokio::spawn(writer(n as u8 + 1, p.addr, stop.clone(), Duration::from_millis(20))));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Cuts mid-frame on two links.
    proxies[0].cut();
    proxies[1].cut();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A stall, then a silent partition of one writer for 3 s.
    proxies[2].partitioned.store(true, Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxies[2].partitioned.store(false, Relaxed);
    proxies[3].partitioned.store(true, Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxies[3].partitioned.store(false, Relaxed);
    proxies[4].cut();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Relaxed);
    let mut clients = Vec::new();
    let mut total = 0;
    for t in tasks {
        let (c, n) = t.await.unwrap();
        total += n;
        clients.push(c);
    }
    // Everyone syncs (reconnecting if a cut left them offline).
    for round in 0..2 {
        for (i, c) in clients.iter_mut().enumerate() {
            let t0 = Instant::now();
            loop {
                if c.ws.is_none() {
                    let _ = c.try_connect(proxies[i].addr).await;
                }
                if c.try_sync(Duration::from_secs(3)).await.is_ok() {
                    break;
                }
                assert!(t0.elapsed() < Duration::from_secs(20), "writer {i} never synced again (round {round})");
            }
        }
    }
    let want = clients[0].state();
    assert_eq!(want.len(), total, "{} items for {total} writes", want.len());
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.state(), want, "writer {i} differs");
        assert!(c.session.synced(&c.repos, c.now()));
    }
}

// 7. A full disk, for real: a small tmpfs (where mounting is allowed; the
//    same scenario with an injected storage error always runs in
//    `faults.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f07_a_real_full_disk_is_reported_and_its_backlog_flushed_when_space_returns() {
    let mnt = tempfile::tempdir().unwrap();
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"]).arg(mnt.path()).status().is_ok_and(|s| s.success());
    if !ok {
        println!("tmpfs cannot be mounted here: the full-disk scenario runs with injected errors (faults::f07)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _u = Unmount(mnt.path().to_owned());
    let data = mnt.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let port = free_port();
    let srv = spawn_server(&data, port, &[]).await;
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    a.write("first", "title", Value::Str("x".into()));
    a.sync().await;
    // Fill the disk, leaving a little room.
    let filler = mnt.path().join("filler");
    let free = {
        let st = nix_statvfs(mnt.path());
        st.saturating_sub(100 << 10)
    };
    std::fs::write(&filler, vec![0u8; free as usize]).unwrap();
    let big = "z".repeat(60 << 10);
    for i in 0..6 {
        a.write(&format!("big{i}"), "title", Value::Str(format!("{i}{big}")));
    }
    let r = a.try_sync(Duration::from_secs(3)).await;
    assert!(r.is_err(), "sync() resolved with the disk full");
    assert!(a.errors.iter().any(|(_, c)| c == "ERR_STORAGE"), "{:?}", a.errors);
    // Space returns; nobody writes; the backlog goes to disk.
    std::fs::remove_file(&filler).unwrap();
    let t0 = Instant::now();
    while a.session.unacked() > 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "the backlog was not flushed after space returned");
        a.receive_one(Duration::from_millis(100)).await;
    }
    srv.kill9();
    let srv = spawn_server(&data, port, &[]).await;
    let mut b = Client::new(2);
    b.connect(srv.addr).await;
    b.sync().await;
    assert_eq!(b.state().len(), 7);
}

fn nix_statvfs(p: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut s) != 0 {
            return 0;
        }
        s.f_bavail as u64 * s.f_frsize as u64
    }
}
