//! The hub: one thread that owns every repository of the server and runs
//! the sync protocol (`ibex_core::sync`) for every connection.
//!
//! Repositories hold storage that is not `Send` in general (the same core
//! runs on OPFS in browsers), so instead of sharing them behind locks the
//! server keeps them on this thread; WebSocket tasks send it frames over a
//! channel and receive replies on their own channel. Per connection, frames
//! are handled in order. New commits are relayed at once to every other
//! connection subscribed to the repository (no polling), and the logs are
//! flushed shortly after writes and on shutdown.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use ibex_core::sync::{Message, Reconciler};
use ibex_core::{FileStorage, RepoPath, Registry, Repository};
use tokio::sync::mpsc::UnboundedSender;

/// Writes are flushed this long after they happen.
const FLUSH_AFTER: Duration = Duration::from_millis(50);

pub type ConnId = u64;

/// What a connection's task receives from the hub.
#[derive(Debug)]
pub enum Outgoing {
    Frame(Vec<u8>),
    /// Close the connection, with a reason (bad input).
    Close(String),
}

pub enum Command {
    Connect { conn: ConnId, out: UnboundedSender<Outgoing> },
    /// A connection to another server (`--peer`): every repository this
    /// server opens is reconciled with it, in both directions.
    PeerConnect { conn: ConnId, out: UnboundedSender<Outgoing> },
    Frame { conn: ConnId, bytes: Vec<u8> },
    Disconnect { conn: ConnId },
    /// Flush everything, then answer.
    Flush { done: std::sync::mpsc::Sender<()> },
    Shutdown,
}

struct Entry {
    repo: Repository,
    /// Connections that sent frames for this repository, and their side of
    /// the reconciliation.
    peers: BTreeMap<ConnId, Reconciler>,
}

struct Hub {
    data: PathBuf,
    registry: Arc<Registry>,
    repos: BTreeMap<RepoPath, Entry>,
    conns: HashMap<ConnId, UnboundedSender<Outgoing>>,
    peer_conns: BTreeSet<ConnId>,
    dirty: BTreeSet<RepoPath>,
}

/// Starts the hub thread; send it [`Command`]s. With `open_all`, every log
/// already in the data directory is opened at once (so peers reconcile it).
pub fn spawn(data: PathBuf, open_all: bool) -> (Sender<Command>, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("ibex-hub".into())
        .spawn(move || {
            let mut hub = Hub { data, registry: Arc::new(Registry::new()), repos: BTreeMap::new(), conns: HashMap::new(), peer_conns: BTreeSet::new(), dirty: BTreeSet::new() };
            if open_all {
                hub.open_all();
            }
            hub.run(rx);
        })
        .expect("spawning the hub thread");
    (tx, handle)
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    // Seeds only vary Bloom hashing between sessions; a fixed fallback is safe.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

impl Hub {
    fn run(&mut self, rx: Receiver<Command>) {
        loop {
            let cmd = if self.dirty.is_empty() {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                rx.recv_timeout(FLUSH_AFTER)
            };
            match cmd {
                Ok(Command::Connect { conn, out }) => {
                    self.conns.insert(conn, out);
                }
                Ok(Command::PeerConnect { conn, out }) => {
                    self.conns.insert(conn, out);
                    self.peer_conns.insert(conn);
                    let paths: Vec<RepoPath> = self.repos.keys().cloned().collect();
                    for p in paths {
                        self.start_with_peer(&p, conn);
                    }
                }
                Ok(Command::Frame { conn, bytes }) => self.frame(conn, &bytes),
                Ok(Command::Disconnect { conn }) => {
                    self.conns.remove(&conn);
                    self.peer_conns.remove(&conn);
                    for e in self.repos.values_mut() {
                        e.peers.remove(&conn);
                    }
                }
                Ok(Command::Flush { done }) => {
                    self.flush();
                    let _ = done.send(());
                }
                Ok(Command::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => self.flush(),
            }
        }
    }

    fn flush(&mut self) {
        for path in std::mem::take(&mut self.dirty) {
            if let Some(e) = self.repos.get_mut(&path)
                && let Err(err) = e.repo.flush()
            {
                tracing::error!(repo = %path, error = %err, "flush failed");
            }
        }
    }

    fn send(&self, conn: ConnId, out: Outgoing) {
        if let Some(tx) = self.conns.get(&conn) {
            let _ = tx.send(out);
        }
    }

    /// Opens every `<kind>/<name>.log` under the data directory.
    fn open_all(&mut self) {
        let Ok(kinds) = std::fs::read_dir(&self.data) else { return };
        for kind in kinds.flatten() {
            let Ok(files) = std::fs::read_dir(kind.path()) else { continue };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                let (Some(stem), Some(k)) = (name.strip_suffix(".log"), kind.file_name().to_str().map(str::to_owned)) else { continue };
                if let Ok(path) = RepoPath::parse(&format!("/{k}/{stem}"))
                    && let Err(e) = self.entry(&path)
                {
                    tracing::error!(repo = %path, error = %e, "cannot open repository");
                }
            }
        }
    }

    /// Starts reconciling `path` with the peer server on `conn`.
    fn start_with_peer(&mut self, path: &RepoPath, conn: ConnId) {
        let Some(entry) = self.repos.get_mut(path) else { return };
        let rec = entry.peers.entry(conn).or_insert_with(|| Reconciler::new(path.clone(), seed()));
        let frame = rec.start(&entry.repo).encode();
        self.send(conn, Outgoing::Frame(frame));
    }

    fn entry(&mut self, path: &RepoPath) -> Result<&mut Entry, String> {
        if !self.repos.contains_key(path) {
            let file = self.data.join(path.kind()).join(format!("{}.log", path.name()));
            let storage = FileStorage::open(&file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
            let (repo, report) = Repository::open(path.clone(), self.registry.clone(), Box::new(storage)).map_err(|e| e.to_string())?;
            if !report.corrupt.is_empty() || !report.rejected.is_empty() {
                tracing::warn!(repo = %path, corrupt = report.corrupt.len(), rejected = report.rejected.len(), "damaged log records skipped");
            }
            tracing::info!(repo = %path, commits = report.commits, "opened repository");
            self.repos.insert(path.clone(), Entry { repo, peers: BTreeMap::new() });
            for conn in self.peer_conns.clone() {
                self.start_with_peer(path, conn);
            }
        }
        Ok(self.repos.get_mut(path).expect("inserted above"))
    }

    fn frame(&mut self, conn: ConnId, bytes: &[u8]) {
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(conn, error = %e, "malformed frame; closing the connection");
                self.send(conn, Outgoing::Close(format!("malformed frame: {e}")));
                return;
            }
        };
        let path = msg.repo().clone();
        let entry = match self.entry(&path) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(repo = %path, error = %e, "cannot open repository");
                self.send(conn, Outgoing::Close(format!("cannot open {path}")));
                return;
            }
        };
        let rec = entry.peers.entry(conn).or_insert_with(|| Reconciler::new(path.clone(), seed()));
        let handled = rec.handle(&mut entry.repo, msg, &|c| c.verify());
        let handled = match handled {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(conn, repo = %path, error = %e, "sync failed; closing the connection");
                self.send(conn, Outgoing::Close(e.to_string()));
                return;
            }
        };
        for e in &handled.rejected {
            tracing::warn!(conn, repo = %path, code = e.code(), error = %e, "rejected commit");
        }
        // Relay what is new here to every other subscriber of the repository.
        let relay: Vec<Vec<u8>> = if handled.inserted.is_empty() {
            Vec::new()
        } else {
            let entry = &self.repos[&path];
            let commits = handled.inserted.iter().filter_map(|id| entry.repo.commit(id));
            Message::commits(&path, commits).iter().map(Message::encode).collect()
        };
        if !handled.inserted.is_empty() {
            self.dirty.insert(path.clone());
        }
        for r in handled.replies {
            self.send(conn, Outgoing::Frame(r.encode()));
        }
        let others: Vec<ConnId> = self.repos[&path].peers.keys().copied().filter(|c| *c != conn).collect();
        for other in others {
            for f in &relay {
                self.send(other, Outgoing::Frame(f.clone()));
            }
        }
    }
}
