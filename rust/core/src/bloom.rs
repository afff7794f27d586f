//! Bloom filters of commit ids, for sync rounds.
//!
//! ```text
//! bloom = varint m (bits, 8..=MAX_BITS), u8 k (1..=32), u64 seed (LE),
//!         ceil(m / 8) bytes of bits (bit i = byte i/8, bit i%8)
//! ```
//!
//! Commit ids are SHA-256 outputs, already uniform, so the k bit positions
//! come from double hashing two 64-bit words of the id mixed with the seed
//! (splitmix64). Each sync round uses a new seed: an id that is a false
//! positive in one round is independently unlikely to be one in the next,
//! which is what makes the rounds converge. Written here rather than taken
//! from a crate because the format is part of the wire protocol and must be
//! bit-identical on every platform.

use crate::codec::{Reader, Writer};
use crate::commit::CommitId;
use crate::error::{Error, Result};

/// Largest filter accepted from a peer: 64 Mbit = 8 MiB.
pub const MAX_BITS: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    bits: Vec<u8>,
    m: u64,
    k: u8,
    seed: u64,
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Bloom {
    /// A filter sized for `n` ids at false-positive rate `fpr`.
    pub fn for_count(n: usize, fpr: f64, seed: u64) -> Bloom {
        let n = n.max(1) as f64;
        let fpr = fpr.clamp(1e-9, 0.5);
        let ln2 = std::f64::consts::LN_2;
        let m = ((-n * fpr.ln()) / (ln2 * ln2)).ceil().clamp(8.0, MAX_BITS as f64) as u64;
        let k = ((m as f64 / n) * ln2).round().clamp(1.0, 32.0) as u8;
        Bloom::with_size(m, k, seed)
    }

    /// A filter with exactly `m` bits and `k` hashes.
    pub fn with_size(m: u64, k: u8, seed: u64) -> Bloom {
        let m = m.clamp(8, MAX_BITS);
        Bloom { bits: vec![0; m.div_ceil(8) as usize], m, k: k.clamp(1, 32), seed }
    }

    fn positions(&self, id: &CommitId) -> impl Iterator<Item = u64> + '_ {
        let w = |i: usize| u64::from_le_bytes(id.0[i..i + 8].try_into().expect("8 bytes"));
        let a = mix(w(0) ^ self.seed);
        let b = mix(w(8) ^ self.seed.rotate_left(32)) | 1;
        (0..u64::from(self.k)).map(move |i| a.wrapping_add(i.wrapping_mul(b)) % self.m)
    }

    pub fn insert(&mut self, id: &CommitId) {
        let ps: Vec<u64> = self.positions(id).collect();
        for p in ps {
            self.bits[(p / 8) as usize] |= 1 << (p % 8);
        }
    }

    pub fn contains(&self, id: &CommitId) -> bool {
        self.positions(id).all(|p| self.bits[(p / 8) as usize] & (1 << (p % 8)) != 0)
    }

    /// Size of the encoding in bytes.
    pub fn byte_len(&self) -> usize {
        self.bits.len()
    }

    pub fn encode(&self, w: &mut Writer) {
        w.varint(self.m);
        w.u8(self.k);
        w.raw(&self.seed.to_le_bytes());
        w.raw(&self.bits);
    }

    pub fn decode(r: &mut Reader) -> Result<Bloom> {
        let at = r.offset();
        let m = r.varint("bloom size")?;
        if !(8..=MAX_BITS).contains(&m) {
            return Err(Error::decode(format!("bloom filter of {m} bits (8..={MAX_BITS})"), at));
        }
        let k = r.u8("bloom hash count")?;
        if !(1..=32).contains(&k) {
            return Err(Error::decode(format!("bloom filter with {k} hashes (1..=32)"), at));
        }
        let seed = u64::from_le_bytes(r.array("bloom seed")?);
        let bits = r.take(m.div_ceil(8) as usize, "bloom bits")?.to_vec();
        Ok(Bloom { bits, m, k, seed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn id(i: u32) -> CommitId {
        CommitId(Sha256::digest(i.to_le_bytes()).into())
    }

    #[test]
    fn no_false_negatives_and_about_the_planned_false_positives() {
        let mut b = Bloom::for_count(10_000, 0.01, 42);
        (0..10_000).for_each(|i| b.insert(&id(i)));
        assert!((0..10_000).all(|i| b.contains(&id(i))));
        let fp = (10_000..60_000).filter(|i| b.contains(&id(*i))).count();
        assert!(fp < 1_000, "{fp} false positives in 50,000 (planned ~500)");
    }

    #[test]
    fn false_positives_change_with_the_seed() {
        let build = |seed| {
            let mut b = Bloom::with_size(64, 2, seed);
            (0..40).for_each(|i| b.insert(&id(i)));
            b
        };
        let (a, b) = (build(1), build(2));
        let fa: Vec<u32> = (100..400).filter(|i| a.contains(&id(*i))).collect();
        let fb: Vec<u32> = (100..400).filter(|i| b.contains(&id(*i))).collect();
        assert!(!fa.is_empty() && fa != fb);
    }

    #[test]
    fn encoding_roundtrips_and_limits_are_enforced() {
        let mut b = Bloom::for_count(100, 0.01, 7);
        b.insert(&id(3));
        let mut w = Writer::new();
        b.encode(&mut w);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(Bloom::decode(&mut r).unwrap(), b);
        r.finish("bloom").unwrap();
        for cut in 0..bytes.len() {
            assert!(Bloom::decode(&mut Reader::new(&bytes[..cut])).is_err());
        }
        let mut w = Writer::new();
        w.varint(MAX_BITS + 1);
        assert!(Bloom::decode(&mut Reader::new(&w.into_bytes())).is_err());
    }
}
