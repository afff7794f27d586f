//! The storage trait — the only I/O `ibex-core` does — and its in-memory and
//! file implementations. The browser's OPFS and IndexedDB implementations
//! live in `ibex-wasm`.
//!
//! A storage is one growable byte file. `append` may buffer; only after
//! `flush` returns is everything appended so far durable.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};

/// `Send` on native targets, so a server can move a repository (and its
/// storage) between threads; nothing on `wasm32`, where storage wraps
/// JavaScript objects that never leave their worker.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// One append-only file.
pub trait Storage: MaybeSend {
    /// Current length in bytes, including appended but unflushed bytes.
    fn len(&mut self) -> Result<u64>;
    fn is_empty(&mut self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize>;
    /// Adds bytes at the end.
    fn append(&mut self, data: &[u8]) -> Result<()>;
    /// Makes every appended byte durable.
    fn flush(&mut self) -> Result<()>;
    /// Cuts the file to `len` bytes (used to drop a torn tail).
    fn truncate(&mut self, len: u64) -> Result<()>;

    /// The whole content.
    fn read_all(&mut self) -> Result<Vec<u8>> {
        let len = usize::try_from(self.len()?).map_err(|_| Error::Storage("file too large for this platform".into()))?;
        let mut buf = vec![0u8; len];
        let mut at = 0;
        while at < len {
            let n = self.read_at(at as u64, &mut buf[at..])?;
            if n == 0 {
                return Err(Error::Storage(format!("file shrank while reading: {at} of {len} bytes")));
            }
            at += n;
        }
        Ok(buf)
    }
}

#[derive(Debug, Default)]
struct MemInner {
    data: Vec<u8>,
    durable: usize,
    flushes: usize,
}

/// In-memory storage. Clones share the same bytes, so a test can keep a
/// handle, drop the repository, and reopen — or simulate a crash with
/// [`MemStorage::crash`], which forgets every unflushed byte.
#[derive(Debug, Clone, Default)]
pub struct MemStorage(Arc<Mutex<MemInner>>);

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Storage holding `bytes`, all durable.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let durable = bytes.len();
        MemStorage(Arc::new(Mutex::new(MemInner { data: bytes, durable, flushes: 0 })))
    }

    fn inner(&self) -> MutexGuard<'_, MemInner> {
        // A poisoned lock only means another test thread panicked; the bytes
        // are still consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.inner().data.clone()
    }

    /// Number of completed `flush` calls.
    pub fn flush_count(&self) -> usize {
        self.inner().flushes
    }

    /// A new storage with only what was flushed, as after a power cut.
    pub fn crash(&self) -> MemStorage {
        let i = self.inner();
        MemStorage::from_bytes(i.data[..i.durable].to_vec())
    }
}

impl Storage for MemStorage {
    fn len(&mut self) -> Result<u64> {
        Ok(self.inner().data.len() as u64)
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let i = self.inner();
        let start = (offset as usize).min(i.data.len());
        let n = buf.len().min(i.data.len() - start);
        buf[..n].copy_from_slice(&i.data[start..start + n]);
        Ok(n)
    }
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.inner().data.extend_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        let mut i = self.inner();
        i.durable = i.data.len();
        i.flushes += 1;
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> Result<()> {
        let mut i = self.inner();
        let len = (len as usize).min(i.data.len());
        i.data.truncate(len);
        i.durable = i.durable.min(len);
        Ok(())
    }
}

/// A file on a native file system; `flush` is `fsync` (`sync_data`).
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    len: u64,
}

impl FileStorage {
    /// Opens or creates the file (and its parent directories).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let len = file.metadata()?.len();
        Ok(FileStorage { file, len })
    }

    /// Like [`FileStorage::open`], but a new file is readable by its owner
    /// only (0600) and new directories are 0700: a server's data (e-mail
    /// addresses, private repositories) is not for other local users.
    pub fn open_private(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        #[cfg(unix)]
        {
            use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
            if let Some(dir) = path.parent() {
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            }
            let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
            let len = file.metadata()?.len();
            Ok(FileStorage { file, len })
        }
        #[cfg(not(unix))]
        FileStorage::open(path)
    }
}

impl Storage for FileStorage {
    fn len(&mut self) -> Result<u64> {
        Ok(self.len)
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.file.seek(SeekFrom::Start(offset))?;
        Ok(self.file.read(buf)?)
    }
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.file.seek(SeekFrom::Start(self.len))?;
        self.file.write_all(data)?;
        self.len += data.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        self.file.flush()?;
        self.file.sync_data()?;
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> Result<()> {
        self.file.set_len(len)?;
        self.file.sync_data()?;
        self.len = len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(s: &mut dyn Storage) {
        assert_eq!(s.len().unwrap(), 0);
        s.append(b"hello ").unwrap();
        s.append(b"world").unwrap();
        s.flush().unwrap();
        assert_eq!(s.read_all().unwrap(), b"hello world");
        let mut buf = [0u8; 3];
        assert_eq!(s.read_at(6, &mut buf).unwrap(), 3);
        assert_eq!(&buf, b"wor");
        s.truncate(5).unwrap();
        s.append(b"!").unwrap();
        assert_eq!(s.read_all().unwrap(), b"hello!");
    }

    #[test]
    fn mem_storage() {
        let mut m = MemStorage::new();
        exercise(&mut m);
        m.append(b"lost").unwrap();
        assert_eq!(m.crash().bytes(), b"hello");
        m.flush().unwrap();
        assert_eq!(m.crash().bytes(), b"hello!lost");
    }

    #[test]
    fn file_storage_persists() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/log");
        exercise(&mut FileStorage::open(&p).unwrap());
        let mut again = FileStorage::open(&p).unwrap();
        assert_eq!(again.read_all().unwrap(), b"hello!");
    }
}
