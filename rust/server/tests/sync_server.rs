//! ibex-server on 127.0.0.1 with in-process clients that speak the sync
//! protocol over real WebSockets (`common::Client`, driving the same
//! `ClientSession` as the browser engine).

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use ibex_core::sync::frame::Frame;
use ibex_core::*;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message as Ws;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_on_two_clients_converge_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let (mut a, mut b) = (Client::new(1), Client::new(2));
    a.connect(srv.addr).await;
    b.connect(srv.addr).await;
    a.write("milk", "title", Value::Str("Milk".into()));
    a.sync().await;
    b.sync().await;
    // Concurrent edits: different fields of the same todo, and new todos.
    a.write("milk", "title", Value::Str("Oat milk".into()));
    b.write("milk", "done", Value::Bool(true));
    b.write("bread", "title", Value::Str("Bread".into()));
    a.sync().await;
    b.sync().await;
    a.sync().await;
    assert_eq!(a.state(), b.state());
    let milk = &a.state()[1].1;
    assert_eq!(milk.fields.get("title"), Some(&Value::Str("Oat milk".into())));
    assert_eq!(milk.fields.get("done"), Some(&Value::Bool(true)));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_commits_are_pushed_to_other_clients_without_polling() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let (mut a, mut b) = (Client::new(1), Client::new(2));
    a.connect(srv.addr).await;
    b.connect(srv.addr).await;
    a.sync().await;
    b.sync().await;
    for i in 0..20 {
        let t0 = Instant::now();
        let id = a.write(&format!("k{i}"), "title", Value::Str(format!("live {i}")));
        a.flush_out().await;
        // b does nothing but listen: the server relays the commit (after
        // the certificate of a's session, the first time).
        let deadline = Instant::now() + Duration::from_secs(2);
        while !b.repo().contains_commit(&id) {
            assert!(Instant::now() < deadline, "edit {i} was not pushed");
            b.receive_one(Duration::from_millis(500)).await;
        }
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
    assert_eq!(a.state(), b.state());
    assert!(b.rejected.is_empty(), "{:?}", b.rejected);
    // Idle connections stay silent (no polling; pings only after 10 s).
    assert!(!b.receive_one(Duration::from_millis(300)).await);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_on_two_clients_reconcile_on_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let (mut a, mut b) = (Client::new(1), Client::new(2));
    a.write("shared", "title", Value::Str("start".into()));
    a.connect(srv.addr).await;
    a.sync().await;
    b.connect(srv.addr).await;
    b.sync().await;
    a.disconnect().await;
    b.disconnect().await;
    // Both offline: edit the same and different todos.
    a.write("shared", "title", Value::Str("edited offline by a".into()));
    b.write("shared", "done", Value::Bool(true));
    for i in 0..5 {
        a.write(&format!("a{i}"), "title", Value::Str("a".into()));
        b.write(&format!("b{i}"), "title", Value::Str("b".into()));
    }
    a.connect(srv.addr).await;
    b.connect(srv.addr).await;
    a.sync().await;
    b.sync().await;
    a.sync().await;
    assert_eq!(a.state(), b.state());
    assert_eq!(a.state().len(), 11);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lost_its_data_is_restored_by_its_clients() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let mut a = Client::new(1);
    for i in 0..30 {
        a.write(&format!("k{i}"), "title", Value::Str(format!("t{i}")));
    }
    a.connect(srv.addr).await;
    a.sync().await;
    srv.stop().await;
    a.disconnect().await;

    // Persisted: a fresh client gets everything from a restarted server.
    let srv = server(dir.path()).await;
    let mut b = Client::new(2);
    b.connect(srv.addr).await;
    b.sync().await;
    assert_eq!(b.state(), a.state());
    srv.stop().await;

    // Disk lost: the next client to connect restores the server (its
    // certificate included: the server writes it again before a's commits).
    let empty = tempfile::tempdir().unwrap();
    let srv = server(empty.path()).await;
    a.connect(srv.addr).await;
    a.sync().await;
    let mut c = Client::new(3);
    c.connect(srv.addr).await;
    c.sync().await;
    assert_eq!(c.state(), a.state());
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    for garbage in [vec![0xff, 0x00, 0x13], vec![2, 0x05]] {
        let (mut bad, _) = connect_async(format!("ws://{}/sync", srv.addr)).await.unwrap();
        bad.send(Ws::Binary(garbage.into())).await.unwrap();
        let reason = loop {
            // hello and an error frame come first.
            match tokio::time::timeout(Duration::from_secs(2), bad.next()).await.unwrap() {
                Some(Ok(Ws::Binary(_))) => continue,
                Some(Ok(Ws::Close(Some(f)))) => break f.reason.to_string(),
                other => panic!("expected a close frame, got {other:?}"),
            }
        };
        assert!(reason.contains("malformed") || reason.contains("authenticate"), "{reason}");
    }
    // A forged commit is rejected and never relayed or stored.
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    let id = a.write("k", "title", Value::Str("real".into()));
    a.sync().await;
    let mut forged = a.repo().commit(&id).unwrap().bytes().to_vec();
    let n = forged.len();
    forged[n - 1] ^= 1;
    a.send(&Frame::Commits { repo: repo_path(), commits: vec![forged] }).await;
    // The sender is told; the server stays healthy for everyone else.
    a.listen(Duration::from_millis(300)).await;
    assert!(a.errors.iter().any(|(r, c)| r == "/data/todos" && c == "ERR_BAD_SIGNATURE"), "{:?}", a.errors);
    let mut b = Client::new(2);
    b.connect(srv.addr).await;
    b.sync().await;
    assert_eq!(b.state(), a.state());
    let (status, body) = http_get(srv.addr, "/healthz").await;
    assert!(status.contains("200") && body == "ok", "{status} {body}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peered_servers_with_clients_on_each_converge() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a_srv = server(da.path()).await;
    let b_srv = peered(db.path(), a_srv.addr).await;
    let (mut c1, mut c2) = (Client::new(1), Client::new(2));
    c1.connect(a_srv.addr).await;
    c2.connect(b_srv.addr).await;
    for i in 0..10 {
        c1.write(&format!("one{i}"), "title", Value::Str("on server a".into()));
        c2.write(&format!("two{i}"), "title", Value::Str("on server b".into()));
    }
    c1.write("both", "title", Value::Str("from c1".into()));
    c2.write("both", "done", Value::Bool(true));
    let mut want = None;
    for _ in 0..200 {
        c1.sync().await;
        c2.sync().await;
        if c1.state() == c2.state() && c1.state().len() == 21 {
            want = Some(c1.state());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let want = want.expect("clients on peered servers did not converge");
    let both = &want.iter().find(|(k, _)| k == "both").unwrap().1;
    assert_eq!(both.fields.get("title"), Some(&Value::Str("from c1".into())));
    assert_eq!(both.fields.get("done"), Some(&Value::Bool(true)));
    // Live: a commit on server a reaches the client of server b by relay.
    let id = c1.write("live", "title", Value::Str("across servers".into()));
    c1.flush_out().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !c2.repo().contains_commit(&id) {
        assert!(Instant::now() < deadline, "not relayed across the peering");
        c2.receive_one(Duration::from_millis(200)).await;
    }
    b_srv.stop().await;
    a_srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lost_its_data_is_restored_by_its_peer() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b_srv = server(db.path()).await;
    let mut c1 = Client::new(1);
    for i in 0..25 {
        c1.write(&format!("k{i}"), "title", Value::Str(format!("t{i}")));
    }
    c1.connect(b_srv.addr).await;
    c1.sync().await;
    // Server a starts with an empty disk, peered with b: a client of a
    // gets everything, through a's reconciliation with b.
    let a_srv = peered(da.path(), b_srv.addr).await;
    let mut c2 = Client::new(2);
    c2.connect(a_srv.addr).await;
    let want = c1.state();
    sync_until(&mut c2, &want).await;
    // And a persisted it: restarted alone, it still has the data.
    a_srv.stop().await;
    let a_again = server(da.path()).await;
    let mut c3 = Client::new(3);
    c3.connect(a_again.addr).await;
    c3.sync().await;
    assert_eq!(c3.state(), want);
    a_again.stop().await;
    b_srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_difference_converges_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let mut c1 = Client::new(1);
    for i in 0..600 {
        c1.write(&format!("k{}", i % 200), "title", Value::Str(format!("v{i}")));
    }
    c1.connect(srv.addr).await;
    c1.sync().await;
    let mut c2 = Client::new(2);
    for i in 0..50 {
        c2.write(&format!("mine{i}"), "title", Value::Str("c2".into()));
    }
    c2.connect(srv.addr).await;
    c2.sync().await;
    c1.sync().await;
    assert_eq!(c2.state(), c1.state());
    assert_eq!(c2.repo().pending_count(), 0);
    srv.stop().await;
}

/// A client that only reads — live pushes arrive, it writes nothing — still
/// shows the server it is there (its session pings when it has sent nothing
/// for a while), so it is not closed as idle however long it listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_only_reads_is_not_closed_as_idle() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| c.limits.idle_timeout = Duration::from_secs(2)).await;
    let fast = ibex_core::sync::Timers { ping_interval: 500, ..Default::default() };
    let mut writer = Client::new(1);
    let mut reader = Client::new(2);
    writer.session.conn.set_timers(fast);
    reader.session.conn.set_timers(fast);
    writer.connect(srv.addr).await;
    reader.connect(srv.addr).await;
    writer.sync().await;
    reader.sync().await;
    // Five seconds of pushes (2.5 idle timeouts): the reader sends nothing
    // but its pings.
    let end = Instant::now() + Duration::from_secs(5);
    let mut written = 0;
    while Instant::now() < end {
        writer.write("k", "title", Value::Str(format!("v{written}")));
        written += 1;
        writer.listen(Duration::from_millis(100)).await;
        reader.listen(Duration::from_millis(100)).await;
    }
    assert!(reader.closed.is_none(), "the reader was closed: {:?}", reader.closed);
    writer.sync().await;
    reader.sync().await;
    assert_eq!(reader.state(), writer.state());
    srv.stop().await;
}
