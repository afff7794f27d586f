//! Repositories in PostgreSQL (`--store postgres://…`): the connection
//! pool, migrations, and every query the server makes (prepared and cached
//! per connection). Tables are described in `schema.rs`, the notification
//! protocol in `notify.rs`.
//!
//! Storing commits ([`PgStore::append`]) at each flush of a repository
//! actor: one statement, so one round trip and one transaction, per slice
//! of at most [`APPEND_ROWS`] commits (parents first):
//!
//! 1. `INSERT … ON CONFLICT DO UPDATE` the repository's row, raising
//!    `last_seq` by the slice's length: this locks the row until commit, so
//!    writers of one repository take turns, seqs are given in commit order,
//!    and a reader that saw seq `n` has seen everything before it.
//! 2. Insert the commits as `old last_seq + 1 …` in the order given;
//!    one another server stored already is skipped (`ON CONFLICT DO
//!    NOTHING`) and its seq stays unused: readers never rely on seqs being
//!    gapless, only increasing.
//! 3. If any was new, `pg_notify` the new `last_seq` (`notify.rs`; it is
//!    delivered at commit). The statement commits; only then does the
//!    actor acknowledge.
//!
//! Every call has a deadline ([`OP_TIMEOUT`]); a failure marks the store
//! failing (`/readyz` unready) until a call succeeds again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::schema;

/// The channel notifications of new commits are sent on.
pub const CHANNEL: &str = "ibex_commits";
/// Most rows inserted by one statement.
pub const APPEND_ROWS: usize = 1_000;
/// Most rows read by one statement (a repository opens in pages of this).
pub const READ_ROWS: i64 = 5_000;
/// Deadline of one database call (a dead or frozen database is an error
/// the caller retries, never a hang).
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections in the pool (repository actors and login calls share them).
pub const POOL_SIZE: usize = 16;

/// What can go wrong with the database, with stable codes (reported in
/// the server's log and, as `ERR_STORAGE`, to clients whose commits wait).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The `--store` URL does not parse.
    #[error("--store: {0}")]
    Url(String),
    /// The database cannot be reached (down, restarting, failing over).
    #[error("the database is unreachable: {0}")]
    Unavailable(String),
    /// The database was migrated by a newer server.
    #[error("the database schema is version {found}; this server knows up to {known}: upgrade the server")]
    SchemaTooNew { found: i64, known: i64 },
    /// A query failed for another reason.
    #[error("database query failed: {0}")]
    Query(String),
    /// A stored row is not what this server writes.
    #[error("damaged row in the database: {0}")]
    Damaged(String),
}

impl StoreError {
    pub const CODES: &[&str] = &["ERR_STORE_URL", "ERR_STORE_UNAVAILABLE", "ERR_STORE_SCHEMA", "ERR_STORE_QUERY", "ERR_STORE_DAMAGED"];

    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Url(_) => "ERR_STORE_URL",
            StoreError::Unavailable(_) => "ERR_STORE_UNAVAILABLE",
            StoreError::SchemaTooNew { .. } => "ERR_STORE_SCHEMA",
            StoreError::Query(_) => "ERR_STORE_QUERY",
            StoreError::Damaged(_) => "ERR_STORE_DAMAGED",
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.is_closed() || e.as_db_error().is_none() { StoreError::Unavailable(e.to_string()) } else { StoreError::Query(e.to_string()) }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

impl From<StoreError> for ibex_core::Error {
    fn from(e: StoreError) -> Self {
        ibex_core::Error::Storage(format!("{}: {e}", e.code()))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What [`PgStore::append`] did.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    /// The repository's last seq before the first slice (`None`: nothing
    /// was given).
    pub base: Option<i64>,
    /// Its last seq after the last slice.
    pub last: i64,
    /// Commits that were new (the others were stored already; their seqs
    /// stay unused).
    pub inserted: u64,
    /// No other writer stored anything between the slices: every seq in
    /// `base + 1 ..= last` is this call's.
    pub contiguous: bool,
}

/// A commit as read back: seq, id, bytes.
pub type Row = (i64, Vec<u8>, Vec<u8>);

/// The shared database of a group of servers.
pub struct PgStore {
    pool: Pool,
    /// For the listening connection (`notify.rs`), outside the pool.
    pub(crate) pg_config: tokio_postgres::Config,
    /// The listening connection is up.
    pub(crate) listening: AtomicBool,
    /// The last call failed (cleared by the next that succeeds).
    failing: AtomicBool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("ready", &self.ready()).finish()
    }
}

/// Whether `url` names a PostgreSQL store.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl PgStore {
    /// Connects and migrates, retrying with back-off for up to `patience`
    /// (a database that is still starting).
    pub async fn connect(url: &str, patience: Duration) -> Result<Arc<PgStore>> {
        if !is_postgres_url(url) {
            return Err(StoreError::Url(format!("expected postgres://user:password@host:port/database, got `{}`", redact(url))));
        }
        let mut pg_config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| StoreError::Url(e.to_string()))?;
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("ibex-server");
        }
        pg_config.connect_timeout(Duration::from_secs(5));
        let mgr = Manager::from_config(pg_config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(mgr)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(OP_TIMEOUT))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Url(e.to_string()))?;
        let store = Arc::new(PgStore { pool, pg_config, listening: AtomicBool::new(false), failing: AtomicBool::new(false) });
        let t0 = Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            match store.migrate().await {
                Ok(()) => return Ok(store),
                Err(e @ (StoreError::Unavailable(_) | StoreError::Query(_))) if t0.elapsed() < patience => {
                    tracing::warn!(error = %e, "database not ready; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Brings the schema to [`schema::current`], once for all servers.
    async fn migrate(&self) -> Result<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::MIGRATION_LOCK]).await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS ibex_meta (key text PRIMARY KEY, value text NOT NULL)").await?;
        let found: i64 = match tx.query_opt("SELECT value FROM ibex_meta WHERE key = 'schema_version'", &[]).await? {
            Some(row) => col::<String>(&row, 0)?.parse().map_err(|_| StoreError::Damaged("ibex_meta.schema_version is not a number".into()))?,
            None => 0,
        };
        let known = schema::current();
        if found > known {
            return Err(StoreError::SchemaTooNew { found, known });
        }
        for (i, m) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.batch_execute(m).await?;
            tracing::info!(version = i + 1, "migrated the database schema");
        }
        tx.execute("INSERT INTO ibex_meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = $1", &[&known.to_string()]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ready: listening for other servers' commits, and the last call
    /// worked.
    pub fn ready(&self) -> bool {
        self.listening.load(Ordering::Relaxed) && !self.failing.load(Ordering::Relaxed)
    }

    /// Runs `f` with a deadline, recording success or failure.
    async fn call<T>(&self, f: impl Future<Output = Result<T>>) -> Result<T> {
        let r = match tokio::time::timeout(OP_TIMEOUT, f).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!("no answer within {} s", OP_TIMEOUT.as_secs()))),
        };
        match &r {
            Ok(_) => self.failing.store(false, Ordering::Relaxed),
            Err(StoreError::Unavailable(_)) => self.failing.store(true, Ordering::Relaxed),
            Err(_) => {}
        }
        r
    }

    /// Runs a database call from synchronous code on a multi-threaded
    /// runtime (a repository actor), blocking only that thread.
    pub fn block<T>(&self, f: impl Future<Output = Result<T>>) -> Result<T> {
        let h = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| h.block_on(self.call(f)))
    }

    /// Commits of `repo` with seq above `after`, in seq order, at most
    /// [`READ_ROWS`].
    pub async fn read_after(&self, repo: &str, after: i64) -> Result<Vec<Row>> {
        self.call(async {
            let c = self.pool.get().await?;
            let st = c.prepare_cached("SELECT seq, id, bytes FROM ibex_commits WHERE repo = $1 AND seq > $2 ORDER BY seq LIMIT $3").await?;
            let rows = c.query(&st, &[&repo, &after, &READ_ROWS]).await?;
            rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?, col(r, 2)?))).collect()
        })
        .await
    }

    /// Stores `commits` (id, bytes), parents first: one statement (its own
    /// transaction) per slice of at most [`APPEND_ROWS`], see the module
    /// docs. Returns when every slice is committed.
    pub async fn append(&self, repo: &str, commits: &[(&[u8], &[u8])], now_ms: i64) -> Result<Appended> {
        self.call(async {
            let c = self.pool.get().await?;
            let st = c
                .prepare_cached(
                    "WITH lock AS (
                         INSERT INTO ibex_repos AS r (repo, last_seq, created_ms) VALUES ($1, $3, $2)
                         ON CONFLICT (repo) DO UPDATE SET last_seq = r.last_seq + $3
                         RETURNING r.last_seq - $3 AS base
                     ), ins AS (
                         INSERT INTO ibex_commits (repo, seq, id, bytes)
                         SELECT $1, (SELECT base FROM lock) + t.ord, t.id, t.bytes
                         FROM unnest($4::bytea[], $5::bytea[]) WITH ORDINALITY AS t(id, bytes, ord)
                         ON CONFLICT (repo, id) DO NOTHING
                         RETURNING 1
                     ), note AS (
                         SELECT pg_notify($6, ((SELECT base FROM lock) + $3)::text || ' ' || $1)
                         WHERE (SELECT count(*) FROM ins) > 0
                     )
                     SELECT (SELECT base FROM lock), (SELECT count(*) FROM ins), (SELECT count(*) FROM note)",
                )
                .await?;
            let mut out = Appended { base: None, last: 0, inserted: 0, contiguous: true };
            for slice in commits.chunks(APPEND_ROWS) {
                let ids: Vec<&[u8]> = slice.iter().map(|(id, _)| *id).collect();
                let bytes: Vec<&[u8]> = slice.iter().map(|(_, b)| *b).collect();
                let n = slice.len() as i64;
                let row = c.query_one(&st, &[&repo, &now_ms, &n, &ids, &bytes, &CHANNEL]).await?;
                let base: i64 = col(&row, 0)?;
                let inserted: i64 = col(&row, 1)?;
                if out.base.is_some() && base != out.last {
                    out.contiguous = false;
                }
                out.base.get_or_insert(base);
                out.last = base + n;
                out.inserted += inserted as u64;
            }
            Ok(out)
        })
        .await
    }

    /// A setting shared by every server (`ibex_meta`).
    pub async fn meta(&self, key: &str) -> Result<Option<String>> {
        self.call(async {
            let c = self.pool.get().await?;
            c.query_opt("SELECT value FROM ibex_meta WHERE key = $1", &[&key]).await?.map(|r| col(&r, 0)).transpose()
        })
        .await
    }

    /// Sets a shared setting.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.call(async {
            let c = self.pool.get().await?;
            c.execute("INSERT INTO ibex_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2", &[&key, &value]).await?;
            Ok(())
        })
        .await
    }

    /// Every repository stored.
    pub async fn repos(&self) -> Result<Vec<String>> {
        self.call(async {
            let c = self.pool.get().await?;
            let rows = c.query("SELECT repo FROM ibex_repos ORDER BY repo", &[]).await?;
            rows.iter().map(|r| col(r, 0)).collect()
        })
        .await
    }

    /// Remembers a login link's token until `expires_ms`; expired ones
    /// are deleted on the way.
    pub async fn put_login(&self, token: &str, email: &str, expires_ms: i64, now_ms: i64) -> Result<()> {
        self.call(async {
            let c = self.pool.get().await?;
            let st = c.prepare_cached("WITH gone AS (DELETE FROM ibex_logins WHERE expires_ms < $4) INSERT INTO ibex_logins (token, email, expires_ms) VALUES ($1, $2, $3)").await?;
            c.execute(&st, &[&token, &email, &expires_ms, &now_ms]).await?;
            Ok(())
        })
        .await
    }

    /// Counts one login link sent to `email` in its window of `window_ms`
    /// (shared by every server); false if `limit` were already sent.
    pub async fn count_login(&self, email: &str, now_ms: i64, window_ms: i64, limit: u32) -> Result<bool> {
        self.call(async {
            let c = self.pool.get().await?;
            let st = c
                .prepare_cached(
                    "WITH old AS (DELETE FROM ibex_login_sent WHERE window_start_ms <= $2::bigint - $3::bigint AND email <> $1::text)
                     INSERT INTO ibex_login_sent AS s (email, window_start_ms, sent) VALUES ($1, $2, 1)
                     ON CONFLICT (email) DO UPDATE SET
                         window_start_ms = CASE WHEN s.window_start_ms <= $2 - $3 THEN $2 ELSE s.window_start_ms END,
                         sent = CASE WHEN s.window_start_ms <= $2 - $3 THEN 1 ELSE s.sent + 1 END
                     RETURNING sent",
                )
                .await?;
            let sent: i32 = col(&c.query_one(&st, &[&email, &now_ms, &window_ms]).await?, 0)?;
            Ok(sent as i64 <= i64::from(limit))
        })
        .await
    }

    /// A token's address and expiry, if it is waiting.
    pub async fn peek_login(&self, token: &str) -> Result<Option<(String, i64)>> {
        self.call(async {
            let c = self.pool.get().await?;
            let st = c.prepare_cached("SELECT email, expires_ms FROM ibex_logins WHERE token = $1").await?;
            c.query_opt(&st, &[&token]).await?.map(|r| Ok((col(&r, 0)?, col(&r, 1)?))).transpose()
        })
        .await
    }

    /// Uses a token up (on whichever server): its address and expiry.
    pub async fn take_login(&self, token: &str) -> Result<Option<(String, i64)>> {
        self.call(async {
            let c = self.pool.get().await?;
            let st = c.prepare_cached("DELETE FROM ibex_logins WHERE token = $1 RETURNING email, expires_ms").await?;
            c.query_opt(&st, &[&token]).await?.map(|r| Ok((col(&r, 0)?, col(&r, 1)?))).transpose()
        })
        .await
    }

    /// Forgets a token whose link could not be sent.
    pub async fn cancel_login(&self, token: &str) -> Result<()> {
        self.call(async {
            let c = self.pool.get().await?;
            c.execute("DELETE FROM ibex_logins WHERE token = $1", &[&token]).await?;
            Ok(())
        })
        .await
    }
}

/// Column `i` of a row, or why not (a table altered by hand): an error,
/// never a panic.
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a tokio_postgres::Row, i: usize) -> Result<T> {
    row.try_get(i).map_err(|e| StoreError::Damaged(format!("column {i}: {e}")))
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_and_codes_stable() {
        assert_eq!(redact("postgres://ibex:secret@db:5432/ibex"), "postgres://ibex:***@db:5432/ibex");
        assert_eq!(redact("postgres://db/ibex"), "postgres://db/ibex");
        assert_eq!(StoreError::Unavailable("x".into()).code(), "ERR_STORE_UNAVAILABLE");
        assert_eq!(StoreError::SchemaTooNew { found: 3, known: 1 }.code(), "ERR_STORE_SCHEMA");
        assert!(StoreError::CODES.contains(&StoreError::Url("u".into()).code()));
        assert!(!is_postgres_url("./data"));
    }
}
