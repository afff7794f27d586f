//! Log storage on the Origin Private File System, through a
//! `FileSystemSyncAccessHandle` (dedicated workers only). The handle is
//! created by the worker's JavaScript (creation is asynchronous) and handed
//! to the engine, which owns it from then on. `flush` is the handle's
//! `flush()`: only after it returns are appended bytes durable.

use ibex_core::{Error, Result, Storage};
use web_sys::{FileSystemReadWriteOptions, FileSystemSyncAccessHandle};

use crate::error::describe;

pub struct OpfsStorage {
    handle: FileSystemSyncAccessHandle,
    len: u64,
}

fn storage_err(what: &str, e: wasm_bindgen::JsValue) -> Error {
    Error::Storage(format!("OPFS {what} failed: {}", describe(&e)))
}

impl OpfsStorage {
    pub fn new(handle: FileSystemSyncAccessHandle) -> Result<Self> {
        let len = handle.get_size().map_err(|e| storage_err("getSize", e))? as u64;
        Ok(OpfsStorage { handle, len })
    }
}

impl Storage for OpfsStorage {
    fn len(&mut self) -> Result<u64> {
        Ok(self.len)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let opts = FileSystemReadWriteOptions::new();
        opts.set_at(offset as f64);
        let n = self.handle.read_with_u8_array_and_options(buf, &opts).map_err(|e| storage_err("read", e))?;
        Ok(n as usize)
    }

    fn append(&mut self, data: &[u8]) -> Result<()> {
        let opts = FileSystemReadWriteOptions::new();
        opts.set_at(self.len as f64);
        let n = self.handle.write_with_u8_array_and_options(data, &opts).map_err(|e| storage_err("write", e))? as usize;
        if n != data.len() {
            return Err(Error::Storage(format!("OPFS write stored {n} of {} bytes (quota?)", data.len())));
        }
        self.len += data.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.handle.flush().map_err(|e| storage_err("flush", e))
    }

    fn truncate(&mut self, len: u64) -> Result<()> {
        self.handle.truncate_with_f64(len as f64).map_err(|e| storage_err("truncate", e))?;
        self.handle.flush().map_err(|e| storage_err("flush", e))?;
        self.len = len;
        Ok(())
    }
}
