//! `ibex-server revert …` and `ibex-server audit …`: the operator's
//! commands against a running server, signed with its root key (the
//! endpoints and their signing are in `admin.rs`).
//!
//! ```text
//! ibex-server revert --url http://127.0.0.1:8080 --root-key /secrets/root.key --repo /data/todos \
//!     (--session <hex>… | --user <id> | --commit <hex>…) [--since <ms|RFC 3339>] [--until …]
//! ibex-server audit  --url … --root-key … --repo … [--session …|--user …|--commit …] [--since] [--until] [--limit N]
//! ```
//!
//! `revert` prints the new commits' ids on stdout, one a line (give them
//! to `revert --commit` to undo the revert), and a summary on stderr.
//! `audit` prints JSON lines (`admin_json.rs`). Exit status: 0 done, 1 the
//! server refused or could not be reached (the message names the code and
//! the reason), 2 a wrong argument or an unreadable key file. Only
//! `http://` URLs: run the command on the server's host or through a
//! tunnel (the key never leaves this machine; requests are signed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use clap::{Args, Parser};
use hyper_util::rt::TokioIo;
use ibex_core::SessionKey;

use crate::admin::{AdminRequest, ErrorBody, RevertReply, SIGNATURE_HEADER, sign};
use crate::admin_json::parse_time;

#[derive(Parser, Debug)]
#[command(name = "ibex-server", about = "Operator commands against a running ibex-server")]
enum Cli {
    /// Reverts a session's, a user's or some commits' changes (three-way:
    /// others' later edits stay) as new commits signed by the root key.
    Revert(Common),
    /// Prints a repository's changes as JSON lines.
    Audit {
        #[command(flatten)]
        common: Common,
        /// At most this many lines (the server caps it at 100000).
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Args, Debug)]
struct Common {
    /// The running server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// The server's root key file (64 hex characters).
    #[arg(long = "root-key")]
    root_key: PathBuf,
    /// The repository, e.g. /data/todos.
    #[arg(long)]
    repo: String,
    /// A session (64 hex characters; repeatable).
    #[arg(long = "session")]
    sessions: Vec<String>,
    /// Every session certified for this user id.
    #[arg(long)]
    user: Option<String>,
    /// A commit (64 hex characters; repeatable).
    #[arg(long = "commit")]
    commits: Vec<String>,
    /// Only commits stamped at or after this time (ms since the epoch or RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only commits stamped at or before this time.
    #[arg(long)]
    until: Option<String>,
}

/// Runs `revert`/`audit` if the command line starts with one: its exit
/// status; `None` for any other command line (the server's flags).
pub async fn run_if_command() -> Option<i32> {
    let args: Vec<String> = std::env::args().collect();
    if !matches!(args.get(1).map(String::as_str), Some("revert" | "audit")) {
        return None;
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return Some(if e.use_stderr() { 2 } else { 0 });
        }
    };
    Some(run(cli).await)
}

/// Reads a root key file (64 hex characters), never creating one.
fn load_key(path: &Path) -> Result<SessionKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the root key {}: {e}", path.display()))?;
    let raw = hex::decode(text.trim()).map_err(|_| format!("the root key {} is not hex", path.display()))?;
    let seed: [u8; 32] = raw.try_into().map_err(|_| format!("the root key {} is not 64 hex characters", path.display()))?;
    Ok(SessionKey::from_seed(seed))
}

fn nonce() -> Result<String, String> {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).map_err(|e| format!("no secure random source: {e}"))?;
    Ok(hex::encode(n))
}

/// A refusal or a failure to reach the server: exit status 1.
struct Failed(String);

async fn run(cli: Cli) -> i32 {
    let (op, common, limit) = match cli {
        Cli::Revert(c) => ("revert", c, None),
        Cli::Audit { common, limit } => ("audit", common, limit),
    };
    let usage = |m: String| {
        eprintln!("ibex-server {op}: {m}");
        2
    };
    let key = match load_key(&common.root_key) {
        Ok(k) => k,
        Err(e) => return usage(e),
    };
    let time = |s: &Option<String>| s.as_deref().map(parse_time).transpose();
    let (since, until) = match (time(&common.since), time(&common.until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) => return usage(format!("--since: {e}")),
        (_, Err(e)) => return usage(format!("--until: {e}")),
    };
    if common.user.as_deref().is_some_and(|u| u.trim().is_empty()) {
        return usage("--user: empty user id".into());
    }
    if !common.commits.is_empty() && (!common.sessions.is_empty() || common.user.is_some()) {
        return usage("give either --commit or --session/--user, not both".into());
    }
    if op == "revert" && common.sessions.is_empty() && common.user.is_none() && common.commits.is_empty() {
        return usage("say what to revert: --session, --user or --commit".into());
    }
    let n = match nonce() {
        Ok(n) => n,
        Err(e) => return usage(e),
    };
    let req = AdminRequest { op: op.into(), repo: common.repo, sessions: common.sessions, user: common.user, commits: common.commits, since, until, limit, time: crate::state::now_ms(), nonce: n };
    let body = serde_json::to_vec(&req).unwrap_or_default();
    let sig = sign(&key, &body);
    match post(&common.url, op, body, sig).await {
        Ok((truncated, text)) => {
            if op == "audit" {
                print!("{text}");
                if truncated {
                    eprintln!("ibex-server audit: more changes than printed (--limit, or narrow with --since/--until)");
                }
                return 0;
            }
            let Ok(r) = serde_json::from_str::<RevertReply>(&text) else {
                eprintln!("ibex-server revert: the server's answer is not a revert reply: {text}");
                return 1;
            };
            for c in &r.commits {
                println!("{c}");
            }
            let mut items = r.items.iter().take(20).cloned().collect::<Vec<_>>().join(", ");
            if r.items.len() > 20 {
                items.push_str(", …");
            }
            eprintln!(
                "reverted {} commit(s) in {}: {} new commit(s), {} item(s) touched{}",
                r.targets,
                req.repo,
                r.commits.len(),
                r.items.len(),
                if items.is_empty() { String::new() } else { format!(": {items}") }
            );
            0
        }
        Err(Failed(m)) => {
            eprintln!("ibex-server {op}: {m}");
            1
        }
    }
}

/// POSTs a signed request; the answer's body, and whether it was truncated.
async fn post(url: &str, op: &str, body: Vec<u8>, sig: String) -> Result<(bool, String), Failed> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(Failed(format!("--url {url}: only http:// URLs (run on the server's host, or through a tunnel)")));
    };
    let (authority, prefix) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p.trim_end_matches('/')));
    let addr = if authority.contains(':') && !authority.ends_with(']') { authority.to_owned() } else { format!("{authority}:80") };
    let unreachable = |e: String| Failed(format!("cannot reach the server at {url}: {e}"));
    let stream = match tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => return Err(unreachable("no answer within 10 s".into())),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(stream)).await.map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let path = if prefix.is_empty() { format!("/admin/{op}") } else { format!("/{prefix}/admin/{op}") };
    let req = hyper::Request::post(path)
        .header("host", authority)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, sig)
        .body(Body::from(body))
        .map_err(|e| Failed(format!("--url {url}: {e}")))?;
    let res = match tokio::time::timeout(Duration::from_secs(600), sender.send_request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => return Err(unreachable("no answer within 10 minutes".into())),
    };
    let (parts, incoming) = res.into_parts();
    let bytes = axum::body::to_bytes(Body::new(incoming), usize::MAX).await.map_err(|e| unreachable(format!("the answer was cut: {e}")))?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if !parts.status.is_success() {
        return Err(Failed(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(e) => format!("{}: {} (HTTP {})", e.code, e.message, parts.status.as_u16()),
            Err(_) if parts.status.as_u16() == 404 || parts.status.as_u16() == 405 => format!("HTTP {} from {url}: is it an ibex-server with admin endpoints?", parts.status.as_u16()),
            Err(_) => format!("HTTP {}: {}", parts.status.as_u16(), text.trim()),
        }));
    }
    Ok((parts.headers.get("x-ibex-truncated").is_some(), text))
}
