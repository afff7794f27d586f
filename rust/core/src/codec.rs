//! Binary primitives shared by every Ibex format (commits, log records, sync
//! frames).
//!
//! ```text
//! varint   unsigned LEB128, 1..=10 bytes, minimal (no trailing 0x00 groups)
//! zigzag   signed integer mapped to unsigned ((n << 1) ^ (n >> 63)), then varint
//! f64      8 bytes, IEEE-754 little endian; NaN is rejected
//! bytes    varint length, then that many bytes
//! str      bytes that must be valid UTF-8
//! [u8; N]  N raw bytes (ids, keys, signatures)
//! ```
//!
//! The reader never trusts a length: every length and count is checked
//! against the bytes that remain *before* anything is allocated, so hostile
//! input cannot make it allocate more than the input's own size. Non-minimal
//! varints are rejected so that every accepted byte string is the canonical
//! encoding of what it decodes to (commit ids are hashes of these bytes).

use crate::error::{Error, Result};

/// Appends primitives to a growing buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Writer { buf: Vec::with_capacity(n) }
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Number of bytes `varint(v)` takes; used to size encodings without writing.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

/// Reads primitives from a byte slice, with bounds checks on everything.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Current offset, for error messages.
    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn err(&self, what: impl Into<String>) -> Error {
        Error::decode(what, self.pos)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.err(format!("unexpected end of input reading {what}")))?;
        self.pos += 1;
        Ok(b)
    }

    pub fn bool(&mut self, what: &str) -> Result<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(Error::decode(format!("{what}: invalid boolean byte {b}"), self.pos - 1)),
        }
    }

    pub fn varint(&mut self, what: &str) -> Result<u64> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8(what)?;
            if i == 9 && b > 1 {
                return Err(Error::decode(format!("{what}: varint overflows 64 bits"), start));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(Error::decode(format!("{what}: non-minimal varint"), start));
                }
                return Ok(v);
            }
        }
        Err(Error::decode(format!("{what}: varint longer than 10 bytes"), start))
    }

    pub fn zigzag(&mut self, what: &str) -> Result<i64> {
        let v = self.varint(what)?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A varint that must fit in `u32`.
    pub fn u32(&mut self, what: &str) -> Result<u32> {
        let at = self.pos;
        let v = self.varint(what)?;
        u32::try_from(v).map_err(|_| Error::decode(format!("{what}: {v} does not fit in 32 bits"), at))
    }

    pub fn f64(&mut self, what: &str) -> Result<f64> {
        let at = self.pos;
        let b: [u8; 8] = self.array(what)?;
        let v = f64::from_le_bytes(b);
        if v.is_nan() {
            return Err(Error::decode(format!("{what}: NaN is not a valid number"), at));
        }
        Ok(v)
    }

    /// A count of elements, each at least `min_size` bytes: rejected when the
    /// remaining input could not possibly hold them, so callers may
    /// `Vec::with_capacity(count)` safely.
    pub fn count(&mut self, what: &str, min_size: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.varint(what)?;
        let max = (self.remaining() / min_size.max(1)) as u64;
        if n > max {
            return Err(Error::decode(format!("{what}: count {n} exceeds the {} bytes left", self.remaining()), at));
        }
        Ok(n as usize)
    }

    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8]> {
        let at = self.pos;
        let n = self.varint(what)?;
        if n > self.remaining() as u64 {
            return Err(Error::decode(format!("{what}: length {n} exceeds the {} bytes left", self.remaining()), at));
        }
        self.take(n as usize, what)
    }

    pub fn str(&mut self, what: &str) -> Result<&'a str> {
        let at = self.pos;
        let b = self.bytes(what)?;
        std::str::from_utf8(b).map_err(|_| Error::decode(format!("{what}: invalid UTF-8"), at))
    }

    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!("unexpected end of input reading {what}")));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self, what: &str) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.err(format!("{} trailing bytes after {what}", self.remaining())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_known_values() {
        for (v, bytes) in [(0u64, vec![0u8]), (127, vec![0x7f]), (128, vec![0x80, 1]), (300, vec![0xac, 0x02])] {
            let mut w = Writer::new();
            w.varint(v);
            assert_eq!(w.clone().into_bytes(), bytes);
            assert_eq!(varint_len(v), bytes.len());
            assert_eq!(Reader::new(&bytes).varint("v").unwrap(), v);
        }
    }

    #[test]
    fn non_minimal_and_overlong_varints_are_rejected() {
        assert!(Reader::new(&[0x80, 0x00]).varint("v").is_err());
        assert!(Reader::new(&[0xff; 11]).varint("v").is_err());
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).varint("v").is_err());
        assert!(Reader::new(&[0x80]).varint("v").is_err());
    }

    #[test]
    fn lengths_are_checked_before_allocating() {
        let mut w = Writer::new();
        w.varint(u64::MAX / 2);
        let b = w.into_bytes();
        let e = Reader::new(&b).bytes("name").unwrap_err();
        assert!(e.to_string().contains("name"), "{e}");
        assert!(Reader::new(&b).count("items", 1).is_err());
    }

    #[test]
    fn nan_is_rejected() {
        let b = f64::NAN.to_le_bytes();
        assert!(Reader::new(&b).f64("n").is_err());
    }

    proptest! {
        #[test]
        fn roundtrip(u in any::<u64>(), i in any::<i64>(), f in any::<f64>().prop_filter("no NaN", |f| !f.is_nan()), s in ".*") {
            let mut w = Writer::new();
            w.varint(u); w.zigzag(i); w.f64(f); w.str(&s);
            prop_assert_eq!(varint_len(u), { let mut x = Writer::new(); x.varint(u); x.len() });
            let b = w.into_bytes();
            let mut r = Reader::new(&b);
            prop_assert_eq!(r.varint("u").unwrap(), u);
            prop_assert_eq!(r.zigzag("i").unwrap(), i);
            prop_assert_eq!(r.f64("f").unwrap().to_bits(), f.to_bits());
            prop_assert_eq!(r.str("s").unwrap(), s.as_str());
            r.finish("all").unwrap();
        }

        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&b);
            let _ = r.varint("a");
            let _ = r.str("b");
            let _ = r.count("c", 4);
            let _ = r.f64("d");
        }
    }
}
