//! `ibex-core`: the engine of Ibex, a local-first, Git-like database.
//!
//! Every item is a DAG of signed, content-addressed commits; the value of an
//! item is the deterministic three-way merge of its leaves; a repository is
//! persisted as an append-only log of checksummed records behind a
//! [`storage::Storage`] trait. The crate has no JavaScript types and does no
//! I/O except through that trait, so it compiles natively (server, tests)
//! and to `wasm32-unknown-unknown` (the browser worker).
//!
//! Module map, bottom up: [`codec`] (binary primitives) → [`value`],
//! [`schema`], [`path`] → [`text`], [`change`], [`merge`] → [`signing`],
//! [`commit`] → [`graph`] (one item's DAG) → [`repository`] (all items of a
//! repository, local writes, history) → [`log`] + [`storage`] (persistence);
//! [`sync`] is the protocol between replicas and servers (handshake,
//! reconciliation by rateless IBLTs, live commits, acknowledgements);
//! [`rules`] + [`trust`] decide which commits may enter a replica and who
//! may read what.

pub mod change;
pub mod checkpoint;
pub mod codec;
pub mod commit;
pub mod compact;
pub mod error;
pub mod graph;
pub mod log;
pub mod merge;
pub mod path;
pub mod repository;
pub mod rules;
pub mod schema;
pub mod signing;
pub mod storage;
pub mod stored;
pub mod sync;
pub mod text;
pub mod trust;
pub mod value;

pub use change::Change;
pub use commit::{Body, Commit, CommitId, SignedCommit};
pub use error::{Error, Result};
pub use path::{ItemPath, RepoPath};
pub use repository::{At, CheckpointUse, Conflict, FieldChange, Head, HistoryEntry, Inserted, LoadReport, Owner, PendingLimits, Playback, Repository, SetDigest, Written};
pub use rules::{Access, Principal, Rules};
pub use schema::{FieldDef, FieldType, Registry, Schema, SchemaId, UpgradeStep};
pub use signing::{SessionId, SessionKey};
pub use storage::{FileStorage, MemStorage, Storage};
pub use stored::StoredCommit;
pub use trust::{Certificate, Trust};
pub use value::{ItemData, Scalar, Value};
