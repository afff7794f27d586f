//! `validation.json`: new items as an application writes them
//! (`db.create(repo, schema, values)`), with the engine's verdict — the
//! fields it stores, or ERR_VALIDATION and the field it names. Each case
//! has at most one fault (with several, either side may name any of them).

use ibex_core::codec::Writer;
use ibex_core::value::encode_fields;
use ibex_core::{Change, Error, FieldType, ItemData, change};

use crate::support::file::hex;
use crate::support::js::{Js, JsSchema, field, s, schema, to_wire, units};
use crate::support::{Json, check, wire};

type Item = Vec<(&'static str, Js)>;

fn all() -> JsSchema {
    schema(
        "all",
        1,
        vec![
            field("title", "string").required(),
            field("count", "number"),
            field("done", "boolean").default(Js::Bool(false)),
            field("due", "date"),
            field("tags", "set"),
            field("attrs", "map"),
            field("body", "text"),
            field("link", "ref"),
            field("prio", "number").default(Js::Num(3.0)),
        ],
    )
}

fn required_collections() -> JsSchema {
    schema("coll", 1, vec![field("labels", "set").required().default(Js::Set(vec![s("x")])), field("props", "map").required()])
}

/// Field names an object has without declaring them.
fn prototype_names() -> JsSchema {
    schema("proto", 1, vec![field("constructor", "string"), field("toString", "number").required()])
}

fn cases() -> Vec<(String, JsSchema, Item)> {
    let num = Js::Num;
    let set = Js::Set;
    let map = |kv: Vec<(&str, Js)>| Js::Map(kv.into_iter().map(|(k, v)| (k.encode_utf16().collect(), v)).collect());
    let t = |extra: Vec<(&'static str, Js)>| {
        let mut item = vec![("title", s("milk"))];
        item.extend(extra);
        item
    };
    let named: Vec<(&str, JsSchema, Item)> = vec![
        ("minimal: defaults fill in", all(), t(vec![])),
        (
            "every type",
            all(),
            t(vec![
                ("count", num(1.5)),
                ("done", Js::Bool(true)),
                ("due", Js::Date(1_700_000_000_000)),
                ("tags", set(vec![s("b"), num(2.0), Js::Bool(false), s("a"), s("1"), num(1.0)])),
                ("attrs", map(vec![("z", s("v")), ("a", num(-1.0)), ("m", Js::Bool(true))])),
                ("body", s("text 😀")),
                ("link", s("/data/todos/k1")),
                ("prio", num(1.0)),
            ]),
        ),
        ("-0 is sent as 0", all(), t(vec![("count", num(-0.0))])),
        ("-0 in a set is 0", all(), t(vec![("tags", set(vec![num(-0.0), num(1.0)]))])),
        ("-0 as a map value is 0", all(), t(vec![("attrs", map(vec![("k", num(-0.0))]))])),
        ("an empty set is no value", all(), t(vec![("tags", set(vec![]))])),
        ("an empty map is no value", all(), t(vec![("attrs", map(vec![]))])),
        ("undefined is no value: the default applies", all(), t(vec![("done", Js::Undefined)])),
        ("set strings sort by UTF-8 bytes, not UTF-16", all(), t(vec![("tags", set(vec![s("😀"), s("\u{ff5e}"), s("é"), s("a"), s("")]))])),
        ("map keys sort by UTF-8 bytes, not UTF-16", all(), t(vec![("attrs", map(vec![("😀", num(1.0)), ("\u{ff5e}", num(2.0)), ("B", num(3.0)), ("", num(4.0))]))])),
        ("surrogate pairs everywhere", all(), vec![("title", s("😀")), ("tags", set(vec![s("😀")])), ("attrs", map(vec![("😀", s("😀"))])), ("body", s("😀"))]),
        ("a long string", all(), vec![("title", s(&"ab😀".repeat(100)))]),
        ("extreme numbers", all(), t(vec![("count", num(f64::MAX)), ("tags", set(vec![num(f64::MIN), num(5e-324), num(-5e-324)]))])),
        ("earliest JavaScript date", all(), t(vec![("due", Js::Date(-8_640_000_000_000_000))])),
        ("latest JavaScript date", all(), t(vec![("due", Js::Date(8_640_000_000_000_000))])),
        ("ref with a 128-character key", all(), t(vec![("link", s(&format!("/data/todos/{}", "k".repeat(128))))])),
        ("ref of every allowed character", all(), t(vec![("link", s("/a-b/c.d/E_9.x"))])),
        ("required title missing", all(), vec![("count", num(1.0))]),
        ("required title undefined", all(), vec![("title", Js::Undefined)]),
        ("string for a number", all(), t(vec![("count", s("1"))])),
        ("number for a boolean", all(), t(vec![("done", num(1.0))])),
        ("number for a date", all(), t(vec![("due", num(0.0))])),
        ("date for a string", all(), vec![("title", Js::Date(0))]),
        ("map for a set", all(), t(vec![("tags", map(vec![("a", num(1.0))]))])),
        ("set for a map", all(), t(vec![("attrs", set(vec![num(1.0)]))])),
        ("string for a set", all(), t(vec![("tags", s("a"))])),
        ("NaN", all(), t(vec![("count", num(f64::NAN))])),
        ("Infinity", all(), t(vec![("count", num(f64::INFINITY))])),
        ("-Infinity in a set", all(), t(vec![("tags", set(vec![num(f64::NEG_INFINITY)]))])),
        ("NaN as a map value", all(), t(vec![("attrs", map(vec![("k", num(f64::NAN))]))])),
        ("date past the JavaScript range", all(), t(vec![("due", Js::Date(8_640_000_000_000_001))])),
        ("date before the JavaScript range", all(), t(vec![("due", Js::Date(-8_640_000_000_000_001))])),
        ("lone high surrogate", all(), vec![("title", units(&[0xd800]))]),
        ("lone low surrogate inside a string", all(), vec![("title", units(&[0x61, 0xdc00, 0x62]))]),
        ("surrogates in the wrong order", all(), vec![("title", units(&[0xde00, 0xd83d]))]),
        ("lone surrogate in a text", all(), t(vec![("body", units(&[0xd83d]))])),
        ("two different lone surrogates in a set (both would encode as U+FFFD)", all(), t(vec![("tags", set(vec![units(&[0xd800]), units(&[0xdc00])]))])),
        ("one lone surrogate in a set", all(), t(vec![("tags", set(vec![s("a"), units(&[0xd800])]))])),
        ("lone surrogate as a map key", all(), t(vec![("attrs", Js::Map(vec![(vec![0xd800], num(1.0)), (vec![0xdc00], num(2.0))]))])),
        ("lone surrogate as a map value", all(), t(vec![("attrs", map(vec![("k", units(&[0xdbff]))]))])),
        ("lone surrogate in a ref", all(), t(vec![("link", units(&[0x2f, 0x61, 0x2f, 0x62, 0x2f, 0xd800]))])),
        ("unknown field", all(), t(vec![("color", s("red"))])),
        ("unknown field named like Object.prototype's", all(), t(vec![("toString", s("x"))])),
        ("unknown field named constructor", all(), t(vec![("constructor", s("x"))])),
        ("required set with a default, given empty: the default applies", required_collections(), vec![("labels", set(vec![])), ("props", map(vec![("k", s("v"))]))]),
        ("required map without a default, given empty", required_collections(), vec![("props", map(vec![]))]),
        ("fields named like Object.prototype's, absent", prototype_names(), vec![("toString", num(1.0))]),
        ("required field named toString, missing", prototype_names(), vec![]),
        ("field named constructor, set", prototype_names(), vec![("constructor", s("c")), ("toString", num(2.0))]),
    ];
    let mut out: Vec<(String, JsSchema, Item)> = named.into_iter().map(|(n, d, i)| (n.to_owned(), d, i)).collect();
    for bad in ["/data/todos", "data/todos/k", "/data/to do/k", "/data/todos/..", "/data/todos/k/", "/data/todos/é", "/data//k"] {
        out.push((format!("ref `{bad}` is not an item path"), all(), t(vec![("link", s(bad))])));
    }
    out.push(("ref with a 129-character key".to_owned(), all(), t(vec![("link", s(&format!("/data/todos/{}", "k".repeat(129))))])));
    out
}

/// The engine's verdict on creating `item`: what `Repository::update` does
/// with the writes the SDK sends (a new item starts from the defaults).
fn verdict(def: &JsSchema, item: &Item) -> Result<ItemData, Error> {
    let schema = def.to_engine().expect("the case's schema is valid");
    let invalid = |field: &str, reason: String| Error::Validation { schema: schema.id().to_string(), field: field.to_owned(), reason };
    let mut puts = Vec::new();
    for (name, v) in item {
        // A value for an undeclared field travels as its JavaScript type.
        let ty = schema.fields.get(*name).map_or(FieldType::String, |f| f.ty);
        if let Some(value) = to_wire(ty, v).map_err(|r| invalid(name, r))? {
            puts.push(Change::Put { field: (*name).to_owned(), value });
        }
    }
    let mut data = ItemData::default();
    schema.apply_defaults(&mut data);
    let data = change::apply(&data, &puts).map_err(|r| invalid("$item", r))?;
    schema.validate(&data)?;
    Ok(data)
}

#[test]
fn golden_validation() {
    let cases = cases().into_iter().map(|(name, def, item)| {
        let verdict = match verdict(&def, &item) {
            Ok(data) => {
                let mut w = Writer::new();
                encode_fields(&mut w, &data.fields);
                ("ok", Json::obj([("fields", wire::fields(&data.fields)), ("hex", hex(&w.into_bytes()))]))
            }
            Err(Error::Validation { field, .. }) => ("error", Json::obj([("code", Json::str("ERR_VALIDATION")), ("field", Json::str(&field))])),
            Err(e) => panic!("{name}: {e}"),
        };
        let item = Json::Obj(item.iter().map(|(k, v)| ((*k).to_owned(), v.json())).collect());
        Json::obj([("name", Json::str(&name)), ("schema", def.json()), ("item", item), verdict])
    });
    check(
        "validation.json",
        &Json::obj([
            ("about", Json::str("Written by rust/core/tests/golden/validation.rs (IBEX_BLESS=1 cargo test --workspace golden); checked by packages/db/test/golden_validation.test.ts.")),
            ("items", Json::arr(cases)),
        ]),
    );
}
