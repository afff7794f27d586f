//! Server-to-server replication (`--peer <url>`): this server connects to
//! another server's `/sync` as a peer (role `peer`, authenticated with the
//! shared root key) and keeps the link up with back-off.
//!
//! Both sides prove they hold the root key, over fresh nonces from both
//! sides, before anything else flows: the remote's `welcome` carries its
//! root signature over both nonces, and this side refuses hellos and auths
//! that carry its own nonces (a compromised `--peer` URL cannot reflect
//! this server's handshake back at it, nor use it as a signing oracle). A
//! relay in the middle of a genuine link is beyond any handshake: use
//! `wss://` between servers on untrusted networks.
//!
//! Once welcomed, every repository this server holds starts a round on
//! the link (`/sys/sessions` first), and so does every repository the
//! remote announces (`repos` frames, also sent when it creates one). New
//! commits are relayed to the link as they are integrated (see `repo.rs`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ibex_core::sync::frame::{Frame, Role, frame_repo, is_connection_frame};
use ibex_core::sync::{ConnClient, Event};
use ibex_core::trust::SESSIONS;
use ibex_core::{RepoPath, Trust};
use tokio::sync::oneshot;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::metrics::Metrics;
use crate::outq::OutQueue;
use crate::repo::RepoMsg;
use crate::state::{Endpoint, Shared, next_id, now_ms};

/// The `/sync` URL of a peer given as `ws://host:port`, `http://…`, etc.
pub fn sync_url(url: &str) -> String {
    let u = url.trim_end_matches('/').replacen("http://", "ws://", 1).replacen("https://", "wss://", 1);
    if u.ends_with("/sync") { u } else { format!("{u}/sync") }
}

/// Connects to `url` and serves the link until the server stops.
pub async fn run(shared: Arc<Shared>, url: String) {
    let url = sync_url(&url);
    let mut backoff = Duration::from_millis(250);
    while !shared.stopping() {
        match connect_async(&url).await {
            Ok((ws, _)) => {
                backoff = Duration::from_millis(250);
                tracing::info!(%url, "connected to peer");
                link(&shared, ws).await;
                tracing::warn!(%url, "peer link closed");
            }
            Err(e) => tracing::warn!(%url, error = %e, "cannot reach peer"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

fn random_nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    let _ = getrandom::fill(&mut n);
    n
}

async fn begin(shared: &Arc<Shared>, ep: &Endpoint, path: &RepoPath) {
    if let Err(e) = shared.registry.send(shared, path, RepoMsg::LinkBegin { link: ep.clone() }).await {
        tracing::warn!(repo = %path, error = %e, "cannot reconcile a repository with the peer");
    }
}

async fn link<S>(shared: &Arc<Shared>, ws: tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let id = next_id();
    let out = OutQueue::new(shared.limits().conn_queue_bytes * 4, shared.metrics.clone());
    let (mut sink, mut stream) = ws.split();
    let wq = out.clone();
    let wshared = shared.clone();
    let writer = tokio::spawn(async move {
        loop {
            let (item, drained) = wq.next().await;
            for repo in drained {
                if let Some(tx) = wshared.registry.running(&repo) {
                    tokio::spawn(async move {
                        let _ = tx.send(RepoMsg::Drained { conn: id }).await;
                    });
                }
            }
            match item {
                None => {}
                Some(Ok(f)) => {
                    Metrics::inc(&wshared.metrics.frames_out);
                    if sink.send(Ws::Binary(f.into())).await.is_err() {
                        break;
                    }
                }
                Some(Err(_)) => {
                    let _ = sink.send(Ws::Close(None)).await;
                    break;
                }
            }
        }
    });
    let mut trust = Trust::new(shared.trust().rules().clone());
    trust.add_root(shared.root.id());
    let mut conn = ConnClient::new(Role::Peer, shared.root.clone(), trust);
    let filter_shared = shared.clone();
    conn.set_nonce_filter(Arc::new(move |n| filter_shared.nonces().contains(n)));
    conn.connected(now_ms());
    let ep = Endpoint::new(id, out.clone(), shared.root.id(), true);
    let mut my_nonce: Option<[u8; 32]> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { break };
                let Ws::Binary(b) = msg else { continue };
                Metrics::inc(&shared.metrics.frames_in);
                conn.received(now_ms());
                if is_connection_frame(&b) {
                    let frame = match Frame::decode(&b) {
                        Ok(f) => f,
                        Err(e) => {
                            tracing::warn!(error = %e, "malformed frame from a peer; closing the link");
                            break;
                        }
                    };
                    let hello = matches!(frame, Frame::Hello { .. });
                    let nonce = random_nonce();
                    let was_ready = conn.is_ready();
                    match conn.handle(frame, now_ms(), nonce) {
                        Ok(replies) => {
                            if hello {
                                // An auth carrying this nonce, sent to us, is a reflection.
                                shared.nonces().insert(nonce);
                                my_nonce = Some(nonce);
                            }
                            for r in replies {
                                out.push(r.encode());
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "peer handshake failed; closing the link");
                            break;
                        }
                    }
                    if !was_ready && conn.is_ready() {
                        shared.conns().links.insert(id, ep.clone());
                        let sessions = RepoPath::parse(SESSIONS).expect("valid path");
                        begin(shared, &ep, &sessions).await;
                        for p in shared.registry.known() {
                            if p != sessions {
                                begin(shared, &ep, &p).await;
                            }
                        }
                    }
                    for ev in conn.take_events() {
                        match ev {
                            Event::Repos(repos) => {
                                for (p, _) in repos {
                                    begin(shared, &ep, &p).await;
                                }
                            }
                            Event::Error { repo, code, message } => tracing::warn!(repo, code, message, "peer reported an error"),
                            _ => {}
                        }
                    }
                    continue;
                }
                if !conn.is_ready() {
                    tracing::warn!("peer sent sync frames before the handshake; closing the link");
                    break;
                }
                let (path, frame) = match (frame_repo(&b), Frame::decode(&b)) {
                    (Ok(p), Ok(f)) => (p, f),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::warn!(error = %e, "malformed frame from a peer; closing the link");
                        break;
                    }
                };
                let wait = path.as_str() == SESSIONS;
                let (done, rx) = if wait {
                    let (t, r) = oneshot::channel();
                    (Some(t), Some(r))
                } else {
                    (None, None)
                };
                if let Err(e) = shared.registry.send(shared, &path, RepoMsg::LinkFrame { link: ep.clone(), frame, done }).await {
                    tracing::warn!(repo = %path, error = %e, "cannot take a frame from the peer");
                }
                if let Some(rx) = rx {
                    let _ = rx.await;
                }
            }
            _ = tick.tick() => {
                match conn.tick(now_ms()) {
                    Ok(frames) => {
                        for f in frames {
                            out.push(f.encode());
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "peer stopped answering; closing the link");
                        break;
                    }
                }
                if shared.stopping() || writer.is_finished() {
                    break;
                }
            }
        }
    }
    out.close("closing");
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    shared.conns().links.remove(&id);
    if let Some(n) = my_nonce {
        shared.nonces().remove(&n);
    }
    for tx in shared.registry.all_running() {
        tokio::spawn(async move {
            let _ = tx.send(RepoMsg::Gone { conn: id }).await;
        });
    }
}
