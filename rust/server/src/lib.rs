//! `ibex-server`: serves the app's static files, `GET /healthz`, and the
//! WebSocket sync endpoint `GET /sync`, storing repositories with
//! `ibex-core`'s log format under the data directory.
//!
//! The binary (`main.rs`) parses flags; tests start the same server
//! in-process with [`start`].

pub mod hub;
pub mod peer;
pub mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::Sender;

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::services::{ServeDir, ServeFile};

/// Largest WebSocket message accepted (bigger ones close the connection).
pub const MAX_FRAME: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data: PathBuf,
    /// Static files (the app); unknown paths fall back to its index.html.
    pub static_dir: Option<PathBuf>,
    /// Other servers to replicate with (`ws://host:port` or `http://…`).
    pub peers: Vec<String>,
}

#[derive(Clone)]
pub struct AppState {
    hub: Sender<hub::Command>,
}

async fn sync(ws: WebSocketUpgrade, State(state): State<AppState>) -> impl IntoResponse {
    ws.max_message_size(MAX_FRAME).max_frame_size(MAX_FRAME).on_upgrade(move |socket| ws::serve(socket, state))
}

async fn healthz() -> &'static str {
    "ok"
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    hub: Sender<hub::Command>,
    hub_thread: std::thread::JoinHandle<()>,
    peers: Vec<tokio::task::JoinHandle<()>>,
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
    std::fs::create_dir_all(&config.data)?;
    let (hub, hub_thread) = hub::spawn(config.data.clone(), !config.peers.is_empty());
    let mut app = Router::new().route("/healthz", get(healthz)).route("/sync", get(sync));
    if let Some(dir) = &config.static_dir {
        app = app.fallback_service(ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html"))));
    }
    let app = app.with_state(AppState { hub: hub.clone() });
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    tracing::info!(%addr, data = %config.data.display(), "ibex-server listening");
    let peers = config.peers.iter().map(|url| tokio::spawn(peer::run(url.clone(), hub.clone()))).collect();
    Ok(Running { addr, shutdown, task, hub, hub_thread, peers })
}
