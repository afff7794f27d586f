//! Server configuration: where things are, and every limit.
//!
//! Every queue, buffer, cache and per-client resource has a bound here, with
//! a default sized for one machine and a flag in `main.rs`. A client that
//! reaches a bound gets an error frame with a stable code (`ERR_QUOTA`,
//! `ERR_TOO_SLOW`, `ERR_CLOCK`, …), is logged and counted in `/metrics`;
//! nobody else is affected.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::login::{LoginVerifier, PrintLink};

/// Opens the storage of a repository's log file. The default is a private
/// file (`FileStorage::open_private`); tests inject failing storage
/// (a full disk, `EIO`) here.
pub trait StorageFactory: Send + Sync {
    fn open(&self, path: &std::path::Path) -> ibex_core::Result<Box<dyn ibex_core::Storage>>;
}

/// Every limit of the server (see the README's operations section).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest WebSocket message (bigger ones close the connection).
    pub max_frame: usize,
    /// Largest single commit accepted.
    pub max_commit: usize,
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections from one IP address.
    pub max_connections_per_ip: usize,
    /// New WebSocket connections one IP address may open per minute.
    pub connections_per_ip_per_minute: u32,
    /// New anonymous sessions certified per IP address per minute.
    pub anonymous_per_ip_per_minute: u32,
    /// Repositories one connection may use at once.
    pub max_repos_per_connection: usize,
    /// New repositories (log files) one session may create per hour.
    pub new_repos_per_session_per_hour: u32,
    /// Repositories open at once (each holds a file); idle ones close first.
    pub max_open_repos: usize,
    /// A repository nobody used for this long is closed.
    pub repo_idle: Duration,
    /// Bytes waiting to be sent to one connection before answers pause
    /// (relays are dropped and the client is asked to resync).
    pub conn_queue_bytes: usize,
    /// Commit ids one connection may have queued for sending (answers
    /// and relays not yet turned into frames) before its relays are
    /// dropped and it is asked to resync.
    pub conn_backlog_ids: usize,
    /// A connection whose queue makes no progress for this long is closed.
    pub slow_consumer: Duration,
    /// Bytes of received frames being processed, over all connections.
    pub inbound_bytes: usize,
    /// Bytes of commits waiting for unknown parents, per repository.
    pub pending_bytes_per_repo: usize,
    /// … and per connection and repository.
    pub pending_bytes_per_connection: usize,
    /// Commits waiting for unknown parents, per repository.
    pub pending_commits_per_repo: usize,
    /// Waiting commits expire after this long.
    pub pending_ttl: Duration,
    /// Bytes of values one frame may copy while rebuilding delta chains.
    pub work_bytes_per_frame: u64,
    /// A received commit is durable within this long, whatever the load.
    pub flush_deadline: Duration,
    /// Most a commit may be stamped ahead of the server's clock.
    pub max_clock_skew: Duration,
    /// Most a commit may be stamped before its session was certified.
    pub max_backdate: Duration,
    /// The handshake must complete within this.
    pub handshake_timeout: Duration,
    /// HTTP request headers must arrive within this.
    pub header_timeout: Duration,
    /// A connection that sends nothing (not even a ping) for this long is
    /// closed.
    pub idle_timeout: Duration,
    /// Login links waiting at once.
    pub max_pending_logins: usize,
    /// Login links per address per `login_window`.
    pub logins_per_address: u32,
    /// Login links per connection.
    pub logins_per_connection: u32,
    /// Login links per IP address per `login_window`.
    pub logins_per_ip: u32,
    pub login_window: Duration,
    /// Reconciliation rounds one connection may start per minute.
    pub rounds_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: 16 << 20,
            max_commit: 8 << 20,
            max_connections: 20_000,
            max_connections_per_ip: 512,
            connections_per_ip_per_minute: 600,
            anonymous_per_ip_per_minute: 60,
            max_repos_per_connection: 1_024,
            new_repos_per_session_per_hour: 1_000,
            max_open_repos: 2_048,
            repo_idle: Duration::from_secs(60),
            conn_queue_bytes: 8 << 20,
            conn_backlog_ids: 1 << 20,
            slow_consumer: Duration::from_secs(30),
            inbound_bytes: 256 << 20,
            pending_bytes_per_repo: 64 << 20,
            pending_bytes_per_connection: 16 << 20,
            pending_commits_per_repo: 10_000,
            pending_ttl: Duration::from_secs(600),
            work_bytes_per_frame: 1 << 30,
            flush_deadline: Duration::from_millis(20),
            max_clock_skew: Duration::from_secs(600),
            max_backdate: Duration::from_millis(ibex_core::trust::DEFAULT_MAX_BACKDATE_MS as u64),
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_pending_logins: 10_000,
            logins_per_address: 3,
            logins_per_connection: 5,
            logins_per_ip: 20,
            login_window: Duration::from_secs(600),
            rounds_per_minute: 120,
        }
    }
}

#[derive(Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data: PathBuf,
    /// Static files (the app); unknown paths fall back to its index.html.
    pub static_dir: Option<PathBuf>,
    /// Other servers to replicate with (`ws://host:port`, `wss://…`).
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
    pub verifier: Arc<dyn LoginVerifier>,
    /// Threads that run repositories (default: the machine's cores).
    pub repo_threads: usize,
    pub limits: Limits,
    /// Where logs are stored (default: private files under `data`).
    pub storage: Option<Arc<dyn StorageFactory>>,
    /// A shared PostgreSQL store (`postgres://…`) instead of files: any
    /// number of servers with the same store and root key serve the same
    /// repositories (`store/`).
    pub store: Option<String>,
    /// The root key itself (64 hex characters, e.g. from `IBEX_ROOT_KEY`),
    /// instead of a file.
    pub root_key_hex: Option<String>,
}

impl Config {
    /// Defaults for everything but the address and data directory.
    pub fn new(addr: SocketAddr, data: PathBuf) -> Config {
        Config {
            addr,
            data,
            static_dir: None,
            peers: Vec::new(),
            root_key: None,
            rules: None,
            public_url: None,
            login_ttl: Duration::from_secs(600),
            verifier: Arc::new(PrintLink),
            repo_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            limits: Limits::default(),
            storage: None,
            store: None,
            root_key_hex: None,
        }
    }
}
