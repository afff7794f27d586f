//! Connection control frames: the handshake that proves which session is on
//! the other end of a connection, and the login flow. They share the
//! WebSocket with the sync frames of `sync.rs` (types 1–3); control frames
//! use types 16 and up.
//!
//! ```text
//! 16 hello       nonce[32] root[32] bytes rules sig[64]    server → client, first frame
//!                   sig = root's signature of "ibex-rules-v1" ‖ rules (rules.rs text)
//! 17 auth        session[32] sig[64]                       client → server, answers hello
//!                   sig = session's signature of "ibex-auth-v1" ‖ nonce ‖ root
//! 18 welcome     str user, str email, zigzag expires       server → client: the session is
//!                   certified; its user id and e-mail ("" when anonymous) and the
//!                   certificate's expiry. The certificate itself (root-signed
//!                   /sys/sessions commits) arrives just before, in a `commits` frame.
//! 19 error       str repo, str code, str message           either way; repo "" = the connection
//! 20 login       str email                                 client → server: send me a link
//! 21 login-sent  str email                                 server → client
//! 22 redeem      str token                                 client → server: bind my session
//!                   to the user of this one-time link; answered by welcome or error
//! 23 logout      —                                         client → server: expire my certificate
//! ```
//!
//! The nonce is fresh per connection (32 bytes from the server's secure
//! random source), so an `auth` frame recorded on one connection is
//! worthless on any other: there is no replay window. Until `auth` is
//! accepted the server answers nothing but `hello`, and a client handles no
//! sync frame before `welcome`.

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::signing::{SessionId, SessionKey};

/// Longest e-mail address accepted (RFC 5321 path limit).
pub const MAX_EMAIL: usize = 254;
/// Longest rules text.
pub const MAX_RULES: usize = 64 << 10;
/// Longest error message or code carried in a frame.
pub const MAX_MESSAGE: usize = 1024;
/// Longest login token.
pub const MAX_TOKEN: usize = 128;

#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    Hello { nonce: [u8; 32], root: SessionId, rules: String, rules_sig: [u8; 64] },
    Auth { session: SessionId, sig: [u8; 64] },
    Welcome { user: String, email: String, expires: i64 },
    Error { repo: String, code: String, message: String },
    Login { email: String },
    LoginSent { email: String },
    Redeem { token: String },
    Logout,
}

const T_HELLO: u8 = 16;
const T_AUTH: u8 = 17;
const T_WELCOME: u8 = 18;
const T_ERROR: u8 = 19;
const T_LOGIN: u8 = 20;
const T_LOGIN_SENT: u8 = 21;
const T_REDEEM: u8 = 22;
const T_LOGOUT: u8 = 23;

/// True if `frame` is a control frame (not a sync frame).
pub fn is_control(frame: &[u8]) -> bool {
    frame.first().is_some_and(|t| *t >= T_HELLO)
}

fn rules_payload(rules: &str) -> Vec<u8> {
    [b"ibex-rules-v1".as_slice(), rules.as_bytes()].concat()
}

fn auth_payload(nonce: &[u8; 32], root: &SessionId) -> Vec<u8> {
    [b"ibex-auth-v1".as_slice(), nonce, &root.0].concat()
}

fn bounded<'a>(r: &mut Reader<'a>, what: &str, max: usize) -> Result<&'a str> {
    let at = r.offset();
    let s = r.str(what)?;
    if s.len() > max {
        return Err(Error::decode(format!("{what} of {} bytes (at most {max})", s.len()), at));
    }
    Ok(s)
}

impl Control {
    /// The server's greeting, with its rules signed by its root key.
    pub fn hello(nonce: [u8; 32], root: &SessionKey, rules: String) -> Control {
        let rules_sig = root.sign(&rules_payload(&rules));
        Control::Hello { nonce, root: root.id(), rules, rules_sig }
    }

    /// Checks a hello's rules signature; returns the rules text.
    pub fn verify_hello(&self) -> Result<(&[u8; 32], SessionId, &str)> {
        let Control::Hello { nonce, root, rules, rules_sig } = self else {
            return Err(Error::Handshake("expected hello".into()));
        };
        root.verify(&rules_payload(rules), rules_sig).map_err(|_| Error::Handshake("the rules are not signed by the server's root key".into()))?;
        Ok((nonce, *root, rules))
    }

    /// The answer to a hello: proof that `session` is on this connection.
    pub fn auth(session: &SessionKey, nonce: &[u8; 32], root: &SessionId) -> Control {
        Control::Auth { session: session.id(), sig: session.sign(&auth_payload(nonce, root)) }
    }

    /// Checks an auth frame against this connection's nonce.
    pub fn verify_auth(&self, nonce: &[u8; 32], root: &SessionId) -> Result<SessionId> {
        let Control::Auth { session, sig } = self else {
            return Err(Error::Handshake("expected auth".into()));
        };
        session.verify(&auth_payload(nonce, root), sig).map_err(|_| Error::Handshake(format!("session {session} did not sign this connection's nonce")))?;
        Ok(*session)
    }

    /// An error frame from an engine error (`repo` "" for the connection).
    pub fn error(repo: &str, e: &Error) -> Control {
        let message: String = e.to_string().chars().take(MAX_MESSAGE / 4).collect();
        Control::Error { repo: repo.to_owned(), code: e.code().to_owned(), message }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Control::Hello { nonce, root, rules, rules_sig } => {
                w.u8(T_HELLO);
                w.raw(nonce);
                w.raw(&root.0);
                w.str(rules);
                w.raw(rules_sig);
            }
            Control::Auth { session, sig } => {
                w.u8(T_AUTH);
                w.raw(&session.0);
                w.raw(sig);
            }
            Control::Welcome { user, email, expires } => {
                w.u8(T_WELCOME);
                w.str(user);
                w.str(email);
                w.zigzag(*expires);
            }
            Control::Error { repo, code, message } => {
                w.u8(T_ERROR);
                w.str(repo);
                w.str(code);
                w.str(message);
            }
            Control::Login { email } => {
                w.u8(T_LOGIN);
                w.str(email);
            }
            Control::LoginSent { email } => {
                w.u8(T_LOGIN_SENT);
                w.str(email);
            }
            Control::Redeem { token } => {
                w.u8(T_REDEEM);
                w.str(token);
            }
            Control::Logout => w.u8(T_LOGOUT),
        }
        w.into_bytes()
    }

    /// Decodes one control frame; every field is bounded, hostile input
    /// gets an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Control> {
        let mut r = Reader::new(bytes);
        let c = match r.u8("frame type")? {
            T_HELLO => {
                Control::Hello { nonce: r.array("nonce")?, root: SessionId(r.array("root key")?), rules: bounded(&mut r, "rules", MAX_RULES)?.to_owned(), rules_sig: r.array("rules signature")? }
            }
            T_AUTH => Control::Auth { session: SessionId(r.array("session key")?), sig: r.array("auth signature")? },
            T_WELCOME => Control::Welcome { user: bounded(&mut r, "user", MAX_EMAIL)?.to_owned(), email: bounded(&mut r, "email", MAX_EMAIL)?.to_owned(), expires: r.zigzag("expires")? },
            T_ERROR => {
                Control::Error { repo: bounded(&mut r, "repo", MAX_MESSAGE)?.to_owned(), code: bounded(&mut r, "code", 64)?.to_owned(), message: bounded(&mut r, "message", MAX_MESSAGE)?.to_owned() }
            }
            T_LOGIN => Control::Login { email: bounded(&mut r, "email", MAX_EMAIL)?.to_owned() },
            T_LOGIN_SENT => Control::LoginSent { email: bounded(&mut r, "email", MAX_EMAIL)?.to_owned() },
            T_REDEEM => Control::Redeem { token: bounded(&mut r, "token", MAX_TOKEN)?.to_owned() },
            T_LOGOUT => Control::Logout,
            t => return Err(Error::decode(format!("unknown control frame type {t}"), 0)),
        };
        r.finish("control frame")?;
        Ok(c)
    }
}

/// Checks the shape of an e-mail address (one `@`, something on each side,
/// no spaces or control characters, at most [`MAX_EMAIL`] bytes) and
/// returns it lower-cased.
pub fn normalize_email(email: &str) -> Result<String> {
    let e = email.trim().to_lowercase();
    let bad = |why: &str| Error::Login(format!("`{}` is not an e-mail address: {why}", email.chars().take(64).collect::<String>()));
    if e.len() > MAX_EMAIL {
        return Err(bad("too long"));
    }
    if e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains spaces or control characters"));
    }
    match e.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@') => Ok(e),
        _ => Err(bad("expected name@domain")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_control_frames_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Control::decode(&b);
        }
    }

    #[test]
    fn frames_roundtrip_and_truncations_fail() {
        let root = SessionKey::from_seed([1; 32]);
        for c in [
            Control::hello([7; 32], &root, "/data/* session session\n".into()),
            Control::auth(&SessionKey::from_seed([2; 32]), &[7; 32], &root.id()),
            Control::Welcome { user: "u1".into(), email: "a@b.c".into(), expires: 1_700_000_000_000 },
            Control::Error { repo: "/data/x".into(), code: "ERR_FORBIDDEN".into(), message: "no".into() },
            Control::Login { email: "a@b.c".into() },
            Control::LoginSent { email: "a@b.c".into() },
            Control::Redeem { token: "abc".into() },
            Control::Logout,
        ] {
            let b = c.encode();
            assert!(is_control(&b));
            assert_eq!(Control::decode(&b).unwrap(), c);
            for cut in 0..b.len() {
                assert!(Control::decode(&b[..cut]).is_err());
            }
        }
    }

    #[test]
    fn hello_rules_must_be_signed_by_the_root() {
        let root = SessionKey::from_seed([1; 32]);
        let h = Control::hello([0; 32], &root, "/data/* anyone anyone".into());
        assert!(h.verify_hello().is_ok());
        let Control::Hello { nonce, root: r, rules_sig, .. } = h else { unreachable!() };
        let forged = Control::Hello { nonce, root: r, rules: "/*/* anyone anyone".into(), rules_sig };
        assert_eq!(forged.verify_hello().unwrap_err().code(), "ERR_HANDSHAKE");
    }

    #[test]
    fn emails_are_checked() {
        assert_eq!(normalize_email(" Ann@Example.org ").unwrap(), "ann@example.org");
        for bad in ["", "ann", "@x", "ann@", "a b@c", "a@b@c", &"a".repeat(300)] {
            assert_eq!(normalize_email(bad).unwrap_err().code(), "ERR_LOGIN", "{bad}");
        }
    }
}
