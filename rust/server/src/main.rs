//! `ibex-server --port 8080 --data ./data --static demo/dist`

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Ibex sync server: serves the app, relays and stores commits.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Port to listen on.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Directory for the repositories' logs.
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// Directory of static files to serve (the app).
    #[arg(long = "static")]
    static_dir: Option<PathBuf>,
    /// Another server to replicate with (repeatable): ws://host:port.
    /// Peers must share the root key (--root-key).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Root key file (64 hex characters). Default: <data>/root.key,
    /// created on first start.
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
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())).init();
    let args = Args::parse();
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
    config.public_url = args.public_url;
    config.login_ttl = std::time::Duration::from_secs(args.login_ttl);
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
