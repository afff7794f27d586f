//! The operator's endpoints: `POST /admin/revert` and `POST /admin/audit`,
//! authorized by the server's root key (`ibex-server revert|audit`,
//! `admin_cli.rs`, sends them).
//!
//! # Request
//!
//! The body is a JSON object of at most [`MAX_BODY`] bytes:
//!
//! ```json
//! {"op":"revert"|"audit", "repo":"/data/todos",
//!  "sessions":["<64 hex>"], "user":"<user id>"|null, "commits":["<64 hex>"],
//!  "since":<ms>|null, "until":<ms>|null, "limit":<n>|null,
//!  "time":<ms since the epoch>, "nonce":"<32–128 hex>"}
//! ```
//!
//! with the header `x-ibex-signature: <128 hex>`: the Ed25519 signature by
//! the root key of [`DOMAIN`] followed by the body's exact bytes (the prefix
//! keeps these signatures apart from the root's commit signatures, which
//! sign 32-byte ids). The server checks, cheapest first and before any
//! repository work: the size; that the signature is the root's; that `op`
//! is the endpoint's (a signed audit cannot be replayed as a revert); that
//! `time` is within [`WINDOW_MS`] of its clock; that `nonce` was not seen in
//! that window (a cache of at most [`MAX_NONCES`] nonces, each forgotten once
//! its request is too old to pass the time check: a replay is refused by
//! one check or the other, for as long as the server runs; a restarted
//! server forgets its nonces, so a request captured in the minute before a
//! restart could be replayed once after it — use the endpoint over
//! loopback or TLS).
//!
//! # What runs
//!
//! Inside the repository's actor (`repo.rs`), in order with clients'
//! frames. Selection: `commits` (exact commits of the repository), or
//! every commit whose session is in `sessions` or is certified for `user`
//! (this server's certificates), not both; with `since ≤ timestamp ≤
//! until`. At most [`MAX_TARGETS`] commits; `repo` must exist on this
//! server. Both read the repository's whole history (ibex-core's audit):
//! narrow large ones with `since`/`until`.
//!
//! * **revert** (not for `/sys/*`): `Repository::revert` — a three-way revert
//!   per item (others' later edits stay; see `ibex_core`'s `history.rs`)
//!   written as new commits signed by the root key, which every replica
//!   trusts. They are on disk before the answer and go to subscribers and
//!   peers like any client's commits. Reverting the returned commits undoes
//!   the revert. Answer: `{"commits":["<hex>"],"items":["<key>"],"targets":n}`.
//! * **audit**: the selection (everything when no selection is given) in the
//!   order it appeared, as JSON lines (`admin_json.rs`), at most `limit`
//!   (default and maximum [`MAX_AUDIT`]); the header `x-ibex-truncated:
//!   true` says lines were left out (narrow with `since`/`until`).
//!
//! # Errors
//!
//! `{"code":"ERR_…","message":"…"}` with these stable codes ([`CODES`]):
//! 400 `ERR_DECODE` (body or field malformed), `ERR_PATH` (repository
//! path); 401 `ERR_BAD_SIGNATURE` (missing, malformed or not the root's),
//! `ERR_CLOCK` (`time` outside the window), `ERR_REPLAY` (nonce already
//! used); 403 `ERR_FORBIDDEN` (reverting a system repository); 404
//! `ERR_NOT_FOUND` (repository, commit or user unknown here); 413/429
//! `ERR_QUOTA` (body, selection or nonce cache too large); 500
//! `ERR_STORAGE`, or another of `ibex_core::Error::CODES` the engine
//! returned; 503 `ERR_UNAVAILABLE`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ibex_core::{CommitId, Error, HistoryEntry, RepoPath, Repository, SessionId, SessionKey, StoredCommit};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::repo::RepoMsg;
use crate::state::{Shared, now_ms};

/// Prefix of the signed message.
pub const DOMAIN: &[u8] = b"ibex-admin-v1\n";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-ibex-signature";
pub const MAX_BODY: usize = 64 << 10;
/// How far a request's `time` may be from the server's clock.
pub const WINDOW_MS: i64 = 60_000;
pub const MAX_NONCES: usize = 4096;
pub const MAX_TARGETS: usize = 100_000;
pub const MAX_AUDIT: usize = 100_000;
/// The codes this API answers with itself (besides the engine's).
pub const CODES: &[&str] = &["ERR_DECODE", "ERR_PATH", "ERR_BAD_SIGNATURE", "ERR_CLOCK", "ERR_REPLAY", "ERR_FORBIDDEN", "ERR_NOT_FOUND", "ERR_QUOTA", "ERR_STORAGE", "ERR_UNAVAILABLE"];

/// A request's body (see the module's doc).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminRequest {
    pub op: String,
    pub repo: String,
    #[serde(default)]
    pub sessions: Vec<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub commits: Vec<String>,
    #[serde(default)]
    pub since: Option<i64>,
    #[serde(default)]
    pub until: Option<i64>,
    #[serde(default)]
    pub limit: Option<usize>,
    pub time: i64,
    pub nonce: String,
}

/// The answer to a revert.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RevertReply {
    pub commits: Vec<String>,
    pub items: Vec<String>,
    pub targets: usize,
}

/// The answer's error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// An error of this API, with its status.
#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl AdminError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AdminError { status, code, message: message.into() }
    }
    fn decode(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ERR_DECODE", message)
    }
}

impl From<Error> for AdminError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Quota(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Path { .. } | Error::Decode { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        AdminError::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = serde_json::to_string(&ErrorBody { code: self.code.into(), message: self.message }).unwrap_or_default();
        (self.status, [("content-type", "application/json")], body).into_response()
    }
}

/// Signs a request body: the value of [`SIGNATURE_HEADER`].
pub fn sign(root: &SessionKey, body: &[u8]) -> String {
    let mut msg = DOMAIN.to_vec();
    msg.extend_from_slice(body);
    hex::encode(root.sign(&msg))
}

/// Nonces of requests still inside the time window.
#[derive(Default)]
struct Nonces {
    seen: HashMap<Vec<u8>, i64>,
}

impl Nonces {
    /// Records `nonce` of a request stamped `time`; false if seen.
    fn admit(&mut self, nonce: Vec<u8>, time: i64, now: i64) -> Result<(), AdminError> {
        if self.seen.contains_key(&nonce) {
            return Err(AdminError::new(StatusCode::UNAUTHORIZED, "ERR_REPLAY", "this request was already received (its nonce was used): sign a new one"));
        }
        if self.seen.len() >= MAX_NONCES {
            self.seen.retain(|_, t| *t >= now - WINDOW_MS);
        }
        if self.seen.len() >= MAX_NONCES {
            return Err(AdminError::new(StatusCode::TOO_MANY_REQUESTS, "ERR_QUOTA", format!("more than {MAX_NONCES} admin requests in the last minute; try again shortly")));
        }
        self.seen.insert(nonce, time);
        Ok(())
    }
}

struct Admin {
    shared: Arc<Shared>,
    nonces: Mutex<Nonces>,
}

/// The routes, with their own state (the nonce cache).
pub fn router(shared: Arc<Shared>) -> Router {
    let state = Arc::new(Admin { shared, nonces: Mutex::new(Nonces::default()) });
    Router::new().route("/admin/revert", post(revert)).route("/admin/audit", post(audit)).with_state(state)
}

/// What the actor is asked to do.
pub struct Job {
    pub revert: bool,
    pub commits: Vec<CommitId>,
    pub sessions: HashSet<SessionId>,
    pub user: Option<String>,
    pub since: i64,
    pub until: i64,
    pub limit: usize,
}

/// What it did.
pub enum Done {
    Reverted { commits: Vec<CommitId>, items: Vec<String>, targets: usize },
    Audit { entries: Vec<HistoryEntry>, users: HashMap<SessionId, String>, truncated: bool },
}

impl Job {
    /// Runs in the repository's actor; commits written are relayed and
    /// flushed by the actor afterwards.
    pub fn run(self, repo: &mut Repository, shared: &Shared) -> Result<Done, Error> {
        let mut sessions = self.sessions.clone();
        if let Some(u) = &self.user {
            let of = shared.trust().sessions_of(u);
            if of.is_empty() {
                return Err(Error::NotFound(format!("no session of user {u} is certified on this server")));
            }
            sessions.extend(of);
        }
        let (since, until) = (self.since, self.until);
        let everything = self.commits.is_empty() && sessions.is_empty();
        let keep = |c: &StoredCommit| c.timestamp >= since && c.timestamp <= until && (everything || sessions.contains(&c.session()));
        if self.revert {
            let targets: Vec<CommitId> = if self.commits.is_empty() { repo.audit(keep)?.into_iter().map(|e| e.id).collect() } else { self.commits };
            if targets.len() > MAX_TARGETS {
                return Err(Error::Quota(format!("{} commits selected; at most {MAX_TARGETS} per revert (narrow with --since/--until)", targets.len())));
            }
            let commits = repo.revert(&targets, &shared.root, now_ms())?;
            let mut items: Vec<String> = commits.iter().filter_map(|id| repo.commit(id).map(|c| c.key.to_string())).collect();
            items.sort();
            items.dedup();
            return Ok(Done::Reverted { commits, items, targets: targets.len() });
        }
        let mut entries = if self.commits.is_empty() {
            repo.audit(keep)?
        } else {
            let wanted: HashSet<CommitId> = self.commits.iter().copied().collect();
            let entries = repo.audit(|c| wanted.contains(&c.id))?;
            let found: HashSet<CommitId> = entries.iter().map(|e| e.id).collect();
            if let Some(id) = wanted.iter().find(|id| !found.contains(id)) {
                return Err(Error::NotFound(format!("commit {} is not in repository {}", id.to_hex(), repo.path())));
            }
            entries.into_iter().filter(|e| e.timestamp >= since && e.timestamp <= until).collect()
        };
        let truncated = entries.len() > self.limit;
        entries.truncate(self.limit);
        let trust = shared.trust();
        let users = entries.iter().filter_map(|e| Some((e.session, trust.certificate(&e.session)?.owner.clone()?))).collect();
        Ok(Done::Audit { entries, users, truncated })
    }
}

fn hex_list<T>(what: &str, v: &[String], parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, AdminError> {
    v.iter().map(|s| parse(s).ok_or_else(|| AdminError::decode(format!("{what} {s:?} is not 64 hex characters")))).collect()
}

/// Every check before the work (see the module's doc), then the job.
async fn checked(admin: &Admin, op: &str, req: Request) -> Result<(RepoPath, Done), AdminError> {
    let sig = req.headers().get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body =
        axum::body::to_bytes(req.into_body(), MAX_BODY).await.map_err(|_| AdminError::new(StatusCode::PAYLOAD_TOO_LARGE, "ERR_QUOTA", format!("the request body is larger than {MAX_BODY} bytes")))?;
    let unsigned = |why: &str| AdminError::new(StatusCode::UNAUTHORIZED, "ERR_BAD_SIGNATURE", why.to_owned());
    let sig = sig.ok_or_else(|| unsigned("no x-ibex-signature header: admin requests are signed with the server's root key"))?;
    let sig: [u8; 64] = hex::decode(sig.trim()).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| unsigned("the x-ibex-signature header is not 128 hex characters"))?;
    let mut msg = DOMAIN.to_vec();
    msg.extend_from_slice(&body);
    admin.shared.root.id().verify(&msg, &sig).map_err(|_| unsigned("the request is not signed by this server's root key (wrong --root-key?)"))?;
    let r: AdminRequest = serde_json::from_slice(&body).map_err(|e| AdminError::decode(format!("the request body: {e}")))?;
    if r.op != op {
        return Err(AdminError::decode(format!("this request was signed for {:?}, sent to /admin/{op}", r.op)));
    }
    let now = now_ms();
    let off = r.time.saturating_sub(now);
    if off.saturating_abs() > WINDOW_MS {
        return Err(AdminError::new(StatusCode::UNAUTHORIZED, "ERR_CLOCK", format!("the request's time is {off} ms from this server's clock (at most {WINDOW_MS}): check both clocks")));
    }
    let nonce = hex::decode(&r.nonce).ok().filter(|n| (16..=64).contains(&n.len())).ok_or_else(|| AdminError::decode("nonce: expected 32 to 128 hex characters"))?;
    admin.nonces.lock().unwrap_or_else(|e| e.into_inner()).admit(nonce, r.time, now)?;
    let path = RepoPath::parse(&r.repo).map_err(AdminError::from)?;
    let revert = op == "revert";
    if revert && path.as_str().starts_with("/sys/") {
        return Err(AdminError::new(StatusCode::FORBIDDEN, "ERR_FORBIDDEN", format!("{path} is a system repository: it cannot be reverted")));
    }
    if !admin.shared.registry.is_known(&path) {
        return Err(AdminError::new(StatusCode::NOT_FOUND, "ERR_NOT_FOUND", format!("repository {path} does not exist on this server")));
    }
    if revert && r.commits.is_empty() && r.sessions.is_empty() && r.user.is_none() {
        return Err(AdminError::decode("nothing selected: give sessions, a user or commits"));
    }
    if !r.commits.is_empty() && (!r.sessions.is_empty() || r.user.is_some()) {
        return Err(AdminError::decode("give either commits or sessions and a user, not both"));
    }
    if r.commits.len() + r.sessions.len() > MAX_TARGETS {
        return Err(AdminError::new(StatusCode::PAYLOAD_TOO_LARGE, "ERR_QUOTA", "too many commits or sessions in one request"));
    }
    let job = Job {
        revert,
        commits: hex_list("commit", &r.commits, |s| CommitId::from_hex(s).ok())?,
        sessions: hex_list("session", &r.sessions, |s| hex::decode(s).ok().and_then(|b| b.try_into().ok()).map(SessionId))?.into_iter().collect(),
        user: match r.user {
            Some(u) if u.is_empty() => return Err(AdminError::decode("user: empty user id")),
            u => u,
        },
        since: r.since.unwrap_or(i64::MIN),
        until: r.until.unwrap_or(i64::MAX),
        limit: r.limit.unwrap_or(MAX_AUDIT).min(MAX_AUDIT),
    };
    let (tx, rx) = oneshot::channel();
    let unavailable = |why: String| AdminError::new(StatusCode::SERVICE_UNAVAILABLE, "ERR_UNAVAILABLE", why);
    admin.shared.registry.send(&admin.shared, &path, RepoMsg::Admin { job, reply: tx }).await.map_err(|e| unavailable(e.to_string()))?;
    let done = tokio::time::timeout(Duration::from_secs(600), rx)
        .await
        .map_err(|_| unavailable(format!("{path} did not answer within 10 minutes")))?
        .map_err(|_| unavailable(format!("{path} closed before answering")))??;
    Ok((path, done))
}

/// Logs a refusal (an unauthorized one as a warning: someone without the
/// root key, or a replay) and answers it.
fn refused(e: AdminError) -> Response {
    if e.status == StatusCode::UNAUTHORIZED {
        tracing::warn!(code = e.code, "refused an admin request: {}", e.message);
    } else {
        tracing::info!(code = e.code, "admin request failed: {}", e.message);
    }
    e.into_response()
}

async fn revert(State(admin): State<Arc<Admin>>, req: Request) -> Response {
    match checked(&admin, "revert", req).await {
        Ok((path, Done::Reverted { commits, items, targets })) => {
            tracing::info!(repo = %path, targets, commits = commits.len(), "operator revert");
            let reply = RevertReply { commits: commits.iter().map(|c| c.to_hex()).collect(), items, targets };
            ([("content-type", "application/json")], serde_json::to_string(&reply).unwrap_or_default()).into_response()
        }
        Ok(_) => AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "ERR_STORAGE", "unexpected answer").into_response(),
        Err(e) => refused(e),
    }
}

async fn audit(State(admin): State<Arc<Admin>>, req: Request) -> Response {
    match checked(&admin, "audit", req).await {
        Ok((_, Done::Audit { entries, users, truncated })) => {
            let mut out = String::new();
            for e in &entries {
                out.push_str(&crate::admin_json::entry(e, users.get(&e.session).map(String::as_str)));
                out.push('\n');
            }
            let mut res = ([("content-type", "application/x-ndjson")], Body::from(out)).into_response();
            if truncated {
                res.headers_mut().insert("x-ibex-truncated", axum::http::HeaderValue::from_static("true"));
            }
            res
        }
        Ok(_) => AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "ERR_STORAGE", "unexpected answer").into_response(),
        Err(e) => refused(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_refused_twice_and_bounded() {
        let mut n = Nonces::default();
        n.admit(vec![1; 16], 1000, 1000).unwrap();
        assert_eq!(n.admit(vec![1; 16], 1000, 1000).unwrap_err().code, "ERR_REPLAY");
        for i in 1..MAX_NONCES {
            n.admit((i as u64).to_le_bytes().repeat(2), 1000, 1000).unwrap();
        }
        assert_eq!(n.admit(vec![2; 16], 1000, 1000).unwrap_err().code, "ERR_QUOTA");
        // Once the requests are too old to pass the time check, their
        // nonces make room.
        n.admit(vec![2; 16], 1000 + WINDOW_MS + 1, 1000 + WINDOW_MS + 1).unwrap();
        assert_eq!(n.seen.len(), 1);
    }

    #[test]
    fn signatures_are_domain_separated() {
        let k = SessionKey::from_seed([7; 32]);
        let sig: [u8; 64] = hex::decode(sign(&k, b"{}")).unwrap().try_into().unwrap();
        assert!(k.id().verify(b"ibex-admin-v1\n{}", &sig).is_ok());
        assert!(k.id().verify(b"{}", &sig).is_err());
    }
}
