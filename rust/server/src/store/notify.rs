//! How servers sharing a PostgreSQL store learn of each other's commits.
//!
//! Protocol: the transaction that stores commits of a repository
//! (`postgres.rs`, `PgStore::append`) calls
//! `pg_notify('ibex_commits', '<last_seq> <repo>')` — the repository's
//! highest seq after it, in decimal, a space, then the repository path —
//! which PostgreSQL delivers to every listener when (and only if) the
//! transaction commits, in commit order. The payload only says *what
//! changed*; the commits themselves are read as rows with
//! `seq > (the last seq that repository's actor read)`, so a notification
//! that is lost, coalesced or arrives late costs nothing: the next read
//! catches up.
//!
//! Each server keeps one connection (outside the pool) that `LISTEN`s.
//! For each notification it tells the repository's actor, if that
//! repository is open here (`RepoMsg::Refresh`); `/sys/sessions` is always
//! told (certificates decide what every server accepts). A closed
//! repository needs nothing: it reads every row when it next opens. When
//! the connection drops (a database restart, a failover) the server is
//! unready (`/readyz`), reconnects with back-off (100 ms doubling to 5 s),
//! and then tells every open repository to catch up, since notifications
//! sent meanwhile were lost.
//!
//! Bounded: notifications are coalesced per repository (the highest seq
//! wins) in a map of at most [`MAX_WAITING`] repositories, drained by one
//! task that waits for each actor's inbox; past the bound the map is
//! replaced by "every open repository catches up".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use ibex_core::RepoPath;
use ibex_core::trust::SESSIONS;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use super::postgres::{CHANNEL, PgStore};
use crate::repo::RepoMsg;
use crate::state::Shared;

/// Repositories with notifications not yet handed to their actors.
pub const MAX_WAITING: usize = 10_000;

/// The payload of a notification (see the module docs); the statement
/// that stores commits (`postgres.rs`) builds the same in SQL.
pub fn payload(repo: &str, last_seq: i64) -> String {
    format!("{last_seq} {repo}")
}

/// Reads a payload; `None` if it is not one of ours.
pub fn parse(payload: &str) -> Option<(RepoPath, i64)> {
    let (seq, repo) = payload.split_once(' ')?;
    Some((RepoPath::parse(repo).ok()?, seq.parse().ok()?))
}

#[derive(Default)]
struct Waiting {
    repos: HashMap<RepoPath, i64>,
    /// Every open repository must catch up (after a reconnect, or when
    /// `repos` overflowed).
    all: bool,
}

/// A task that ends with its owner (when the listener is aborted, so are
/// its helpers and its connection).
struct Owned(tokio::task::JoinHandle<()>);

impl Drop for Owned {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Listens until the server stops (the task is aborted).
pub async fn run(shared: Arc<Shared>, store: Arc<PgStore>) {
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    let wake = Arc::new(Notify::new());
    let _forward = Owned(tokio::spawn(forward(shared.clone(), waiting.clone(), wake.clone())));
    let mut backoff = Duration::from_millis(100);
    loop {
        match store.pg_config.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024);
                let driver = Owned(tokio::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                                if tx.send(n.payload().to_owned()).await.is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "the database connection that listens for commits failed");
                                break;
                            }
                        }
                    }
                }));
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        store.listening.store(true, std::sync::atomic::Ordering::Relaxed);
                        backoff = Duration::from_millis(100);
                        tracing::info!("listening for other servers' commits");
                        // Whatever was stored while we were not listening.
                        waiting.lock().unwrap_or_else(|e| e.into_inner()).all = true;
                        wake.notify_one();
                        while let Some(p) = rx.recv().await {
                            let Some((repo, seq)) = parse(&p) else {
                                tracing::warn!(payload = %p, "a notification this server does not understand; ignored");
                                continue;
                            };
                            let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
                            if w.repos.len() >= MAX_WAITING && !w.repos.contains_key(&repo) {
                                w.repos.clear();
                                w.all = true;
                            }
                            let e = w.repos.entry(repo).or_insert(seq);
                            *e = (*e).max(seq);
                            drop(w);
                            wake.notify_one();
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot LISTEN"),
                }
                drop(driver);
                drop(client);
            }
            Err(e) => tracing::warn!(error = %e, "cannot reach the database to listen; retrying"),
        }
        store.listening.store(false, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Hands waiting notifications to the actors.
async fn forward(shared: Arc<Shared>, waiting: Arc<Mutex<Waiting>>, wake: Arc<Notify>) {
    let sessions = RepoPath::parse(SESSIONS).expect("valid path");
    loop {
        wake.notified().await;
        let w = std::mem::take(&mut *waiting.lock().unwrap_or_else(|e| e.into_inner()));
        let mut todo: Vec<(RepoPath, i64)> = w.repos.into_iter().collect();
        if w.all {
            todo.extend(shared.registry.running_paths().into_iter().map(|p| (p, i64::MAX)));
            todo.push((sessions.clone(), i64::MAX));
        }
        // Certificates first: commits of new sessions need them.
        todo.sort_by_key(|(p, _)| *p != sessions);
        for (repo, seq) in todo {
            shared.registry.add_known(&repo);
            if repo == sessions {
                // Waited for: a commit stored after a certificate must not
                // reach an actor before the certificate is known here.
                let (tx, rx) = tokio::sync::oneshot::channel();
                match shared.registry.send(&shared, &repo, RepoMsg::Refresh { seq, done: Some(tx) }).await {
                    Ok(()) => {
                        let _ = rx.await;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot refresh certificates"),
                }
            } else if let Some(tx) = shared.registry.running(&repo) {
                let _ = tx.send(RepoMsg::Refresh { seq, done: None }).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let (r, s) = parse(&payload("/data/todos", 42)).unwrap();
        assert_eq!((r.as_str(), s), ("/data/todos", 42));
        assert!(parse("nonsense").is_none());
        assert!(parse("12 not-a-path").is_none());
    }
}
