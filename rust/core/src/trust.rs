//! Session certificates and the check every commit passes before it
//! enters a replica.
//!
//! A server's **root** key certifies a session by writing the item
//! `/sys/sessions/<session id hex>` (schema `ibex.session@1`: `owner` —
//! the user id, absent for anonymous sessions — and `expires`, ms since the
//! epoch). Only the root may write `/sys` (see `rules.rs`), so every value
//! in that repository is a certificate signed by the root: the commit's
//! Ed25519 signature *is* the certificate's signature, and it travels to
//! every replica by ordinary sync.
//!
//! [`Trust::verify`] is what every replica (server and clients) runs on a
//! commit from elsewhere, in order:
//!
//! 1. the signature is valid for the commit's session key (`verify_strict`);
//! 2. a root's commit is accepted;
//! 3. otherwise the session has a certificate, and the commit's timestamp
//!    is not after the certificate's expiry (a commit made offline before
//!    the expiry stays valid when it arrives later);
//! 4. the write rule for the commit's repository allows the certificate's
//!    owner.
//!
//! A replica that trusts no root yet (a local-only database that never met
//! a server) can only check signatures; it learns its root in the first
//! handshake and keeps it (trust on first use, or configured).
//!
//! A certificate's owner is set once (at login) and never changed to
//! another user: commits judged under it would otherwise change validity.
//! Logging out expires the certificate instead.

use std::collections::{BTreeSet, HashMap};

use crate::error::{Error, Result};
use crate::path::RepoPath;
use crate::repository::Repository;
use crate::rules::{Principal, Rules};
use crate::schema::{FieldDef, FieldType, Registry, Schema, SchemaId};
use crate::signing::{SessionId, SessionKey};
use crate::stored::StoredCommit;
use crate::value::{ItemData, Value};

/// The repository of session certificates.
pub const SESSIONS: &str = "/sys/sessions";
/// The repository of users (`ibex.user@1`, key = user id), root only.
pub const USERS: &str = "/sys/users";
/// How long a certificate is valid; renewed when less than half is left.
pub const CERT_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

pub fn session_schema() -> Schema {
    Schema::new("ibex.session", 1).field("owner", FieldDef::new(FieldType::String)).field("expires", FieldDef::new(FieldType::Date).required())
}

pub fn user_schema() -> Schema {
    Schema::new("ibex.user", 1).field("email", FieldDef::new(FieldType::String).required())
}

/// The user id of an e-mail address (already normalized): a hash, so
/// `/user/<id>` paths and certificates do not reveal addresses.
pub fn user_id(email: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("ibex-user:{email}").as_bytes());
    format!("u{}", &hex::encode(h)[..24])
}

/// Registers the built-in `/sys` schemas.
pub fn register_schemas(registry: &mut Registry) -> Result<()> {
    registry.register(session_schema())?;
    registry.register(user_schema())?;
    Ok(())
}

/// What a root says about a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub session: SessionId,
    /// The user the session belongs to; `None` for anonymous sessions.
    pub owner: Option<String>,
    /// Milliseconds since the epoch; commits after this are refused.
    pub expires: i64,
}

impl Certificate {
    /// Reads the certificate `key` holds in a sessions repository.
    pub fn read(sessions: &mut Repository, key: &str) -> Option<Certificate> {
        let session = SessionId(hex::decode(key).ok()?.try_into().ok()?);
        let head = sessions.head(key)?;
        if head.data.deleted || head.schema.ns.as_ref() != "ibex.session" {
            return None;
        }
        let owner = match head.data.fields.get("owner") {
            Some(Value::Str(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let Some(Value::Date(expires)) = head.data.fields.get("expires") else {
            return None;
        };
        Some(Certificate { session, owner, expires: *expires })
    }

    /// Writes (or renews) this certificate, signed by `root`.
    pub fn write(&self, sessions: &mut Repository, root: &SessionKey, now: i64) -> Result<()> {
        let mut fields = std::collections::BTreeMap::new();
        if let Some(o) = &self.owner {
            fields.insert("owner".to_owned(), Value::Str(o.clone()));
        }
        fields.insert("expires".to_owned(), Value::Date(self.expires));
        sessions.write(&self.session.to_hex(), &SchemaId::new("ibex.session", 1), ItemData::new(fields), root, now)?;
        Ok(())
    }
}

/// Trusted roots, the rules, and the certificates known so far.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    roots: BTreeSet<SessionId>,
    rules: Rules,
    certs: HashMap<SessionId, Certificate>,
}

impl Trust {
    pub fn new(rules: Rules) -> Self {
        Trust { roots: BTreeSet::new(), rules, certs: HashMap::new() }
    }

    pub fn add_root(&mut self, root: SessionId) {
        self.roots.insert(root);
    }

    pub fn is_root(&self, s: &SessionId) -> bool {
        self.roots.contains(s)
    }

    pub fn has_roots(&self) -> bool {
        !self.roots.is_empty()
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    pub fn certificate(&self, s: &SessionId) -> Option<&Certificate> {
        self.certs.get(s)
    }

    /// Who `s` is at time `now`.
    pub fn principal(&self, s: &SessionId, now: i64) -> Principal {
        if self.is_root(s) {
            return Principal::Root;
        }
        match self.certs.get(s) {
            Some(c) if now <= c.expires => Principal::Session { user: c.owner.clone() },
            _ => Principal::Uncertified,
        }
    }

    /// Re-reads the certificates of `keys` after commits to the sessions
    /// repository (a commit's unblocked descendants have the same key).
    pub fn refresh<'a>(&mut self, sessions: &mut Repository, keys: impl IntoIterator<Item = &'a str>) {
        for k in keys {
            let Ok(raw) = hex::decode(k) else { continue };
            let Ok(id) = <[u8; 32]>::try_from(raw) else {
                continue;
            };
            match Certificate::read(sessions, k) {
                Some(c) => self.certs.insert(SessionId(id), c),
                None => self.certs.remove(&SessionId(id)),
            };
        }
    }

    /// Reads every certificate of a sessions repository (after opening it).
    pub fn refresh_all(&mut self, sessions: &mut Repository) {
        let keys: Vec<String> = sessions.keys().map(str::to_owned).collect();
        self.refresh(sessions, keys.iter().map(String::as_str));
    }

    /// The checks of the module docs; `Ok` means the commit may enter.
    pub fn verify(&self, c: &StoredCommit) -> Result<()> {
        c.verify()?;
        let session = c.session();
        if self.is_root(&session) || self.roots.is_empty() {
            return Ok(());
        }
        let repo = RepoPath::parse(c.repo())?;
        let cert = self.certs.get(&session).ok_or_else(|| Error::UnknownSession(session.to_hex()))?;
        if c.timestamp > cert.expires {
            return Err(Error::SessionExpired { session: session.to_hex(), expired: cert.expires, at: c.timestamp });
        }
        self.rules.check_write(&repo, &Principal::Session { user: cert.owner.clone() }).map_err(|e| match e {
            Error::Forbidden(m) => Error::Forbidden(format!("commit {} by session {session}: {m}", c.id.to_hex())),
            other => other,
        })
    }
}
