//! `ibex-server import --data DIR --store postgres://…`: copies a file data
//! directory (every `<kind>/<name>.log`) into a PostgreSQL store.
//!
//! Each log is read into memory (the files are not changed: a torn tail
//! or a damaged record is skipped and reported, as a server opening it
//! would), and its commits are stored parents first through the same
//! transaction the servers use ([`PgStore::append`]), in batches. Commits
//! already in the database are skipped, so an import can be repeated or
//! resumed, and run while servers use the store. The root key is not
//! imported: give the servers the same `--root-key` file (or
//! `IBEX_ROOT_KEY`) the file server used. Stop the file server first.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ibex_core::trust::register_schemas;
use ibex_core::{MemStorage, Repository};

use super::PgStore;
use crate::registry::Registry;

/// Commits stored per transaction.
pub const BATCH: usize = 10_000;

/// What an import did.
#[derive(Debug, Default)]
pub struct Imported {
    pub repos: usize,
    pub commits: usize,
    /// Commits already in the database.
    pub skipped: usize,
    /// Records skipped as damaged, or commits whose parents are missing.
    pub damaged: usize,
}

pub async fn run(data: &Path, url: &str) -> Result<Imported, String> {
    let store = PgStore::connect(url, Duration::from_secs(30)).await.map_err(|e| format!("{}: {e}", e.code()))?;
    let known = Registry::default();
    known.scan(data);
    let repos = known.known();
    if repos.is_empty() {
        return Err(format!("no repository logs (<kind>/<name>.log) under {}", data.display()));
    }
    let mut schemas = ibex_core::Registry::new();
    register_schemas(&mut schemas).map_err(|e| e.to_string())?;
    let schemas = Arc::new(schemas);
    let mut done = Imported::default();
    for path in repos {
        let file = data.join(path.kind()).join(format!("{}.log", path.name()));
        let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let (repo, report) = Repository::open(path.clone(), schemas.clone(), Box::new(MemStorage::from_bytes(bytes))).map_err(|e| format!("{path}: {e}"))?;
        let damaged = report.corrupt.len() + report.rejected.len() + repo.pending_count();
        let commits = repo.commits_in_order();
        let mut new = 0;
        for batch in commits.chunks(BATCH) {
            let rows: Vec<(&[u8], &[u8])> = batch.iter().map(|c| (&c.id.0[..], c.bytes())).collect();
            let done = store.append(path.as_str(), &rows, crate::state::now_ms()).await.map_err(|e| format!("{path}: {}: {e}", e.code()))?;
            new += done.inserted as usize;
        }
        println!("{path}: {} commits, {new} new, {} already there, {damaged} damaged", commits.len(), commits.len() - new);
        done.repos += 1;
        done.commits += new;
        done.skipped += commits.len() - new;
        done.damaged += damaged;
    }
    Ok(done)
}
