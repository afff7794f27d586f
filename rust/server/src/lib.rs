//! `ibex-server`: serves the app's static files, health and metrics, and
//! the WebSocket sync endpoint `GET /sync`, storing repositories with
//! `ibex-core`'s log format under the data directory.
//!
//! Layout: `conn.rs` (one task per connection: handshake, checks,
//! routing), `repo.rs` (one actor per open repository, on its own runtime:
//! reconciliation, verification, relays, group commit), `registry.rs`
//! (actors and subscriptions), `outq.rs` (bounded outgoing queues),
//! `peer.rs` (links to other servers), `login.rs` (login links),
//! `static_files.rs`, `config.rs` (every limit), `metrics.rs`.
//!
//! The binary (`main.rs`) parses flags; tests start the same server
//! in-process with [`start`].

pub mod admin;
pub mod admin_cli;
pub mod admin_json;
pub mod config;
pub mod conn;
pub mod error;
pub mod keys;
pub mod login;
pub mod metrics;
pub mod outq;
pub mod peer;
pub mod registry;
pub mod repo;
pub mod state;
pub mod static_files;
pub mod store;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use ibex_core::trust::{SESSIONS, register_schemas};
use ibex_core::{RepoPath, Rules, Trust};
use tokio::sync::{Semaphore, oneshot};

pub use config::{Config, Limits};
pub use metrics::Metrics;
use repo::RepoMsg;
use state::Shared;

/// Creates a directory (and parents) readable by the owner only.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// The peer address of a request's connection.
#[derive(Clone, Copy)]
struct PeerIp(IpAddr);

async fn sync(ws: WebSocketUpgrade, State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let ip = req.extensions().get::<PeerIp>().map_or(IpAddr::from([127, 0, 0, 1]), |p| p.0);
    if !shared.hit_connection(ip) {
        Metrics::inc(&shared.metrics.quota_refusals);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            format!("ERR_QUOTA: more than {} new connections from {ip} this minute (--connections-per-ip-per-minute)", shared.limits().connections_per_ip_per_minute),
        )
            .into_response();
    }
    if let Err(why) = conn::admit(&shared, ip, true) {
        Metrics::inc(&shared.metrics.quota_refusals);
        tracing::info!(%ip, "refused a WebSocket: {why}");
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{}: {why}", why.code())).into_response();
    }
    let max = shared.limits().max_frame;
    // Small socket buffers: an idle connection costs a few KB, not the
    // 2 × 128 KiB tungstenite allocates by default (they grow for large
    // frames; outgoing memory is bounded by the connection's queue).
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(4 << 10)
        .write_buffer_size(4 << 10)
        .max_write_buffer_size(max + (64 << 10))
        .on_upgrade(move |socket| conn::serve(socket, shared, ip))
        .into_response()
}

/// Healthy when a frame can get through: the certificates' actor (which
/// every connection needs) answers on the repository runtime within 2 s.
async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let (tx, rx) = oneshot::channel();
    let sessions = RepoPath::parse(SESSIONS).expect("valid path");
    let sent = tokio::time::timeout(Duration::from_secs(2), shared.registry.send(&shared, &sessions, RepoMsg::Ping { reply: tx })).await;
    match sent {
        Ok(Ok(())) => match tokio::time::timeout(Duration::from_secs(2), rx).await {
            Ok(Ok(())) => "ok".into_response(),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "unhealthy: repositories do not answer within 2 s").into_response(),
        },
        _ => (StatusCode::SERVICE_UNAVAILABLE, "unhealthy: repositories do not take messages within 2 s").into_response(),
    }
}

/// Ready to take traffic: not stopping, and with a shared store, its
/// database reachable and listened to (`store/notify.rs`).
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.stopping() {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping").into_response()
    } else if shared.pg.as_ref().is_some_and(|pg| !pg.ready()) {
        (StatusCode::SERVICE_UNAVAILABLE, "unready: the database is unreachable; retrying").into_response()
    } else {
        "ready".into_response()
    }
}

async fn metrics_route(State(shared): State<Arc<Shared>>) -> Response {
    ([("content-type", "text/plain; version=0.0.4")], shared.metrics.prometheus()).into_response()
}

async fn stats_route(State(shared): State<Arc<Shared>>) -> Response {
    ([("content-type", "application/json")], shared.metrics.json()).into_response()
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
    peers: Vec<tokio::task::JoinHandle<()>>,
    repo_rt: tokio::runtime::Runtime,
    pub metrics: Arc<Metrics>,
    /// The root's public key (hex): what clients trust.
    pub root: String,
}

impl Running {
    /// Makes everything stored so far durable.
    pub async fn flush(&self) {
        for tx in self.shared.registry.all_running() {
            let (t, r) = oneshot::channel();
            if tx.send(RepoMsg::Flush { reply: t }).await.is_ok() {
                let _ = r.await;
            }
        }
    }

    /// Stops accepting, closes connections, flushes every repository, and
    /// waits.
    pub async fn stop(self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.accept.abort();
        for p in &self.peers {
            p.abort();
        }
        let eps: Vec<_> = self.shared.conns().by_id.values().map(|e| e.out.clone()).collect();
        for out in eps {
            out.close("the server is shutting down");
        }
        for tx in self.shared.registry.all_running() {
            let (t, r) = oneshot::channel();
            if tx.send(RepoMsg::Stop { reply: t }).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
            }
        }
        self.repo_rt.shutdown_background();
    }
}

/// Binds and starts serving; returns once the socket is listening.
pub async fn start(config: Config) -> std::io::Result<Running> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let pg = match &config.store {
        Some(url) => {
            if config.root_key.is_none() && config.root_key_hex.is_none() {
                // Each server would make its own, and none would trust the others'
                // certificates; the database never holds it.
                return Err(invalid("ERR_CONFIG: a shared store needs the root key shared by configuration: --root-key FILE or IBEX_ROOT_KEY".into()));
            }
            let store = store::PgStore::connect(url, Duration::from_secs(30)).await.map_err(|e| invalid(format!("{}: {e}", e.code())))?;
            tracing::info!(store = %store::postgres::redact(url), "repositories are kept in PostgreSQL");
            Some(store)
        }
        None => {
            private_dir(&config.data)?;
            None
        }
    };
    let root = match &config.root_key_hex {
        Some(hex) => keys::from_hex(hex)?,
        None => keys::load_or_create(&config.root_key.clone().unwrap_or_else(|| config.data.join("root.key")))?,
    };
    let mut config = config;
    if let Some(pg) = &pg {
        // Rules are shared: the last server given a file stores it, the
        // others (started without one) use it.
        let shared_rules = match &config.rules {
            Some(text) => pg.set_meta("rules", text).await.map(|()| None),
            None => pg.meta("rules").await,
        };
        match shared_rules {
            Ok(Some(text)) => {
                tracing::info!("using the authorization rules stored in the database");
                config.rules = Some(text);
            }
            Ok(None) => {}
            Err(e) => return Err(invalid(format!("{}: {e}", e.code()))),
        }
    }
    let rules = match &config.rules {
        Some(text) => Rules::with_builtins(text).map_err(|e| invalid(format!("rules: {e}")))?,
        None => Rules::default(),
    };
    let mut schemas = ibex_core::Registry::new();
    register_schemas(&mut schemas).map_err(|e| invalid(e.to_string()))?;
    let mut trust = Trust::new(rules);
    trust.add_root(root.id());
    let l = config.limits.clone();
    trust.set_clock_limits(l.max_clock_skew.as_millis() as i64, l.max_backdate.as_millis() as i64);
    let repo_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(config.repo_threads.max(1)).thread_name("ibex-repo").enable_all().build()?;
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    config.addr = addr;
    let shared = Arc::new(Shared {
        user_secret: keys::user_secret(&root),
        root: root.clone(),
        trust: RwLock::new(trust),
        durable_certs: Mutex::new(Default::default()),
        cert_requests: Mutex::new(Default::default()),
        restoring_sessions: Default::default(),
        schemas: Arc::new(schemas),
        metrics: metrics.clone(),
        registry: registry::Registry::default(),
        conns: Mutex::new(Default::default()),
        nonces: Mutex::new(Default::default()),
        logins: Mutex::new(login::Logins::new(config.login_ttl, l.max_pending_logins, l.logins_per_address, l.login_window)),
        anon_rate: Mutex::new(Default::default()),
        conn_rate: Mutex::new(Default::default()),
        login_ip_rate: Mutex::new(Default::default()),
        new_repo_rate: Mutex::new(Default::default()),
        inbound: Arc::new(Semaphore::new(l.inbound_bytes.min(u32::MAX as usize))),
        repo_rt: repo_rt.handle().clone(),
        stopping: Default::default(),
        config: config.clone(),
        pg: pg.clone(),
    });
    let mut listener_task = None;
    if let Some(pg) = &pg {
        let repos = pg.repos().await.map_err(|e| invalid(format!("{}: {e}", e.code())))?;
        shared.registry.set_known(repos.iter().filter_map(|r| RepoPath::parse(r).ok()));
        listener_task = Some(tokio::spawn(store::notify::run(shared.clone(), pg.clone())));
    } else {
        shared.registry.scan(&config.data);
    }
    let sessions_log = config.data.join("sys").join("sessions.log");
    if pg.is_none() && shared.registry.known().iter().any(|p| !p.as_str().starts_with("/sys/")) && !sessions_log.exists() {
        tracing::warn!("no /sys/sessions log but data exists: certifying sessions durably as they connect to restore it");
        shared.restoring_sessions.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    // Certificates judge every commit: load them before accepting anyone.
    let (tx, rx) = oneshot::channel();
    let sessions = RepoPath::parse(SESSIONS).expect("valid path");
    shared.registry.send(&shared, &sessions, RepoMsg::Ping { reply: tx }).await.map_err(|e| invalid(e.to_string()))?;
    let _ = rx.await;
    let mut app = Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics_route)).route("/stats", get(stats_route)).route("/sync", get(sync));
    if let Some(dir) = &config.static_dir {
        let root = std::fs::canonicalize(dir)?;
        app = app.fallback(move |req: Request<Body>| static_files::serve(root.clone(), req));
    }
    let app = app.with_state(shared.clone()).merge(admin::router(shared.clone()));
    let accept = tokio::spawn(accept_loop(listener, app, shared.clone()));
    let root_hex = root.id().to_hex();
    tracing::info!(%addr, data = %config.data.display(), root = %root_hex, "ibex-server listening");
    let mut peers: Vec<_> = config.peers.iter().map(|url| tokio::spawn(peer::run(shared.clone(), url.clone()))).collect();
    peers.extend(listener_task);
    Ok(Running { addr, shared, accept, peers, repo_rt, metrics, root: root_hex })
}

/// Accepts connections: counted per IP against the limits, with a
/// deadline for request headers (no slow-loris).
async fn accept_loop(listener: tokio::net::TcpListener, app: Router, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, most likely: wait, do not spin.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ip = peer.ip();
        if let Err(why) = conn::admit(&shared, ip, false) {
            Metrics::inc(&shared.metrics.quota_refusals);
            tracing::info!(%ip, "refused a connection: {why}");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let shared2 = shared.clone();
        let header_timeout = shared.limits().header_timeout;
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(PeerIp(ip));
                let app = app.clone();
                async move { tower::ServiceExt::oneshot(app, req).await }
            });
            let mut b = Builder::new(TokioExecutor::new());
            b.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
            let _ = b.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
            conn::release(&shared2, ip, false);
        });
    }
}

/// The data directory given to [`start`].
pub fn data_dir(r: &Running) -> PathBuf {
    r.shared.config.data.clone()
}
