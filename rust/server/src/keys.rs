//! The server's root key: 32 secret bytes stored as 64 hex characters in a
//! file only its owner can read. Created from the OS's secure random source
//! on first start; peered servers must be given the same file.

use std::io::{Error, ErrorKind};
use std::path::Path;

use ibex_core::SessionKey;
use sha2::{Digest, Sha256};

/// The root key given as 64 hex characters (configuration, e.g.
/// `IBEX_ROOT_KEY`).
pub fn from_hex(text: &str) -> std::io::Result<SessionKey> {
    let bad = |why: &str| Error::new(ErrorKind::InvalidData, format!("root key: {why}"));
    let raw = hex::decode(text.trim()).map_err(|_| bad("not hex"))?;
    let seed: [u8; 32] = raw.try_into().map_err(|_| bad("expected 64 hex characters (32 bytes)"))?;
    Ok(SessionKey::from_seed(seed))
}

pub fn load_or_create(path: &Path) -> std::io::Result<SessionKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bad = |why: &str| Error::new(ErrorKind::InvalidData, format!("root key {}: {why}", path.display()));
            let raw = hex::decode(text.trim()).map_err(|_| bad("not hex"))?;
            let seed: [u8; 32] = raw.try_into().map_err(|_| bad("expected 64 hex characters (32 bytes)"))?;
            Ok(SessionKey::from_seed(seed))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| Error::other(format!("no secure random source: {e}")))?;
            if let Some(dir) = path.parent() {
                crate::private_dir(dir)?;
            }
            write_private(path, &format!("{}\n", hex::encode(seed)))?;
            tracing::info!(path = %path.display(), "created a new root key");
            Ok(SessionKey::from_seed(seed))
        }
        Err(e) => Err(e),
    }
}

/// The key of user ids (`trust::user_id`): derived from the root key, so
/// servers that share a root agree on ids, and never sent anywhere.
pub fn user_secret(root: &SessionKey) -> [u8; 32] {
    Sha256::new().chain_update(b"ibex-user-id-key-v1").chain_update(root.seed()).finalize().into()
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}
