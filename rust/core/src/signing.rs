//! Ed25519 session keys: signing commits and verifying signatures.
//!
//! A session's identity *is* its 32-byte public key ([`SessionId`]), so a
//! commit names the key that must have signed it. Verification is
//! `verify_strict` and rejects weak (small-order) public keys: no
//! non-canonical signature or key is ever accepted. The core creates no
//! randomness of its own; callers provide a 32-byte seed from a secure
//! source (`getrandom` in the WASM and server crates).

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::error::{Error, Result};

/// A session's public key, which is also its id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub [u8; 32]);

impl SessionId {
    /// Checks that `sig` is a strict Ed25519 signature of `msg` by this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> Result<()> {
        let key = self.verifying_key()?;
        key.verify_strict(msg, &Signature::from_bytes(sig)).map_err(|_| Error::BadSignature { id: hex::encode(msg) })
    }

    fn verifying_key(&self) -> Result<VerifyingKey> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| Error::BadKey(format!("{self} is not a point on the curve")))?;
        if key.is_weak() {
            return Err(Error::BadKey(format!("{self} is a weak (small-order) key")));
        }
        Ok(key)
    }

    /// Checks that the key is a usable, strong Ed25519 public key.
    pub fn check(&self) -> Result<()> {
        self.verifying_key().map(|_| ())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0[..8]))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// A session's private signing key. Never leaves the replica that made it.
#[derive(Clone)]
pub struct SessionKey(SigningKey);

impl SessionKey {
    /// Builds a key from 32 bytes of secure randomness.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SessionKey(SigningKey::from_bytes(&seed))
    }

    /// The seed, for storing the key on this replica only.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn id(&self) -> SessionId {
        SessionId(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private key material.
        write!(f, "SessionKey({})", self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let k = SessionKey::from_seed([7; 32]);
        let sig = k.sign(b"hello");
        k.id().verify(b"hello", &sig).unwrap();
        assert_eq!(k.id().verify(b"hellp", &sig).unwrap_err().code(), "ERR_BAD_SIGNATURE");
        let other = SessionKey::from_seed([8; 32]);
        assert!(other.id().verify(b"hello", &sig).is_err());
        assert!(!format!("{k:?}").contains(&hex::encode(k.seed())));
    }

    #[test]
    fn weak_and_invalid_keys_are_rejected() {
        // The identity point is a small-order (weak) key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(SessionId(identity).check().unwrap_err().code(), "ERR_BAD_KEY");
        assert!(SessionId(identity).verify(b"x", &[0; 64]).is_err());
        // Not every 32-byte string decompresses to a curve point.
        let not_a_point = (0u8..=255).map(|b| [b; 32]).find(|k| VerifyingKey::from_bytes(k).is_err()).unwrap();
        assert_eq!(SessionId(not_a_point).check().unwrap_err().code(), "ERR_BAD_KEY");
    }

    #[test]
    fn non_canonical_signature_is_rejected() {
        let k = SessionKey::from_seed([3; 32]);
        let mut sig = k.sign(b"m");
        // Adding the group order L to the scalar half gives a malleable,
        // non-canonical signature that verify_strict must refuse.
        const L: [u8; 32] = [0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
            sig[32 + i] = v as u8;
            carry = v >> 8;
        }
        assert!(k.id().verify(b"m", &sig).is_err());
    }
}
