//! `values.json`: the encoding of every kind of value and of field lists,
//! and bytes the decoder must refuse.

use std::collections::{BTreeMap, BTreeSet};

use ibex_core::codec::{Reader, Writer};
use ibex_core::value::{Fields, decode_fields, decode_value, encode_fields, encode_value};
use ibex_core::{Scalar, Value};

use crate::support::file::hex;
use crate::support::{Json, check, wire};

fn st(s: &str) -> Scalar {
    Scalar::Str(s.into())
}

fn set(xs: impl IntoIterator<Item = Scalar>) -> Value {
    Value::Set(xs.into_iter().collect::<BTreeSet<_>>())
}

fn map(xs: impl IntoIterator<Item = (&'static str, Scalar)>) -> Value {
    Value::Map(xs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<BTreeMap<_, _>>())
}

fn cases() -> Vec<(&'static str, Value)> {
    let string = |s: &str| Value::Str(s.into());
    let num = Value::Num;
    vec![
        ("empty string", string("")),
        ("ascii", string("milk")),
        ("two-byte UTF-8", string("héllo")),
        ("three-byte UTF-8", string("日本語")),
        ("astral (a surrogate pair in UTF-16)", string("😀 ok")),
        ("leading byte order mark is kept", string("\u{feff}bom")),
        ("NUL and controls", string("a\u{0}b\n\t\u{1f}")),
        ("127 bytes: one-byte length", string(&"x".repeat(127))),
        ("128 bytes: two-byte length", string(&"x".repeat(128))),
        ("16384 bytes of non-ASCII: three-byte length", string(&"é".repeat(8192))),
        ("zero", num(0.0)),
        ("one", num(1.0)),
        ("minus one", num(-1.0)),
        ("fraction", num(0.1)),
        ("third", num(1.0 / 3.0)),
        ("2^53", num(9007199254740992.0)),
        ("2^53 + 2", num(9007199254740994.0)),
        ("1e21", num(1e21)),
        ("largest", num(f64::MAX)),
        ("most negative", num(f64::MIN)),
        ("smallest subnormal", num(5e-324)),
        ("negative tiny", num(-2.5e-300)),
        ("true", Value::Bool(true)),
        ("false", Value::Bool(false)),
        ("epoch", Value::Date(0)),
        ("date 63: one zigzag byte", Value::Date(63)),
        ("date -64: one zigzag byte", Value::Date(-64)),
        ("date 64: two zigzag bytes", Value::Date(64)),
        ("date -1", Value::Date(-1)),
        ("a 2023 date", Value::Date(1_700_000_000_123)),
        ("latest JavaScript date", Value::Date(8_640_000_000_000_000)),
        ("earliest JavaScript date (zigzag past 2^53)", Value::Date(-8_640_000_000_000_000)),
        ("date -(2^52 + 1): zigzag just past 2^53", Value::Date(-4_503_599_627_370_497)),
        ("set of one", set([Scalar::Bool(true)])),
        ("set of booleans", set([Scalar::Bool(true), Scalar::Bool(false)])),
        (
            "mixed set: booleans < numbers < strings, strings by UTF-8 bytes",
            set([
                st("b"),
                st("a"),
                st("B"),
                st(""),
                st("é"),
                st("\u{ff5e}"),
                st("😀"),
                Scalar::Num(2.5),
                Scalar::Num(-1.0),
                Scalar::Num(0.0),
                Scalar::Num(-1e300),
                Scalar::Num(5e-324),
                Scalar::Num(1e300),
                Scalar::Bool(false),
                Scalar::Bool(true),
                st("1"),
                Scalar::Num(1.0),
            ]),
        ),
        ("map of one", map([("k", Scalar::Bool(true))])),
        (
            "map keys by UTF-8 bytes",
            map([("b", Scalar::Num(1.0)), ("a", st("x")), ("Z", Scalar::Bool(false)), ("é", st("")), ("\u{ff5e}", Scalar::Num(-0.5)), ("😀", st("😀")), ("", st("empty key"))]),
        ),
        ("empty text", Value::Text(String::new())),
        ("text", Value::Text("hello 😀 world".into())),
        ("ref", Value::Ref("/data/todos/k1".into())),
    ]
}

fn field_cases() -> Vec<(&'static str, Fields)> {
    let one = Fields::from([("title".to_owned(), Value::Str("milk".into()))]);
    let mut all = Fields::new();
    for (i, (_, v)) in cases().into_iter().enumerate().filter(|(i, _)| i % 5 == 0) {
        all.insert(format!("f{i}"), v);
    }
    // Field names are ASCII (the schema's rule): upper case sorts first.
    all.insert("Z".into(), Value::Bool(true));
    all.insert("_".into(), Value::Num(3.0));
    vec![("none", Fields::new()), ("one", one), ("several, names ascending", all)]
}

/// Bytes the decoder refuses; `why` groups them for the TypeScript test,
/// which rejects all but `order` (it reads only what the engine wrote and
/// does not re-check the order).
fn rejected() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let tagged = |tag: u8, f: &dyn Fn(&mut Writer)| {
        let mut w = Writer::new();
        w.u8(tag);
        f(&mut w);
        w.into_bytes()
    };
    let str_bytes = |b: &'static [u8]| tagged(1, &|w: &mut Writer| w.bytes(b));
    let number = |n: f64| tagged(2, &|w: &mut Writer| w.f64(n));
    let scalars = |xs: Vec<Scalar>| {
        let mut w = Writer::new();
        w.u8(5);
        w.varint(xs.len() as u64);
        for x in &xs {
            ibex_core::value::encode_scalar(&mut w, x);
        }
        w.into_bytes()
    };
    vec![
        ("a lone surrogate as WTF-8 (ED A0 80)", "utf8", str_bytes(&[0xed, 0xa0, 0x80])),
        ("overlong NUL (C0 80)", "utf8", str_bytes(&[0xc0, 0x80])),
        ("truncated three-byte sequence", "utf8", str_bytes(&[0x61, 0xe6, 0x97])),
        ("byte FF", "utf8", str_bytes(&[0xff])),
        ("NaN", "number", number(f64::NAN)),
        ("Infinity", "number", number(f64::INFINITY)),
        ("-Infinity", "number", number(f64::NEG_INFINITY)),
        ("-0", "number", number(-0.0)),
        ("NaN in a set", "number", scalars(vec![Scalar::Num(f64::NAN)])),
        ("empty set", "empty", tagged(5, &|w: &mut Writer| w.varint(0))),
        ("empty map", "empty", tagged(6, &|w: &mut Writer| w.varint(0))),
        ("unknown value tag", "tag", vec![9, 0]),
        (
            "unknown scalar tag",
            "tag",
            tagged(5, &|w: &mut Writer| {
                w.varint(1);
                w.u8(4);
                w.u8(0);
            }),
        ),
        ("boolean byte 2", "tag", vec![3, 2]),
        ("set not ascending", "order", scalars(vec![st("b"), st("a")])),
        ("set with a duplicate", "order", scalars(vec![Scalar::Num(1.0), Scalar::Num(1.0)])),
        ("set strings in UTF-16 order, not UTF-8", "order", scalars(vec![st("😀"), st("\u{ff5e}")])),
        (
            "map keys not ascending",
            "order",
            tagged(6, &|w: &mut Writer| {
                w.varint(2);
                for k in ["b", "a"] {
                    w.str(k);
                    ibex_core::value::encode_scalar(w, &Scalar::Bool(true));
                }
            }),
        ),
    ]
}

fn encode(v: &Value) -> Vec<u8> {
    let mut w = Writer::new();
    encode_value(&mut w, v);
    w.into_bytes()
}

#[test]
fn golden_values() {
    let values = cases().into_iter().map(|(name, v)| {
        let b = encode(&v);
        let mut r = Reader::new(&b);
        assert_eq!(decode_value(&mut r).unwrap(), v, "{name}");
        r.finish(name).unwrap();
        Json::obj([("name", Json::str(name)), ("value", wire::value(&v)), ("hex", hex(&b))])
    });
    let fields = field_cases().into_iter().map(|(name, f)| {
        let mut w = Writer::new();
        encode_fields(&mut w, &f);
        let b = w.into_bytes();
        assert_eq!(decode_fields(&mut Reader::new(&b)).unwrap(), f, "{name}");
        Json::obj([("name", Json::str(name)), ("fields", wire::fields(&f)), ("hex", hex(&b))])
    });
    let rejected = rejected().into_iter().map(|(name, why, b)| {
        let mut r = Reader::new(&b);
        let e = decode_value(&mut r).and_then(|_| r.finish(name)).expect_err(name);
        Json::obj([("name", Json::str(name)), ("why", Json::str(why)), ("hex", hex(&b)), ("code", Json::str(e.code()))])
    });
    check(
        "values.json",
        &Json::obj([
            ("about", Json::str("Written by rust/core/tests/golden/values.rs (IBEX_BLESS=1 cargo test --workspace golden); checked by packages/db/test/golden_codec.test.ts.")),
            ("values", Json::arr(values)),
            ("fields", Json::arr(fields)),
            ("rejected", Json::arr(rejected)),
        ]),
    );
}
