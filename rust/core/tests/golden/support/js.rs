//! What an application hands the SDK — JavaScript values and schema
//! definitions — and how the SDK turns them into engine values before the
//! engine validates them. The SDK's side of this is `toWire`, `checkValue`
//! and `toWireSchema` in `packages/db/src/main/schema.ts`; the rules here
//! are the contract both follow, and the engine's verdict on the result is
//! the real one (`Schema::check`, `Schema::validate`, `change::apply`).
//!
//! The rules, all forced by the engine's encoding:
//! * a string must be well-formed UTF-16: the wire carries UTF-8, which has
//!   no encoding for a lone surrogate (the browser's `TextEncoder` would turn
//!   each into U+FFFD, so two different strings would arrive equal);
//! * -0 is sent as 0 (one canonical number);
//! * `undefined` and an empty set or map are "no value": nothing is sent
//!   and, for a new item, the schema's default applies;
//! * a JavaScript string becomes a `string`, `text` or `ref` value as the
//!   field's type says;
//! * versions are 32-bit.

use std::collections::{BTreeMap, BTreeSet};

use ibex_core::{FieldDef, FieldType, Scalar, Schema, UpgradeStep, Value};

use super::Json;

/// A JavaScript value. Strings are UTF-16 code units, as in JavaScript.
#[derive(Debug, Clone)]
pub enum Js {
    Undefined,
    Str(Vec<u16>),
    Num(f64),
    Bool(bool),
    /// `new Date(ms)`.
    Date(i64),
    Set(Vec<Js>),
    Map(Vec<(Vec<u16>, Js)>),
}

pub fn s(x: &str) -> Js {
    Js::Str(x.encode_utf16().collect())
}

/// A string of raw UTF-16 code units (may hold lone surrogates).
pub fn units(u: &[u16]) -> Js {
    Js::Str(u.to_vec())
}

impl Js {
    pub fn json(&self) -> Json {
        let (tag, body) = match self {
            Js::Undefined => ("undefined", Json::Null),
            Js::Str(u) => ("str", Json::Str(u.clone())),
            Js::Num(n) => ("num", Json::num(*n)),
            Js::Bool(b) => ("bool", Json::Bool(*b)),
            Js::Date(d) => ("date", Json::int(*d)),
            Js::Set(xs) => ("set", Json::arr(xs.iter().map(Js::json))),
            Js::Map(m) => ("map", Json::arr(m.iter().map(|(k, v)| Json::arr([Json::Str(k.clone()), v.json()])))),
        };
        Json::obj([(tag, body)])
    }
}

const LONE: &str = "lone surrogate: strings must be well-formed UTF-16";

fn string(u: &[u16]) -> Result<String, String> {
    String::from_utf16(u).map_err(|_| LONE.to_owned())
}

fn scalar(v: &Js) -> Result<Scalar, String> {
    Ok(match v {
        Js::Str(u) => Scalar::Str(string(u)?),
        Js::Num(n) => Scalar::Num(if *n == 0.0 { 0.0 } else { *n }),
        Js::Bool(b) => Scalar::Bool(*b),
        other => panic!("{other:?} is not a scalar: such a case says nothing about the engine"),
    })
}

/// The engine value the SDK sends for `v` in a field of type `ty`, `None`
/// for no value, or why the SDK must refuse it (ERR_VALIDATION).
pub fn to_wire(ty: FieldType, v: &Js) -> Result<Option<Value>, String> {
    Ok(Some(match v {
        Js::Undefined => return Ok(None),
        Js::Str(u) => {
            let s = string(u)?;
            match ty {
                FieldType::Text => Value::Text(s),
                FieldType::Ref => Value::Ref(s),
                _ => Value::Str(s),
            }
        }
        Js::Num(_) | Js::Bool(_) => match scalar(v)? {
            Scalar::Num(n) => Value::Num(n),
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Str(_) => unreachable!(),
        },
        Js::Date(d) => Value::Date(*d),
        Js::Set(xs) if xs.is_empty() => return Ok(None),
        Js::Set(xs) => Value::Set(xs.iter().map(scalar).collect::<Result<BTreeSet<_>, _>>()?),
        Js::Map(m) if m.is_empty() => return Ok(None),
        Js::Map(m) => Value::Map(m.iter().map(|(k, v)| Ok((string(k)?, scalar(v)?))).collect::<Result<BTreeMap<_, _>, String>>()?),
    }))
}

/// A field of a `defineSchema` definition; `ty` as written (may be unknown).
#[derive(Debug, Clone)]
pub struct JsField {
    pub name: &'static str,
    pub ty: &'static str,
    pub required: bool,
    pub default: Option<Js>,
}

pub fn field(name: &'static str, ty: &'static str) -> JsField {
    JsField { name, ty, required: false, default: None }
}

impl JsField {
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub fn default(mut self, v: Js) -> Self {
        self.default = Some(v);
        self
    }
}

/// The argument of `defineSchema`.
#[derive(Debug, Clone)]
pub struct JsSchema {
    pub ns: &'static str,
    pub version: u64,
    /// In declaration order (not sorted: the SDK sorts).
    pub fields: Vec<JsField>,
    /// `rename` (from, to), `remove` (field, ""), `convert` (field, type).
    pub upgrade: Vec<(&'static str, &'static str, &'static str)>,
}

pub fn schema(ns: &'static str, version: u64, fields: Vec<JsField>) -> JsSchema {
    JsSchema { ns, version, fields, upgrade: Vec::new() }
}

impl JsSchema {
    pub fn json(&self) -> Json {
        let fields = self.fields.iter().map(|f| {
            let mut def = vec![("type", Json::str(f.ty))];
            if f.required {
                def.push(("required", Json::Bool(true)));
            }
            if let Some(d) = &f.default {
                def.push(("default", d.json()));
            }
            (f.name, Json::obj(def))
        });
        let step = |&(kind, a, b): &(&str, &str, &str)| match kind {
            "rename" => Json::obj([("rename", Json::obj([("from", Json::str(a)), ("to", Json::str(b))]))]),
            "remove" => Json::obj([("remove", Json::str(a))]),
            _ => Json::obj([("convert", Json::obj([("field", Json::str(a)), ("to", Json::str(b))]))]),
        };
        Json::obj([("ns", Json::str(self.ns)), ("version", Json::int(self.version)), ("fields", Json::obj(fields)), ("upgrade", Json::arr(self.upgrade.iter().map(step)))])
    }

    /// The engine's schema, or why the SDK must refuse the definition
    /// (ERR_SCHEMA): what the engine cannot hold, then `Schema::check`.
    pub fn to_engine(&self) -> Result<Schema, String> {
        let version = u32::try_from(self.version).map_err(|_| "versions are 32-bit".to_owned())?;
        let ty = |t: &str| FieldType::parse(t).ok_or_else(|| format!("unknown type `{t}`"));
        let mut s = Schema::new(self.ns, version);
        for f in &self.fields {
            let t = ty(f.ty)?;
            let default = match &f.default {
                Some(d) => to_wire(t, d)?,
                None => None,
            };
            s.fields.insert(f.name.to_owned(), FieldDef { ty: t, required: f.required, default });
        }
        for &(kind, a, b) in &self.upgrade {
            s.upgrade.push(match kind {
                "rename" => UpgradeStep::Rename { from: a.into(), to: b.into() },
                "remove" => UpgradeStep::Remove { field: a.into() },
                _ => UpgradeStep::Convert { field: a.into(), to: ty(b)? },
            });
        }
        s.check().map_err(|e| e.to_string())?;
        Ok(s)
    }
}
