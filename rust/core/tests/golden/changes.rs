//! `changes.json`: the encoding of every kind of change (what a mutation
//! batch carries for each write).

use ibex_core::codec::{Reader, Writer};
use ibex_core::text::Splice;
use ibex_core::{Change, Scalar, Value, change};

use crate::support::file::hex;
use crate::support::{Json, check, wire};

fn cases() -> Vec<(&'static str, Vec<Change>)> {
    let f = |s: &str| s.to_owned();
    let st = |s: &str| Scalar::Str(s.into());
    let splice = |pos, delete, insert: &str| Splice { pos, delete, insert: insert.into() };
    let every = vec![
        Change::Deleted(false),
        Change::Put { field: f("title"), value: Value::Str("milk".into()) },
        Change::Put { field: f("due"), value: Value::Date(-1) },
        Change::Remove { field: f("note") },
        Change::SetAdd { field: f("tags"), elems: [Scalar::Bool(true), Scalar::Num(-2.0), st("é"), st("a")].into() },
        Change::SetRemove { field: f("tags"), elems: [st("😀")].into() },
        Change::MapPut { field: f("attrs"), key: f("ключ"), value: Scalar::Num(0.5) },
        Change::MapRemove { field: f("attrs"), key: f("") },
        Change::Text { field: f("body"), splices: vec![splice(0, 0, "A"), splice(2, 3, ""), splice(10, 1, "😀é")] },
    ];
    vec![
        ("no changes", vec![]),
        ("deleted", vec![Change::Deleted(true)]),
        ("restored", vec![Change::Deleted(false)]),
        ("put a set", vec![Change::Put { field: f("tags"), value: Value::Set([st("x"), Scalar::Num(1.0)].into()) }]),
        ("put a map", vec![Change::Put { field: f("attrs"), value: Value::Map([(f("k"), st("v"))].into()) }]),
        ("put a text", vec![Change::Put { field: f("body"), value: Value::Text("hi".into()) }]),
        ("put a ref", vec![Change::Put { field: f("link"), value: Value::Ref("/data/a/b".into()) }]),
        ("remove", vec![Change::Remove { field: f("title") }]),
        ("set add", vec![Change::SetAdd { field: f("tags"), elems: [Scalar::Bool(false), Scalar::Num(3.0), st("z")].into() }]),
        ("set remove", vec![Change::SetRemove { field: f("tags"), elems: [st("z")].into() }]),
        ("map put", vec![Change::MapPut { field: f("attrs"), key: f("k"), value: Scalar::Bool(true) }]),
        ("map remove", vec![Change::MapRemove { field: f("attrs"), key: f("k") }]),
        ("text splice: astral insert counts one position", vec![Change::Text { field: f("body"), splices: vec![splice(3, 0, "😀"), splice(5, 2, "x")] }]),
        ("text splice past 127: two-byte positions", vec![Change::Text { field: f("body"), splices: vec![splice(200, 130, "y")] }]),
        ("every kind, in one list", every),
    ]
}

#[test]
fn golden_changes() {
    let cases = cases().into_iter().map(|(name, cs)| {
        let mut w = Writer::new();
        change::encode(&mut w, &cs);
        let b = w.into_bytes();
        let mut r = Reader::new(&b);
        assert_eq!(change::decode(&mut r).unwrap(), cs, "{name}");
        r.finish(name).unwrap();
        Json::obj([("name", Json::str(name)), ("changes", wire::changes(&cs)), ("hex", hex(&b))])
    });
    check(
        "changes.json",
        &Json::obj([
            ("about", Json::str("Written by rust/core/tests/golden/changes.rs (IBEX_BLESS=1 cargo test --workspace golden); checked by packages/db/test/golden_codec.test.ts.")),
            ("changes", Json::arr(cases)),
        ]),
    );
}
