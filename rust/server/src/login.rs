//! Login: binding a session to a user with a one-time link.
//!
//! `db.login(email)` asks the server for a link; the server creates a
//! random token (32 bytes from the OS's secure source), remembers it for
//! the link's lifetime (10 minutes by default), and hands the link to a
//! [`LoginVerifier`] — off the sync path, on a blocking thread. Production
//! deployments e-mail it ([`SmtpLink`], `--smtp-url`); the development
//! default ([`PrintLink`]) prints it. Opening the link makes that browser's
//! session redeem the token: a token works once, and not after it expires.
//!
//! Bounded: links waiting in all, links per address per window (one
//! attacker cannot mail-bomb an address or lock others out), per
//! connection and per IP address (checked by the connection).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ibex_core::Error;

use crate::error::ServerError;

/// Delivers login links to the people who asked for them.
pub trait LoginVerifier: Send + Sync {
    /// Sends `link` to `email`; an error is reported to the client.
    fn send(&self, email: &str, link: &str) -> Result<(), ServerError>;
}

/// The development verifier: prints the link to the server log.
pub struct PrintLink;

impl LoginVerifier for PrintLink {
    fn send(&self, email: &str, link: &str) -> Result<(), ServerError> {
        tracing::info!(%email, %link, "login link (development verifier: nothing is e-mailed)");
        // Also on stdout, one line, for scripts and tests to pick up.
        println!("IBEX LOGIN LINK {email} {link}");
        Ok(())
    }
}

/// Sends links by e-mail over SMTP (`--smtp-url smtp://user:pass@host:587`
/// for STARTTLS, `smtps://` for TLS, `smtp://host:25?tls=none` for a local
/// relay; `--smtp-from`).
pub struct SmtpLink {
    transport: lettre::SmtpTransport,
    from: lettre::message::Mailbox,
}

impl SmtpLink {
    pub fn new(url: &str, from: &str) -> Result<SmtpLink, ServerError> {
        let transport = lettre::SmtpTransport::from_url(url).map_err(|e| ServerError::Config(format!("--smtp-url: {e}")))?.timeout(Some(Duration::from_secs(20))).build();
        let from = from.parse().map_err(|e| ServerError::Config(format!("--smtp-from `{from}`: {e}")))?;
        Ok(SmtpLink { transport, from })
    }
}

impl LoginVerifier for SmtpLink {
    fn send(&self, email: &str, link: &str) -> Result<(), ServerError> {
        use lettre::Transport;
        let to = email.parse().map_err(|e| ServerError::Core(Error::Login(format!("cannot e-mail `{email}`: {e}"))))?;
        let msg = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject("Your sign-in link")
            .body(format!("Open this link to sign in (it works once, for a few minutes):\n\n{link}\n\nIf you did not ask for it, ignore this message.\n"))
            .map_err(|e| ServerError::Core(Error::Login(e.to_string())))?;
        self.transport.send(&msg).map(|_| ()).map_err(|e| ServerError::Unavailable(format!("the mail server refused the link: {e}")))
    }
}

struct Pending {
    email: String,
    expires: Instant,
}

/// Tokens handed out and not yet used.
pub struct Logins {
    ttl: Duration,
    max_pending: usize,
    per_address: u32,
    window: Duration,
    pending: HashMap<String, Pending>,
    /// Links sent per address: (window start, count).
    sent: HashMap<String, (Instant, u32)>,
}

impl Logins {
    pub fn new(ttl: Duration, max_pending: usize, per_address: u32, window: Duration) -> Self {
        Logins { ttl, max_pending, per_address, window, pending: HashMap::new(), sent: HashMap::new() }
    }

    /// A new token for `email` (normalized).
    pub fn issue(&mut self, email: &str) -> Result<String, Error> {
        let now = Instant::now();
        self.sent.retain(|_, (t, _)| now.duration_since(*t) < self.window);
        let e = self.sent.entry(email.to_owned()).or_insert((now, 0));
        if e.1 >= self.per_address {
            return Err(Error::Quota(format!("{} login links were sent to this address in the last {} minutes; wait before asking again", self.per_address, self.window.as_secs() / 60)));
        }
        if self.pending.len() >= self.max_pending {
            self.pending.retain(|_, p| p.expires > now);
            if self.pending.len() >= self.max_pending {
                return Err(Error::Quota("too many login links are waiting; try again later".into()));
            }
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| Error::Login(format!("no secure random source: {e}")))?;
        let token = hex::encode(raw);
        self.sent.get_mut(email).expect("inserted above").1 += 1;
        self.pending.insert(token.clone(), Pending { email: email.to_owned(), expires: now + self.ttl });
        Ok(token)
    }

    /// Forgets a token whose link could not be sent.
    pub fn cancel(&mut self, token: &str) {
        self.pending.remove(token);
    }

    /// The address a token is for, without using it up (the app asks the
    /// user "Log in as …?" before redeeming).
    pub fn peek(&self, token: &str) -> Result<String, Error> {
        match self.pending.get(token) {
            Some(p) if Instant::now() <= p.expires => Ok(p.email.clone()),
            Some(_) => Err(Error::Login("this login link has expired; ask for a new one".into())),
            None => Err(Error::Login("this login link is unknown or was already used".into())),
        }
    }

    /// Uses up `token`: its e-mail, or why not.
    pub fn redeem(&mut self, token: &str) -> Result<String, Error> {
        let p = self.pending.remove(token).ok_or_else(|| Error::Login("this login link is unknown or was already used".into()))?;
        if Instant::now() > p.expires {
            return Err(Error::Login("this login link has expired; ask for a new one".into()));
        }
        Ok(p.email)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_single_use_expire_and_are_limited_per_address() {
        let mut l = Logins::new(Duration::from_secs(600), 100, 2, Duration::from_secs(600));
        let t = l.issue("a@b.c").unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(l.peek(&t).unwrap(), "a@b.c");
        assert_ne!(t, l.issue("a@b.c").unwrap());
        assert_eq!(l.issue("a@b.c").unwrap_err().code(), "ERR_QUOTA", "a third link to the same address is refused");
        assert!(l.issue("other@b.c").is_ok(), "other addresses are not affected");
        assert_eq!(l.redeem(&t).unwrap(), "a@b.c");
        let used = l.redeem(&t).unwrap_err();
        assert_eq!(used.code(), "ERR_LOGIN");
        // Same code, different advice: the message says which.
        assert!(used.to_string().contains("already used"));
        let mut short = Logins::new(Duration::ZERO, 100, 5, Duration::from_secs(600));
        let t = short.issue("a@b.c").unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let expired = short.redeem(&t).unwrap_err();
        assert_eq!(expired.code(), "ERR_LOGIN");
        assert!(expired.to_string().contains("expired"));
    }
}
