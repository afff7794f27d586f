//! `ibex-server --port 8080 --data ./data --static demo/dist`
//! `ibex-server --store postgres://… --root-key /etc/ibex/root.key` (many servers, one database)
//! `ibex-server import --data ./data --store postgres://…`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

/// Ibex sync server: serves the app, relays and stores commits.
#[derive(Parser, Debug)]
#[command(version, about, after_help = "Operator commands against a running server: `ibex-server revert --help`, `ibex-server audit --help`.")]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Keep repositories in PostgreSQL (postgres://user:password@host:port/db)
    /// instead of files under --data: any number of servers given the same
    /// store and root key serve the same repositories.
    #[arg(long, env = "IBEX_STORE")]
    store: Option<String>,
    /// Port to listen on.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Directory for the repositories' logs (created 0700; files 0600).
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// Directory of static files to serve (the app). Symlinks leaving it
    /// and dotfiles are refused.
    #[arg(long = "static")]
    static_dir: Option<PathBuf>,
    /// Another server to replicate with (repeatable): ws://host:port, or
    /// wss:// across any network you do not control. Peers must share
    /// the root key (--root-key).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Root key file (64 hex characters). Default: <data>/root.key,
    /// created on first start. With --store, required (or IBEX_ROOT_KEY).
    #[arg(long = "root-key")]
    root_key: Option<PathBuf>,
    /// Authorization rules file (format in the README); default rules
    /// otherwise.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Base URL for login links (default http://<host>:<port>).
    #[arg(long = "public-url")]
    public_url: Option<String>,
    /// How long a login link works, in seconds.
    #[arg(long = "login-ttl", default_value_t = 600)]
    login_ttl: u64,
    /// Send login links by e-mail through this SMTP server
    /// (smtp://user:pass@host:587 = STARTTLS, smtps://… = TLS). Default:
    /// print them (development).
    #[arg(long = "smtp-url")]
    smtp_url: Option<String>,
    /// Sender of login e-mails, e.g. "Todo <login@example.com>".
    #[arg(long = "smtp-from", default_value = "Ibex <login@localhost>")]
    smtp_from: String,
    /// Threads that run repositories (default: the machine's cores).
    #[arg(long = "repo-threads")]
    repo_threads: Option<usize>,
    #[arg(long = "max-connections", default_value_t = ibex_server::Limits::default().max_connections)]
    max_connections: usize,
    #[arg(long = "max-connections-per-ip", default_value_t = ibex_server::Limits::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    #[arg(long = "connections-per-ip-per-minute", default_value_t = ibex_server::Limits::default().connections_per_ip_per_minute)]
    connections_per_ip_per_minute: u32,
    #[arg(long = "rounds-per-minute", default_value_t = ibex_server::Limits::default().rounds_per_minute)]
    rounds_per_minute: u32,
    #[arg(long = "anonymous-per-ip-per-minute", default_value_t = ibex_server::Limits::default().anonymous_per_ip_per_minute)]
    anonymous_per_ip_per_minute: u32,
    #[arg(long = "max-repos-per-connection", default_value_t = ibex_server::Limits::default().max_repos_per_connection)]
    max_repos_per_connection: usize,
    #[arg(long = "new-repos-per-session-per-hour", default_value_t = ibex_server::Limits::default().new_repos_per_session_per_hour)]
    new_repos_per_session_per_hour: u32,
    #[arg(long = "max-open-repos", default_value_t = ibex_server::Limits::default().max_open_repos)]
    max_open_repos: usize,
    /// Bytes queued for one connection before it is paused / asked to resync.
    #[arg(long = "conn-queue-bytes", default_value_t = ibex_server::Limits::default().conn_queue_bytes)]
    conn_queue_bytes: usize,
    /// Seconds a connection may leave its queue full before it is closed.
    #[arg(long = "slow-consumer-seconds", default_value_t = ibex_server::Limits::default().slow_consumer.as_secs())]
    slow_consumer_seconds: u64,
    #[arg(long = "max-commit-bytes", default_value_t = ibex_server::Limits::default().max_commit)]
    max_commit_bytes: usize,
    #[arg(long = "max-frame-bytes", default_value_t = ibex_server::Limits::default().max_frame)]
    max_frame_bytes: usize,
    /// Milliseconds within which a received commit is on disk.
    #[arg(long = "flush-deadline-ms", default_value_t = ibex_server::Limits::default().flush_deadline.as_millis() as u64)]
    flush_deadline_ms: u64,
    /// Seconds a commit may be stamped ahead of the server's clock.
    #[arg(long = "max-clock-skew-seconds", default_value_t = ibex_server::Limits::default().max_clock_skew.as_secs())]
    max_clock_skew_seconds: u64,
    #[arg(long = "handshake-timeout-seconds", default_value_t = ibex_server::Limits::default().handshake_timeout.as_secs())]
    handshake_timeout_seconds: u64,
    #[arg(long = "idle-timeout-seconds", default_value_t = ibex_server::Limits::default().idle_timeout.as_secs())]
    idle_timeout_seconds: u64,
    #[arg(long = "logins-per-address", default_value_t = ibex_server::Limits::default().logins_per_address)]
    logins_per_address: u32,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Copies a file data directory into a PostgreSQL store (repeatable:
    /// commits already there are skipped). Stop the file server first.
    Import {
        /// The data directory of a file-based server.
        #[arg(long)]
        data: PathBuf,
        /// postgres://user:password@host:port/db
        #[arg(long, env = "IBEX_STORE")]
        store: String,
    },
}

fn raise_fd_limit() {
    // Each connection and open repository is a file descriptor: use what
    // the system allows (the soft limit is often far below the hard one).
    #[cfg(unix)]
    unsafe {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

#[tokio::main]
async fn main() {
    // `ibex-server revert|audit …`: the operator's commands (admin_cli.rs).
    if let Some(code) = ibex_server::admin_cli::run_if_command().await {
        std::process::exit(code);
    }
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())).init();
    let args = Args::parse();
    if let Some(Cmd::Import { data, store }) = &args.command {
        match ibex_server::store::import::run(data, store).await {
            Ok(done) => {
                println!("imported {} repositories: {} commits stored, {} already there, {} damaged records skipped", done.repos, done.commits, done.skipped, done.damaged);
                return;
            }
            Err(e) => {
                eprintln!("ibex-server import: {e}");
                std::process::exit(1);
            }
        }
    }
    raise_fd_limit();
    let addr: SocketAddr = match format!("{}:{}", args.host, args.port).parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ibex-server: invalid --host/--port: {e}");
            std::process::exit(2);
        }
    };
    let mut config = ibex_server::Config::new(addr, args.data);
    config.static_dir = args.static_dir;
    config.peers = args.peers;
    config.root_key = args.root_key;
    config.store = args.store;
    // The root key as configuration (e.g. a secret in the environment).
    config.root_key_hex = std::env::var("IBEX_ROOT_KEY").ok().filter(|k| !k.trim().is_empty());
    config.public_url = args.public_url;
    config.login_ttl = Duration::from_secs(args.login_ttl);
    if let Some(n) = args.repo_threads {
        config.repo_threads = n;
    }
    let l = &mut config.limits;
    l.max_connections = args.max_connections;
    l.max_connections_per_ip = args.max_connections_per_ip;
    l.anonymous_per_ip_per_minute = args.anonymous_per_ip_per_minute;
    l.connections_per_ip_per_minute = args.connections_per_ip_per_minute;
    l.rounds_per_minute = args.rounds_per_minute;
    l.max_repos_per_connection = args.max_repos_per_connection;
    l.new_repos_per_session_per_hour = args.new_repos_per_session_per_hour;
    l.max_open_repos = args.max_open_repos;
    l.conn_queue_bytes = args.conn_queue_bytes;
    l.slow_consumer = Duration::from_secs(args.slow_consumer_seconds);
    l.max_commit = args.max_commit_bytes;
    l.max_frame = args.max_frame_bytes;
    l.flush_deadline = Duration::from_millis(args.flush_deadline_ms);
    l.max_clock_skew = Duration::from_secs(args.max_clock_skew_seconds);
    l.handshake_timeout = Duration::from_secs(args.handshake_timeout_seconds);
    l.idle_timeout = Duration::from_secs(args.idle_timeout_seconds);
    l.logins_per_address = args.logins_per_address;
    if let Some(url) = &args.smtp_url {
        match ibex_server::login::SmtpLink::new(url, &args.smtp_from) {
            Ok(s) => config.verifier = Arc::new(s),
            Err(e) => {
                eprintln!("ibex-server: {e}");
                std::process::exit(2);
            }
        }
    }
    if let Some(p) = &args.rules {
        match std::fs::read_to_string(p) {
            Ok(t) => config.rules = Some(t),
            Err(e) => {
                eprintln!("ibex-server: cannot read rules file {}: {e}", p.display());
                std::process::exit(2);
            }
        }
    }
    let running = match ibex_server::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ibex-server: cannot start on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    #[cfg(unix)]
    tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: flushing repositories");
    running.stop().await;
}
