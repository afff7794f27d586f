//! Session certificates and the check every commit passes before it
//! enters a replica.
//!
//! A server's **root** key certifies a session by writing the item
//! `/sys/sessions/<session id hex>` (schema `ibex.session@1`: `owner` —
//! the user id, absent for anonymous sessions —, `expires` and `issued`,
//! ms since the epoch), always as a full value. Only the root may write
//! `/sys` (see `rules.rs`), so every value in that repository is a
//! certificate signed by the root: the commit's Ed25519 signature *is* the
//! certificate's signature. Servers replicate the whole repository between
//! themselves; a client receives a certificate commit just before the first
//! commit of that session it is sent, and keeps the latest one per session
//! ([`Trust::add_certificate`]), so it downloads only what it needs.
//!
//! [`Trust::verify`] is what every replica (server and clients) runs on a
//! commit from elsewhere, in order:
//!
//! 1. the signature is valid for the commit's session key (`verify_strict`);
//! 2. a root's commit is accepted;
//! 3. otherwise the session has a certificate, and the commit's timestamp
//!    is not after the certificate's expiry (a commit made offline before
//!    the expiry stays valid when it arrives later);
//! 4. with a clock ([`Trust::verify_at`], servers): the commit is not
//!    stamped more than the allowed skew in the future, nor more than the
//!    allowed back-dating before its certificate was issued;
//! 5. the write rule for the commit's repository allows the certificate's
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

use crate::commit::{Body, CommitId};
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

/// Default most a commit may be stamped ahead of the server's clock.
pub const DEFAULT_MAX_SKEW_MS: i64 = 10 * 60 * 1000;
/// Default most a commit may be stamped before its certificate was issued
/// (work done offline before the replica first met a server).
pub const DEFAULT_MAX_BACKDATE_MS: i64 = CERT_TTL_MS;

pub fn session_schema() -> Schema {
    Schema::new("ibex.session", 1).field("owner", FieldDef::new(FieldType::String)).field("expires", FieldDef::new(FieldType::Date).required()).field("issued", FieldDef::new(FieldType::Date))
}

pub fn user_schema() -> Schema {
    Schema::new("ibex.user", 1).field("email", FieldDef::new(FieldType::String).required())
}

/// The user id of an e-mail address (already normalized), keyed with a
/// server secret: `/user/<id>` paths and certificates do not reveal
/// addresses, and nobody without the secret can confirm a guess.
pub fn user_id(secret: &[u8; 32], email: &str) -> String {
    use sha2::{Digest, Sha256};
    // HMAC-SHA-256 (RFC 2104) over the address.
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(secret);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&ipad).chain_update(b"ibex-user:").chain_update(email.as_bytes()).finalize();
    let h = Sha256::new().chain_update(&opad).chain_update(inner).finalize();
    format!("u{}", &hex::encode(h)[..24])
}

/// Longest e-mail address accepted (RFC 5321 path limit).
pub const MAX_EMAIL: usize = 254;

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

/// The unkeyed user id of earlier versions (an address can be confirmed
/// against it); only used to find users created before ids were keyed.
pub fn legacy_user_id(email: &str) -> String {
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
    /// When the root first certified the session (`None` in certificates
    /// written before this field existed).
    pub issued: Option<i64>,
}

impl Certificate {
    fn from_data(session: SessionId, data: &ItemData) -> Option<Certificate> {
        if data.deleted {
            return None;
        }
        let owner = match data.fields.get("owner") {
            Some(Value::Str(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let Some(Value::Date(expires)) = data.fields.get("expires") else {
            return None;
        };
        let issued = match data.fields.get("issued") {
            Some(Value::Date(t)) => Some(*t),
            _ => None,
        };
        Some(Certificate { session, owner, expires: *expires, issued })
    }

    /// Reads the certificate `key` holds in a sessions repository.
    pub fn read(sessions: &mut Repository, key: &str) -> Option<Certificate> {
        let session = SessionId(hex::decode(key).ok()?.try_into().ok()?);
        let head = sessions.head(key)?;
        if head.schema.ns.as_ref() != "ibex.session" {
            return None;
        }
        Certificate::from_data(session, &head.data)
    }

    /// Writes (or renews) this certificate, signed by `root`, as a full
    /// value (clients receive certificate commits one at a time).
    pub fn write(&self, sessions: &mut Repository, root: &SessionKey, now: i64) -> Result<Option<CommitId>> {
        let mut fields = std::collections::BTreeMap::new();
        if let Some(o) = &self.owner {
            fields.insert("owner".to_owned(), Value::Str(o.clone()));
        }
        fields.insert("expires".to_owned(), Value::Date(self.expires));
        if let Some(t) = self.issued {
            fields.insert("issued".to_owned(), Value::Date(t));
        }
        sessions.write_full(&self.session.to_hex(), &SchemaId::new("ibex.session", 1), ItemData::new(fields), root, now)
    }
}

#[derive(Debug, Clone)]
struct CertEntry {
    cert: Certificate,
    /// The commit that says so (`None` for a certificate known only from
    /// the handshake, or not written yet).
    commit: Option<StoredCommit>,
}

/// Trusted roots, the rules, and the certificates known so far.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    roots: BTreeSet<SessionId>,
    rules: Rules,
    certs: HashMap<SessionId, CertEntry>,
    /// Clock checks of [`Trust::verify_at`]: (max skew, max back-dating).
    clock: Option<(i64, i64)>,
}

impl Trust {
    pub fn new(rules: Rules) -> Self {
        Trust { roots: BTreeSet::new(), rules, certs: HashMap::new(), clock: None }
    }

    /// Enables the clock checks of [`Trust::verify_at`].
    pub fn set_clock_limits(&mut self, max_skew_ms: i64, max_backdate_ms: i64) {
        self.clock = Some((max_skew_ms, max_backdate_ms));
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
        self.certs.get(s).map(|e| &e.cert)
    }

    /// The commit carrying `s`'s certificate, to send before `s`'s commits.
    pub fn certificate_commit(&self, s: &SessionId) -> Option<&StoredCommit> {
        self.certs.get(s)?.commit.as_ref()
    }

    /// Number of certificates known.
    /// Sessions certified for `user` that this replica knows.
    pub fn sessions_of(&self, user: &str) -> Vec<SessionId> {
        self.certs.iter().filter(|(_, e)| e.cert.owner.as_deref() == Some(user)).map(|(s, _)| *s).collect()
    }

    pub fn certificate_count(&self) -> usize {
        self.certs.len()
    }

    /// Sets a certificate known without its commit: a client's own (from
    /// the server's welcome), or one a server issued and has not written.
    pub fn set_certificate(&mut self, cert: Certificate) {
        let commit = self.certs.get(&cert.session).and_then(|e| e.commit.clone()).filter(|c| Certificate::from_commit(c).is_some_and(|x| x == cert));
        self.certs.insert(cert.session, CertEntry { cert, commit });
    }

    /// Forgets a certificate (a provisional one that was never written).
    pub fn remove_certificate(&mut self, s: &SessionId) {
        self.certs.remove(s);
    }

    /// Who `s` is at time `now`.
    pub fn principal(&self, s: &SessionId, now: i64) -> Principal {
        if self.is_root(s) {
            return Principal::Root;
        }
        match self.certs.get(s) {
            Some(e) if now <= e.cert.expires => Principal::Session { user: e.cert.owner.clone() },
            _ => Principal::Uncertified,
        }
    }

    /// Takes in a certificate commit received alone (clients): it must be
    /// a full `/sys/sessions` value signed by a trusted root; the latest by
    /// `(timestamp, id)` per session wins. Returns whether it was new.
    pub fn add_certificate(&mut self, c: &StoredCommit) -> Result<bool> {
        let session = c.session();
        if !self.is_root(&session) {
            return Err(Error::Forbidden(format!("certificate commit {} is not signed by a trusted root", c.id.to_hex())));
        }
        c.verify()?;
        if c.repo() != SESSIONS {
            return Err(Error::InvalidCommit { id: c.id.to_hex(), reason: format!("a certificate belongs to {SESSIONS}, not {}", c.repo()) });
        }
        let cert = Certificate::from_commit(c).ok_or_else(|| Error::InvalidCommit { id: c.id.to_hex(), reason: "not a full ibex.session value".into() })?;
        if let Some(e) = self.certs.get(&cert.session)
            && let Some(old) = &e.commit
            && (old.timestamp, old.id) >= (c.timestamp, c.id)
        {
            return Ok(false);
        }
        self.certs.insert(cert.session, CertEntry { cert, commit: Some(c.clone()) });
        Ok(true)
    }

    /// Re-reads the certificates of `keys` after commits to the sessions
    /// repository (servers, which hold all of it).
    pub fn refresh<'a>(&mut self, sessions: &mut Repository, keys: impl IntoIterator<Item = &'a str>) {
        for k in keys {
            let Ok(raw) = hex::decode(k) else { continue };
            let Ok(id) = <[u8; 32]>::try_from(raw) else {
                continue;
            };
            match Certificate::read(sessions, k) {
                Some(cert) => {
                    // The newest leaf is what a client is sent (one commit).
                    let commit = sessions.leaves(k).last().and_then(|l| sessions.commit(l)).cloned();
                    self.certs.insert(SessionId(id), CertEntry { cert, commit });
                }
                None => {
                    self.certs.remove(&SessionId(id));
                }
            };
        }
    }

    /// Reads every certificate of a sessions repository (after opening it).
    pub fn refresh_all(&mut self, sessions: &mut Repository) {
        let keys: Vec<String> = sessions.keys().map(str::to_owned).collect();
        self.refresh(sessions, keys.iter().map(String::as_str));
    }

    /// The checks of the module docs without the clock; `Ok` means the
    /// commit may enter.
    pub fn verify(&self, c: &StoredCommit) -> Result<()> {
        self.check(c, None)
    }

    /// [`Trust::verify`] plus the clock checks (when enabled), at `now`.
    pub fn verify_at(&self, c: &StoredCommit, now: i64) -> Result<()> {
        self.check(c, Some(now))
    }

    /// The checks after the signature (certificate, clock, rules), for a
    /// caller that already verified the signature of these exact bytes
    /// (a simulation memoizes signature checks across replicas).
    pub fn verify_authority(&self, c: &StoredCommit, now: Option<i64>) -> Result<()> {
        self.check_after_signature(c, now)
    }

    fn check(&self, c: &StoredCommit, now: Option<i64>) -> Result<()> {
        c.verify()?;
        self.check_after_signature(c, now)
    }

    fn check_after_signature(&self, c: &StoredCommit, now: Option<i64>) -> Result<()> {
        let session = c.session();
        if let (Some(now), Some((skew, _))) = (now, self.clock)
            && c.timestamp > now.saturating_add(skew)
        {
            return Err(Error::Clock(format!("commit {} is stamped {} ms ahead of this server's clock (at most {skew} ms)", c.id.to_hex(), c.timestamp - now)));
        }
        if self.is_root(&session) || self.roots.is_empty() {
            return Ok(());
        }
        let repo = RepoPath::parse(c.repo())?;
        let cert = &self.certs.get(&session).ok_or_else(|| Error::UnknownSession(session.to_hex()))?.cert;
        if c.timestamp > cert.expires {
            return Err(Error::SessionExpired { session: session.to_hex(), expired: cert.expires, at: c.timestamp });
        }
        if let (Some(_), Some((_, backdate)), Some(issued)) = (now, self.clock, cert.issued)
            && c.timestamp < issued.saturating_sub(backdate)
        {
            return Err(Error::Clock(format!("commit {} is stamped {} ms before its session was certified (at most {backdate} ms)", c.id.to_hex(), issued - c.timestamp)));
        }
        self.rules.check_write(&repo, &Principal::Session { user: cert.owner.clone() }).map_err(|e| match e {
            Error::Forbidden(m) => Error::Forbidden(format!("commit {} by session {session}: {m}", c.id.to_hex())),
            other => other,
        })
    }
}

impl Certificate {
    /// The certificate a full `/sys/sessions` commit carries.
    pub fn from_commit(c: &StoredCommit) -> Option<Certificate> {
        let session = SessionId(hex::decode(&*c.key).ok()?.try_into().ok()?);
        if c.schema.ns.as_ref() != "ibex.session" {
            return None;
        }
        match c.body().ok()? {
            Body::Full(d) => Certificate::from_data(session, &d),
            Body::Delta { .. } => None,
        }
    }
}
