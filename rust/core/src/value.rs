//! Field values and their canonical encoding.
//!
//! ```text
//! value   = tag:u8 payload
//!   1 string  str           (UTF-8: a string with a lone surrogate has no encoding)
//!   2 number  f64           finite, never -0.0
//!   3 boolean u8 (0|1)
//!   4 date    zigzag        milliseconds since the Unix epoch (valid: |ms| ≤ 8.64e15)
//!   5 set     varint n, n × scalar   strictly ascending
//!   6 map     varint n, n × (str key, scalar)   keys strictly ascending
//!   7 text    str           merged character by character
//!   8 ref     str           an item path
//! scalar  = tag:u8 payload
//!   1 boolean u8, 2 number f64, 3 string str
//! fields  = varint n, n × (str name, value)   names strictly ascending
//! ```
//!
//! Sets and maps are never empty in an encoding: an empty collection is the
//! same as an absent field ([`ItemData::normalize`]), which keeps one
//! canonical form per value.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};

/// An element of a `set` or a value in a `map`.
#[derive(Debug, Clone)]
pub enum Scalar {
    Bool(bool),
    Num(f64),
    Str(String),
}

impl Scalar {
    fn rank(&self) -> u8 {
        match self {
            Scalar::Bool(_) => 0,
            Scalar::Num(_) => 1,
            Scalar::Str(_) => 2,
        }
    }
}

impl Ord for Scalar {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Scalar::Bool(a), Scalar::Bool(b)) => a.cmp(b),
            (Scalar::Num(a), Scalar::Num(b)) => a.total_cmp(b),
            (Scalar::Str(a), Scalar::Str(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}
impl PartialOrd for Scalar {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Scalar {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scalar {}

/// A field value. Which variants a field accepts is decided by its schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Num(f64),
    Bool(bool),
    /// Milliseconds since the Unix epoch.
    Date(i64),
    Set(BTreeSet<Scalar>),
    Map(BTreeMap<String, Scalar>),
    /// A string merged character by character.
    Text(String),
    /// The path of another item.
    Ref(String),
}

impl Value {
    /// The schema type name of this value, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Num(_) => "number",
            Value::Bool(_) => "boolean",
            Value::Date(_) => "date",
            Value::Set(_) => "set",
            Value::Map(_) => "map",
            Value::Text(_) => "text",
            Value::Ref(_) => "ref",
        }
    }

    /// True for the values that are the same as an absent field.
    pub fn is_empty_collection(&self) -> bool {
        matches!(self, Value::Set(s) if s.is_empty()) || matches!(self, Value::Map(m) if m.is_empty())
    }
}

/// Rejects numbers that have no canonical encoding.
pub fn check_number(n: f64) -> std::result::Result<(), &'static str> {
    if !n.is_finite() {
        Err("numbers must be finite")
    } else if n == 0.0 && n.is_sign_negative() {
        Err("-0 is not a canonical number; use 0")
    } else {
        Ok(())
    }
}

/// The largest distance from the epoch, in milliseconds, of a valid date:
/// the range of a JavaScript `Date`, so every date the engine accepts can be
/// shown by the SDK (and its zigzag encoding stays below 2^54).
pub const MAX_DATE_MS: i64 = 8_640_000_000_000_000;

/// Rejects dates a JavaScript `Date` cannot hold.
pub fn check_date(ms: i64) -> std::result::Result<(), &'static str> {
    if ms.unsigned_abs() > MAX_DATE_MS as u64 { Err("dates must be within ±8.64e15 ms of the epoch (the range of a JavaScript Date)") } else { Ok(()) }
}

/// The state of an item: its fields and whether it is (soft-)deleted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemData {
    pub deleted: bool,
    pub fields: BTreeMap<String, Value>,
}

/// Field values by field name.
pub type Fields = BTreeMap<String, Value>;

impl ItemData {
    pub fn new(fields: Fields) -> Self {
        let mut d = ItemData { deleted: false, fields };
        d.normalize();
        d
    }

    /// Drops empty sets and maps: they mean the same as an absent field.
    pub fn normalize(&mut self) {
        self.fields.retain(|_, v| !v.is_empty_collection());
    }
}

const T_STR: u8 = 1;
const T_NUM: u8 = 2;
const T_BOOL: u8 = 3;
const T_DATE: u8 = 4;
const T_SET: u8 = 5;
const T_MAP: u8 = 6;
const T_TEXT: u8 = 7;
const T_REF: u8 = 8;

const S_BOOL: u8 = 1;
const S_NUM: u8 = 2;
const S_STR: u8 = 3;

pub fn encode_scalar(w: &mut Writer, s: &Scalar) {
    match s {
        Scalar::Bool(b) => {
            w.u8(S_BOOL);
            w.u8(*b as u8);
        }
        Scalar::Num(n) => {
            w.u8(S_NUM);
            w.f64(*n);
        }
        Scalar::Str(s) => {
            w.u8(S_STR);
            w.str(s);
        }
    }
}

fn read_number(r: &mut Reader, what: &str) -> Result<f64> {
    let at = r.offset();
    let n = r.f64(what)?;
    check_number(n).map_err(|m| Error::decode(format!("{what}: {m}"), at))?;
    Ok(n)
}

pub fn decode_scalar(r: &mut Reader) -> Result<Scalar> {
    let at = r.offset();
    Ok(match r.u8("scalar tag")? {
        S_BOOL => Scalar::Bool(r.bool("boolean")?),
        S_NUM => Scalar::Num(read_number(r, "number")?),
        S_STR => Scalar::Str(r.str("string")?.to_owned()),
        t => return Err(Error::decode(format!("unknown scalar tag {t}"), at)),
    })
}

/// Reads `n` strictly ascending scalars.
pub fn decode_scalars(r: &mut Reader, what: &str) -> Result<BTreeSet<Scalar>> {
    let n = r.count(what, 2)?;
    let mut out = BTreeSet::new();
    let mut prev: Option<Scalar> = None;
    for _ in 0..n {
        let at = r.offset();
        let s = decode_scalar(r)?;
        if prev.as_ref().is_some_and(|p| *p >= s) {
            return Err(Error::decode(format!("{what}: elements not strictly ascending"), at));
        }
        prev = Some(s.clone());
        out.insert(s);
    }
    Ok(out)
}

pub fn encode_scalars<'a>(w: &mut Writer, set: impl ExactSizeIterator<Item = &'a Scalar>) {
    w.varint(set.len() as u64);
    for s in set {
        encode_scalar(w, s);
    }
}

pub fn encode_value(w: &mut Writer, v: &Value) {
    match v {
        Value::Str(s) => {
            w.u8(T_STR);
            w.str(s);
        }
        Value::Num(n) => {
            w.u8(T_NUM);
            w.f64(*n);
        }
        Value::Bool(b) => {
            w.u8(T_BOOL);
            w.u8(*b as u8);
        }
        Value::Date(d) => {
            w.u8(T_DATE);
            w.zigzag(*d);
        }
        Value::Set(s) => {
            w.u8(T_SET);
            encode_scalars(w, s.iter());
        }
        Value::Map(m) => {
            w.u8(T_MAP);
            w.varint(m.len() as u64);
            for (k, v) in m {
                w.str(k);
                encode_scalar(w, v);
            }
        }
        Value::Text(s) => {
            w.u8(T_TEXT);
            w.str(s);
        }
        Value::Ref(s) => {
            w.u8(T_REF);
            w.str(s);
        }
    }
}

pub fn decode_value(r: &mut Reader) -> Result<Value> {
    let at = r.offset();
    let v = match r.u8("value tag")? {
        T_STR => Value::Str(r.str("string")?.to_owned()),
        T_NUM => Value::Num(read_number(r, "number")?),
        T_BOOL => Value::Bool(r.bool("boolean")?),
        T_DATE => Value::Date(r.zigzag("date")?),
        T_SET => Value::Set(decode_scalars(r, "set")?),
        T_MAP => {
            let n = r.count("map size", 3)?;
            let mut m = BTreeMap::new();
            let mut prev: Option<&str> = None;
            for _ in 0..n {
                let kat = r.offset();
                let k = r.str("map key")?;
                if prev.is_some_and(|p| p >= k) {
                    return Err(Error::decode("map keys not strictly ascending", kat));
                }
                prev = Some(k);
                m.insert(k.to_owned(), decode_scalar(r)?);
            }
            Value::Map(m)
        }
        T_TEXT => Value::Text(r.str("text")?.to_owned()),
        T_REF => Value::Ref(r.str("ref")?.to_owned()),
        t => return Err(Error::decode(format!("unknown value tag {t}"), at)),
    };
    if v.is_empty_collection() {
        return Err(Error::decode("empty set or map (an absent field is the canonical form)", at));
    }
    Ok(v)
}

pub fn encode_fields(w: &mut Writer, fields: &Fields) {
    w.varint(fields.len() as u64);
    for (k, v) in fields {
        w.str(k);
        encode_value(w, v);
    }
}

pub fn decode_fields(r: &mut Reader) -> Result<Fields> {
    let n = r.count("field count", 3)?;
    let mut out = BTreeMap::new();
    let mut prev: Option<&str> = None;
    for _ in 0..n {
        let at = r.offset();
        let k = r.str("field name")?;
        if prev.is_some_and(|p| p >= k) {
            return Err(Error::decode("field names not strictly ascending", at));
        }
        prev = Some(k);
        out.insert(k.to_owned(), decode_value(r)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_order_is_total_and_typed() {
        let mut v = vec![Scalar::Str("a".into()), Scalar::Num(2.0), Scalar::Bool(true), Scalar::Num(-1.0), Scalar::Bool(false)];
        v.sort();
        assert_eq!(v, vec![Scalar::Bool(false), Scalar::Bool(true), Scalar::Num(-1.0), Scalar::Num(2.0), Scalar::Str("a".into())]);
    }

    #[test]
    fn fields_roundtrip() {
        let mut f = Fields::new();
        f.insert("a".into(), Value::Set([Scalar::Num(1.0), Scalar::Str("x".into())].into()));
        f.insert("b".into(), Value::Map([("k".to_string(), Scalar::Bool(true))].into()));
        f.insert("c".into(), Value::Date(-5));
        let mut w = Writer::new();
        encode_fields(&mut w, &f);
        let b = w.into_bytes();
        let mut r = Reader::new(&b);
        assert_eq!(decode_fields(&mut r).unwrap(), f);
        r.finish("fields").unwrap();
    }

    #[test]
    fn unsorted_and_duplicate_names_are_rejected() {
        let mut w = Writer::new();
        w.varint(2);
        w.str("b");
        encode_value(&mut w, &Value::Bool(true));
        w.str("a");
        encode_value(&mut w, &Value::Bool(true));
        assert!(decode_fields(&mut Reader::new(&w.into_bytes())).is_err());
    }

    #[test]
    fn non_canonical_numbers_are_rejected() {
        for bad in [f64::INFINITY, -0.0] {
            let mut w = Writer::new();
            encode_value(&mut w, &Value::Num(bad));
            assert!(decode_value(&mut Reader::new(&w.into_bytes())).is_err());
        }
    }
}
