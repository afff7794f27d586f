//! Field-level changes: the body of a delta commit, and the operations a
//! writer sends.
//!
//! ```text
//! change = tag:u8 payload
//!   1 put          str field, value            replace the whole field
//!   2 remove       str field                   the field becomes absent
//!   3 set-add      str field, scalars          add elements
//!   4 set-remove   str field, scalars          remove elements
//!   5 map-put      str field, str key, scalar
//!   6 map-remove   str field, str key
//!   7 text         str field, splices          see `text.rs`
//!   8 deleted      u8 (0|1)                    soft-delete flag
//! changes = varint n, n × change
//! ```
//!
//! [`apply`] type-checks every change against the value it modifies and
//! never panics; removing something absent or adding something present is a
//! no-op, so applying a writer's operations is forgiving while the result is
//! still fully determined by the bytes.

use std::collections::{BTreeMap, BTreeSet};

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::text::{self, Splice};
use crate::value::{ItemData, Scalar, Value, decode_scalar, decode_scalars, decode_value, encode_scalar, encode_scalars, encode_value};

/// One change to an item.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Put { field: String, value: Value },
    Remove { field: String },
    SetAdd { field: String, elems: BTreeSet<Scalar> },
    SetRemove { field: String, elems: BTreeSet<Scalar> },
    MapPut { field: String, key: String, value: Scalar },
    MapRemove { field: String, key: String },
    Text { field: String, splices: Vec<Splice> },
    Deleted(bool),
}

impl Change {
    /// The field this change touches (`None` for the deleted flag).
    pub fn field(&self) -> Option<&str> {
        match self {
            Change::Put { field, .. }
            | Change::Remove { field }
            | Change::SetAdd { field, .. }
            | Change::SetRemove { field, .. }
            | Change::MapPut { field, .. }
            | Change::MapRemove { field, .. }
            | Change::Text { field, .. } => Some(field),
            Change::Deleted(_) => None,
        }
    }
}

/// The changes that turn `base` into `new`, in canonical order (deleted flag
/// first, then by field name).
pub fn diff(base: &ItemData, new: &ItemData) -> Vec<Change> {
    let mut out = Vec::new();
    if base.deleted != new.deleted {
        out.push(Change::Deleted(new.deleted));
    }
    let names: BTreeSet<&String> = base.fields.keys().chain(new.fields.keys()).collect();
    for name in names {
        let field = || name.clone();
        match (base.fields.get(name), new.fields.get(name)) {
            (_, None) => out.push(Change::Remove { field: field() }),
            (None, Some(v)) => out.push(Change::Put { field: field(), value: v.clone() }),
            (Some(a), Some(b)) if a == b => {}
            (Some(Value::Set(a)), Some(Value::Set(b))) => {
                let add: BTreeSet<Scalar> = b.difference(a).cloned().collect();
                let rem: BTreeSet<Scalar> = a.difference(b).cloned().collect();
                if !add.is_empty() {
                    out.push(Change::SetAdd { field: field(), elems: add });
                }
                if !rem.is_empty() {
                    out.push(Change::SetRemove { field: field(), elems: rem });
                }
            }
            (Some(Value::Map(a)), Some(Value::Map(b))) => {
                for (k, v) in b {
                    if a.get(k) != Some(v) {
                        out.push(Change::MapPut { field: field(), key: k.clone(), value: v.clone() });
                    }
                }
                for k in a.keys().filter(|k| !b.contains_key(*k)) {
                    out.push(Change::MapRemove { field: field(), key: k.clone() });
                }
            }
            (Some(Value::Text(a)), Some(Value::Text(b))) => {
                out.push(Change::Text { field: field(), splices: text::diff(a, b) });
            }
            (Some(_), Some(b)) => out.push(Change::Put { field: field(), value: b.clone() }),
        }
    }
    out
}

fn type_err(field: &str, op: &str, found: &Value) -> String {
    format!("{op} on field `{field}` which holds a {}", found.type_name())
}

/// Applies changes to `base`. Errors (never panics) when a change does not
/// fit the value it modifies.
pub fn apply(base: &ItemData, changes: &[Change]) -> std::result::Result<ItemData, String> {
    let mut out = base.clone();
    apply_in_place(&mut out, changes)?;
    Ok(out)
}

/// Applies changes to `out` in place: what a delta chain uses, so that
/// replaying N deltas over a large value copies it once, not N times. On
/// error `out` is left partly changed; callers discard it.
pub fn apply_in_place(out: &mut ItemData, changes: &[Change]) -> std::result::Result<(), String> {
    for c in changes {
        match c {
            Change::Deleted(d) => out.deleted = *d,
            Change::Put { field, value } => {
                out.fields.insert(field.clone(), value.clone());
            }
            Change::Remove { field } => {
                out.fields.remove(field);
            }
            Change::SetAdd { field, elems } | Change::SetRemove { field, elems } => {
                let cur = out.fields.entry(field.clone()).or_insert_with(|| Value::Set(BTreeSet::new()));
                let Value::Set(set) = cur else { return Err(type_err(field, "set operation", cur)) };
                if matches!(c, Change::SetAdd { .. }) {
                    set.extend(elems.iter().cloned());
                } else {
                    set.retain(|e| !elems.contains(e));
                }
            }
            Change::MapPut { field, key, .. } | Change::MapRemove { field, key } => {
                let cur = out.fields.entry(field.clone()).or_insert_with(|| Value::Map(BTreeMap::new()));
                let Value::Map(map) = cur else { return Err(type_err(field, "map operation", cur)) };
                if let Change::MapPut { value, .. } = c {
                    map.insert(key.clone(), value.clone());
                } else {
                    map.remove(key);
                }
            }
            Change::Text { field, splices } => {
                let existed = out.fields.contains_key(field);
                let cur = out.fields.entry(field.clone()).or_insert_with(|| Value::Text(String::new()));
                let Value::Text(s) = cur else { return Err(type_err(field, "text splice", cur)) };
                *s = text::apply(s, splices).map_err(|e| format!("text splice on field `{field}`: {e}"))?;
                if s.is_empty() && !existed {
                    out.fields.remove(field);
                }
            }
        }
    }
    out.normalize();
    Ok(())
}

const C_PUT: u8 = 1;
const C_REMOVE: u8 = 2;
const C_SET_ADD: u8 = 3;
const C_SET_REMOVE: u8 = 4;
const C_MAP_PUT: u8 = 5;
const C_MAP_REMOVE: u8 = 6;
const C_TEXT: u8 = 7;
const C_DELETED: u8 = 8;

pub fn encode(w: &mut Writer, changes: &[Change]) {
    w.varint(changes.len() as u64);
    for c in changes {
        match c {
            Change::Put { field, value } => {
                w.u8(C_PUT);
                w.str(field);
                encode_value(w, value);
            }
            Change::Remove { field } => {
                w.u8(C_REMOVE);
                w.str(field);
            }
            Change::SetAdd { field, elems } | Change::SetRemove { field, elems } => {
                w.u8(if matches!(c, Change::SetAdd { .. }) { C_SET_ADD } else { C_SET_REMOVE });
                w.str(field);
                encode_scalars(w, elems.iter());
            }
            Change::MapPut { field, key, value } => {
                w.u8(C_MAP_PUT);
                w.str(field);
                w.str(key);
                encode_scalar(w, value);
            }
            Change::MapRemove { field, key } => {
                w.u8(C_MAP_REMOVE);
                w.str(field);
                w.str(key);
            }
            Change::Text { field, splices } => {
                w.u8(C_TEXT);
                w.str(field);
                text::encode(w, splices);
            }
            Change::Deleted(d) => {
                w.u8(C_DELETED);
                w.u8(*d as u8);
            }
        }
    }
}

pub fn decode(r: &mut Reader) -> Result<Vec<Change>> {
    let n = r.count("change count", 2)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let at = r.offset();
        let tag = r.u8("change tag")?;
        if tag == C_DELETED {
            out.push(Change::Deleted(r.bool("deleted flag")?));
            continue;
        }
        let field = r.str("change field")?.to_owned();
        out.push(match tag {
            C_PUT => Change::Put { field, value: decode_value(r)? },
            C_REMOVE => Change::Remove { field },
            C_SET_ADD => Change::SetAdd { field, elems: decode_scalars(r, "set-add elements")? },
            C_SET_REMOVE => Change::SetRemove { field, elems: decode_scalars(r, "set-remove elements")? },
            C_MAP_PUT => Change::MapPut { field, key: r.str("map key")?.to_owned(), value: decode_scalar(r)? },
            C_MAP_REMOVE => Change::MapRemove { field, key: r.str("map key")?.to_owned() },
            C_TEXT => Change::Text { field, splices: text::decode(r)? },
            t => return Err(Error::decode(format!("unknown change tag {t}"), at)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, Value)]) -> ItemData {
        ItemData::new(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn diff_apply_roundtrip_every_type() {
        let s = |x: &str| Scalar::Str(x.into());
        let a = data(&[
            ("n", Value::Num(1.0)),
            ("s", Value::Set([s("a"), s("b")].into())),
            ("m", Value::Map([("k".to_string(), s("v")), ("j".to_string(), Scalar::Num(2.0))].into())),
            ("t", Value::Text("hello world".into())),
            ("gone", Value::Bool(true)),
        ]);
        let mut b = data(&[
            ("n", Value::Num(2.0)),
            ("s", Value::Set([s("b"), s("c")].into())),
            ("m", Value::Map([("k".to_string(), s("w")), ("x".to_string(), Scalar::Bool(false))].into())),
            ("t", Value::Text("hello brave world".into())),
            ("new", Value::Date(7)),
        ]);
        b.deleted = true;
        let d = diff(&a, &b);
        assert_eq!(apply(&a, &d).unwrap(), b);
        let mut w = Writer::new();
        encode(&mut w, &d);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(decode(&mut r).unwrap(), d);
        r.finish("changes").unwrap();
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn mismatched_changes_are_errors() {
        let a = data(&[("n", Value::Num(1.0))]);
        let e = apply(&a, &[Change::SetAdd { field: "n".into(), elems: [Scalar::Bool(true)].into() }]).unwrap_err();
        assert!(e.contains("`n`") && e.contains("number"), "{e}");
        assert!(apply(&a, &[Change::Text { field: "n".into(), splices: vec![] }]).is_err());
        let t = data(&[("t", Value::Text("ab".into()))]);
        assert!(apply(&t, &[Change::Text { field: "t".into(), splices: vec![Splice { pos: 5, delete: 0, insert: "x".into() }] }]).is_err());
    }

    #[test]
    fn removing_last_element_makes_field_absent() {
        let a = data(&[("s", Value::Set([Scalar::Num(1.0)].into()))]);
        let b = apply(&a, &[Change::SetRemove { field: "s".into(), elems: [Scalar::Num(1.0)].into() }]).unwrap();
        assert!(b.fields.is_empty());
    }
}
