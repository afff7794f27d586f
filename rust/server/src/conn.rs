//! One WebSocket connection, server side.
//!
//! Two tasks: this one reads frames, the writer sends what the connection's
//! bounded queue holds (`outq.rs`). Reading: the handshake (hello → auth →
//! welcome, within the handshake timeout), then every frame is checked
//! cheaply first — size (the socket's limit), the repository path, the
//! read rule — before it is decoded and handed to the repository's actor;
//! a connection has at most [`IN_FLIGHT`] frames being processed and the
//! server at most `inbound_bytes` of them, so a flood waits at the socket.
//! Connection frames (ping, login, logout) are handled here. Logout and an
//! expired certificate close every connection of the session at once.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, close_code};
use futures_util::{SinkExt, StreamExt};
use ibex_core::sync::frame::{Frame, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, Role, auth_payload, frame_repo, is_connection_frame, welcome_payload};
use ibex_core::trust::{CERT_TTL_MS, SESSIONS, USERS, normalize_email};
use ibex_core::{Certificate, Error, RepoPath, SessionId};
use tokio::sync::{Semaphore, oneshot};

use crate::error::ServerError;
use crate::metrics::Metrics;
use crate::outq::OutQueue;
use crate::repo::RepoMsg;
use crate::state::{ConnId, Endpoint, Permits, Shared, next_id, now_ms};

/// Frames of one connection being processed at once.
pub const IN_FLIGHT: usize = 4;

/// Counts a connection against the limits: sockets in their HTTP phase
/// (`ws` false) or WebSockets (`ws` true; an upgraded socket leaves the
/// HTTP count when its upgrade completes).
pub fn admit(shared: &Shared, ip: IpAddr, ws: bool) -> Result<(), ServerError> {
    let l = shared.limits();
    let mut c = shared.conns();
    let total: usize = c.per_ip.values().sum::<usize>() + c.ws_per_ip.values().sum::<usize>();
    if total >= l.max_connections {
        return Err(ServerError::Unavailable(format!("the server has {total} connections, its limit (--max-connections)")));
    }
    let map = if ws { &mut c.ws_per_ip } else { &mut c.per_ip };
    let n = map.entry(ip).or_insert(0);
    if *n >= l.max_connections_per_ip {
        return Err(ServerError::quota(format!("{n} connections from {ip}, the limit per address (--max-connections-per-ip)")));
    }
    *n += 1;
    Ok(())
}

pub fn release(shared: &Shared, ip: IpAddr, ws: bool) {
    let mut c = shared.conns();
    let map = if ws { &mut c.ws_per_ip } else { &mut c.per_ip };
    if let Some(n) = map.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            map.remove(&ip);
        }
    }
}

/// Sends frames from the queue until it closes or the socket fails.
async fn writer(mut sink: futures_util::stream::SplitSink<WebSocket, WsMessage>, out: Arc<OutQueue>, shared: Arc<Shared>, conn: ConnId) {
    loop {
        let (item, drained) = out.next().await;
        for repo in drained {
            if let Some(tx) = shared.registry.running(&repo) {
                tokio::spawn(async move {
                    let _ = tx.send(RepoMsg::Drained { conn }).await;
                });
            }
        }
        match item {
            None => {}
            Some(Ok(frame)) => {
                Metrics::inc(&shared.metrics.frames_out);
                if sink.send(WsMessage::Binary(frame.into())).await.is_err() {
                    break;
                }
            }
            Some(Err(reason)) => {
                let reason: String = reason.chars().take(120).collect();
                let _ = sink.send(WsMessage::Close(Some(CloseFrame { code: close_code::POLICY, reason: reason.into() }))).await;
                break;
            }
        }
    }
}

struct Conn {
    shared: Arc<Shared>,
    id: ConnId,
    ip: IpAddr,
    out: Arc<OutQueue>,
    nonce: [u8; 32],
    /// Set once authenticated.
    ep: Option<Endpoint>,
    client_nonce: [u8; 32],
    role: Role,
    repos: HashSet<RepoPath>,
    logins: u32,
    in_flight: Arc<Semaphore>,
    rounds: (u64, u32),
}

/// Serves one upgraded WebSocket until it closes.
pub async fn serve(socket: WebSocket, shared: Arc<Shared>, ip: IpAddr) {
    let id = next_id();
    let out = OutQueue::new(shared.limits().conn_queue_bytes, shared.metrics.clone());
    let (sink, mut stream) = socket.split();
    let writer = tokio::spawn(writer(sink, out.clone(), shared.clone(), id));
    Metrics::inc(&shared.metrics.connections);
    Metrics::inc(&shared.metrics.connections_total);
    let mut nonce = [0u8; 32];
    if getrandom::fill(&mut nonce).is_err() {
        tracing::error!("no secure random source; refusing the connection");
        out.close("server has no random source");
    } else {
        shared.nonces().insert(nonce);
        out.push(Frame::hello(nonce, &shared.root, now_ms(), shared.trust().rules().to_string()).encode());
    }
    let mut c = Conn {
        shared: shared.clone(),
        id,
        ip,
        out: out.clone(),
        nonce,
        ep: None,
        client_nonce: [0; 32],
        role: Role::Client,
        repos: HashSet::new(),
        logins: 0,
        in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        rounds: (0, 0),
    };
    let started = Instant::now();
    let mut last_rx = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let limits = shared.limits().clone();
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { break };
                last_rx = Instant::now();
                match msg {
                    Ok(WsMessage::Binary(b)) => {
                        Metrics::inc(&shared.metrics.frames_in);
                        if c.frame(&b).await.is_err() {
                            break;
                        }
                    }
                    Ok(WsMessage::Text(_)) => {
                        c.refuse(&Error::decode("text frame: the protocol is binary", 0));
                        break;
                    }
                    Ok(WsMessage::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            _ = tick.tick() => {
                if c.ep.is_none() && started.elapsed() > limits.handshake_timeout {
                    Metrics::inc(&shared.metrics.refused_handshakes);
                    c.refuse(&Error::Timeout(format!("no handshake within {} s", limits.handshake_timeout.as_secs())));
                    break;
                }
                if last_rx.elapsed() > limits.idle_timeout {
                    c.refuse(&Error::Timeout(format!("nothing received for {} s", limits.idle_timeout.as_secs())));
                    break;
                }
                if out.stalled_for() > limits.slow_consumer {
                    Metrics::inc(&shared.metrics.slow_disconnects);
                    let e = ServerError::TooSlow(limits.slow_consumer.as_secs());
                    tracing::info!(conn = id, %ip, "{e}");
                    break;
                }
                if let Some(ep) = &c.ep
                    && !shared.trust().is_root(&ep.session)
                    && shared.trust().certificate(&ep.session).is_none_or(|cert| cert.expires < now_ms())
                {
                    c.refuse(&Error::SessionExpired { session: ep.session.to_hex(), expired: 0, at: now_ms() });
                    break;
                }
                if out.is_closed() || writer.is_finished() {
                    break;
                }
            }
        }
    }
    // Let the writer send what was queued (an error frame, a close), but
    // not wait on a reader that does not read.
    out.close("closing");
    let abort = writer.abort_handle();
    let stalled = out.stalled_for() > Duration::ZERO && out.stalled_for() >= limits.slow_consumer;
    if stalled || tokio::time::timeout(Duration::from_secs(2), writer).await.is_err() {
        abort.abort();
    }
    c.cleanup();
    Metrics::sub(&shared.metrics.connections, 1);
    release(&shared, ip, true);
}

impl Conn {
    fn error(&self, repo: &str, e: &Error) {
        self.out.push(Frame::error(repo, e).encode());
    }

    /// An error frame, then close.
    fn refuse(&self, e: &Error) {
        self.error("", e);
        self.out.close(e.to_string());
    }

    fn quota(&self, repo: &str, e: ServerError) {
        Metrics::inc(&self.shared.metrics.quota_refusals);
        tracing::info!(conn = self.id, ip = %self.ip, repo, "{e}");
        self.out.push(Frame::Error { repo: repo.into(), code: e.code().into(), message: e.to_string(), id: None }.encode());
    }

    fn cleanup(&mut self) {
        let shared = &self.shared;
        shared.nonces().remove(&self.nonce);
        let mut last_of_session = None;
        {
            let mut conns = shared.conns();
            conns.by_id.remove(&self.id);
            conns.peers.remove(&self.id);
            if let Some(ep) = &self.ep
                && let Some(set) = conns.by_session.get_mut(&ep.session)
            {
                set.remove(&self.id);
                if set.is_empty() {
                    conns.by_session.remove(&ep.session);
                    last_of_session = Some(ep.session);
                }
            }
        }
        // A session certified only in memory and never used is forgotten.
        if let Some(s) = last_of_session
            && shared.trust().certificate_commit(&s).is_none()
            && !shared.trust().is_root(&s)
        {
            shared.trust_mut().remove_certificate(&s);
        }
        let mut repos: HashSet<RepoPath> = shared.registry.disconnect(self.id).into_iter().collect();
        repos.extend(self.repos.drain());
        for r in repos {
            if let Some(tx) = shared.registry.running(&r) {
                let id = self.id;
                tokio::spawn(async move {
                    let _ = tx.send(RepoMsg::Gone { conn: id }).await;
                });
            }
        }
    }

    /// One frame from the client; `Err` ends the connection.
    async fn frame(&mut self, bytes: &[u8]) -> Result<(), ()> {
        if is_connection_frame(bytes) {
            let frame = match Frame::decode(bytes) {
                Ok(f) => f,
                Err(e) => {
                    tracing::info!(conn = self.id, error = %e, "malformed frame; closing the connection");
                    self.refuse(&Error::decode(format!("malformed frame: {e}"), 0));
                    return Err(());
                }
            };
            return self.control(frame).await;
        }
        let Some(ep) = self.ep.clone() else {
            Metrics::inc(&self.shared.metrics.refused_handshakes);
            self.refuse(&Error::Handshake("authenticate first: answer hello with auth".into()));
            return Err(());
        };
        let path = match frame_repo(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.refuse(&Error::decode(format!("malformed frame: {e}"), 0));
                return Err(());
            }
        };
        let shared = self.shared.clone();
        if path.as_str() == SESSIONS && !ep.peer {
            // A client restoring certificates this server lost; anything
            // not signed by this root is ignored.
            if let Ok(Frame::Commits { commits, .. }) = Frame::decode(bytes) {
                let (tx, rx) = oneshot::channel();
                if shared.registry.send(&shared, &path, RepoMsg::Adopt { commits, reply: tx }).await.is_ok() {
                    let _ = rx.await;
                }
            }
            return Ok(());
        }
        let principal = shared.trust().principal(&ep.session, now_ms());
        if let Err(e) = shared.trust().rules().check_read(&path, &principal) {
            Metrics::inc(&shared.metrics.forbidden_reads);
            tracing::info!(conn = self.id, repo = %path, session = %ep.session, "read refused");
            self.error(path.as_str(), &e);
            return Ok(());
        }
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::info!(conn = self.id, error = %e, "malformed frame; closing the connection");
                self.refuse(&Error::decode(format!("malformed frame: {e}"), 0));
                return Err(());
            }
        };
        match &frame {
            Frame::Begin { .. } => {
                let minute = (now_ms() / 60_000) as u64;
                if self.rounds.0 != minute {
                    self.rounds = (minute, 0);
                }
                self.rounds.1 += 1;
                if self.rounds.1 > shared.limits().rounds_per_minute {
                    self.quota(path.as_str(), ServerError::quota(format!("more than {} reconciliation rounds this minute", shared.limits().rounds_per_minute)));
                    return Ok(());
                }
                if !path.as_str().starts_with("/sys/")
                    && let Err(e) = shared.registry.subscribe(&path, &ep, shared.limits().max_repos_per_connection)
                {
                    self.quota(path.as_str(), e);
                    return Ok(());
                }
            }
            Frame::Commits { commits, .. } => {
                if let Some(big) = commits.iter().find(|c| c.len() > shared.limits().max_commit) {
                    self.quota(path.as_str(), ServerError::quota(format!("a commit of {} bytes; this server accepts at most {} (--max-commit-bytes)", big.len(), shared.limits().max_commit)));
                    return Ok(());
                }
                // A session's certificate is written (durably) before its
                // first commit is accepted: everyone must be able to verify it.
                if let Err(e) = self.persist_certificate(&ep.session).await {
                    self.error(path.as_str(), &e);
                    return Ok(());
                }
            }
            _ => {}
        }
        if !self.repos.contains(&path) && self.repos.len() >= shared.limits().max_repos_per_connection {
            self.quota(path.as_str(), ServerError::quota(format!("one connection may use at most {} repositories (--max-repos-per-connection)", shared.limits().max_repos_per_connection)));
            return Ok(());
        }
        self.repos.insert(path.clone());
        let total = shared.limits().inbound_bytes as u32;
        let n = (bytes.len() as u32).clamp(1, total.max(1));
        let Ok(inbound) = shared.inbound.clone().acquire_many_owned(n).await else { return Err(()) };
        let Ok(mine) = self.in_flight.clone().acquire_owned().await else { return Err(()) };
        Metrics::add(&shared.metrics.inbound_bytes, u64::from(n));
        let permit = Some(Permits { _inbound: inbound, _mine: mine, metrics: shared.metrics.clone(), n: u64::from(n) });
        // Certificates from a peer must be in before the commits after them.
        let wait = path.as_str() == SESSIONS;
        let (done, rx) = if wait {
            let (t, r) = oneshot::channel();
            (Some(t), Some(r))
        } else {
            (None, None)
        };
        let msg = RepoMsg::Frame { from: ep, frame, permit, done };
        if let Err(e) = shared.registry.send(&shared, &path, msg).await {
            self.quota(path.as_str(), e);
            return Ok(());
        }
        if let Some(rx) = rx {
            let _ = rx.await;
        }
        Ok(())
    }

    /// Writes the certificate of a session whose certificate is not durable
    /// here yet (certified in memory, or written but not flushed).
    async fn persist_certificate(&self, s: &SessionId) -> Result<(), Error> {
        if self.shared.durable_certs().contains(s) {
            return Ok(());
        }
        let cert = {
            let t = self.shared.trust();
            if t.is_root(s) {
                return Ok(());
            }
            t.certificate(s).cloned().ok_or_else(|| Error::UnknownSession(s.to_hex()))?
        };
        certify(&self.shared, cert).await
    }

    async fn control(&mut self, frame: Frame) -> Result<(), ()> {
        let shared = self.shared.clone();
        match (self.ep.is_some(), frame) {
            (false, Frame::Auth { version, role, session, nonce, sig }) => {
                if let Err(e) = self.authenticate(version, role, session, nonce, sig).await {
                    Metrics::inc(&shared.metrics.refused_handshakes);
                    tracing::info!(conn = self.id, ip = %self.ip, error = %e, "handshake refused");
                    self.refuse(&e);
                    return Err(());
                }
                Ok(())
            }
            (false, _) => {
                Metrics::inc(&shared.metrics.refused_handshakes);
                self.refuse(&Error::Handshake("authenticate first: answer hello with auth".into()));
                Err(())
            }
            (true, Frame::Auth { .. }) => {
                self.refuse(&Error::Handshake("this connection is already authenticated".into()));
                Err(())
            }
            (true, Frame::Ping { n }) => {
                self.out.push(Frame::Pong { n }.encode());
                Ok(())
            }
            (true, Frame::Pong { .. }) => Ok(()),
            (true, Frame::Error { repo, code, message, .. }) => {
                tracing::info!(conn = self.id, repo, code, message, "the client reported an error");
                Ok(())
            }
            (true, Frame::Login { email }) => {
                if let Err(e) = self.login(&email).await {
                    Metrics::inc(&shared.metrics.login_failures);
                    self.error("", &e);
                }
                Ok(())
            }
            (true, Frame::LoginInfo { token }) => {
                match peek_login(&shared, &token).await {
                    Ok(email) => self.out.push(Frame::LoginIs { email }.encode()),
                    Err(e) => self.out.push(Frame::error("", &e).encode()),
                };
                Ok(())
            }
            (true, Frame::Redeem { token }) => {
                if let Err(e) = self.redeem(&token).await {
                    tracing::info!(conn = self.id, error = %e, "login refused");
                    self.error("", &e);
                }
                Ok(())
            }
            (true, Frame::Logout) => {
                self.logout().await;
                Err(())
            }
            (true, other) => {
                tracing::info!(conn = self.id, frame = ibex_core::sync::frame::frame_name(&other.encode()), "unexpected frame from a client; ignored");
                Ok(())
            }
        }
    }

    async fn authenticate(&mut self, version: u16, role: Role, session: SessionId, nonce: [u8; 32], sig: [u8; 64]) -> Result<(), Error> {
        let shared = self.shared.clone();
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
            return Err(Error::Version(format!("the client speaks sync protocol {version}; this server speaks {MIN_PROTOCOL_VERSION}–{PROTOCOL_VERSION}: upgrade the older side")));
        }
        let root = shared.root.id();
        session.verify(&auth_payload(role, &self.nonce, &nonce, &root), &sig).map_err(|_| Error::Handshake(format!("session {session} did not sign this connection's nonce")))?;
        if shared.nonces().contains(&nonce) {
            return Err(Error::Handshake("the auth carries a nonce this server issued itself (reflection)".into()));
        }
        let is_root = shared.trust().is_root(&session);
        if role == Role::Peer && !is_root {
            return Err(Error::Handshake("only a holder of this server's root key may connect as a peer".into()));
        }
        let now = now_ms();
        let (user, expires) = if is_root {
            (String::new(), i64::MAX)
        } else {
            let cert = shared.trust().certificate(&session).cloned();
            let persisted = shared.trust().certificate_commit(&session).is_some();
            let cert = match cert {
                Some(c) if c.expires < now && c.owner.is_some() => {
                    return Err(Error::SessionExpired { session: session.to_hex(), expired: c.expires, at: now });
                }
                Some(c) if c.expires - now > CERT_TTL_MS / 2 => c,
                Some(c) => {
                    // Renewed when less than half is left.
                    let renewed = Certificate { expires: now + CERT_TTL_MS, ..c };
                    if persisted {
                        certify(&shared, renewed.clone()).await?;
                    } else {
                        shared.trust_mut().set_certificate(renewed.clone());
                    }
                    renewed
                }
                None => {
                    if !shared.hit_anon(self.ip) {
                        Metrics::inc(&shared.metrics.quota_refusals);
                        return Err(Error::Quota(format!("too many new sessions from {} this minute (--anonymous-per-ip-per-minute)", self.ip)));
                    }
                    // Certified in memory; written with its first commit,
                    // so throw-away connections leave nothing behind.
                    let c = Certificate { session, owner: None, expires: now + CERT_TTL_MS, issued: Some(now) };
                    shared.trust_mut().set_certificate(c.clone());
                    c
                }
            };
            (cert.owner.clone().unwrap_or_default(), cert.expires)
        };
        let ep = Endpoint::new(self.id, self.out.clone(), session, role == Role::Peer);
        {
            let mut conns = shared.conns();
            conns.by_id.insert(self.id, ep.clone());
            conns.by_session.entry(session).or_default().insert(self.id);
            if role == Role::Peer {
                conns.peers.insert(self.id, ep.clone());
            }
        }
        self.ep = Some(ep);
        self.role = role;
        self.client_nonce = nonce;
        // Restoring a lost /sys/sessions: certify durably now, not lazily.
        if !is_root && shared.restoring_sessions.load(std::sync::atomic::Ordering::Relaxed) {
            self.persist_certificate(&session).await?;
        }
        self.welcome(&user, expires).await;
        if role == Role::Peer {
            // What this server holds, for the peer to reconcile.
            let repos: Vec<_> = shared.registry.known().into_iter().map(|p| (p, ibex_core::SetDigest::default())).collect();
            for chunk in repos.chunks(ibex_core::sync::frame::MAX_REPOS_PER_FRAME) {
                self.out.push(Frame::Repos { repos: chunk.to_vec() }.encode());
            }
            tracing::info!(conn = self.id, ip = %self.ip, "peer server connected");
        }
        Ok(())
    }

    async fn welcome(&self, user: &str, expires: i64) {
        let ep = self.ep.as_ref().expect("authenticated");
        let email = if user.is_empty() { String::new() } else { email_of(&self.shared, user).await.unwrap_or_default() };
        let sig = self.shared.root.sign(&welcome_payload(self.role, &self.nonce, &self.client_nonce, &ep.session));
        self.out.push(Frame::Welcome { user: user.to_owned(), email, expires, time: now_ms(), sig }.encode());
    }

    async fn login(&mut self, email: &str) -> Result<(), Error> {
        let shared = self.shared.clone();
        let ep = self.ep.clone().expect("authenticated");
        if shared.trust().is_root(&ep.session) {
            return Err(Error::Login("the root session cannot log in".into()));
        }
        let email = normalize_email(email)?;
        if self.logins >= shared.limits().logins_per_connection {
            Metrics::inc(&shared.metrics.quota_refusals);
            return Err(Error::Quota(format!("at most {} login links per connection", shared.limits().logins_per_connection)));
        }
        if !shared.hit_login_ip(self.ip) {
            Metrics::inc(&shared.metrics.quota_refusals);
            return Err(Error::Quota(format!("too many login links asked from {} recently; wait a few minutes", self.ip)));
        }
        self.logins += 1;
        let token = shared.logins().issue(&email).inspect_err(|e| {
            if e.code() == "ERR_QUOTA" {
                Metrics::inc(&shared.metrics.quota_refusals);
            }
        })?;
        if let Some(pg) = &shared.pg {
            // Any server of the group may be the one the link is opened on;
            // an address gets its quota from the group, not from each server.
            let now = now_ms();
            let l = shared.limits();
            match pg.count_login(&email, now, l.login_window.as_millis() as i64, l.logins_per_address).await {
                Ok(true) => {}
                Ok(false) => {
                    shared.logins().cancel(&token);
                    Metrics::inc(&shared.metrics.quota_refusals);
                    return Err(Error::Quota(format!(
                        "{} login links were sent to this address in the last {} minutes; wait before asking again",
                        l.logins_per_address,
                        l.login_window.as_secs() / 60
                    )));
                }
                Err(e) => {
                    shared.logins().cancel(&token);
                    return Err(e.into());
                }
            }
            if let Err(e) = pg.put_login(&token, &email, now + shared.config.login_ttl.as_millis() as i64, now).await {
                shared.logins().cancel(&token);
                return Err(e.into());
            }
        }
        let base = shared.config.public_url.clone().unwrap_or_else(|| format!("http://{}", shared.config.addr));
        let link = format!("{}/?ibex-login={token}", base.trim_end_matches('/'));
        let verifier = shared.config.verifier.clone();
        let to = email.clone();
        // Off the sync path: a slow mail server delays this one answer.
        let sent = tokio::task::spawn_blocking(move || verifier.send(&to, &link)).await.unwrap_or_else(|e| Err(ServerError::Unavailable(e.to_string())));
        match sent {
            Ok(()) => {
                Metrics::inc(&shared.metrics.logins_sent);
                self.out.push(Frame::LoginSent { email }.encode());
                Ok(())
            }
            Err(m) => {
                shared.logins().cancel(&token);
                if let Some(pg) = &shared.pg {
                    let _ = pg.cancel_login(&token).await;
                }
                tracing::error!(%email, error = %m, "cannot send a login link");
                Err(Error::Login(format!("the login link could not be sent: {m}")))
            }
        }
    }

    async fn redeem(&mut self, token: &str) -> Result<(), Error> {
        let shared = self.shared.clone();
        let ep = self.ep.clone().expect("authenticated");
        if shared.trust().is_root(&ep.session) {
            return Err(Error::Login("the root session cannot log in".into()));
        }
        let email = redeem_login(&shared, token).await?;
        let (tx, rx) = oneshot::channel();
        let users = RepoPath::parse(USERS).expect("valid path");
        shared.registry.send(&shared, &users, RepoMsg::User { email: email.clone(), reply: tx }).await.map_err(|e| Error::Storage(e.to_string()))?;
        let user = rx.await.map_err(|_| Error::Storage("users unavailable".into()))??;
        let now = now_ms();
        let cert = shared.trust().certificate(&ep.session).cloned().unwrap_or(Certificate { session: ep.session, owner: None, expires: now + CERT_TTL_MS, issued: Some(now) });
        if let Some(other) = &cert.owner
            && *other != user
        {
            return Err(Error::Forbidden("this session belongs to another user; log out first".into()));
        }
        let cert = Certificate { owner: Some(user.clone()), expires: now + CERT_TTL_MS, ..cert };
        certify(&shared, cert.clone()).await?;
        tracing::info!(conn = self.id, %user, session = %ep.session, "session logged in");
        self.welcome(&user, cert.expires).await;
        Ok(())
    }

    async fn logout(&mut self) {
        let shared = self.shared.clone();
        let Some(ep) = self.ep.clone() else { return };
        let now = now_ms();
        let (cert, persisted) = {
            let t = shared.trust();
            (t.certificate(&ep.session).cloned(), t.certificate_commit(&ep.session).is_some())
        };
        if let Some(c) = cert {
            let expired = Certificate { expires: c.expires.min(now), ..c };
            if persisted {
                if let Err(e) = certify(&shared, expired).await {
                    tracing::error!(error = %e, "cannot expire a certificate");
                }
            } else {
                shared.trust_mut().remove_certificate(&ep.session);
            }
        }
        revoke(&shared, &ep.session, "logged out");
    }
}

/// Writes a certificate in `/sys/sessions` (durably) and updates trust.
/// The address a login token is for, without using it up: from the
/// shared store when there is one (the link may come from another server).
async fn peek_login(shared: &Shared, token: &str) -> Result<String, Error> {
    let Some(pg) = &shared.pg else { return shared.logins().peek(token) };
    match pg.peek_login(token).await? {
        Some((email, expires)) if now_ms() <= expires => Ok(email),
        Some(_) => Err(Error::Login("this login link has expired; ask for a new one".into())),
        None => Err(Error::Login("this login link is unknown or was already used".into())),
    }
}

/// Uses a login token up (once, whichever server it was issued by).
async fn redeem_login(shared: &Shared, token: &str) -> Result<String, Error> {
    let Some(pg) = &shared.pg else { return shared.logins().redeem(token) };
    shared.logins().cancel(token);
    match pg.take_login(token).await? {
        Some((email, expires)) if now_ms() <= expires => Ok(email),
        Some(_) => Err(Error::Login("this login link has expired; ask for a new one".into())),
        None => Err(Error::Login("this login link is unknown or was already used".into())),
    }
}

pub async fn certify(shared: &Arc<Shared>, cert: Certificate) -> Result<(), Error> {
    let (tx, rx) = oneshot::channel();
    let sessions = RepoPath::parse(SESSIONS).expect("valid path");
    shared.registry.send(shared, &sessions, RepoMsg::Certify { cert, reply: tx }).await.map_err(|e| Error::Storage(e.to_string()))?;
    rx.await.map_err(|_| Error::Storage("certificates unavailable".into()))?
}

async fn email_of(shared: &Arc<Shared>, user: &str) -> Option<String> {
    let (tx, rx) = oneshot::channel();
    let users = RepoPath::parse(USERS).ok()?;
    shared.registry.send(shared, &users, RepoMsg::Email { user: user.to_owned(), reply: tx }).await.ok()?;
    rx.await.ok().flatten()
}

/// Closes every connection of `session` (logout, expiry): reads stop at once.
pub fn revoke(shared: &Shared, session: &SessionId, why: &str) {
    let conns = shared.conns();
    let ids: Vec<ConnId> = conns.by_session.get(session).map(|s| s.iter().copied().collect()).unwrap_or_default();
    for id in ids {
        if let Some(ep) = conns.by_id.get(&id) {
            ep.out.push(Frame::error("", &Error::SessionExpired { session: session.to_hex(), expired: now_ms(), at: now_ms() }).encode());
            ep.out.close(why.to_owned());
        }
    }
}
