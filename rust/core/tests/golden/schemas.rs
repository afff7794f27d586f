//! `schemas.json`: schema definitions as an application writes them
//! (`defineSchema`), with the engine's verdict: the bytes of the schema
//! list the SDK sends the worker, or ERR_SCHEMA.

use ibex_core::Schema;
use ibex_core::codec::{Reader, Writer};

use crate::support::file::hex;
use crate::support::js::{Js, JsSchema, field, s, schema, units};
use crate::support::{Json, check, wire};

fn cases() -> Vec<(&'static str, JsSchema)> {
    let num = |n: f64| Js::Num(n);
    let task = || {
        schema(
            "task",
            1,
            vec![
                field("text", "string").required(),
                field("done", "boolean").default(Js::Bool(false)),
                field("tags", "set"),
                field("attrs", "map"),
                field("due", "date").default(Js::Date(1_700_000_000_000)),
                field("body", "text"),
                field("link", "ref").default(s("/data/a/b")),
                field("count", "number").default(num(1.5)),
            ],
        )
    };
    let with = |version, f| schema("x", version, vec![f]);
    let mut v2 = task();
    v2.version = 2;
    v2.upgrade = vec![("rename", "title", "text"), ("remove", "old", ""), ("convert", "count", "string")];
    let mut v1_upgrade = task();
    v1_upgrade.upgrade = vec![("remove", "old", "")];
    let mut bad_convert = task();
    bad_convert.version = 2;
    bad_convert.upgrade = vec![("convert", "count", "float")];
    vec![
        ("every field type, declared unsorted", task()),
        ("upgrade steps", v2),
        ("namespace of every allowed character", schema("Ab-9_.z", 1, vec![])),
        ("field names that are Object.prototype's", schema("x", 1, vec![field("constructor", "string"), field("toString", "number").required()])),
        ("longest field name (64)", with(1, field("a234567890123456789012345678901234567890123456789012345678901234", "string"))),
        ("largest version (2^32 - 1)", schema("x", 4_294_967_295, vec![])),
        ("default -0 is sent as 0", with(1, field("n", "number").default(num(-0.0)))),
        ("empty set default means no default", with(1, field("t", "set").default(Js::Set(vec![])))),
        ("empty map default means no default", with(1, field("m", "map").default(Js::Map(vec![])))),
        ("set default, sorted", with(1, field("t", "set").default(Js::Set(vec![s("b"), num(2.0), Js::Bool(true), s("a"), num(-0.0)])))),
        ("map default, keys sorted", with(1, field("m", "map").default(Js::Map(vec![(vec![0x62], num(1.0)), (vec![0x61], s("😀"))])))),
        ("astral string default", with(1, field("s", "string").default(s("😀")))),
        ("earliest date default", with(1, field("d", "date").default(Js::Date(-8_640_000_000_000_000)))),
        ("empty namespace", schema("", 1, vec![])),
        ("namespace with a space", schema("my ns", 1, vec![])),
        ("namespace of 65 characters", schema("a2345678901234567890123456789012345678901234567890123456789012345", 1, vec![])),
        ("version 0", schema("x", 0, vec![])),
        ("version 2^32", schema("x", 4_294_967_296, vec![])),
        ("version 1 with upgrade steps", v1_upgrade),
        ("convert to an unknown type", bad_convert),
        ("field name starting with a digit", with(1, field("1a", "string"))),
        ("non-ASCII field name", with(1, field("é", "string"))),
        ("field name of 65 characters", with(1, field("a2345678901234567890123456789012345678901234567890123456789012345", "string"))),
        ("unknown field type", with(1, field("f", "float"))),
        ("default of the wrong type", with(1, field("n", "number").default(s("1")))),
        ("NaN default", with(1, field("n", "number").default(num(f64::NAN)))),
        ("Infinity default", with(1, field("n", "number").default(num(f64::INFINITY)))),
        ("NaN in a set default", with(1, field("t", "set").default(Js::Set(vec![num(f64::NAN)])))),
        ("lone surrogate default", with(1, field("s", "string").default(units(&[0x61, 0xd800])))),
        ("two lone surrogates in a set default", with(1, field("t", "set").default(Js::Set(vec![units(&[0xd800]), units(&[0xdc00])])))),
        ("date default past the JavaScript range", with(1, field("d", "date").default(Js::Date(8_640_000_000_000_001)))),
        ("ref default that is not an item path", with(1, field("r", "ref").default(s("/data/a")))),
        ("text default with a lone surrogate", with(1, field("b", "text").default(units(&[0xdfff])))),
    ]
}

/// `writeSchemas([s])`: a count, then the schema.
fn list_bytes(s: &Schema) -> Vec<u8> {
    let mut w = Writer::new();
    w.varint(1);
    s.encode(&mut w);
    w.into_bytes()
}

#[test]
fn golden_schemas() {
    let cases = cases().into_iter().map(|(name, def)| {
        let verdict = match def.to_engine() {
            Ok(s) => {
                let b = list_bytes(&s);
                let mut r = Reader::new(&b[1..]);
                assert_eq!(Schema::decode(&mut r).unwrap(), s, "{name}");
                ("ok", Json::obj([("wire", wire::schema(&s)), ("hex", hex(&b))]))
            }
            Err(_) => ("error", Json::str("ERR_SCHEMA")),
        };
        Json::obj([("name", Json::str(name)), ("def", def.json()), verdict])
    });
    check(
        "schemas.json",
        &Json::obj([
            ("about", Json::str("Written by rust/core/tests/golden/schemas.rs (IBEX_BLESS=1 cargo test --workspace golden); checked by packages/db/test/golden_validation.test.ts.")),
            ("schemas", Json::arr(cases)),
        ]),
    );
}
