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
}
