//! Repository actors by path, and who is subscribed to what.
//!
//! Each open repository is one actor task on the repository runtime
//! (`repo.rs`); it is spawned on first use and retires itself when idle,
//! closing its file. Subscriptions (which connection gets which
//! repository's new commits) live here, not in the actors, so a repository
//! can close while its readers stay subscribed: the next commit reopens it
//! and reaches them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use ibex_core::RepoPath;
use tokio::sync::mpsc;

use crate::error::{Result, ServerError};
use crate::metrics::Metrics;
use crate::repo::{self, RepoMsg};
use crate::state::{ConnId, Endpoint, Shared};

/// Messages waiting for one repository before senders wait.
pub const INBOX: usize = 64;

struct Actor {
    tx: mpsc::Sender<RepoMsg>,
    last_used: Instant,
}

#[derive(Default)]
struct Inner {
    actors: HashMap<RepoPath, Actor>,
    subs: HashMap<RepoPath, HashMap<ConnId, Endpoint>>,
    by_conn: HashMap<ConnId, HashSet<RepoPath>>,
    /// Repositories with a log under the data directory (or rows in the
    /// shared store).
    known: BTreeSet<RepoPath>,
}

#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Finds every `<kind>/<name>.log` under `data` (nothing is opened).
    pub fn scan(&self, data: &Path) {
        let mut known = BTreeSet::new();
        if let Ok(kinds) = std::fs::read_dir(data) {
            for kind in kinds.flatten() {
                let Ok(files) = std::fs::read_dir(kind.path()) else { continue };
                for f in files.flatten() {
                    let name = f.file_name().to_string_lossy().to_string();
                    if let (Some(stem), Some(k)) = (name.strip_suffix(".log"), kind.file_name().to_str())
                        && let Ok(p) = RepoPath::parse(&format!("/{k}/{stem}"))
                    {
                        known.insert(p);
                    }
                }
            }
        }
        self.lock().known = known;
    }

    /// Every repository this server holds.
    pub fn known(&self) -> Vec<RepoPath> {
        self.lock().known.iter().cloned().collect()
    }

    /// Records that `path` now has a log; true if it is new.
    pub fn add_known(&self, path: &RepoPath) -> bool {
        self.lock().known.insert(path.clone())
    }

    pub fn is_known(&self, path: &RepoPath) -> bool {
        self.lock().known.contains(path)
    }

    /// The actor of `path`, spawned if needed.
    pub fn actor(&self, shared: &Arc<Shared>, path: &RepoPath) -> Result<mpsc::Sender<RepoMsg>> {
        let mut i = self.lock();
        if let Some(a) = i.actors.get_mut(path)
            && !a.tx.is_closed()
        {
            a.last_used = Instant::now();
            return Ok(a.tx.clone());
        }
        if shared.stopping() {
            return Err(ServerError::Unavailable("the server is shutting down".into()));
        }
        i.actors.retain(|_, a| !a.tx.is_closed());
        if i.actors.len() >= shared.limits().max_open_repos {
            Metrics::inc(&shared.metrics.quota_refusals);
            return Err(ServerError::quota(format!("{} repositories are open, the most this server allows (--max-open-repos); try again shortly", i.actors.len())));
        }
        let (tx, rx) = mpsc::channel(INBOX);
        i.actors.insert(path.clone(), Actor { tx: tx.clone(), last_used: Instant::now() });
        drop(i);
        Metrics::inc(&shared.metrics.repos_open);
        shared.repo_rt.spawn(repo::run(shared.clone(), path.clone(), rx));
        Ok(tx)
    }

    /// Sends to `path`'s actor (reopening it if it just retired).
    pub async fn send(&self, shared: &Arc<Shared>, path: &RepoPath, msg: RepoMsg) -> Result<()> {
        let tx = self.actor(shared, path)?;
        match tx.send(msg).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(msg)) => {
                let tx = self.actor(shared, path)?;
                tx.send(msg).await.map_err(|_| ServerError::Unavailable(format!("{path} is closing")))
            }
        }
    }

    /// The actor of `path` if it is running.
    pub fn running(&self, path: &RepoPath) -> Option<mpsc::Sender<RepoMsg>> {
        self.lock().actors.get(path).map(|a| a.tx.clone()).filter(|t| !t.is_closed())
    }

    /// The paths of every running actor.
    pub fn running_paths(&self) -> Vec<RepoPath> {
        self.lock().actors.iter().filter(|(_, a)| !a.tx.is_closed()).map(|(p, _)| p.clone()).collect()
    }

    /// Sets the repositories this server holds (a shared store's list).
    pub fn set_known(&self, repos: impl IntoIterator<Item = RepoPath>) {
        self.lock().known = repos.into_iter().collect();
    }

    /// Every running actor.
    pub fn all_running(&self) -> Vec<mpsc::Sender<RepoMsg>> {
        self.lock().actors.values().map(|a| a.tx.clone()).collect()
    }

    /// An actor retires: removed unless messages arrived meanwhile (then
    /// it keeps going). Called by the actor itself.
    pub fn retire(&self, path: &RepoPath, rx: &mpsc::Receiver<RepoMsg>) -> bool {
        let mut i = self.lock();
        if !rx.is_empty() {
            return false;
        }
        i.actors.remove(path);
        true
    }

    /// Subscribes a connection to `path`'s new commits.
    pub fn subscribe(&self, path: &RepoPath, ep: &Endpoint, max_per_conn: usize) -> Result<()> {
        let mut i = self.lock();
        let mine = i.by_conn.entry(ep.id).or_default();
        if !mine.contains(path) && mine.len() >= max_per_conn {
            return Err(ServerError::quota(format!("one connection may sync at most {max_per_conn} repositories at once (--max-repos-per-connection)")));
        }
        mine.insert(path.clone());
        i.subs.entry(path.clone()).or_default().insert(ep.id, ep.clone());
        Ok(())
    }

    /// Connections subscribed to `path`.
    pub fn subscribers(&self, path: &RepoPath) -> Vec<Endpoint> {
        self.lock().subs.get(path).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Forgets a connection; returns the repositories it was subscribed to.
    pub fn disconnect(&self, conn: ConnId) -> Vec<RepoPath> {
        let mut i = self.lock();
        let repos: Vec<RepoPath> = i.by_conn.remove(&conn).map(|s| s.into_iter().collect()).unwrap_or_default();
        for r in &repos {
            if let Some(m) = i.subs.get_mut(r) {
                m.remove(&conn);
                if m.is_empty() {
                    i.subs.remove(r);
                }
            }
        }
        repos
    }

    /// Unsubscribes one connection from one repository.
    pub fn unsubscribe(&self, path: &RepoPath, conn: ConnId) {
        let mut i = self.lock();
        if let Some(s) = i.by_conn.get_mut(&conn) {
            s.remove(path);
        }
        if let Some(m) = i.subs.get_mut(path) {
            m.remove(&conn);
        }
    }

    pub fn open_count(&self) -> usize {
        self.lock().actors.len()
    }
}
