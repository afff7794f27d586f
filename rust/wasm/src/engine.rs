//! `Engine`: the object the worker's JavaScript drives. One per database;
//! thin glue from JS values to [`Database`](crate::database::Database). Bytes
//! (not per-field messages) cross the boundary; errors are JS `Error`s with
//! a `code`.

use ibex_core::{CheckpointUse, LoadReport, MemStorage, Storage};
use js_sys::{Array, Object, Reflect};
use wasm_bindgen::prelude::*;
use web_sys::FileSystemSyncAccessHandle;

use crate::database::{Database, Event, Filter};
use crate::error::{js_error, to_js};
use crate::js_storage::{JsStorage, LogBackend};
use crate::opfs_storage::OpfsStorage;

#[wasm_bindgen]
pub struct Engine {
    db: Database,
}

fn set(o: &Object, k: &str, v: impl Into<JsValue>) {
    // Defining a property on a plain fresh object cannot fail.
    let _ = Reflect::set(o, &JsValue::from_str(k), &v.into());
}

fn report_to_js(r: &LoadReport, items: usize) -> JsValue {
    let o = Object::new();
    set(&o, "commits", r.commits as f64);
    set(&o, "items", items as f64);
    set(&o, "truncatedBytes", r.truncated_bytes as f64);
    set(&o, "pending", r.pending as f64);
    let corrupt = Array::new();
    for c in &r.corrupt {
        let e = Object::new();
        set(&e, "offset", c.offset as f64);
        set(&e, "length", c.len as f64);
        set(&e, "reason", c.reason.as_str());
        corrupt.push(&e);
    }
    set(&o, "corrupt", corrupt);
    let rejected = Array::new();
    for (offset, err) in &r.rejected {
        let e = Object::new();
        set(&e, "offset", *offset as f64);
        set(&e, "code", err.code());
        set(&e, "message", err.to_string());
        rejected.push(&e);
    }
    set(&o, "rejected", rejected);
    let ck = match &r.checkpoint {
        CheckpointUse::None => "none".to_owned(),
        CheckpointUse::Used { tail } => format!("used ({tail} records after it)"),
        CheckpointUse::Created => "created".to_owned(),
        CheckpointUse::Rebuilt(why) => format!("rebuilt: {why}"),
    };
    set(&o, "checkpoint", ck.as_str());
    set(&o, "convertedFrom", r.converted_from.map_or(JsValue::NULL, |v| JsValue::from_f64(v.into())));
    o.into()
}

#[wasm_bindgen]
impl Engine {
    /// `seed`: the session's 32-byte private seed (kept on this device);
    /// `schemas`: `varint n, n × schema` (core `schema.rs`).
    #[wasm_bindgen(constructor)]
    pub fn new(seed: &[u8], schemas: &[u8]) -> Result<Engine, JsValue> {
        let seed: [u8; 32] = seed.try_into().map_err(|_| js_error("ERR_BAD_KEY", "a session seed is exactly 32 bytes"))?;
        Ok(Engine { db: Database::new(seed, schemas).map_err(|e| to_js(&e))? })
    }

    /// 32 bytes from the platform's secure random source, for a new session.
    #[wasm_bindgen(js_name = newSessionSeed)]
    pub fn new_session_seed() -> Result<Vec<u8>, JsValue> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| js_error("ERR_STORAGE", &format!("no secure random source: {e}")))?;
        Ok(seed.to_vec())
    }

    /// This replica's session id (its public key, hex).
    #[wasm_bindgen(getter, js_name = sessionId)]
    pub fn session_id(&self) -> String {
        self.db.session().id().to_hex()
    }

    fn open(&mut self, repo: &str, storage: Box<dyn Storage>, checkpoint: Option<Box<dyn Storage>>) -> Result<JsValue, JsValue> {
        let report = self.db.open(repo, storage, checkpoint).map_err(|e| to_js(&e))?;
        // `/sys/sessions` is a list of certificates, not items.
        let items = self.db.counts(repo).map_or(0, |(items, _)| items);
        Ok(report_to_js(&report, items))
    }

    /// Opens a repository stored in an OPFS file, with its checkpoint in a
    /// second file when given; returns its load report.
    #[wasm_bindgen(js_name = openOpfs)]
    pub fn open_opfs(&mut self, repo: &str, handle: FileSystemSyncAccessHandle, checkpoint: Option<FileSystemSyncAccessHandle>) -> Result<JsValue, JsValue> {
        let storage = OpfsStorage::new(handle).map_err(|e| to_js(&e))?;
        let checkpoint = match checkpoint {
            Some(h) => Some(Box::new(OpfsStorage::new(h).map_err(|e| to_js(&e))?) as Box<dyn Storage>),
            None => None,
        };
        self.open(repo, Box::new(storage), checkpoint)
    }

    /// Opens a repository stored by a JS `LogBackend` (Node files,
    /// IndexedDB, …), with its checkpoint in a second one when given.
    #[wasm_bindgen(js_name = openBackend)]
    pub fn open_backend(&mut self, repo: &str, backend: LogBackend, checkpoint: Option<LogBackend>) -> Result<JsValue, JsValue> {
        self.open(repo, Box::new(JsStorage(backend)), checkpoint.map(|c| Box::new(JsStorage(c)) as Box<dyn Storage>))
    }

    /// Opens a repository that lives only in memory.
    #[wasm_bindgen(js_name = openMemory)]
    pub fn open_memory(&mut self, repo: &str) -> Result<JsValue, JsValue> {
        self.open(repo, Box::new(MemStorage::new()), None)
    }

    #[wasm_bindgen(js_name = isOpen)]
    pub fn is_open(&self, repo: &str) -> bool {
        self.db.is_open(repo)
    }

    /// The heads of an open repository's items `from .. from + count`, in
    /// key order (`heads` in `batch.rs`).
    pub fn heads(&mut self, repo: &str, from: u32, count: u32) -> Result<Vec<u8>, JsValue> {
        self.db.heads(repo, from as usize, count as usize).map_err(|e| to_js(&e))
    }

    /// Number of items of an open repository (soft-deleted ones included).
    #[wasm_bindgen(js_name = itemCount)]
    pub fn item_count(&mut self, repo: &str) -> Result<u32, JsValue> {
        self.db.counts(repo).map(|(items, _)| items as u32).map_err(|e| to_js(&e))
    }

    /// Applies a batch of mutations; returns the outcomes (`batch.rs`).
    pub fn mutate(&mut self, batch: &[u8], now: f64) -> Result<Vec<u8>, JsValue> {
        self.db.mutate(batch, now as i64).map_err(|e| to_js(&e))
    }

    /// Heads of the items the last `mutate` committed (for other tabs).
    #[wasm_bindgen(js_name = mutatedHeads)]
    pub fn mutated_heads(&mut self) -> Vec<u8> {
        self.db.mutated_heads()
    }

    /// Heads changed by anything other than this replica's own mutations.
    pub fn changed(&mut self) -> Vec<u8> {
        self.db.changed()
    }

    /// Bytes of WebAssembly linear memory this engine's module holds: the
    /// commit graphs, item values and indexes of every open repository
    /// (memory only grows; freed space is reused, not returned).
    #[wasm_bindgen(getter, js_name = memoryBytes)]
    pub fn memory_bytes(&self) -> f64 {
        #[cfg(target_arch = "wasm32")]
        return (core::arch::wasm32::memory_size(0) * 65_536) as f64;
        #[cfg(not(target_arch = "wasm32"))]
        return 0.0;
    }

    /// Makes everything written so far durable (the storage's flush).
    pub fn flush(&mut self) -> Result<(), JsValue> {
        self.db.flush().map_err(|e| to_js(&e))
    }

    /// Flushes and writes every open repository's checkpoint (on close).
    pub fn checkpoint(&mut self) -> Result<(), JsValue> {
        self.db.checkpoint().map_err(|e| to_js(&e))
    }

    /// The repository as a log image (a backup `import` reads back).
    pub fn export(&mut self, repo: &str) -> Result<Vec<u8>, JsValue> {
        self.db.export(repo).map_err(|e| to_js(&e))
    }

    /// Merges a log image; returns `{added, rejected}`.
    pub fn import(&mut self, repo: &str, image: &[u8]) -> Result<JsValue, JsValue> {
        let (added, rejected) = self.db.import(repo, image).map_err(|e| to_js(&e))?;
        let o = Object::new();
        set(&o, "added", added as f64);
        set(&o, "rejected", rejected as f64);
        Ok(o.into())
    }

    /// Inserts a commit from another replica (verified first).
    pub fn receive(&mut self, repo: &str, commit: &[u8]) -> Result<(), JsValue> {
        self.db.receive(repo, commit).map_err(|e| to_js(&e))
    }

    /// A page of an item's history, oldest first (`page` in
    /// `database/history.rs`): the `limit` entries before commit `before`
    /// (hex; the newest when absent), all when `limit` is absent.
    pub fn history(&mut self, repo: &str, key: &str, before: Option<String>, limit: Option<u32>) -> Result<Vec<u8>, JsValue> {
        self.db.history(repo, key, before.as_deref(), limit).map_err(|e| to_js(&e))
    }

    /// The item at a time (ms) or right after a commit (hex id): `heads`
    /// with zero or one head.
    #[wasm_bindgen(js_name = itemAt)]
    pub fn item_at(&mut self, repo: &str, key: &str, time: Option<f64>, commit: Option<String>) -> Result<Vec<u8>, JsValue> {
        self.db.item_at(repo, key, time.map(|t| t as i64), commit.as_deref()).map_err(|e| to_js(&e))
    }

    /// Every item of a repository at a time (`heads`).
    #[wasm_bindgen(js_name = snapshotAt)]
    pub fn snapshot_at(&mut self, repo: &str, time: f64) -> Result<Vec<u8>, JsValue> {
        self.db.snapshot_at(repo, time as i64).map_err(|e| to_js(&e))
    }

    /// `{start, heads, steps}`: the repository at `from`, then each step's
    /// head and its time and commit, up to `to`.
    pub fn playback(&mut self, repo: &str, from: f64, to: f64) -> Result<JsValue, JsValue> {
        let (start, heads, steps) = self.db.playback(repo, from as i64, to as i64).map_err(|e| to_js(&e))?;
        let o = Object::new();
        set(&o, "start", js_sys::Uint8Array::from(start.as_slice()));
        set(&o, "heads", js_sys::Uint8Array::from(heads.as_slice()));
        set(&o, "steps", js_sys::Uint8Array::from(steps.as_slice()));
        Ok(o.into())
    }

    /// The conflicts of an item (`conflicts`).
    pub fn conflicts(&mut self, repo: &str, key: &str) -> Result<Vec<u8>, JsValue> {
        self.db.conflicts(repo, key).map_err(|e| to_js(&e))
    }

    /// Changes across a repository (`entries`), filtered by sessions (hex),
    /// user id and time range (ms, inclusive).
    pub fn audit(&mut self, repo: &str, sessions: Vec<String>, user: Option<String>, since: Option<f64>, until: Option<f64>) -> Result<Vec<u8>, JsValue> {
        let f = Filter { sessions, user, since: since.map(|t| t as i64), until: until.map(|t| t as i64) };
        self.db.audit(repo, &f).map_err(|e| to_js(&e))
    }

    /// Reverts `commits` (hex ids) or, when empty, every commit matching
    /// the filter, as new commits; returns their ids.
    #[allow(clippy::too_many_arguments)]
    pub fn revert(&mut self, repo: &str, commits: Vec<String>, sessions: Vec<String>, user: Option<String>, since: Option<f64>, until: Option<f64>, now: f64) -> Result<Vec<String>, JsValue> {
        let f = Filter { sessions, user, since: since.map(|t| t as i64), until: until.map(|t| t as i64) };
        let ids = self.db.revert(repo, &commits, &f, now as i64).map_err(|e| to_js(&e))?;
        Ok(ids.iter().map(|i| i.to_hex()).collect())
    }

    /// Writes an item's value at `commit` as a new commit; its id, or
    /// `undefined` when that is the current value.
    pub fn restore(&mut self, repo: &str, key: &str, commit: &str, now: f64) -> Result<Option<String>, JsValue> {
        let id = self.db.restore(repo, key, commit, now as i64).map_err(|e| to_js(&e))?;
        Ok(id.map(|i| i.to_hex()))
    }

    /// The connection to the server opened (`now`: ms since the epoch).
    #[wasm_bindgen(js_name = syncConnected)]
    pub fn sync_connected(&mut self, now: f64) {
        self.db.sync_connected(now as i64);
    }

    /// The connection closed.
    #[wasm_bindgen(js_name = syncDisconnected)]
    pub fn sync_disconnected(&mut self) {
        self.db.sync_disconnected();
    }

    /// Handles a frame from the server; throws when the connection must be
    /// closed (a bad handshake, another root, a protocol error).
    #[wasm_bindgen(js_name = syncReceive)]
    pub fn sync_receive(&mut self, frame: &[u8], now: f64) -> Result<(), JsValue> {
        self.db.sync_receive(frame, now as i64).map_err(|e| to_js(&e))
    }

    /// Timers (heartbeat, handshake timeout); throws when the connection
    /// must be closed (the server stopped answering).
    #[wasm_bindgen(js_name = syncTick)]
    pub fn sync_tick(&mut self, now: f64) -> Result<(), JsValue> {
        self.db.sync_tick(now as i64).map_err(|e| to_js(&e))
    }

    /// Frames to send to the server, as `varint n, n × bytes`.
    #[wasm_bindgen(js_name = syncFrames)]
    pub fn sync_frames(&mut self) -> Vec<u8> {
        let frames = self.db.sync_frames();
        let mut w = ibex_core::codec::Writer::new();
        w.varint(frames.len() as u64);
        for f in frames {
            w.bytes(&f);
        }
        w.into_bytes()
    }

    /// Starts a round for every open repository (`db.sync()`).
    #[wasm_bindgen(js_name = syncNow)]
    pub fn sync_now(&mut self) {
        self.db.sync_now();
    }

    /// Stops waiting for the last `syncNow`.
    #[wasm_bindgen(js_name = syncDone)]
    pub fn sync_done(&mut self) {
        self.db.sync_done();
    }

    /// The rounds of the last `syncNow` completed and every local commit is
    /// acknowledged, on a live connection.
    #[wasm_bindgen(js_name = syncComplete)]
    pub fn sync_complete(&self, now: f64) -> bool {
        self.db.sync_complete(now as i64)
    }

    /// Live connection, every open repository reconciled, every local
    /// commit durable on the server, none refused.
    pub fn synced(&self, now: f64) -> bool {
        self.db.synced(now as i64)
    }

    /// Local commits not yet acknowledged as durable by the server.
    #[wasm_bindgen(getter)]
    pub fn unacked(&self) -> f64 {
        self.db.unacked() as f64
    }

    /// This replica's commits the server refused: `[{repo, id, code, message}]`.
    pub fn refused(&self) -> Array {
        let out = Array::new();
        for (repo, id, code, message) in self.db.refused() {
            let o = Object::new();
            set(&o, "repo", repo);
            set(&o, "id", id);
            set(&o, "code", code);
            set(&o, "message", message);
            out.push(&o);
        }
        out
    }

    /// Repositories the server refused to let this session read.
    pub fn denied(&self) -> Array {
        self.db.denied().into_iter().map(|r| JsValue::from_str(&r)).collect()
    }

    /// Asks the server to send a login link to `email`.
    pub fn login(&mut self, email: &str) -> Result<(), JsValue> {
        self.db.login(email).map_err(|e| to_js(&e))
    }

    /// Redeems a login link's token.
    pub fn redeem(&mut self, token: &str) -> Result<(), JsValue> {
        self.db.redeem(token).map_err(|e| to_js(&e))
    }

    /// Asks which address a login token is for (answered by a `loginIs` event).
    #[wasm_bindgen(js_name = loginInfo)]
    pub fn login_info(&mut self, token: &str) -> Result<(), JsValue> {
        self.db.login_info(token).map_err(|e| to_js(&e))
    }

    /// Asks the server to expire this session's certificate.
    pub fn logout(&mut self) -> Result<(), JsValue> {
        self.db.logout().map_err(|e| to_js(&e))
    }

    /// Flushes and closes a repository.
    pub fn close(&mut self, repo: &str) -> Result<(), JsValue> {
        self.db.close(repo).map_err(|e| to_js(&e))
    }

    /// Replaces the session key (logging out): a new 32-byte seed.
    #[wasm_bindgen(js_name = setSession)]
    pub fn set_session(&mut self, seed: &[u8]) -> Result<(), JsValue> {
        let seed: [u8; 32] = seed.try_into().map_err(|_| js_error("ERR_BAD_KEY", "a session seed is exactly 32 bytes"))?;
        self.db.set_session(seed);
        Ok(())
    }

    /// Trusts a server root key (hex), configured or remembered.
    #[wasm_bindgen(js_name = trustRoot)]
    pub fn trust_root(&mut self, root: &str) -> Result<(), JsValue> {
        self.db.trust_root(root).map_err(|e| to_js(&e))
    }

    /// Connection events since the last call: `[{t: "root"|"welcome"|"error"|"loginSent"|"loginIs"|"rejected", …}]`.
    #[wasm_bindgen(js_name = takeEvents)]
    pub fn take_events(&mut self) -> Array {
        let out = Array::new();
        for e in self.db.take_events() {
            let o = Object::new();
            match e {
                Event::Root(r) => {
                    set(&o, "t", "root");
                    set(&o, "root", r);
                }
                Event::Welcome { user, email, expires } => {
                    set(&o, "t", "welcome");
                    set(&o, "user", user);
                    set(&o, "email", email);
                    set(&o, "expires", expires as f64);
                }
                Event::Error { repo, code, message } => {
                    set(&o, "t", "error");
                    set(&o, "repo", repo);
                    set(&o, "code", code);
                    set(&o, "message", message);
                }
                Event::Rejected { repo, code, message } => {
                    set(&o, "t", "rejected");
                    set(&o, "repo", repo);
                    set(&o, "code", code);
                    set(&o, "message", message);
                }
                Event::LoginSent(email) => {
                    set(&o, "t", "loginSent");
                    set(&o, "email", email);
                }
                Event::LoginIs(email) => {
                    set(&o, "t", "loginIs");
                    set(&o, "email", email);
                }
            }
            out.push(&o);
        }
        out
    }

    /// The user of this session: `{id, email}` (email "" until the server
    /// says), or null when anonymous.
    #[wasm_bindgen(getter)]
    pub fn user(&self) -> JsValue {
        match self.db.user() {
            Some((id, email)) => {
                let o = Object::new();
                set(&o, "id", id);
                set(&o, "email", email);
                o.into()
            }
            None => JsValue::NULL,
        }
    }

    /// Whether this session may write `repo` under the server's rules.
    #[wasm_bindgen(js_name = canWrite)]
    pub fn can_write(&self, repo: &str) -> bool {
        self.db.can_write(repo)
    }

    /// Commits from the network refused so far.
    #[wasm_bindgen(getter, js_name = rejectedCount)]
    pub fn rejected_count(&self) -> f64 {
        self.db.rejected_count() as f64
    }
}
