//! Login: binding a session to a user with a one-time link.
//!
//! `db.login(email)` asks the server for a link; the server creates a
//! random token (32 bytes from the OS's secure source), remembers it for
//! [`crate::Config::login_ttl`] (10 minutes by default), and hands the link
//! to a [`LoginVerifier`] — the pluggable part: production deployments
//! e-mail it; the development default ([`PrintLink`]) prints it to the
//! server log. Opening the link in a browser makes that browser's session
//! redeem the token: a token works once, and not after it expires.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Delivers login links to the people who asked for them.
pub trait LoginVerifier: Send + Sync {
    /// Sends `link` to `email`; an error is reported to the client.
    fn send(&self, email: &str, link: &str) -> Result<(), String>;
}

/// The development verifier: prints the link to the server log.
pub struct PrintLink;

impl LoginVerifier for PrintLink {
    fn send(&self, email: &str, link: &str) -> Result<(), String> {
        tracing::info!(%email, %link, "login link (development verifier: nothing is e-mailed)");
        // Also on stdout, one line, for scripts and tests to pick up.
        println!("IBEX LOGIN LINK {email} {link}");
        Ok(())
    }
}

/// Most login links waiting at once (older expired ones are pruned first).
pub const MAX_PENDING_LOGINS: usize = 10_000;

struct Pending {
    email: String,
    expires: Instant,
}

/// Tokens handed out and not yet used.
pub struct Logins {
    ttl: Duration,
    pending: HashMap<String, Pending>,
}

impl Logins {
    pub fn new(ttl: Duration) -> Self {
        Logins { ttl, pending: HashMap::new() }
    }

    /// A new token for `email` (normalized).
    pub fn issue(&mut self, email: &str) -> Result<String, String> {
        let now = Instant::now();
        if self.pending.len() >= MAX_PENDING_LOGINS {
            self.pending.retain(|_, p| p.expires > now);
            if self.pending.len() >= MAX_PENDING_LOGINS {
                return Err("too many login links are waiting; try again later".into());
            }
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| format!("no secure random source: {e}"))?;
        let token = raw.iter().map(|b| format!("{b:02x}")).collect::<String>();
        self.pending.insert(token.clone(), Pending { email: email.to_owned(), expires: now + self.ttl });
        Ok(token)
    }

    /// Uses up `token`: its e-mail, or why not.
    pub fn redeem(&mut self, token: &str) -> Result<String, String> {
        let p = self.pending.remove(token).ok_or("this login link is unknown or was already used")?;
        if Instant::now() > p.expires {
            return Err("this login link has expired; ask for a new one".into());
        }
        Ok(p.email)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_single_use_and_expire() {
        let mut l = Logins::new(Duration::from_secs(600));
        let t = l.issue("a@b.c").unwrap();
        assert_eq!(t.len(), 64);
        assert_ne!(t, l.issue("a@b.c").unwrap());
        assert_eq!(l.redeem(&t).unwrap(), "a@b.c");
        assert!(l.redeem(&t).unwrap_err().contains("already used"));
        let mut short = Logins::new(Duration::ZERO);
        let t = short.issue("a@b.c").unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert!(short.redeem(&t).unwrap_err().contains("expired"));
    }
}
