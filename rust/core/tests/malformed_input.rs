//! Every decoder rejects malformed input with an error — never a panic,
//! never an allocation sized by an unchecked length. Hand-made crashers live
//! in `tests/fixtures/malformed/` and must keep failing cleanly.

mod common;

use std::sync::Arc;

use common::*;
use ibex_core::codec::{Reader, Writer};
use ibex_core::*;
use proptest::prelude::*;

fn valid_commit() -> SignedCommit {
    let mut d = ItemData::default();
    d.fields.insert("title".into(), Value::Str("milk".into()));
    d.fields.insert("tags".into(), Value::Set([s("a"), Scalar::Num(2.0)].into()));
    d.fields.insert("attrs".into(), Value::Map([("k".to_string(), Scalar::Bool(true))].into()));
    d.fields.insert("body".into(), Value::Text("some text".into()));
    let key = SessionKey::from_seed([3; 32]);
    Commit { repo: repo_path(), key: "k".into(), parents: vec![CommitId([7; 32])], timestamp: 42, session: key.id(), schema: v1(), body: Body::Full(Arc::new(d)) }.sign(&key).unwrap()
}

fn delta_commit() -> SignedCommit {
    let key = SessionKey::from_seed([3; 32]);
    let base = CommitId([7; 32]);
    let changes = vec![
        Change::Deleted(true),
        put("count", Value::Num(1.5)),
        Change::SetAdd { field: "tags".into(), elems: [s("x")].into() },
        Change::MapRemove { field: "attrs".into(), key: "k".into() },
        Change::Text { field: "body".into(), splices: vec![text::Splice { pos: 1, delete: 2, insert: "é".into() }] },
    ];
    Commit { repo: repo_path(), key: "k".into(), parents: vec![base], timestamp: 43, session: key.id(), schema: v1(), body: Body::Delta { base, changes } }.sign(&key).unwrap()
}

#[test]
fn every_truncation_of_a_valid_commit_is_an_error() {
    for c in [valid_commit(), delta_commit()] {
        let bytes = c.encode();
        assert_eq!(SignedCommit::decode(&bytes).unwrap(), c);
        for cut in 0..bytes.len() {
            let e = SignedCommit::decode(&bytes[..cut]).unwrap_err();
            assert_eq!(e.code(), "ERR_DECODE", "cut at {cut}");
        }
    }
}

/// Writes a commit prefix up to the parent count, then a hostile count.
fn with_huge(field: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(1);
    match field {
        "repo" => w.varint(u64::MAX >> 1),
        _ => {
            w.str("/data/test");
            w.str("k");
            w.varint(1 << 40);
        }
    }
    w.raw(&[0; 40]);
    w.into_bytes()
}

#[test]
fn oversized_lengths_are_rejected_before_allocating() {
    let e = SignedCommit::decode(&with_huge("repo")).unwrap_err();
    assert!(e.to_string().contains("repository path"), "{e}");
    let e = SignedCommit::decode(&with_huge("parents")).unwrap_err();
    assert!(e.to_string().contains("parent count"), "{e}");
    // Counts inside values too.
    let mut w = Writer::new();
    w.varint(u32::MAX as u64);
    assert!(change::decode(&mut Reader::new(&w.clone().into_bytes())).is_err());
    assert!(value::decode_fields(&mut Reader::new(&w.clone().into_bytes())).is_err());
    assert!(text::decode(&mut Reader::new(&w.into_bytes())).is_err());
}

#[test]
fn fixture_crashers_fail_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/malformed");
    if std::env::var_os("IBEX_REGENERATE_FIXTURES").is_some() {
        generate_fixtures(&dir);
    }
    // Every fixture must be there: a missing one (say, one a .gitignore
    // kept out of the repository) is a failure, not a skipped branch.
    let expected = [
        "bad_item_key.commit",
        "delta_base_not_parent.commit",
        "huge_parent_count.commit",
        "huge_repo_length.commit",
        "nan_number.commit",
        "non_minimal_varint.commit",
        "trailing_byte.commit",
        "truncated_signature.commit",
        "unknown_format_version.commit",
        "foreign_header.log",
        "huge_record_length.log",
        "garbage_payload.log",
    ];
    for name in expected {
        assert!(dir.join(name).is_file(), "fixture {name} is missing from {}", dir.display());
    }
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".commit") {
            let e = SignedCommit::decode(&bytes).expect_err(&name);
            assert_eq!(e.code(), "ERR_DECODE", "{name}: {e}");
        } else if name.ends_with(".log") {
            // A log either refuses to open (foreign header) or opens with the
            // damage reported; it never panics.
            match Repository::open(repo_path(), registry(), Box::new(MemStorage::from_bytes(bytes))) {
                Err(e) => assert_eq!(e.code(), "ERR_LOG_HEADER", "{name}"),
                Ok((_, report)) => assert!(!report.corrupt.is_empty() || report.truncated_bytes > 0 || !report.rejected.is_empty(), "{name}: damage not reported"),
            }
        } else {
            continue;
        }
        n += 1;
    }
    assert_eq!(n, expected.len(), "fixtures present but not checked");
}

/// Regenerates the fixture files from valid encodings; run with
/// `IBEX_REGENERATE_FIXTURES=1 cargo test -p ibex-core --test malformed_input`.
fn generate_fixtures(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let good = valid_commit().encode();
    let w = |name: &str, b: &[u8]| std::fs::write(dir.join(name), b).unwrap();
    w("huge_repo_length.commit", &with_huge("repo"));
    w("huge_parent_count.commit", &with_huge("parents"));
    let mut b = good.clone();
    b[0] = 9;
    w("unknown_format_version.commit", &b);
    w("truncated_signature.commit", &good[..good.len() - 10]);
    let mut b = good.clone();
    b.push(0);
    w("trailing_byte.commit", &b);
    // Non-minimal varint for the repository path length (0x8a 0x00 = 10).
    let mut b = vec![1u8, 0x8a, 0x00];
    b.extend_from_slice(b"/data/test");
    w("non_minimal_varint.commit", &b);
    // A NaN number inside a field.
    let mut d = ItemData::default();
    d.fields.insert("count".into(), Value::Num(f64::NAN));
    let key = SessionKey::from_seed([3; 32]);
    let nan = Commit { repo: repo_path(), key: "k".into(), parents: vec![], timestamp: 1, session: key.id(), schema: v1(), body: Body::Full(Arc::new(d)) }.encode();
    w("nan_number.commit", &nan);
    // Delta whose base is not a parent.
    let mut dc = delta_commit().commit;
    dc.body = Body::Delta { base: CommitId([8; 32]), changes: vec![] };
    w("delta_base_not_parent.commit", &dc.encode());
    // Item key with a slash (path traversal attempt).
    let mut pc = valid_commit().commit;
    pc.key = "../../etc".into();
    w("bad_item_key.commit", &pc.encode());
    w("foreign_header.log", b"SQLite format 3\0........");
    let mut log = b"IBEXLOG\0\x01\0\0\0".to_vec();
    log.extend_from_slice(&ibex_core::log::frame(1, &good));
    log.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5]);
    w("huge_record_length.log", &log);
    let mut log2 = b"IBEXLOG\0\x01\0\0\0".to_vec();
    log2.extend_from_slice(&ibex_core::log::frame(1, b"not a commit at all"));
    w("garbage_payload.log", &log2);
}

proptest! {
    #![proptest_config(proptest_config(5000))]

    #[test]
    fn random_bytes_never_panic_any_decoder(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = SignedCommit::decode(&b);
        let _ = change::decode(&mut Reader::new(&b));
        let _ = value::decode_fields(&mut Reader::new(&b));
        let _ = value::decode_value(&mut Reader::new(&b));
        let _ = text::decode(&mut Reader::new(&b));
        let mut log = b"IBEXLOG\0\x01\0\0\0".to_vec();
        log.extend_from_slice(&b);
        let _ = ibex_core::log::scan(&log);
        let _ = Repository::open(repo_path(), registry(), Box::new(MemStorage::from_bytes(log)));
    }

    #[test]
    fn mutated_valid_commits_never_panic_and_never_verify(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let c = delta_commit();
        let mut b = c.encode();
        let i = at.index(b.len());
        if b[i] == byte { return Ok(()); }
        b[i] = byte;
        if let Ok(d) = SignedCommit::decode(&b) {
            prop_assert!(d.verify().is_err(), "a modified commit still verified");
        }
    }
}
