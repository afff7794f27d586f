//! Encoded heads (what the worker sends to the main thread): the fast path
//! that copies a commit's bytes and the merged path give identical bytes.

mod common;

use common::*;
use ibex_core::codec::{Reader, Writer};
use ibex_core::*;

fn encoded(repo: &mut Repository, key: &str) -> Option<Vec<u8>> {
    let mut w = Writer::new();
    repo.encode_head(key, &mut w).then(|| w.into_bytes())
}

fn decode(bytes: &[u8]) -> (SchemaId, ItemData) {
    let mut r = Reader::new(bytes);
    let ns = r.str("ns").unwrap().to_owned();
    let version = r.u32("v").unwrap();
    let deleted = r.bool("deleted").unwrap();
    let fields = value::decode_fields(&mut r).unwrap();
    r.finish("head").unwrap();
    (SchemaId::new(ns, version), ItemData { deleted, fields })
}

#[test]
fn fast_and_merged_paths_encode_the_same_head() {
    let mut a = Replica::persistent(1);
    a.update("full", &v1(), &[put("title", Value::Str("x".into())), put("tags", Value::Set([s("a")].into()))]);
    a.update("delta", &v1(), &[put("body", Value::Text("a long enough text to be delta-encoded later".into()))]);
    a.update("delta", &v1(), &[put("body", Value::Text("a long enough text to be delta-encoded later!".into()))]);
    a.update("gone", &v1(), &[put("count", Value::Num(1.0))]);
    a.update("gone", &v1(), &[Change::Deleted(true)]);
    let mut b = Replica::new(2);
    b.receive(&a.commits());
    b.update("full", &v1(), &[put("count", Value::Num(3.0))]);
    a.receive(&b.commits());
    a.update("forked", &v1(), &[put("count", Value::Num(1.0))]);
    a.repo.flush().unwrap();

    // Reopened: no head is cached, so single full leaves take the fast path.
    let (mut reopened, _) = Repository::open(repo_path(), registry(), Box::new(a.storage.clone().unwrap())).unwrap();
    for key in ["full", "delta", "gone", "forked"] {
        let fast = encoded(&mut reopened, key).unwrap();
        let live = encoded(&mut a.repo, key).unwrap();
        assert_eq!(fast, live, "{key}");
        let (schema, data) = decode(&fast);
        let h = a.head(key).unwrap();
        assert_eq!((schema, data), (h.schema.clone(), (*h.data).clone()), "{key}");
    }
    assert!(decode(&encoded(&mut reopened, "gone").unwrap()).1.deleted);
    assert_eq!(encoded(&mut reopened, "missing"), None);
}

#[test]
fn heads_are_presented_in_the_newest_known_version() {
    let mut old = Replica::new(1);
    old.update("k", &v1(), &[put("title", Value::Str("t".into()))]);
    let mut new = Replica::with_registry(2, registry_v2());
    new.receive(&old.commits());
    let (schema, data) = decode(&encoded(&mut new.repo, "k").unwrap());
    assert_eq!(schema, v2());
    assert_eq!(data.fields.get("name"), Some(&Value::Str("t".into())));
    assert_eq!(data.fields.get("prio"), Some(&Value::Num(0.0)));
}
