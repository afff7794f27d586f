//! The operator's commands (`ibex-server revert|audit`, run as the real
//! binary) against a running server while clients stay connected.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use ibex_core::*;
use ibex_server::admin::{AdminRequest, SIGNATURE_HEADER, sign};

/// Runs `ibex-server <args>`: (exit status, stdout, stderr).
async fn cli(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ibex-server")).args(&args).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await
    .unwrap()
}

fn args(op: &str, addr: SocketAddr, key: &Path, rest: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![op.into(), "--url".into(), format!("http://{addr}"), "--root-key".into(), key.display().to_string(), "--repo".into(), "/data/todos".into()];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

fn title(c: &mut Client, key: &str) -> Option<Value> {
    c.state().into_iter().find(|(k, _)| k == key).and_then(|(_, d)| d.fields.get("title").cloned())
}

/// Receives (without starting a round) until `c` holds every commit of `ids`.
async fn receive_live(c: &mut Client, ids: &[CommitId]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ids.iter().all(|id| c.repo().contains_commit(id)) {
        assert!(Instant::now() < deadline, "the revert's commits were not relayed to the connected client");
        c.receive_one(Duration::from_millis(200)).await;
    }
}

/// POSTs a body with a signature header: (status line, body).
async fn post(addr: SocketAddr, path: &str, body: &[u8], sig: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{SIGNATURE_HEADER}: {sig}\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut resp = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut resp)).await;
    (resp.lines().next().unwrap_or_default().to_owned(), resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reverts_a_session_live_undoes_it_and_audits() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let key = shared_key();
    let (mut a, mut v) = (Client::new(1), Client::new(2));
    a.connect(srv.addr).await;
    v.connect(srv.addr).await;
    a.write("milk", "title", Value::Str("Milk".into()));
    a.write("bread", "title", Value::Str("Bread".into()));
    a.write("eggs", "title", Value::Str("Eggs".into()));
    a.sync().await;
    v.sync().await;
    // The vandal edits two items; then the first client edits one of them
    // again, in a field the vandal left alone.
    v.write("milk", "title", Value::Str("VANDAL".into()));
    v.write("bread", "title", Value::Str("VANDAL".into()));
    v.sync().await;
    a.sync().await;
    a.write("milk", "done", Value::Bool(true));
    a.sync().await;
    assert_eq!(title(&mut a, "milk"), Some(Value::Str("VANDAL".into())));
    let vandal = v.key.id().to_hex();

    // Revert the vandal's session while a stays connected.
    let (code, out, err) = cli(args("revert", srv.addr, &key, &["--session", &vandal])).await;
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    let ids: Vec<CommitId> = out.lines().map(|l| CommitId::from_hex(l).unwrap()).collect();
    assert_eq!(ids.len(), 2, "{out}");
    assert!(err.contains("2 item(s) touched") && err.contains("bread") && err.contains("milk"), "{err}");
    receive_live(&mut a, &ids).await;
    assert_eq!(title(&mut a, "milk"), Some(Value::Str("Milk".into())));
    assert_eq!(title(&mut a, "bread"), Some(Value::Str("Bread".into())));
    let milk = a.state().into_iter().find(|(k, _)| k == "milk").unwrap().1;
    assert_eq!(milk.fields.get("done"), Some(&Value::Bool(true)), "the first client's later edit stays");
    assert!(a.rejected.is_empty() && a.errors.is_empty(), "{:?} {:?}", a.rejected, a.errors);

    // Reverting the revert's commits gives the vandal's values back.
    let mut undo = Vec::new();
    for id in &ids {
        undo.push("--commit".to_string());
        undo.push(id.to_hex());
    }
    let undo: Vec<&str> = undo.iter().map(String::as_str).collect();
    let (code, out, err) = cli(args("revert", srv.addr, &key, &undo)).await;
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    let undo_ids: Vec<CommitId> = out.lines().map(|l| CommitId::from_hex(l).unwrap()).collect();
    assert_eq!(undo_ids.len(), 2);
    receive_live(&mut a, &undo_ids).await;
    assert_eq!(title(&mut a, "milk"), Some(Value::Str("VANDAL".into())));
    assert_eq!(title(&mut a, "bread"), Some(Value::Str("VANDAL".into())));
    let before = a.state();

    // A wrong root key is refused and changes nothing.
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, "22".repeat(32)).unwrap();
    let (code, out, err) = cli(args("revert", srv.addr, &wrong, &["--session", &vandal])).await;
    assert_eq!(code, 1, "stdout {out} stderr {err}");
    assert!(out.is_empty() && err.contains("ERR_BAD_SIGNATURE") && err.contains("root key"), "{err}");
    // An unknown repository, a server that is not there, a bad argument.
    let mut unknown = args("revert", srv.addr, &key, &["--session", &vandal]);
    unknown[6] = "/data/nope".into();
    let (code, _, err) = cli(unknown).await;
    assert!(code == 1 && err.contains("ERR_NOT_FOUND") && err.contains("/data/nope"), "{err}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (code, _, err) = cli(args("revert", closed, &key, &["--session", &vandal])).await;
    assert!(code == 1 && err.contains("cannot reach"), "{err}");
    let (code, _, err) = cli(args("revert", srv.addr, &key, &["--session", &vandal, "--since", "yesterday"])).await;
    assert!(code == 2 && err.contains("--since"), "{err}");
    a.sync().await;
    assert_eq!(a.state(), before, "refused requests changed nothing");

    // A signed request is accepted once; its replay, a stale one and one
    // signed for another endpoint are refused.
    let mut req = AdminRequest { op: "audit".into(), repo: "/data/todos".into(), time: now_ms(), nonce: "ab".repeat(16), ..Default::default() };
    let body = serde_json::to_vec(&req).unwrap();
    let sig = sign(&root_key(), &body);
    let (status, _) = post(srv.addr, "/admin/audit", &body, &sig).await;
    assert!(status.contains("200"), "{status}");
    let (status, reply) = post(srv.addr, "/admin/audit", &body, &sig).await;
    assert!(status.contains("401") && reply.contains("ERR_REPLAY"), "{status} {reply}");
    let (status, reply) = post(srv.addr, "/admin/revert", &body, &sig).await;
    assert!(status.contains("400") && reply.contains("ERR_DECODE"), "{status} {reply}");
    req.time -= 120_000;
    req.nonce = "cd".repeat(16);
    let body = serde_json::to_vec(&req).unwrap();
    let (status, reply) = post(srv.addr, "/admin/audit", &body, &sign(&root_key(), &body)).await;
    assert!(status.contains("401") && reply.contains("ERR_CLOCK"), "{status} {reply}");
    let (status, reply) = post(srv.addr, "/admin/audit", &body, "00").await;
    assert!(status.contains("401") && reply.contains("ERR_BAD_SIGNATURE"), "{status} {reply}");

    // The audit names the vandal's session and the values it changed.
    let (code, out, err) = cli(args("audit", srv.addr, &key, &["--session", &vandal])).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{out}");
    for l in &lines {
        assert_eq!(l["session"], vandal.as_str());
        assert!(l["user"].is_null());
        assert_eq!(l["schema"], "todo@1");
        assert_eq!(l["changes"][0]["field"], "title");
        assert_eq!(l["changes"][0]["after"], "VANDAL");
    }
    let keys: Vec<&str> = lines.iter().map(|l| l["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 2);
    let milk = lines.iter().find(|l| l["key"] == "milk").unwrap();
    assert_eq!(milk["changes"][0]["before"], "Milk");
    // The whole repository: every commit, the root's reverts included.
    let (code, out, _) = cli(args("audit", srv.addr, &key, &[])).await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 3 + 2 + 1 + 2 + 2, "{out}");
    assert!(out.contains(&srv.root), "the reverts are signed by the root");
    let (code, out, err) = cli(args("audit", srv.addr, &key, &["--limit", "1"])).await;
    assert!(code == 0 && out.lines().count() == 1 && err.contains("more changes"), "{out} {err}");
    let (code, _, err) = cli(args("audit", srv.addr, &key, &["--session", &vandal, "--commit", &ids[0].to_hex()])).await;
    assert!(code == 2 && err.contains("not both"), "{err}");
    srv.stop().await;
}

/// Keeps login links instead of e-mailing them.
#[derive(Default)]
struct Links(std::sync::Mutex<Vec<(String, String)>>);

impl ibex_server::login::LoginVerifier for Links {
    fn send(&self, email: &str, link: &str) -> Result<(), ibex_server::error::ServerError> {
        self.0.lock().unwrap().push((email.to_owned(), link.to_owned()));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_audits_and_reverts_a_user_across_sessions() {
    use ibex_core::sync::frame::Frame;
    let dir = tempfile::tempdir().unwrap();
    let links = std::sync::Arc::new(Links::default());
    let l2 = links.clone();
    let srv = server_with(dir.path(), move |c| c.verifier = l2).await;
    let key = shared_key();
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    a.write("milk", "title", Value::Str("Milk".into()));
    a.sync().await;
    // Mallory logs in on two devices and edits from both.
    let mut user = String::new();
    let mut devices = Vec::new();
    for n in [3u8, 4] {
        let mut m = Client::new(n);
        m.connect(srv.addr).await;
        m.send(&Frame::Login { email: "mallory@example.org".into() }).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !m.login_sent {
            assert!(Instant::now() < deadline, "no login link: {:?}", m.errors);
            m.receive_one(Duration::from_millis(200)).await;
        }
        let token = links.0.lock().unwrap().last().unwrap().1.split("ibex-login=").nth(1).unwrap().to_owned();
        m.user = None;
        m.send(&Frame::Redeem { token }).await;
        while m.user.is_none() {
            assert!(Instant::now() < deadline, "no welcome: {:?}", m.errors);
            m.receive_one(Duration::from_millis(200)).await;
        }
        user = m.user.clone().unwrap().0;
        m.sync().await;
        devices.push(m);
    }
    devices[0].write("milk", "title", Value::Str("spam".into()));
    devices[0].sync().await;
    devices[1].sync().await;
    devices[1].write("bread", "title", Value::Str("spam".into()));
    devices[1].sync().await;

    let (code, out, err) = cli(args("audit", srv.addr, &key, &["--user", &user])).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{out} {err}");
    assert!(lines.iter().all(|l| l["user"] == user.as_str()), "{out}");
    let sessions: std::collections::HashSet<&str> = lines.iter().map(|l| l["session"].as_str().unwrap()).collect();
    assert_eq!(sessions.len(), 2, "both devices' sessions");

    let (code, out, err) = cli(args("revert", srv.addr, &key, &["--user", &user])).await;
    assert_eq!(code, 0, "{err}");
    let ids: Vec<CommitId> = out.lines().map(|l| CommitId::from_hex(l).unwrap()).collect();
    assert_eq!(ids.len(), 2, "{out}");
    receive_live(&mut a, &ids).await;
    assert_eq!(title(&mut a, "milk"), Some(Value::Str("Milk".into())));
    let bread = a.state().into_iter().find(|(k, _)| k == "bread").unwrap().1;
    assert!(bread.deleted, "a creation reverts to a soft delete");
    // A user with no session here.
    let (code, _, err) = cli(args("revert", srv.addr, &key, &["--user", "u000000000000000000000000"])).await;
    assert!(code == 1 && err.contains("ERR_NOT_FOUND"), "{err}");
    srv.stop().await;
}
