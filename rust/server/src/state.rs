//! What every task of the server shares: configuration, the root key, the
//! certificates (`Trust`), the repository registry, connections, counters.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ibex_core::{Registry as Schemas, SessionId, SessionKey, Trust};
use tokio::sync::Semaphore;

use crate::config::{Config, Limits};
use crate::login::Logins;
use crate::metrics::Metrics;
use crate::outq::OutQueue;
use crate::registry::Registry;

pub type ConnId = u64;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh id for a connection or a peer link.
pub fn next_id() -> ConnId {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Where frames for one connection (or peer link) go.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: ConnId,
    pub out: Arc<OutQueue>,
    /// Sessions whose certificate this connection has been sent.
    pub certs: Arc<Mutex<HashSet<SessionId>>>,
    pub session: SessionId,
    /// Another server (it replicates everything, certificates included).
    pub peer: bool,
    /// Commits this connection sent that were forged or malformed: an
    /// honest client sends none, so a handful closes the connection.
    pub invalid: Arc<std::sync::atomic::AtomicU32>,
}

/// Forged or malformed commits after which a connection is closed.
pub const MAX_INVALID_COMMITS: u32 = 16;

impl Endpoint {
    pub fn new(id: ConnId, out: Arc<OutQueue>, session: SessionId, peer: bool) -> Endpoint {
        Endpoint { id, out, certs: Arc::new(Mutex::new(HashSet::new())), session, peer, invalid: Default::default() }
    }
}

/// What a frame being processed holds: its bytes against the server's
/// inbound budget and a slot of its connection's frames in flight; both
/// are released when the repository actor drops it.
pub struct Permits {
    pub _inbound: tokio::sync::OwnedSemaphorePermit,
    pub _mine: tokio::sync::OwnedSemaphorePermit,
    pub metrics: Arc<Metrics>,
    pub n: u64,
}

impl Drop for Permits {
    fn drop(&mut self) {
        Metrics::sub(&self.metrics.inbound_bytes, self.n);
    }
}

/// Connections by id and by session, peer connections, outgoing links.
#[derive(Debug, Default)]
pub struct Conns {
    pub by_id: HashMap<ConnId, Endpoint>,
    pub by_session: HashMap<SessionId, HashSet<ConnId>>,
    /// Sockets in their HTTP phase, per address.
    pub per_ip: HashMap<IpAddr, usize>,
    /// WebSocket connections, per address.
    pub ws_per_ip: HashMap<IpAddr, usize>,
    /// Connections from other servers (role peer): relays of everything.
    pub peers: HashMap<ConnId, Endpoint>,
    /// Our connections to other servers (`--peer`), once welcomed.
    pub links: HashMap<ConnId, Endpoint>,
}

/// Rate counters in fixed windows.
#[derive(Debug)]
pub struct Windows<K: std::hash::Hash + Eq>(HashMap<K, (u64, u32)>);

impl<K: std::hash::Hash + Eq> Default for Windows<K> {
    fn default() -> Self {
        Windows(HashMap::new())
    }
}

impl<K: std::hash::Hash + Eq> Windows<K> {
    /// Counts one event for `key` in the window `window` (an index, e.g.
    /// minutes since the epoch); false if `limit` was already reached.
    pub fn hit(&mut self, key: K, window: u64, limit: u32) -> bool {
        if self.0.len() > 100_000 {
            self.0.retain(|_, (w, _)| *w == window);
        }
        let e = self.0.entry(key).or_insert((window, 0));
        if e.0 != window {
            *e = (window, 0);
        }
        if e.1 >= limit {
            return false;
        }
        e.1 += 1;
        true
    }
}

pub struct Shared {
    pub config: Config,
    pub root: SessionKey,
    /// Keys user ids (`trust::user_id`): derived from the root key, so
    /// peered servers agree, and never sent anywhere.
    pub user_secret: [u8; 32],
    pub trust: RwLock<Trust>,
    /// Sessions whose certificate is durable here: only their commits are
    /// taken (a certificate lost in a crash would orphan them).
    pub durable_certs: Mutex<HashSet<SessionId>>,
    /// When this server last asked clients for a lost certificate.
    pub cert_requests: Mutex<HashMap<SessionId, std::time::Instant>>,
    /// `/sys/sessions` was found damaged or missing while other data exists:
    /// sessions are certified durably at once, so certificates come back.
    pub restoring_sessions: AtomicBool,
    pub schemas: Arc<Schemas>,
    pub metrics: Arc<Metrics>,
    pub registry: Registry,
    pub conns: Mutex<Conns>,
    /// Nonces this process put in hellos (as a server) and auths (as a
    /// peer): a hello or auth carrying one of them is a reflection.
    pub nonces: Mutex<HashSet<[u8; 32]>>,
    pub logins: Mutex<Logins>,
    pub anon_rate: Mutex<Windows<IpAddr>>,
    pub conn_rate: Mutex<Windows<IpAddr>>,
    pub login_ip_rate: Mutex<Windows<IpAddr>>,
    pub new_repo_rate: Mutex<Windows<SessionId>>,
    pub inbound: Arc<Semaphore>,
    pub repo_rt: tokio::runtime::Handle,
    pub stopping: AtomicBool,
    /// The shared PostgreSQL store (`--store`); `None`: files under `data`.
    pub pg: Option<Arc<crate::store::PgStore>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    pub fn trust(&self) -> RwLockReadGuard<'_, Trust> {
        self.trust.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn trust_mut(&self) -> RwLockWriteGuard<'_, Trust> {
        self.trust.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn conns(&self) -> MutexGuard<'_, Conns> {
        lock(&self.conns)
    }

    pub fn durable_certs(&self) -> MutexGuard<'_, HashSet<SessionId>> {
        lock(&self.durable_certs)
    }

    pub fn nonces(&self) -> MutexGuard<'_, HashSet<[u8; 32]>> {
        lock(&self.nonces)
    }

    pub fn logins(&self) -> MutexGuard<'_, Logins> {
        lock(&self.logins)
    }

    /// Endpoints that receive every repository's new commits: peer
    /// connections and our links to peers.
    pub fn replicas(&self) -> Vec<Endpoint> {
        let c = self.conns();
        c.peers.values().chain(c.links.values()).cloned().collect()
    }

    pub fn hit_anon(&self, ip: IpAddr) -> bool {
        let minute = (now_ms() / 60_000) as u64;
        lock(&self.anon_rate).hit(ip, minute, self.limits().anonymous_per_ip_per_minute)
    }

    pub fn hit_connection(&self, ip: IpAddr) -> bool {
        let minute = (now_ms() / 60_000) as u64;
        lock(&self.conn_rate).hit(ip, minute, self.limits().connections_per_ip_per_minute)
    }

    pub fn hit_login_ip(&self, ip: IpAddr) -> bool {
        let w = (now_ms() as u64) / (self.limits().login_window.as_millis().max(1) as u64);
        lock(&self.login_ip_rate).hit(ip, w, self.limits().logins_per_ip)
    }

    pub fn hit_new_repo(&self, s: SessionId) -> bool {
        let hour = (now_ms() / 3_600_000) as u64;
        lock(&self.new_repo_rate).hit(s, hour, self.limits().new_repos_per_session_per_hour)
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}
