//! ibex-server's security over real WebSockets on 127.0.0.1: certification,
//! login links, read and write rules, replayed handshakes, hostile frames.
//! Each test is named after what it proves (listed in the README).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use ibex_core::sync::frame::{Frame, Role, auth_payload};
use ibex_core::*;
use ibex_server::login::LoginVerifier;
use ibex_server::{Running, start};
use tokio_tungstenite::tungstenite::Message as Ws;

/// A login verifier that keeps the links instead of e-mailing them.
#[derive(Default)]
pub struct Links(Mutex<Vec<(String, String)>>);

impl LoginVerifier for Links {
    fn send(&self, email: &str, link: &str) -> Result<(), ibex_server::error::ServerError> {
        self.0.lock().unwrap().push((email.to_owned(), link.to_owned()));
        Ok(())
    }
}

impl Links {
    fn token_for(&self, email: &str) -> String {
        let links = self.0.lock().unwrap();
        let (_, link) = links.iter().rev().find(|(e, _)| e == email).expect("a link was sent");
        link.split("ibex-login=").nth(1).unwrap().to_owned()
    }
}

async fn secure_server(data: &std::path::Path, rules: Option<&str>, ttl: Duration) -> (Running, Arc<Links>) {
    let links = Arc::new(Links::default());
    let mut c = config(data, &shared_key());
    c.verifier = links.clone();
    c.login_ttl = ttl;
    c.rules = rules.map(str::to_owned);
    (start(c).await.unwrap(), links)
}

/// Receives frames until `done` holds (or fails after 5 s).
async fn until(c: &mut Client, what: &str, done: impl Fn(&Client) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !done(c) {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}; errors: {:?}", c.errors);
        c.receive_one(Duration::from_millis(200)).await;
    }
}

/// Logs `c` in as `email` through a link; returns the user id.
async fn login(c: &mut Client, links: &Links, email: &str) -> String {
    c.login_sent = false;
    c.send(&Frame::Login { email: email.into() }).await;
    until(c, "login-sent", |c| c.login_sent).await;
    c.user = None;
    c.send(&Frame::Redeem { token: links.token_for(email) }).await;
    until(c, "welcome", |c| c.user.is_some()).await;
    let (user, mail) = c.user.clone().unwrap();
    assert_eq!(mail, email);
    assert!(!user.is_empty());
    user
}

fn user_repo(user: &str) -> RepoPath {
    RepoPath::parse(&format!("/user/{user}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_certified_by_the_root_and_anonymous_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _) = secure_server(dir.path(), None, Duration::from_secs(600)).await;
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    assert_eq!(a.user, Some((String::new(), String::new())));
    let t = a.session.trust();
    let cert = t.certificate(&a.key.id()).expect("own certificate");
    assert_eq!(cert.owner, None);
    assert!(cert.expires > now_ms() + 29 * 24 * 3600 * 1000);
    assert_eq!(t.principal(&a.key.id(), now_ms()), Principal::Session { user: None });
    // Another client learns a's certificate with a's first commit it
    // receives — signed by the root — and nothing of sessions it never sees.
    let mut b = Client::new(2);
    b.connect(srv.addr).await;
    let mut c = Client::new(3);
    c.connect(srv.addr).await;
    c.sync().await;
    a.write("k", "title", Value::Str("x".into()));
    a.sync().await;
    b.sync().await;
    assert!(b.session.trust().certificate(&a.key.id()).is_some());
    assert!(b.session.trust().certificate(&c.key.id()).is_none(), "c never wrote: its certificate is not sent");
    assert!(b.rejected.is_empty());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_write_to_another_users_repository_is_rejected_by_the_server() {
    let dir = tempfile::tempdir().unwrap();
    // /pub/{user}: every session reads, only the owner writes — so the
    // write rule (not the read rule) is what refuses bob.
    let (srv, links) = secure_server(dir.path(), Some("/pub/{user} session owner\n/data/* session session"), Duration::from_secs(600)).await;
    let mut alice = Client::new(1);
    alice.connect(srv.addr).await;
    let alice_id = login(&mut alice, &links, "alice@example.org").await;
    let mut bob = Client::with_repo(2, RepoPath::parse(&format!("/pub/{alice_id}")).unwrap());
    bob.connect(srv.addr).await;
    login(&mut bob, &links, "bob@example.org").await;
    // Bob's own replica refuses the write (rules); a hostile bob sends it anyway.
    let clock = now_ms();
    let id = bob.repo_mut().update("evil", &todo(), &[Change::Put { field: "title".into(), value: Value::Str("written by bob".into()) }], &SessionKey::from_seed([2; 32]), clock).unwrap().unwrap();
    let bytes = bob.repo().commit(&id).unwrap().bytes().to_vec();
    bob.send(&Frame::Commits { repo: bob.path.clone(), commits: vec![bytes] }).await;
    until(&mut bob, "an error frame", |c| c.errors.iter().any(|(_, code)| code == "ERR_FORBIDDEN")).await;
    assert!(srv.metrics.rejected_commits.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    // Not stored, not relayed: a reader of alice's repository sees nothing.
    let mut reader = Client::with_repo(3, RepoPath::parse(&format!("/pub/{alice_id}")).unwrap());
    reader.connect(srv.addr).await;
    reader.sync().await;
    assert!(reader.state().is_empty());
    // Alice herself may write there.
    let mut alice2 = Client::with_repo(1, RepoPath::parse(&format!("/pub/{alice_id}")).unwrap());
    alice2.connect(srv.addr).await;
    alice2.write("fine", "title", Value::Str("mine".into()));
    alice2.sync().await;
    reader.sync().await;
    assert_eq!(reader.state().len(), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_read_is_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, links) = secure_server(dir.path(), None, Duration::from_secs(600)).await;
    let mut alice = Client::new(1);
    alice.connect(srv.addr).await;
    let alice_id = login(&mut alice, &links, "alice@example.org").await;
    let mut own = Client::with_repo(1, user_repo(&alice_id));
    own.connect(srv.addr).await;
    assert_eq!(own.user.as_ref().unwrap().0, alice_id, "the login survives reconnecting");
    own.write("secret", "title", Value::Str("alice's secret".into()));
    own.sync().await;
    for (n, who) in [(2u8, Some("bob@example.org")), (3, None)] {
        let mut other = Client::with_repo(n, user_repo(&alice_id));
        other.connect(srv.addr).await;
        if let Some(email) = who {
            login(&mut other, &links, email).await;
        }
        // Ask for the repository: an error, and no commit of it, ever.
        other.session.sync_now(&mut other.repos);
        until(&mut other, "a read refusal", |c| c.errors.iter().any(|(r, code)| r == user_repo(&alice_id).as_str() && code == "ERR_FORBIDDEN")).await;
        other.listen(Duration::from_millis(300)).await;
        assert!(other.state().is_empty() && other.repo().commit_count() == 0, "{who:?} received alice's data");
        assert!(other.session.denied().contains(&user_repo(&alice_id)));
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_handshake_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _) = secure_server(dir.path(), None, Duration::from_secs(600)).await;
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    // What an eavesdropper recorded: a's auth for that connection's nonce.
    let Ok(Frame::Hello { nonce, root, .. }) = Frame::decode(a.hello.as_ref().unwrap()) else { panic!() };
    let cn = [5u8; 32];
    let recorded = Frame::Auth { version: 2, role: Role::Client, session: a.key.id(), nonce: cn, sig: a.key.sign(&auth_payload(Role::Client, &nonce, &cn, &root)) };
    let mut replay = Client::raw(srv.addr).await;
    let Some(Ok(Ws::Binary(hello))) = replay.next().await else { panic!("no hello") };
    let Frame::Hello { nonce: fresh, .. } = Frame::decode(&hello).unwrap() else { panic!() };
    assert_ne!(fresh, nonce, "every connection gets a fresh nonce");
    replay.send(Ws::Binary(recorded.encode().into())).await.unwrap();
    let mut saw_error = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(2), replay.next()).await.unwrap() {
            Some(Ok(Ws::Binary(b))) => {
                let c = Frame::decode(&b).unwrap();
                assert!(matches!(&c, Frame::Error { code, .. } if code == "ERR_HANDSHAKE"), "{c:?}");
                saw_error = true;
            }
            Some(Ok(Ws::Close(_))) | None => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(saw_error);
    // Sync frames before the handshake get nothing but a refusal either.
    let mut early = Client::raw(srv.addr).await;
    let _hello = early.next().await;
    let begin = Frame::Begin { repo: repo_path(), round: 1, digest: SetDigest::default() };
    early.send(Ws::Binary(begin.encode().into())).await.unwrap();
    let Some(Ok(Ws::Binary(b))) = early.next().await else { panic!() };
    assert!(matches!(Frame::decode(&b).unwrap(), Frame::Error { code, .. } if code == "ERR_HANDSHAKE"));
    assert!(srv.metrics.refused_handshakes.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_login_link_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, links) = secure_server(dir.path(), None, Duration::from_secs(600)).await;
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    login(&mut a, &links, "alice@example.org").await;
    let token = links.token_for("alice@example.org");
    let mut b = Client::new(2);
    b.connect(srv.addr).await;
    b.send(&Frame::Redeem { token }).await;
    until(&mut b, "a login error", |c| c.errors.iter().any(|(_, code)| code == "ERR_LOGIN")).await;
    assert_eq!(b.session.trust().certificate(&b.key.id()).unwrap().owner, None);
    // A made-up token fails the same way.
    b.send(&Frame::Redeem { token: "00".repeat(32) }).await;
    until(&mut b, "a second login error", |c| c.errors.iter().filter(|(_, code)| code == "ERR_LOGIN").count() == 2).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_login_link_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, links) = secure_server(dir.path(), None, Duration::from_millis(50)).await;
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    a.send(&Frame::Login { email: "alice@example.org".into() }).await;
    until(&mut a, "login-sent", |c| c.login_sent).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    a.send(&Frame::Redeem { token: links.token_for("alice@example.org") }).await;
    until(&mut a, "a login error", |c| c.errors.iter().any(|(_, code)| code == "ERR_LOGIN")).await;
    assert_eq!(a.session.trust().certificate(&a.key.id()).unwrap().owner, None);
    // A bad address is refused before anything is sent.
    a.send(&Frame::Login { email: "not an address".into() }).await;
    until(&mut a, "an address error", |c| c.errors.iter().filter(|(_, code)| code == "ERR_LOGIN").count() == 2).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_expires_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, links) = secure_server(dir.path(), None, Duration::from_secs(600)).await;
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    login(&mut a, &links, "alice@example.org").await;
    a.write("before", "title", Value::Str("before logout".into()));
    a.sync().await;
    a.send(&Frame::Logout).await;
    a.listen(Duration::from_secs(1)).await;
    assert!(a.ws.is_none(), "logging out closes the connection");
    // Later commits by that key are refused everywhere: a reader receives
    // the expired certificate with a's earlier commits.
    let mut b = Client::new(2);
    b.connect(srv.addr).await;
    b.sync().await;
    let cert = b.session.trust().certificate(&a.key.id()).unwrap().clone();
    assert!(cert.expires <= now_ms());
    let id = a.repo_mut().update("late", &todo(), &[Change::Put { field: "title".into(), value: Value::Str("after".into()) }], &SessionKey::from_seed([1; 32]), now_ms() + 1000).unwrap().unwrap();
    let c = a.repo().commit(&id).unwrap().clone();
    assert_eq!(b.session.trust().verify(&c).unwrap_err().code(), "ERR_SESSION_EXPIRED");
    // And the server refuses the key's next handshake.
    let mut again = Client::new(1);
    let e = again.try_connect(srv.addr).await.unwrap_err();
    assert!(again.errors.iter().any(|(_, code)| code == "ERR_SESSION_EXPIRED"), "{e}: {:?}", again.errors);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_frames_close_the_connection_and_the_server_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _) = secure_server(dir.path(), None, Duration::from_secs(600)).await;
    // Bigger than the frame limit.
    let mut big = Client::raw(srv.addr).await;
    let _hello = big.next().await;
    let _ = big.send(Ws::Binary(vec![2u8; ibex_server::Limits::default().max_frame + 1].into())).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async { while let Some(Ok(Ws::Binary(_))) = big.next().await {} }).await;
    assert!(closed.is_ok(), "the oversized frame did not end the connection");
    // Malformed frames after a good handshake, and a commits frame whose
    // count lies.
    let mut a = Client::new(1);
    a.connect(srv.addr).await;
    a.send_raw(vec![17, 1, 2, 3]).await;
    a.listen(Duration::from_secs(1)).await;
    assert!(a.closed.as_deref().is_some_and(|r| r.contains("malformed")), "{:?}", a.closed);
    let mut b = Client::new(2);
    b.connect(srv.addr).await;
    let mut lie = Frame::Commits { repo: repo_path(), commits: vec![] }.encode();
    *lie.last_mut().unwrap() = 200;
    b.send_raw(lie).await;
    b.listen(Duration::from_secs(1)).await;
    assert!(b.closed.as_deref().is_some_and(|r| r.contains("malformed")), "{:?}", b.closed);
    // Everyone else is fine.
    let mut c = Client::new(3);
    c.connect(srv.addr).await;
    c.write("k", "title", Value::Str("still works".into()));
    c.sync().await;
    let (status, body) = http_get(srv.addr, "/stats").await;
    assert!(status.contains("200") && body.contains("\"refusedHandshakes\""), "{status} {body}");
    srv.stop().await;
}
