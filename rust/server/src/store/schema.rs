//! The PostgreSQL schema, versioned; every server migrates it at start.
//!
//! Version 1:
//!
//! ```sql
//! -- What version of this file the database follows.
//! -- Settings every server shares: 'schema_version' → '1'; 'rules' → the
//! -- authorization rules (rules.rs text) last given to a server with
//! -- --rules, used by servers started without one.
//! ibex_meta    (key text PRIMARY KEY, value text NOT NULL)
//! -- One row per repository ever written; last_seq is the highest seq given
//! -- out (seqs are per repository and given under this row's lock, so they
//! -- increase in commit order; a seq given to a commit another server had
//! -- already stored stays unused, so there may be gaps).
//! ibex_repos   (repo text PRIMARY KEY, last_seq bigint NOT NULL, created_ms bigint NOT NULL)
//! -- Every commit: its id (SHA-256, 32 bytes) and canonical signed bytes
//! -- (`ibex_core::StoredCommit`), verified by the server that stored it.
//! -- Parents come before children in seq order within a repository.
//! ibex_commits (repo text NOT NULL REFERENCES ibex_repos, seq bigint NOT NULL,
//!               id bytea NOT NULL, bytes bytea NOT NULL,
//!               PRIMARY KEY (repo, seq), UNIQUE (repo, id))
//! -- Login links handed out and not used yet (conn.rs); any server redeems.
//! ibex_logins  (token text PRIMARY KEY, email text NOT NULL, expires_ms bigint NOT NULL)
//! ```
//!
//! Version 2 adds:
//!
//! ```sql
//! -- Login links sent to an address in its current window (--logins-per-address
//! -- per login_window), counted by every server of the group together.
//! ibex_login_sent (email text PRIMARY KEY, window_start_ms bigint NOT NULL, sent integer NOT NULL)
//! ```
//!
//! Session certificates and users are the repositories `/sys/sessions` and
//! `/sys/users`: rows of `ibex_commits` like any other. A migration is
//! appended to [`MIGRATIONS`], never edited; servers take an advisory lock
//! while migrating, so several starting at once migrate once, and a server
//! refuses a database whose version is newer than it knows.

/// Key of the transaction-level advisory lock held while migrating.
pub const MIGRATION_LOCK: i64 = 0x1bec_5000_0001;

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: commits, repositories, login links.
    "CREATE TABLE ibex_repos (repo text PRIMARY KEY, last_seq bigint NOT NULL DEFAULT 0, created_ms bigint NOT NULL);
     CREATE TABLE ibex_commits (repo text NOT NULL REFERENCES ibex_repos(repo), seq bigint NOT NULL, id bytea NOT NULL, bytes bytea NOT NULL,
                                PRIMARY KEY (repo, seq), UNIQUE (repo, id));
     CREATE TABLE ibex_logins (token text PRIMARY KEY, email text NOT NULL, expires_ms bigint NOT NULL);",
    // 2: login links sent per address, counted across servers.
    "CREATE TABLE ibex_login_sent (email text PRIMARY KEY, window_start_ms bigint NOT NULL, sent integer NOT NULL);",
];

/// The version this server writes.
pub fn current() -> i64 {
    MIGRATIONS.len() as i64
}
