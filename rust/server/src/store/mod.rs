//! Where a server keeps its repositories.
//!
//! * **Files** (the default, nothing to install): one log and checkpoint
//!   per repository under `--data`, opened by the repository actor through
//!   `ibex_core::Storage` (`repo.rs`). One server owns its directory.
//! * **PostgreSQL** (`--store postgres://…`, or `IBEX_STORE`): every
//!   repository's commits are rows of a shared database (`postgres.rs`,
//!   schema and migrations in `schema.rs`), so any number of servers
//!   serve any repository and keep only caches. A commit is acknowledged
//!   only after the transaction that stores it commits. Each server listens
//!   for what the others stored (`notify.rs`) and feeds it to its open
//!   repositories, so a commit accepted anywhere reaches subscribers
//!   everywhere, without polling. Login links waiting to be used live there
//!   too; the root key never does (it is configuration).

pub mod import;
pub mod notify;
pub mod postgres;
pub mod schema;

pub use postgres::{PgStore, StoreError};
