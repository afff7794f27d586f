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
    #[arg(long = "peer")]
    peers: Vec<String>,
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
    let running = match ibex_server::start(ibex_server::Config { addr, data: args.data, static_dir: args.static_dir, peers: args.peers }).await {
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
