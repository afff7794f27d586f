//! The server's errors: everything a client can be told, with the stable
//! codes of `ibex_core::Error` plus the server's own.

use ibex_core::Error as CoreError;

/// What went wrong while serving a connection.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServerError {
    /// An engine error (decoding, verification, rules, …).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The connection's queue made no progress for too long.
    #[error("the connection did not read what it was sent for {0} s; reconnect when you can keep up")]
    TooSlow(u64),
    /// The server is shutting down, or something it relies on (a
    /// repository, the mail server) could not be reached.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A flag or setting is wrong (reported at start, never to clients).
    #[error("configuration: {0}")]
    Config(String),
}

impl ServerError {
    /// The server's own codes that reach clients in error frames, besides
    /// [`CoreError::CODES`]; the SDK's `ENGINE_CODES` is checked against both
    /// (`packages/db/test/golden/error_codes.json`).
    pub const CLIENT_CODES: &[&str] = &["ERR_TOO_SLOW", "ERR_UNAVAILABLE"];
    /// Codes that stay in the server (reported at start, never sent).
    pub const INTERNAL_CODES: &[&str] = &["ERR_CONFIG"];

    /// Stable code for the error frame.
    pub fn code(&self) -> &'static str {
        match self {
            ServerError::Core(e) => e.code(),
            ServerError::TooSlow(_) => "ERR_TOO_SLOW",
            ServerError::Unavailable(_) => "ERR_UNAVAILABLE",
            ServerError::Config(_) => "ERR_CONFIG",
        }
    }

    pub fn quota(msg: impl Into<String>) -> ServerError {
        ServerError::Core(CoreError::Quota(msg.into()))
    }
}

pub type Result<T, E = ServerError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(ServerError::TooSlow(3).code(), "ERR_TOO_SLOW");
        assert_eq!(ServerError::Unavailable("x".into()).code(), "ERR_UNAVAILABLE");
        assert_eq!(ServerError::quota("x").code(), "ERR_QUOTA");
        assert_eq!(ServerError::from(CoreError::Forbidden("f".into())).code(), "ERR_FORBIDDEN");
    }

    #[test]
    fn own_codes_are_listed_once() {
        // An exhaustive match: a new variant does not compile until it is
        // sorted into a list here.
        let listed = |e: &ServerError| match e {
            ServerError::Core(c) => CoreError::CODES.contains(&c.code()),
            ServerError::TooSlow(_) | ServerError::Unavailable(_) => ServerError::CLIENT_CODES.contains(&e.code()),
            ServerError::Config(_) => ServerError::INTERNAL_CODES.contains(&e.code()),
        };
        let all = [ServerError::quota("q"), ServerError::TooSlow(1), ServerError::Unavailable("u".into()), ServerError::Config("c".into())];
        assert!(all.iter().all(listed));
        let mut codes: Vec<&str> = CoreError::CODES.iter().chain(ServerError::CLIENT_CODES).chain(ServerError::INTERNAL_CODES).copied().collect();
        let n = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), n, "a server code repeats an engine code");
        assert_eq!(ServerError::CLIENT_CODES.len() + ServerError::INTERNAL_CODES.len(), all.len() - 1);
    }
}
