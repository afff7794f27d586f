//! The one error type of `ibex-core`.
//!
//! Every variant has a stable machine-readable [`Error::code`] (`"ERR_…"`)
//! that crosses into TypeScript unchanged, so applications can branch on the
//! code while people read the message. Codes are never renamed or reused.

use thiserror::Error;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes that do not follow the documented encoding.
    #[error("Decode error: {what} at byte {offset}. The data is malformed or was written by an incompatible version.")]
    Decode { what: String, offset: usize },

    /// A value does not satisfy its schema.
    #[error("Invalid value for field `{field}` of `{schema}`: {reason}")]
    Validation { schema: String, field: String, reason: String },

    /// A schema definition itself is inconsistent.
    #[error("Invalid schema `{schema}`: {reason}")]
    Schema { schema: String, reason: String },

    /// A schema (namespace and version) that this replica does not know.
    #[error("Unknown schema `{0}`: register it before writing items with it")]
    UnknownSchema(String),

    /// A repository or item path that does not follow the path rules.
    #[error("Invalid path `{path}`: {reason}")]
    Path { path: String, reason: String },

    /// A commit that is well-formed but not acceptable in this repository.
    #[error("Rejected commit {id}: {reason}")]
    InvalidCommit { id: String, reason: String },

    /// An Ed25519 signature that does not verify.
    #[error("Bad signature on commit {id}: the commit was altered or not signed by its session")]
    BadSignature { id: String },

    /// A public key that is not a valid, strong Ed25519 key.
    #[error("Invalid session public key: {0}")]
    BadKey(String),

    /// A commit refers to a commit this replica has not seen.
    #[error("Commit {id} refers to unknown commit {missing}")]
    MissingCommit { id: String, missing: String },

    /// Too many commits wait for parents that never arrived.
    #[error("Too many commits are waiting for unknown parents (limit {limit}); sync again to fetch them")]
    PendingFull { limit: usize },

    /// The log file's header is not ours or is from a newer format version.
    #[error("Log header: {0}")]
    LogHeader(String),

    /// The storage backend failed (disk full, permission, quota, …).
    #[error("Storage error: {0}")]
    Storage(String),

    /// The rules do not allow this session to read or write there.
    #[error("Forbidden: {0}")]
    Forbidden(String),

    /// A commit signed by a session no trusted root has certified.
    #[error("Unknown session {0}: no certificate from a trusted root")]
    UnknownSession(String),

    /// A commit made after its session's certificate expired.
    #[error("Session {session} expired at {expired} (ms since epoch); the commit is from {at}")]
    SessionExpired { session: String, expired: i64, at: i64 },

    /// The connection handshake failed (bad nonce signature, untrusted root, …).
    #[error("Handshake failed: {0}")]
    Handshake(String),

    /// A login link that is unknown, already used or expired, or a login
    /// request the verifier refused.
    #[error("Login failed: {0}")]
    Login(String),

    /// A limit on what one client may use (repositories, connections,
    /// pending commits, work per frame, login links, …) was reached.
    #[error("Quota exceeded: {0}")]
    Quota(String),

    /// A commit stamped too far in the future, or before its session's
    /// certificate was issued.
    #[error("Clock: {0}")]
    Clock(String),

    /// The peer speaks a protocol version this build does not.
    #[error("Protocol version: {0}")]
    Version(String),

    /// The other side stopped answering (heartbeat), or took too long.
    #[error("Timeout: {0}")]
    Timeout(String),

    /// Something asked for by id (a commit in an item's history) is not here.
    #[error("Not found: {0}")]
    NotFound(String),
}

/// Declares [`Error::code`] and [`Error::CODES`] from one table, so the list
/// the SDK is checked against (`packages/db/test/golden/error_codes.json`)
/// cannot drift from the codes errors actually carry.
macro_rules! codes {
    ($($variant:pat => $code:literal,)*) => {
        /// Every code [`Error::code`] returns, in declaration order.
        pub const CODES: &[&str] = &[$($code),*];

        /// Stable code for programs to branch on; never changes once published.
        pub fn code(&self) -> &'static str {
            match self {
                $($variant => $code,)*
            }
        }
    };
}

impl Error {
    codes! {
        Error::Decode { .. } => "ERR_DECODE",
        Error::Validation { .. } => "ERR_VALIDATION",
        Error::Schema { .. } => "ERR_SCHEMA",
        Error::UnknownSchema(_) => "ERR_UNKNOWN_SCHEMA",
        Error::Path { .. } => "ERR_PATH",
        Error::InvalidCommit { .. } => "ERR_INVALID_COMMIT",
        Error::BadSignature { .. } => "ERR_BAD_SIGNATURE",
        Error::BadKey(_) => "ERR_BAD_KEY",
        Error::MissingCommit { .. } => "ERR_MISSING_COMMIT",
        Error::PendingFull { .. } => "ERR_PENDING_FULL",
        Error::LogHeader(_) => "ERR_LOG_HEADER",
        Error::Storage(_) => "ERR_STORAGE",
        Error::Forbidden(_) => "ERR_FORBIDDEN",
        Error::UnknownSession(_) => "ERR_UNKNOWN_SESSION",
        Error::SessionExpired { .. } => "ERR_SESSION_EXPIRED",
        Error::Handshake(_) => "ERR_HANDSHAKE",
        Error::Login(_) => "ERR_LOGIN",
        Error::Quota(_) => "ERR_QUOTA",
        Error::Clock(_) => "ERR_CLOCK",
        Error::Version(_) => "ERR_VERSION",
        Error::Timeout(_) => "ERR_TIMEOUT",
        Error::NotFound(_) => "ERR_NOT_FOUND",
    }

    /// A decode error at `offset`.
    pub fn decode(what: impl Into<String>, offset: usize) -> Self {
        Error::Decode { what: what.into(), offset }
    }

    /// A path error.
    pub fn path(path: &str, reason: impl Into<String>) -> Self {
        Error::Path { path: path.to_owned(), reason: reason.into() }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_prefixed() {
        let all = [
            Error::decode("x", 0),
            Error::Validation { schema: "s".into(), field: "f".into(), reason: "r".into() },
            Error::Schema { schema: "s".into(), reason: "r".into() },
            Error::UnknownSchema("s".into()),
            Error::path("/p", "r"),
            Error::InvalidCommit { id: "i".into(), reason: "r".into() },
            Error::BadSignature { id: "i".into() },
            Error::BadKey("k".into()),
            Error::MissingCommit { id: "i".into(), missing: "m".into() },
            Error::PendingFull { limit: 1 },
            Error::LogHeader("h".into()),
            Error::Storage("s".into()),
            Error::Forbidden("f".into()),
            Error::UnknownSession("s".into()),
            Error::SessionExpired { session: "s".into(), expired: 1, at: 2 },
            Error::Handshake("h".into()),
            Error::Login("l".into()),
            Error::Quota("q".into()),
            Error::Clock("c".into()),
            Error::Version("v".into()),
            Error::Timeout("t".into()),
            Error::NotFound("n".into()),
        ];
        let mut codes: Vec<_> = all.iter().map(Error::code).collect();
        assert!(codes.iter().all(|c| c.starts_with("ERR_")));
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        let mut listed = Error::CODES.to_vec();
        listed.sort();
        assert_eq!(codes, listed, "Error::CODES lists exactly the codes errors carry");
    }

    #[test]
    fn messages_name_the_problem() {
        let e = Error::Validation { schema: "task@1".into(), field: "done".into(), reason: "expected boolean, got string".into() };
        let m = e.to_string();
        assert!(m.contains("done") && m.contains("task@1") && m.contains("expected boolean"));
    }
}
