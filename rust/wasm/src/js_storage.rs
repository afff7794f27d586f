//! Log storage implemented by a JavaScript object, for the places where a
//! `FileSystemSyncAccessHandle` does not exist: Node (files through `fs`),
//! the IndexedDB fallback, and memory. The object must have these
//! synchronous methods (see `packages/db/src/storage/*.ts`):
//!
//! ```ts
//! interface LogBackend {
//!   size(): number;
//!   read(offset: number, length: number): Uint8Array;
//!   append(bytes: Uint8Array): void;
//!   flush(): void;      // Node: fsync. IndexedDB: starts the write; the
//!                       // worker awaits its durable() promise before
//!                       // reporting the flush.
//!   truncate(length: number): void;
//! }
//! ```

use ibex_core::{Error, Result, Storage};
use wasm_bindgen::prelude::*;

use crate::error::describe;

#[wasm_bindgen]
extern "C" {
    /// A JS object implementing `LogBackend` (module docs).
    #[wasm_bindgen(typescript_type = "LogBackend")]
    pub type LogBackend;

    #[wasm_bindgen(method, catch)]
    fn size(this: &LogBackend) -> std::result::Result<f64, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn read(this: &LogBackend, offset: f64, length: f64) -> std::result::Result<js_sys::Uint8Array, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn append(this: &LogBackend, bytes: &[u8]) -> std::result::Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn flush(this: &LogBackend) -> std::result::Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn truncate(this: &LogBackend, length: f64) -> std::result::Result<(), JsValue>;
}

pub struct JsStorage(pub LogBackend);

fn storage_err(what: &str, e: JsValue) -> Error {
    Error::Storage(format!("{what} failed: {}", describe(&e)))
}

impl Storage for JsStorage {
    fn len(&mut self) -> Result<u64> {
        Ok(self.0.size().map_err(|e| storage_err("size", e))? as u64)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let arr = self.0.read(offset as f64, buf.len() as f64).map_err(|e| storage_err("read", e))?;
        let n = (arr.length() as usize).min(buf.len());
        arr.subarray(0, n as u32).copy_to(&mut buf[..n]);
        Ok(n)
    }

    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.0.append(data).map_err(|e| storage_err("append", e))
    }

    fn flush(&mut self) -> Result<()> {
        self.0.flush().map_err(|e| storage_err("flush", e))
    }

    fn truncate(&mut self, len: u64) -> Result<()> {
        self.0.truncate(len as f64).map_err(|e| storage_err("truncate", e))
    }
}
