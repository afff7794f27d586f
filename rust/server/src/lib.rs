//! `ibex-server`: serves the app's static files, `GET /healthz`, and the
//! WebSocket sync endpoint `GET /sync`, storing repositories with
//! `ibex-core`'s log format under the data directory.
//!
//! The binary (`main.rs`) parses flags; tests start the same server
//! in-process with [`start`].

pub mod hub;
pub mod keys;
pub mod login;
pub mod peer;
pub mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::Duration;

use ibex_core::Rules;

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::services::{ServeDir, ServeFile};

/// Largest WebSocket message accepted (bigger ones close the connection).
pub const MAX_FRAME: usize = 16 << 20;

#[derive(Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data: PathBuf,
    /// Static files (the app); unknown paths fall back to its index.html.
    pub static_dir: Option<PathBuf>,
    /// Other servers to replicate with (`ws://host:port` or `http://…`).
    /// Peers must share the root key.
    pub peers: Vec<String>,
    /// The root key file (64 hex characters); default `<data>/root.key`,
    /// created on first start.
    pub root_key: Option<PathBuf>,
    /// Authorization rules (rules.rs text) below the built-in `/sys` rules;
    /// `None`: the defaults.
    pub rules: Option<String>,
    /// Base URL of login links; default `http://<addr>`.
    pub public_url: Option<String>,
    /// How long a login link works.
    pub login_ttl: Duration,
    /// Delivers login links (default: printed to the log).
    pub verifier: Arc<dyn login::LoginVerifier>,
}

impl Config {
    /// Defaults for everything but the address and data directory.
    pub fn new(addr: SocketAddr, data: PathBuf) -> Config {
        Config { addr, data, static_dir: None, peers: Vec::new(), root_key: None, rules: None, public_url: None, login_ttl: Duration::from_secs(600), verifier: Arc::new(login::PrintLink) }
    }
}

#[derive(Clone)]
pub struct AppState {
    hub: Sender<hub::Command>,
    stats: Arc<hub::Stats>,
}

async fn sync(ws: WebSocketUpgrade, State(state): State<AppState>) -> impl IntoResponse {
    ws.max_message_size(MAX_FRAME).max_frame_size(MAX_FRAME).on_upgrade(move |socket| ws::serve(socket, state))
}

async fn healthz() -> &'static str {
    "ok"
}

/// Security counters, as JSON.
async fn stats_route(State(state): State<AppState>) -> String {
    let s = &state.stats;
    format!(
        "{{\"rejectedCommits\":{},\"refusedHandshakes\":{},\"forbiddenReads\":{}}}",
        s.rejected_commits.load(Ordering::Relaxed),
        s.refused_handshakes.load(Ordering::Relaxed),
        s.forbidden_reads.load(Ordering::Relaxed)
    )
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    hub: Sender<hub::Command>,
    hub_thread: std::thread::JoinHandle<()>,
    peers: Vec<tokio::task::JoinHandle<()>>,
    pub stats: Arc<hub::Stats>,
    /// The root's public key (hex): what clients trust.
    pub root: String,
}

impl Running {
    /// Makes everything stored so far durable.
    pub fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.hub.send(hub::Command::Flush { done: tx }).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Stops accepting, closes connections, flushes, and waits.
    pub async fn stop(self) {
        for p in &self.peers {
            p.abort();
        }
        let _ = self.shutdown.send(());
        let _ = self.task.await;
        let _ = self.hub.send(hub::Command::Shutdown);
        let _ = tokio::task::spawn_blocking(move || self.hub_thread.join()).await;
    }
}

/// Binds and starts serving; returns once the socket is listening.
pub async fn start(config: Config) -> std::io::Result<Running> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    std::fs::create_dir_all(&config.data)?;
    let root = keys::load_or_create(&config.root_key.clone().unwrap_or_else(|| config.data.join("root.key")))?;
    let rules = match &config.rules {
        Some(text) => Rules::with_builtins(text).map_err(|e| invalid(format!("rules: {e}")))?,
        None => Rules::default(),
    };
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let root_hex = root.id().to_hex();
    let stats = Arc::new(hub::Stats::default());
    let sec = hub::Security { root, rules, public_url, login_ttl: config.login_ttl, verifier: config.verifier.clone() };
    let (hub, hub_thread) = hub::spawn(config.data.clone(), !config.peers.is_empty(), sec, stats.clone()).map_err(invalid)?;
    let mut app = Router::new().route("/healthz", get(healthz)).route("/stats", get(stats_route)).route("/sync", get(sync));
    if let Some(dir) = &config.static_dir {
        app = app.fallback_service(ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html"))));
    }
    let app = app.with_state(AppState { hub: hub.clone(), stats: stats.clone() });
    let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    tracing::info!(%addr, data = %config.data.display(), root = %root_hex, "ibex-server listening");
    let peers = config.peers.iter().map(|url| tokio::spawn(peer::run(url.clone(), hub.clone()))).collect();
    Ok(Running { addr, shutdown, task, hub, hub_thread, peers, stats, root: root_hex })
}
