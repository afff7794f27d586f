//! `Trust::verify`, the check every replica runs on a commit from elsewhere:
//! tampered bytes, impersonation, unknown/expired sessions, weak keys and
//! non-canonical signatures, and the write rules. Each test is named after
//! what it proves (the README's security section lists them).

use std::collections::BTreeMap;
use std::sync::Arc;

use ibex_core::trust::{SESSIONS, register_schemas};
use ibex_core::*;

const NOW: i64 = 1_800_000_000_000;

fn registry() -> Arc<Registry> {
    let mut r = Registry::new();
    register_schemas(&mut r).unwrap();
    r.register(Schema::new("todo", 1).field("title", FieldDef::new(FieldType::String))).unwrap();
    Arc::new(r)
}

/// A root, a sessions repository holding certificates, and a trust built
/// from it: alice (user "alice"), bob (user "bob"), anon (anonymous),
/// old (alice's, expired at NOW).
struct World {
    root: SessionKey,
    alice: SessionKey,
    bob: SessionKey,
    anon: SessionKey,
    old: SessionKey,
    trust: Trust,
}

fn world() -> World {
    let root = SessionKey::from_seed([1; 32]);
    let (alice, bob, anon, old) = (SessionKey::from_seed([2; 32]), SessionKey::from_seed([3; 32]), SessionKey::from_seed([4; 32]), SessionKey::from_seed([5; 32]));
    let mut sessions = Repository::new(RepoPath::parse(SESSIONS).unwrap(), registry());
    for (k, owner, expires) in [(&alice, Some("alice"), NOW + 1000), (&bob, Some("bob"), NOW + 1000), (&anon, None, NOW + 1000), (&old, Some("alice"), NOW)] {
        Certificate { session: k.id(), owner: owner.map(str::to_owned), expires, issued: None }.write(&mut sessions, &root, NOW - 10_000).unwrap();
    }
    let mut trust = Trust::new(Rules::default());
    trust.add_root(root.id());
    trust.refresh_all(&mut sessions);
    World { root, alice, bob, anon, old, trust }
}

fn commit_by(signer: &SessionKey, claimed: SessionId, repo: &str, ts: i64) -> StoredCommit {
    let mut f = BTreeMap::new();
    f.insert("title".to_owned(), Value::Str("milk".into()));
    let c = Commit {
        repo: RepoPath::parse(repo).unwrap(),
        key: "k".into(),
        parents: vec![],
        timestamp: ts,
        session: claimed,
        schema: SchemaId::new("todo", 1),
        body: Body::Full(Arc::new(ItemData::new(f))),
    };
    // Sign the id ourselves so the claimed session can differ from the signer.
    let bytes = c.encode();
    let id = c.id();
    let sig = signer.sign(&id.0);
    StoredCommit::parse([bytes, sig.to_vec()].concat().into_boxed_slice(), true).unwrap()
}

fn commit(k: &SessionKey, repo: &str, ts: i64) -> StoredCommit {
    commit_by(k, k.id(), repo, ts)
}

fn code(r: Result<()>) -> &'static str {
    r.err().map_or("OK", |e| e.code())
}

#[test]
fn a_valid_commit_by_a_certified_session_is_accepted() {
    let w = world();
    assert_eq!(code(w.trust.verify(&commit(&w.alice, "/data/todos", NOW))), "OK");
    assert_eq!(code(w.trust.verify(&commit(&w.anon, "/data/todos", NOW))), "OK");
    assert_eq!(code(w.trust.verify(&commit(&w.alice, "/user/alice", NOW))), "OK");
    assert_eq!(code(w.trust.verify(&commit(&w.root, "/sys/anything", NOW))), "OK");
}

#[test]
fn flipped_bit_in_payload_signature_or_key_is_rejected() {
    let w = world();
    let good = commit(&w.alice, "/data/todos", NOW);
    let bytes = good.bytes().to_vec();
    let sig_at = bytes.len() - 64;
    // The session key sits 32 bytes before the schema name; find it.
    let key_at = bytes.windows(32).position(|win| win == w.alice.id().0).unwrap();
    for (what, at) in [("payload", 5), ("payload end", sig_at - 1), ("signature", sig_at), ("signature end", bytes.len() - 1), ("key", key_at), ("key end", key_at + 31)] {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[at] ^= 1 << bit;
            // Either it no longer decodes, or it decodes and fails verification.
            if let Ok(c) = StoredCommit::parse(b.into_boxed_slice(), true) {
                let r = w.trust.verify(&c);
                assert!(r.is_err(), "flipping bit {bit} of the {what} was accepted");
            }
        }
    }
}

#[test]
fn commit_claiming_another_session_is_rejected() {
    let w = world();
    // Bob signs, claiming to be alice (to write alice's private repository).
    let c = commit_by(&w.bob, w.alice.id(), "/user/alice", NOW);
    assert_eq!(code(w.trust.verify(&c)), "ERR_BAD_SIGNATURE");
    // Claiming to be the root does not help either.
    let c = commit_by(&w.bob, w.root.id(), "/sys/sessions", NOW);
    assert_eq!(code(w.trust.verify(&c)), "ERR_BAD_SIGNATURE");
}

#[test]
fn unknown_session_is_rejected() {
    let w = world();
    let stranger = SessionKey::from_seed([9; 32]);
    assert_eq!(code(w.trust.verify(&commit(&stranger, "/data/todos", NOW))), "ERR_UNKNOWN_SESSION");
}

#[test]
fn expired_session_is_rejected_but_its_earlier_commits_stay_valid() {
    let w = world();
    assert_eq!(code(w.trust.verify(&commit(&w.old, "/data/todos", NOW + 1))), "ERR_SESSION_EXPIRED");
    // Made offline before the expiry, arriving later: still valid.
    assert_eq!(code(w.trust.verify(&commit(&w.old, "/data/todos", NOW - 5))), "OK");
    assert_eq!(w.trust.principal(&w.old.id(), NOW + 1), Principal::Uncertified);
}

#[test]
fn weak_ed25519_key_is_rejected() {
    let w = world();
    // The identity point: a small-order key under which some signatures
    // verify for every message with plain (non-strict) verification.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut f = BTreeMap::new();
    f.insert("title".to_owned(), Value::Str("x".into()));
    let c = Commit {
        repo: RepoPath::parse("/data/todos").unwrap(),
        key: "k".into(),
        parents: vec![],
        timestamp: NOW,
        session: SessionId(identity),
        schema: SchemaId::new("todo", 1),
        body: Body::Full(Arc::new(ItemData::new(f))),
    };
    // R = identity, s = 0 satisfies the cofactored equation for this key.
    let mut sig = [0u8; 64];
    sig[0] = 1;
    let c = StoredCommit::parse([c.encode(), sig.to_vec()].concat().into_boxed_slice(), true).unwrap();
    assert_eq!(code(w.trust.verify(&c)), "ERR_BAD_KEY");
}

#[test]
fn non_canonical_ed25519_signature_is_rejected() {
    let w = world();
    let good = commit(&w.alice, "/data/todos", NOW);
    let mut b = good.bytes().to_vec();
    let s_at = b.len() - 32;
    // s + L: the same signature in a non-canonical (malleated) encoding.
    const L: [u8; 32] = [0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(b[s_at + i]) + u16::from(L[i]) + carry;
        b[s_at + i] = v as u8;
        carry = v >> 8;
    }
    let c = StoredCommit::parse(b.into_boxed_slice(), true).unwrap();
    assert_eq!(c.id, good.id);
    assert_eq!(code(w.trust.verify(&c)), "ERR_BAD_SIGNATURE");
}

#[test]
fn unauthorized_write_to_another_users_repository_is_rejected() {
    let w = world();
    assert_eq!(code(w.trust.verify(&commit(&w.bob, "/user/alice", NOW))), "ERR_FORBIDDEN");
    assert_eq!(code(w.trust.verify(&commit(&w.anon, "/user/alice", NOW))), "ERR_FORBIDDEN");
    // Only the root writes /sys: a session cannot certify itself.
    assert_eq!(code(w.trust.verify(&commit(&w.alice, SESSIONS, NOW))), "ERR_FORBIDDEN");
    // No rule matches: nobody but the root.
    assert_eq!(code(w.trust.verify(&commit(&w.alice, "/secret/x", NOW))), "ERR_FORBIDDEN");
}

#[test]
fn a_certificate_only_counts_when_the_root_signed_it() {
    let w = world();
    // Alice writes a "certificate" for a stranger: it cannot enter a
    // replica (write rule), so the stranger stays unknown.
    let stranger = SessionKey::from_seed([9; 32]);
    let mut sessions = Repository::new(RepoPath::parse(SESSIONS).unwrap(), registry());
    let forged = Certificate { session: stranger.id(), owner: Some("alice".into()), expires: NOW + 1000, issued: None };
    forged.write(&mut sessions, &w.alice, NOW).unwrap();
    let c = sessions.commits_in_order()[0].clone();
    assert_eq!(code(w.trust.verify(&c)), "ERR_FORBIDDEN");
    let _ = w.root;
}
