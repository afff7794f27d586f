//! The append-only log: one per repository, in any [`Storage`].
//!
//! ```text
//! file   = header record*
//! header = magic "IBEXLOG\0" (8 bytes) ‖ format version u32 LE (= 2; 1 is read)
//! record = ┌──────────────┬──────────────┬──────────────────────────────┐
//!          │ length u32 LE│ crc32 u32 LE │ payload (length bytes)        │
//!          └──────────────┴──────────────┴──────────────────────────────┘
//! payload = kind u8 ‖ data
//!   kind 1 = a signed commit as its canonical bytes (commit.rs)
//!   kind 2 = a signed commit as a compact record (compact.rs; format 2 only)
//!   kind 3 = the repository path the compact records belong to (the first
//!            record of a repository's log in format 2: records leave it out)
//! ```
//!
//! Format 1 logs (kind 1 records only) are still read. A repository with a
//! checkpoint converts one on first open (see `Repository::open_checkpointed`);
//! without one it keeps appending kind 1 records, so the file stays
//! readable by the builds that wrote it.
//!
//! The CRC-32 (IEEE) covers the payload. Opening scans every record:
//!
//! * an incomplete or damaged **final** record (a torn write) is cut off;
//! * a damaged record **in the middle** (a valid record follows it) is
//!   reported as [`Corruption`] and skipped — never accepted, never
//!   truncated away together with the good records after it;
//! * a header that is not ours, or from a newer format, is an error and the
//!   file is left untouched.
//!
//! Appends are buffered in memory and written on [`Log::flush`] (or when the
//! buffer grows past [`WRITE_BUFFER`]); `flush` then makes them durable, and
//! a failed flush is retried whole (see [`Log`]).

use crate::error::{Error, Result};
use crate::storage::Storage;

pub const MAGIC: [u8; 8] = *b"IBEXLOG\0";
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format this build reads.
pub const OLDEST_FORMAT: u32 = 1;
pub const HEADER_LEN: usize = 12;
/// Largest record accepted; bigger lengths are treated as damage.
pub const MAX_RECORD: usize = 16 << 20;
/// Appended bytes are written to storage once this many are buffered.
pub const WRITE_BUFFER: usize = 1 << 20;

pub const KIND_COMMIT: u8 = 1;
pub const KIND_COMPACT: u8 = 2;
pub const KIND_REPO: u8 = 3;

/// A damaged stretch of the log that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub offset: u64,
    pub len: u64,
    pub reason: String,
}

/// What a scan found: where the good payloads are (kind byte stripped),
/// damage in the middle, and how much torn tail was cut.
#[derive(Debug, Default)]
pub struct Scan {
    /// `(record offset, kind, payload range)` into the scanned bytes.
    pub records: Vec<(u64, u8, std::ops::Range<usize>)>,
    pub corrupt: Vec<Corruption>,
    pub truncated_bytes: u64,
    /// The log's format (of its header).
    pub version: u32,
}

impl Scan {
    /// `(record offset, kind, payload)` of every good record in `buf`, the
    /// bytes that were scanned.
    pub fn payloads<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = (u64, u8, &'a [u8])> + 'a {
        self.records.iter().map(move |(o, k, r)| (*o, *k, &buf[r.clone()]))
    }
}

/// The 12-byte file header.
pub fn header() -> [u8; HEADER_LEN] {
    header_of(FORMAT_VERSION)
}

/// The header of a log in format `version`.
pub fn header_of(version: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..].copy_from_slice(&version.to_le_bytes());
    h
}

/// Frames one record.
pub fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + data.len());
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(data);
    out.extend_from_slice(&((data.len() + 1) as u32).to_le_bytes());
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.push(kind);
    out.extend_from_slice(data);
    out
}

/// Why the bytes at `pos` are not a valid record, if they are not.
fn check_record(buf: &[u8], pos: usize) -> std::result::Result<usize, String> {
    if buf.len() - pos < 8 {
        return Err("incomplete record header".into());
    }
    let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_RECORD {
        return Err(format!("implausible record length {len}"));
    }
    if buf.len() - pos - 8 < len {
        return Err(format!("record of {len} bytes is cut short"));
    }
    if crc32fast::hash(&buf[pos + 8..pos + 8 + len]) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(len)
}

/// Scans a whole log image (header included). Pure: touches no storage.
pub fn scan(buf: &[u8]) -> Result<Scan> {
    let version = check_header(buf)?.unwrap_or(FORMAT_VERSION);
    Ok(Scan { version, ..scan_from(buf, HEADER_LEN.min(buf.len()), 0) })
}

/// Scans the records of `buf` from `pos`; `base` is the file offset of
/// `buf[0]` (record offsets are reported in file offsets, payload ranges
/// in `buf`).
fn scan_from(buf: &[u8], mut pos: usize, base: u64) -> Scan {
    let mut out = Scan::default();
    while pos < buf.len() {
        match check_record(buf, pos) {
            Ok(len) => {
                let payload = &buf[pos + 8..pos + 8 + len];
                if matches!(payload[0], KIND_COMMIT | KIND_COMPACT | KIND_REPO) {
                    out.records.push((base + pos as u64, payload[0], pos + 9..pos + 8 + len));
                } else {
                    out.corrupt.push(Corruption { offset: base + pos as u64, len: (8 + len) as u64, reason: format!("unknown record kind {}", payload[0]) });
                }
                pos += 8 + len;
            }
            Err(reason) => {
                // Is there a valid record after the damage? Then this is
                // corruption in the middle; otherwise a torn tail.
                match (pos + 1..buf.len()).find(|&p| check_record(buf, p).is_ok()) {
                    Some(next) => {
                        out.corrupt.push(Corruption { offset: base + pos as u64, len: (next - pos) as u64, reason });
                        pos = next;
                    }
                    None => {
                        out.truncated_bytes = (buf.len() - pos) as u64;
                        break;
                    }
                }
            }
        }
    }
    out
}

/// Where a record is in the log, and its checksum: what a checkpoint keeps
/// of the last record it covers, so opening can tell that the log still
/// holds exactly those bytes there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMark {
    /// File offset of the record (its length field).
    pub offset: u64,
    /// Payload length (kind byte included), as in the record's header.
    pub len: u32,
    pub crc: u32,
}

impl RecordMark {
    /// The file offset just past the record (saturating: a damaged mark
    /// far past any file reads as past its end).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(8 + u64::from(self.len))
    }
}

/// Checks the header; returns the log's format (`None`: empty, or a header
/// torn while the log was being created).
fn check_header(buf: &[u8]) -> Result<Option<u32>> {
    if buf.len() < HEADER_LEN {
        if (OLDEST_FORMAT..=FORMAT_VERSION).any(|v| buf == &header_of(v)[..buf.len()]) {
            return Ok(None);
        }
        return Err(Error::LogHeader("the file is not an Ibex log (bad magic); it was left untouched".into()));
    }
    if buf[..8] != MAGIC {
        return Err(Error::LogHeader("the file is not an Ibex log (bad magic); it was left untouched".into()));
    }
    let v = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if v > FORMAT_VERSION {
        return Err(Error::LogHeader(format!("log format {v} is newer than this build supports ({FORMAT_VERSION}); upgrade Ibex to open it")));
    }
    if v < OLDEST_FORMAT {
        return Err(Error::LogHeader(format!("log format {v} is not one this build reads ({OLDEST_FORMAT} to {FORMAT_VERSION}); it was left untouched")));
    }
    Ok(Some(v))
}

/// An opened log, the bytes read and what their scan found.
pub type Opened = (Log, Vec<u8>, Scan);

/// Reads exactly `buf.len()` bytes at `offset`.
fn read_exact_at(storage: &mut dyn Storage, offset: u64, buf: &mut [u8]) -> Result<()> {
    let mut at = 0;
    while at < buf.len() {
        let n = storage.read_at(offset + at as u64, &mut buf[at..])?;
        if n == 0 {
            return Err(Error::Storage(format!("unexpected end of storage at {}", offset + at as u64)));
        }
        at += n;
    }
    Ok(())
}

/// Most bytes kept in memory while storage refuses them (a full disk):
/// beyond this, appends fail and the commits they carry are refused.
pub const MAX_UNSYNCED: usize = 64 << 20;

/// An open log: appends framed records, flushes them durably.
///
/// Everything appended since the last successful flush stays in memory
/// until a flush succeeds. A write or `fsync` that fails (`ENOSPC`, `EIO`)
/// leaves the file in an unknown state — after a failed `fsync` the kernel
/// may have dropped the dirty pages and report success next time — so the
/// next flush first cuts the file back to what was durable and writes
/// everything again.
pub struct Log {
    storage: Box<dyn Storage>,
    unsynced: Vec<u8>,
    /// How many bytes of `unsynced` are written to storage.
    written: usize,
    /// Length of the file after the last successful flush.
    durable: u64,
    failed: bool,
    /// The last record appended or found (what a checkpoint refers to).
    last: Option<RecordMark>,
    /// The file's format: what its records may be.
    version: u32,
}

impl Log {
    /// Opens (creating the header if needed), scans, and cuts a torn tail.
    /// Returns the bytes read, which the scan's ranges point into.
    pub fn open(mut storage: Box<dyn Storage>) -> Result<(Log, Vec<u8>, Scan)> {
        let buf = storage.read_all()?;
        let scan = scan(&buf)?;
        let mut durable = buf.len() as u64;
        if buf.len() < HEADER_LEN {
            storage.truncate(0)?;
            storage.append(&header())?;
            storage.flush()?;
            durable = HEADER_LEN as u64;
        } else if scan.truncated_bytes > 0 {
            durable = buf.len() as u64 - scan.truncated_bytes;
            storage.truncate(durable)?;
        }
        let last = match scan.records.last() {
            Some((offset, _, range)) => {
                let at = *offset as usize;
                Some(RecordMark { offset: *offset, len: (range.end - at - 8) as u32, crc: u32::from_le_bytes(buf[at + 4..at + 8].try_into().expect("4 bytes")) })
            }
            None => None,
        };
        let version = scan.version;
        Ok((Log { storage, unsynced: Vec::new(), written: 0, durable, failed: false, last, version }, buf, scan))
    }

    /// Opens a log at the end of a checkpoint: checks the header and that
    /// the record `mark` is still there, byte for byte (length and
    /// checksum), then scans only what follows it. `None` when the log does
    /// not match (shorter, rewritten, another file): the checkpoint is stale
    /// and the caller opens the whole log instead. The returned bytes are
    /// the tail; the scan's record offsets are file offsets.
    pub fn open_after(mut storage: Box<dyn Storage>, mark: Option<RecordMark>) -> Result<std::result::Result<Opened, Box<dyn Storage>>> {
        let len = storage.len()?;
        let mut head = vec![0u8; HEADER_LEN.min(len as usize)];
        read_exact_at(&mut *storage, 0, &mut head)?;
        if head.len() < HEADER_LEN {
            return Ok(Err(storage));
        }
        let version = check_header(&head)?.unwrap_or(FORMAT_VERSION);
        let from = match mark {
            None => HEADER_LEN as u64,
            Some(m) => {
                if m.end() > len {
                    return Ok(Err(storage));
                }
                let mut h = [0u8; 8];
                read_exact_at(&mut *storage, m.offset, &mut h)?;
                let (l, c) = (u32::from_le_bytes(h[..4].try_into().expect("4 bytes")), u32::from_le_bytes(h[4..].try_into().expect("4 bytes")));
                if l != m.len || c != m.crc {
                    return Ok(Err(storage));
                }
                m.end()
            }
        };
        let mut tail = vec![0u8; (len - from) as usize];
        read_exact_at(&mut *storage, from, &mut tail)?;
        let scan = Scan { version, ..scan_from(&tail, 0, from) };
        let mut durable = len;
        if scan.truncated_bytes > 0 {
            durable = len - scan.truncated_bytes;
            storage.truncate(durable)?;
        }
        let last = match scan.records.last() {
            Some((offset, _, range)) => {
                let at = (*offset - from) as usize;
                Some(RecordMark { offset: *offset, len: (range.end - at - 8) as u32, crc: u32::from_le_bytes(tail[at + 4..at + 8].try_into().expect("4 bytes")) })
            }
            None => mark,
        };
        Ok(Ok((Log { storage, unsynced: Vec::new(), written: 0, durable, failed: false, last, version }, tail, scan)))
    }

    /// Gives the storage back (nothing unflushed may be pending).
    pub fn into_storage(self) -> Box<dyn Storage> {
        self.storage
    }

    /// The file's format (1: kind 1 records only).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Where the next appended record will start.
    pub fn next_offset(&self) -> u64 {
        self.durable + self.unsynced.len() as u64
    }

    /// Everything durable in the file (a conversion's source).
    pub fn read_durable(&mut self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.durable as usize];
        read_exact_at(&mut *self.storage, 0, &mut buf)?;
        Ok(buf)
    }

    /// Replaces the whole file with `image` (a complete log of the current
    /// format whose last record is `last`) and makes it durable. Not atomic:
    /// the caller keeps what the file held somewhere durable first (see
    /// `Repository::open_checkpointed`).
    pub fn replace(&mut self, image: &[u8], last: Option<RecordMark>) -> Result<()> {
        if !self.is_synced() {
            return Err(Error::Storage("replacing a log with unflushed records".into()));
        }
        self.storage.truncate(0)?;
        self.storage.append(image)?;
        self.storage.flush()?;
        self.durable = image.len() as u64;
        self.last = last;
        self.version = FORMAT_VERSION;
        Ok(())
    }

    /// The last record written (or found when opening).
    pub fn last_record(&self) -> Option<RecordMark> {
        self.last
    }

    /// Bytes of the log known durable.
    pub fn durable_len(&self) -> u64 {
        self.durable
    }

    /// Whether everything appended is durable.
    pub fn is_synced(&self) -> bool {
        self.unsynced.is_empty() && !self.failed
    }

    /// Reads the commit record at `mark` back from storage (a commit whose
    /// bytes are not kept in memory), checking its checksum; returns its
    /// kind and the payload without the kind byte.
    pub fn read_record(&mut self, mark: RecordMark) -> Result<(u8, Vec<u8>)> {
        if mark.end() > self.durable {
            return Err(Error::Storage(format!("record at {} is not on storage yet", mark.offset)));
        }
        let mut buf = vec![0u8; 8 + mark.len as usize];
        read_exact_at(&mut *self.storage, mark.offset, &mut buf)?;
        match check_record(&buf, 0) {
            Ok(_) if buf[8] == KIND_COMMIT || buf[8] == KIND_COMPACT => Ok((buf[8], buf[9..].to_vec())),
            Ok(_) => Err(Error::Storage(format!("record at {} is not a commit", mark.offset))),
            Err(reason) => Err(Error::Storage(format!("record at {} changed on storage: {reason}", mark.offset))),
        }
    }

    /// Appends a record; returns where it lands in the file.
    pub fn append(&mut self, kind: u8, data: &[u8]) -> Result<RecordMark> {
        if data.len() + 1 > MAX_RECORD {
            return Err(Error::Storage(format!("record of {} bytes exceeds the {MAX_RECORD}-byte limit", data.len())));
        }
        if self.failed && self.unsynced.len() + data.len() > MAX_UNSYNCED {
            return Err(Error::Storage(format!("storage keeps failing and {} MiB wait to be written; refusing more until it recovers", self.unsynced.len() >> 20)));
        }
        let framed = frame(kind, data);
        let mark = RecordMark { offset: self.durable + self.unsynced.len() as u64, len: (data.len() + 1) as u32, crc: u32::from_le_bytes(framed[4..8].try_into().expect("4 bytes")) };
        self.unsynced.extend_from_slice(&framed);
        self.last = Some(mark);
        if !self.failed && self.unsynced.len() - self.written >= WRITE_BUFFER {
            // Errors surface at the next flush, which rewrites everything.
            let _ = self.write_pending();
        }
        Ok(mark)
    }

    fn write_pending(&mut self) -> Result<()> {
        if self.written < self.unsynced.len() {
            if let Err(e) = self.storage.append(&self.unsynced[self.written..]) {
                self.failed = true;
                return Err(e);
            }
            self.written = self.unsynced.len();
        }
        Ok(())
    }

    /// Writes buffered records and makes them durable.
    pub fn flush(&mut self) -> Result<()> {
        if self.failed {
            self.storage.truncate(self.durable)?;
            self.written = 0;
            self.failed = false;
        }
        self.write_pending()?;
        if let Err(e) = self.storage.flush() {
            self.failed = true;
            return Err(e);
        }
        self.durable += self.unsynced.len() as u64;
        self.unsynced.clear();
        self.written = 0;
        Ok(())
    }

    /// Bytes appended but not yet durable.
    pub fn unsynced(&self) -> usize {
        self.unsynced.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn image(records: &[&[u8]]) -> Vec<u8> {
        let mut b = header().to_vec();
        for r in records {
            b.extend(frame(KIND_COMMIT, r));
        }
        b
    }

    fn payloads(s: &Scan, buf: &[u8]) -> Vec<Vec<u8>> {
        s.payloads(buf).map(|(_, _, p)| p.to_vec()).collect()
    }

    #[test]
    fn scan_reads_every_record() {
        let img = image(&[b"one", b"two", b"three"]);
        let s = scan(&img).unwrap();
        assert_eq!(payloads(&s, &img), vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        assert!(s.corrupt.is_empty());
        assert_eq!(s.truncated_bytes, 0);
    }

    #[test]
    fn torn_tail_is_cut_at_every_offset() {
        let full = image(&[b"one", b"two", b"three"]);
        let last_start = image(&[b"one", b"two"]).len();
        for cut in last_start..full.len() {
            let s = scan(&full[..cut]).unwrap();
            assert_eq!(payloads(&s, &full[..cut]), vec![b"one".to_vec(), b"two".to_vec()], "cut at {cut}");
            assert_eq!(s.truncated_bytes, (cut - last_start) as u64);
        }
    }

    #[test]
    fn damage_in_the_middle_is_reported_and_skipped() {
        let mut b = image(&[b"one", b"two-two", b"three"]);
        let mid = image(&[b"one"]).len() + 9;
        b[mid] ^= 0x40;
        let s = scan(&b).unwrap();
        assert_eq!(payloads(&s, &b), vec![b"one".to_vec(), b"three".to_vec()]);
        assert_eq!(s.corrupt.len(), 1);
        assert!(s.corrupt[0].reason.contains("checksum"));
        // A damaged length field is skipped the same way.
        let mut b = image(&[b"one", b"two-two", b"three"]);
        b[image(&[b"one"]).len()] = 0xff;
        let s = scan(&b).unwrap();
        assert_eq!(payloads(&s, &b), vec![b"one".to_vec(), b"three".to_vec()]);
    }

    #[test]
    fn foreign_or_newer_files_are_refused_untouched() {
        let foreign = b"PK\x03\x04 this is a zip file".to_vec();
        let mem = MemStorage::from_bytes(foreign.clone());
        assert_eq!(Log::open(Box::new(mem.clone())).err().unwrap().code(), "ERR_LOG_HEADER");
        assert_eq!(mem.bytes(), foreign);
        let mut newer = header().to_vec();
        newer[8] = FORMAT_VERSION as u8 + 1;
        let mem = MemStorage::from_bytes(newer.clone());
        let e = Log::open(Box::new(mem.clone())).err().unwrap();
        assert_eq!(e.code(), "ERR_LOG_HEADER");
        assert!(e.to_string().contains("log format 3 is newer than this build supports (2)"), "{e}");
        assert_eq!(mem.bytes(), newer);
        // The format before is read, and says so.
        let (log, _, scan) = Log::open(Box::new(MemStorage::from_bytes(header_of(1).to_vec()))).unwrap();
        assert_eq!((log.version(), scan.version), (1, 1));
    }

    /// Storage that fails writes or flushes on demand.
    struct Flaky {
        inner: MemStorage,
        fail_append: std::sync::Arc<std::sync::atomic::AtomicBool>,
        fail_flush: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl Storage for Flaky {
        fn len(&mut self) -> Result<u64> {
            self.inner.len()
        }
        fn read_at(&mut self, o: u64, b: &mut [u8]) -> Result<usize> {
            self.inner.read_at(o, b)
        }
        fn append(&mut self, d: &[u8]) -> Result<()> {
            if self.fail_append.load(std::sync::atomic::Ordering::SeqCst) {
                // Half written, as a full disk does.
                self.inner.append(&d[..d.len() / 2])?;
                return Err(Error::Storage("No space left on device (os error 28)".into()));
            }
            self.inner.append(d)
        }
        fn flush(&mut self) -> Result<()> {
            if self.fail_flush.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::Storage("Input/output error (os error 5)".into()));
            }
            self.inner.flush()
        }
        fn truncate(&mut self, len: u64) -> Result<()> {
            self.inner.truncate(len)
        }
    }

    #[test]
    fn a_failed_write_or_flush_is_retried_whole_and_loses_nothing() {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        let mem = MemStorage::new();
        let (fa, ff) = (std::sync::Arc::new(AtomicBool::new(false)), std::sync::Arc::new(AtomicBool::new(false)));
        let (mut log, _, _) = Log::open(Box::new(Flaky { inner: mem.clone(), fail_append: fa.clone(), fail_flush: ff.clone() })).unwrap();
        log.append(KIND_COMMIT, b"one").unwrap();
        log.flush().unwrap();
        fa.store(true, SeqCst);
        log.append(KIND_COMMIT, b"two").unwrap();
        assert_eq!(log.flush().unwrap_err().code(), "ERR_STORAGE");
        fa.store(false, SeqCst);
        ff.store(true, SeqCst);
        log.append(KIND_COMMIT, b"three").unwrap();
        assert!(log.flush().is_err());
        ff.store(false, SeqCst);
        log.flush().unwrap();
        let bytes = mem.crash().bytes();
        let s = scan(&bytes).unwrap();
        assert_eq!(payloads(&s, &bytes), vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        assert!(s.corrupt.is_empty() && s.truncated_bytes == 0, "the half-written record was cut before the rewrite");
    }

    #[test]
    fn open_creates_header_and_appends_survive_flush_only() {
        let mem = MemStorage::new();
        let (mut log, _, _) = Log::open(Box::new(mem.clone())).unwrap();
        log.append(KIND_COMMIT, b"a").unwrap();
        assert_eq!(scan(&mem.crash().bytes()).unwrap().records.len(), 0, "buffered, not durable");
        log.flush().unwrap();
        log.append(KIND_COMMIT, b"b").unwrap();
        let crashed = mem.crash().bytes();
        assert_eq!(payloads(&scan(&crashed).unwrap(), &crashed), vec![b"a".to_vec()]);
        // A torn header from a crash during creation is repaired.
        let torn = MemStorage::from_bytes(header()[..5].to_vec());
        let (_log, _, s) = Log::open(Box::new(torn.clone())).unwrap();
        assert!(s.records.is_empty());
        assert_eq!(torn.bytes(), header());
    }
}
