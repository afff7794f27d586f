//! Schemas: the fields an item may hold, validation, and upgrades between
//! versions.
//!
//! A schema is `{ns, version, fields, upgrade}`. Every commit records the
//! schema (`ns@version`) it was written with; older versions are upgraded on
//! read, one version at a time, by the declarative [`UpgradeStep`]s attached
//! to each newer version.
//!
//! Schemas also have a binary encoding (the SDK sends its definitions to
//! the worker with it):
//!
//! ```text
//! schema = str ns, varint version, varint n, n × field, varint m, m × step
//! field  = str name, u8 type (1 string 2 number 3 boolean 4 date 5 set 6 map
//!          7 text 8 ref), u8 required, u8 has_default, [value default]
//! step   = u8 tag, then 1 rename: str from, str to | 2 remove: str field
//!          | 3 convert: str field, u8 type
//! ```
//!
//! Upgrades are data, not callbacks, on purpose: every replica — browser
//! worker, native server, another tab — must compute the same merge from the
//! same commits, including merges between items written with different schema
//! versions. A JavaScript closure can run in neither the server nor
//! deterministically everywhere; a list of steps can.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::path;
use crate::value::{ItemData, MAX_DATE_MS, Scalar, Value, check_date, check_number, decode_value, encode_value};

/// The type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    String,
    Number,
    Boolean,
    Date,
    Set,
    Map,
    Text,
    Ref,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::Set => "set",
            FieldType::Map => "map",
            FieldType::Text => "text",
            FieldType::Ref => "ref",
        }
    }

    /// Parses a type name as written in schema definitions.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => FieldType::String,
            "number" => FieldType::Number,
            "boolean" => FieldType::Boolean,
            "date" => FieldType::Date,
            "set" => FieldType::Set,
            "map" => FieldType::Map,
            "text" => FieldType::Text,
            "ref" => FieldType::Ref,
            _ => return None,
        })
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }

    fn from_code(c: u8) -> Option<Self> {
        const ALL: [FieldType; 8] = [FieldType::String, FieldType::Number, FieldType::Boolean, FieldType::Date, FieldType::Set, FieldType::Map, FieldType::Text, FieldType::Ref];
        ALL.get(usize::from(c).wrapping_sub(1)).copied()
    }

    fn accepts(self, v: &Value) -> bool {
        matches!(
            (self, v),
            (FieldType::String, Value::Str(_))
                | (FieldType::Number, Value::Num(_))
                | (FieldType::Boolean, Value::Bool(_))
                | (FieldType::Date, Value::Date(_))
                | (FieldType::Set, Value::Set(_))
                | (FieldType::Map, Value::Map(_))
                | (FieldType::Text, Value::Text(_))
                | (FieldType::Ref, Value::Ref(_))
        )
    }
}

/// One field of a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDef {
    pub ty: FieldType,
    pub required: bool,
    /// Filled in when an item is created without this field, and when an
    /// upgrade introduces the field.
    pub default: Option<Value>,
}

impl FieldDef {
    pub fn new(ty: FieldType) -> Self {
        FieldDef { ty, required: false, default: None }
    }
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub fn default(mut self, v: Value) -> Self {
        self.default = Some(v);
        self
    }
}

/// Names a schema version: `ns@version`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaId {
    /// Shared: every commit of a namespace points at one allocation.
    pub ns: Arc<str>,
    pub version: u32,
}

impl SchemaId {
    pub fn new(ns: impl Into<Arc<str>>, version: u32) -> Self {
        SchemaId { ns: ns.into(), version }
    }
}

impl fmt::Display for SchemaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.ns, self.version)
    }
}

/// One declarative step of the upgrade from the previous version to this one.
#[derive(Debug, Clone, PartialEq)]
pub enum UpgradeStep {
    /// The field `from` is now called `to`.
    Rename { from: String, to: String },
    /// The field is gone.
    Remove { field: String },
    /// The field changes type; values that cannot be converted are dropped
    /// (and the new default, if any, applies).
    Convert { field: String, to: FieldType },
}

/// A versioned description of an item's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub ns: String,
    pub version: u32,
    pub fields: BTreeMap<String, FieldDef>,
    /// Steps from `version - 1` to `version`, applied in order.
    pub upgrade: Vec<UpgradeStep>,
}

impl Schema {
    pub fn new(ns: impl Into<String>, version: u32) -> Self {
        Schema { ns: ns.into(), version, fields: BTreeMap::new(), upgrade: Vec::new() }
    }

    pub fn field(mut self, name: impl Into<String>, def: FieldDef) -> Self {
        self.fields.insert(name.into(), def);
        self
    }

    pub fn step(mut self, s: UpgradeStep) -> Self {
        self.upgrade.push(s);
        self
    }

    pub fn id(&self) -> SchemaId {
        SchemaId::new(self.ns.as_str(), self.version)
    }

    fn schema_err(&self, reason: impl Into<String>) -> Error {
        Error::Schema { schema: self.id().to_string(), reason: reason.into() }
    }

    /// Checks the definition itself: names, version, defaults of the right type.
    pub fn check(&self) -> Result<()> {
        if !valid_ns(&self.ns) {
            return Err(self.schema_err("namespace must be 1-64 characters of a-z, A-Z, 0-9, '_', '-' or '.'"));
        }
        if self.version == 0 {
            return Err(self.schema_err("versions start at 1"));
        }
        if self.version == 1 && !self.upgrade.is_empty() {
            return Err(self.schema_err("version 1 has no previous version to upgrade from"));
        }
        for (name, def) in &self.fields {
            if !valid_field_name(name) {
                return Err(self.schema_err(format!("field name `{name}` must be 1-64 characters of letters, digits and '_', not starting with a digit")));
            }
            if let Some(d) = &def.default {
                check_value(name, def.ty, d).map_err(|r| self.schema_err(format!("default of `{name}`: {r}")))?;
                // An empty collection means an absent field, and has no
                // encoding: such a schema would not survive `decode`.
                if d.is_empty_collection() {
                    return Err(self.schema_err(format!("default of `{name}` is an empty collection; leave the default out")));
                }
            }
        }
        Ok(())
    }

    /// Checks that `data` is a valid item of this schema; the error names the
    /// field and the reason.
    pub fn validate(&self, data: &ItemData) -> Result<()> {
        let err = |field: &str, reason: String| Error::Validation { schema: self.id().to_string(), field: field.to_owned(), reason };
        for (name, v) in &data.fields {
            let def = self.fields.get(name).ok_or_else(|| err(name, "unknown field: the schema does not declare it".into()))?;
            check_value(name, def.ty, v).map_err(|r| err(name, r))?;
        }
        for (name, def) in &self.fields {
            if def.required && !data.fields.contains_key(name) {
                let reason =
                    if def.ty == FieldType::Set || def.ty == FieldType::Map { "required, and an empty collection counts as missing".to_string() } else { "required field is missing".to_string() };
                return Err(err(name, reason));
            }
        }
        Ok(())
    }

    /// The binary encoding (module docs).
    pub fn encode(&self, w: &mut Writer) {
        w.str(&self.ns);
        w.varint(self.version.into());
        w.varint(self.fields.len() as u64);
        for (name, def) in &self.fields {
            w.str(name);
            w.u8(def.ty.code());
            w.u8(def.required as u8);
            match &def.default {
                Some(v) => {
                    w.u8(1);
                    encode_value(w, v);
                }
                None => w.u8(0),
            }
        }
        w.varint(self.upgrade.len() as u64);
        for step in &self.upgrade {
            match step {
                UpgradeStep::Rename { from, to } => {
                    w.u8(1);
                    w.str(from);
                    w.str(to);
                }
                UpgradeStep::Remove { field } => {
                    w.u8(2);
                    w.str(field);
                }
                UpgradeStep::Convert { field, to } => {
                    w.u8(3);
                    w.str(field);
                    w.u8(to.code());
                }
            }
        }
    }

    /// Decodes and [`check`](Schema::check)s a schema definition.
    pub fn decode(r: &mut Reader) -> Result<Schema> {
        let mut s = Schema::new(r.str("schema namespace")?, r.u32("schema version")?);
        let n = r.count("field count", 4)?;
        for _ in 0..n {
            let name = r.str("field name")?.to_owned();
            let at = r.offset();
            let ty = FieldType::from_code(r.u8("field type")?).ok_or_else(|| Error::decode("unknown field type", at))?;
            let required = r.bool("required flag")?;
            let default = if r.bool("default flag")? { Some(decode_value(r)?) } else { None };
            s.fields.insert(name, FieldDef { ty, required, default });
        }
        let m = r.count("upgrade step count", 2)?;
        for _ in 0..m {
            let at = r.offset();
            s.upgrade.push(match r.u8("upgrade step")? {
                1 => UpgradeStep::Rename { from: r.str("rename from")?.to_owned(), to: r.str("rename to")?.to_owned() },
                2 => UpgradeStep::Remove { field: r.str("removed field")?.to_owned() },
                3 => {
                    let field = r.str("converted field")?.to_owned();
                    let tat = r.offset();
                    let to = FieldType::from_code(r.u8("conversion type")?).ok_or_else(|| Error::decode("unknown field type", tat))?;
                    UpgradeStep::Convert { field, to }
                }
                t => return Err(Error::decode(format!("unknown upgrade step {t}"), at)),
            });
        }
        s.check()?;
        Ok(s)
    }

    /// Fills defaults for absent fields (used when an item is created).
    pub fn apply_defaults(&self, data: &mut ItemData) {
        for (name, def) in &self.fields {
            if let Some(d) = &def.default {
                data.fields.entry(name.clone()).or_insert_with(|| d.clone());
            }
        }
        data.normalize();
    }
}

fn valid_ns(ns: &str) -> bool {
    !ns.is_empty() && ns.len() <= 64 && ns.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn valid_field_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && !n.as_bytes()[0].is_ascii_digit() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn check_value(_name: &str, ty: FieldType, v: &Value) -> std::result::Result<(), String> {
    if !ty.accepts(v) {
        return Err(format!("expected {}, got {}", ty.name(), v.type_name()));
    }
    match v {
        Value::Num(n) => check_number(*n).map_err(str::to_owned),
        Value::Date(d) => check_date(*d).map_err(str::to_owned),
        Value::Set(s) => s.iter().try_for_each(check_scalar),
        Value::Map(m) => m.values().try_for_each(check_scalar),
        Value::Ref(p) => path::ItemPath::parse(p).map(|_| ()).map_err(|e| format!("not an item path: {e}")),
        _ => Ok(()),
    }
}

fn check_scalar(s: &Scalar) -> std::result::Result<(), String> {
    match s {
        Scalar::Num(n) => check_number(*n).map_err(str::to_owned),
        _ => Ok(()),
    }
}

/// The schemas a replica knows, every version of every namespace.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// ns → version → schema. Lookups borrow `&str`: no allocation on the
    /// hot path (every head computation asks for the latest version).
    schemas: BTreeMap<Arc<str>, BTreeMap<u32, Arc<Schema>>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a schema version. Registering the identical definition twice is
    /// fine; a different definition under the same `ns@version` is an error,
    /// because replicas would disagree on what a commit means.
    pub fn register(&mut self, schema: Schema) -> Result<Arc<Schema>> {
        schema.check()?;
        if let Some(existing) = self.schemas.get(schema.ns.as_str()).and_then(|v| v.get(&schema.version)) {
            if **existing != schema {
                return Err(schema.schema_err("a different definition with this namespace and version is already registered; bump the version"));
            }
            return Ok(existing.clone());
        }
        let version = schema.version;
        let ns: Arc<str> = self.intern(&schema.ns).unwrap_or_else(|| schema.ns.as_str().into());
        let s = Arc::new(schema);
        self.schemas.entry(ns).or_default().insert(version, s.clone());
        Ok(s)
    }

    pub fn get(&self, id: &SchemaId) -> Option<&Arc<Schema>> {
        self.schemas.get(&*id.ns)?.get(&id.version)
    }

    /// The newest registered version of a namespace.
    pub fn latest(&self, ns: &str) -> Option<&Arc<Schema>> {
        self.schemas.get(ns)?.values().next_back()
    }

    /// The registry's shared copy of a namespace name, if it knows it.
    pub fn intern(&self, ns: &str) -> Option<Arc<str>> {
        self.schemas.get_key_value(ns).map(|(k, _)| k.clone())
    }

    /// Upgrades `data` written with `from` towards `to_version`, one version at
    /// a time. Stops early at the first version this registry does not know
    /// and returns the version actually reached (merges then proceed on what
    /// could be upgraded; nothing is invented).
    pub fn upgrade(&self, mut data: ItemData, from: &SchemaId, to_version: u32) -> (ItemData, u32) {
        let mut at = from.version;
        while at < to_version {
            let versions = self.schemas.get(&*from.ns);
            let Some(next) = versions.and_then(|v| v.get(&(at + 1))) else { break };
            let prev = versions.and_then(|v| v.get(&at));
            for step in &next.upgrade {
                apply_step(&mut data, step);
            }
            // Drop what the new version does not declare, then give fields the
            // new version introduced their defaults.
            data.fields.retain(|k, _| next.fields.contains_key(k));
            for (name, def) in &next.fields {
                let introduced = prev.is_none_or(|p| !p.fields.contains_key(name));
                if let (true, Some(d)) = (introduced, &def.default) {
                    data.fields.entry(name.clone()).or_insert_with(|| d.clone());
                }
            }
            data.normalize();
            at += 1;
        }
        (data, at)
    }
}

fn apply_step(data: &mut ItemData, step: &UpgradeStep) {
    match step {
        UpgradeStep::Rename { from, to } => {
            if let Some(v) = data.fields.remove(from) {
                data.fields.insert(to.clone(), v);
            }
        }
        UpgradeStep::Remove { field } => {
            data.fields.remove(field);
        }
        UpgradeStep::Convert { field, to } => {
            if let Some(v) = data.fields.remove(field)
                && let Some(c) = convert(v, *to)
            {
                data.fields.insert(field.clone(), c);
            }
        }
    }
}

/// Type conversions allowed by [`UpgradeStep::Convert`].
fn convert(v: Value, to: FieldType) -> Option<Value> {
    let as_string = |v: &Value| -> Option<String> {
        Some(match v {
            Value::Str(s) | Value::Text(s) | Value::Ref(s) => s.clone(),
            Value::Num(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Date(d) => d.to_string(),
            _ => return None,
        })
    };
    let scalar = |v: &Value| -> Option<Scalar> {
        Some(match v {
            Value::Str(s) | Value::Text(s) | Value::Ref(s) => Scalar::Str(s.clone()),
            Value::Num(n) => Scalar::Num(*n),
            Value::Bool(b) => Scalar::Bool(*b),
            _ => return None,
        })
    };
    if to.accepts(&v) {
        return Some(v);
    }
    match to {
        FieldType::String => as_string(&v).map(Value::Str),
        FieldType::Text => as_string(&v).map(Value::Text),
        FieldType::Ref => as_string(&v).filter(|s| path::ItemPath::parse(s).is_ok()).map(Value::Ref),
        FieldType::Number => match &v {
            Value::Str(s) | Value::Text(s) => s.trim().parse::<f64>().ok().filter(|n| check_number(*n).is_ok()).map(Value::Num),
            Value::Bool(b) => Some(Value::Num(if *b { 1.0 } else { 0.0 })),
            Value::Date(d) => Some(Value::Num(*d as f64)),
            _ => None,
        },
        FieldType::Boolean => match &v {
            Value::Num(n) => Some(Value::Bool(*n != 0.0)),
            Value::Str(s) => match s.as_str() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            _ => None,
        },
        FieldType::Date => match &v {
            Value::Num(n) if n.fract() == 0.0 && n.abs() <= MAX_DATE_MS as f64 => Some(Value::Date(*n as i64)),
            _ => None,
        },
        FieldType::Set => scalar(&v).map(|s| Value::Set([s].into())),
        FieldType::Map => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_v1() -> Schema {
        Schema::new("task", 1)
            .field("text", FieldDef::new(FieldType::String).required())
            .field("done", FieldDef::new(FieldType::Boolean).default(Value::Bool(false)))
            .field("tags", FieldDef::new(FieldType::Set))
    }

    #[test]
    fn validation_names_field_and_reason() {
        let s = task_v1();
        let mut d = ItemData::default();
        d.fields.insert("text".into(), Value::Num(1.0));
        let e = s.validate(&d).unwrap_err();
        assert_eq!(e.code(), "ERR_VALIDATION");
        assert!(e.to_string().contains("`text`") && e.to_string().contains("expected string, got number"), "{e}");

        let e = s.validate(&ItemData::default()).unwrap_err();
        assert!(e.to_string().contains("required"), "{e}");

        let mut d = ItemData::default();
        d.fields.insert("text".into(), Value::Str("x".into()));
        d.fields.insert("color".into(), Value::Str("red".into()));
        assert!(s.validate(&d).unwrap_err().to_string().contains("unknown field"));

        d.fields.remove("color");
        d.fields.insert("done".into(), Value::Bool(true));
        s.validate(&d).unwrap();
    }

    #[test]
    fn bad_definitions_are_rejected() {
        assert!(Schema::new("", 1).check().is_err());
        assert!(Schema::new("x", 0).check().is_err());
        assert!(Schema::new("x", 1).field("1a", FieldDef::new(FieldType::String)).check().is_err());
        assert!(Schema::new("x", 1).field("a", FieldDef::new(FieldType::String).default(Value::Num(1.0))).check().is_err());
        // An empty default has no encoding (it means no default).
        assert!(Schema::new("x", 1).field("a", FieldDef::new(FieldType::Set).default(Value::Set(Default::default()))).check().is_err());
        // Dates a JavaScript Date cannot hold.
        assert!(Schema::new("x", 1).field("d", FieldDef::new(FieldType::Date).default(Value::Date(-8_640_000_000_000_001))).check().is_err());
        Schema::new("x", 1).field("d", FieldDef::new(FieldType::Date).default(Value::Date(-8_640_000_000_000_000))).check().unwrap();
        let mut r = Registry::new();
        r.register(task_v1()).unwrap();
        r.register(task_v1()).unwrap();
        let changed = task_v1().field("extra", FieldDef::new(FieldType::Number));
        assert!(r.register(changed).is_err());
    }

    #[test]
    fn upgrades_run_in_order_and_fill_new_defaults() {
        let mut r = Registry::new();
        r.register(task_v1()).unwrap();
        r.register(
            Schema::new("task", 2)
                .field("title", FieldDef::new(FieldType::String).required())
                .field("done", FieldDef::new(FieldType::Boolean).default(Value::Bool(false)))
                .field("priority", FieldDef::new(FieldType::Number).default(Value::Num(3.0)))
                .step(UpgradeStep::Rename { from: "text".into(), to: "title".into() })
                .step(UpgradeStep::Remove { field: "tags".into() }),
        )
        .unwrap();
        r.register(
            Schema::new("task", 3)
                .field("title", FieldDef::new(FieldType::Text).required())
                .field("done", FieldDef::new(FieldType::Boolean).default(Value::Bool(false)))
                .field("priority", FieldDef::new(FieldType::String))
                .step(UpgradeStep::Convert { field: "title".into(), to: FieldType::Text })
                .step(UpgradeStep::Convert { field: "priority".into(), to: FieldType::String }),
        )
        .unwrap();
        let mut d = ItemData::default();
        d.fields.insert("text".into(), Value::Str("milk".into()));
        d.fields.insert("tags".into(), Value::Set([Scalar::Str("a".into())].into()));
        let (up, v) = r.upgrade(d.clone(), &SchemaId::new("task", 1), 3);
        assert_eq!(v, 3);
        assert_eq!(up.fields.get("title"), Some(&Value::Text("milk".into())));
        assert_eq!(up.fields.get("priority"), Some(&Value::Str("3".into())));
        assert!(!up.fields.contains_key("tags") && !up.fields.contains_key("done"));
        r.get(&SchemaId::new("task", 3)).unwrap().validate(&up).unwrap();

        // Unknown intermediate versions stop the upgrade where it is.
        let mut partial = Registry::new();
        partial.register(task_v1()).unwrap();
        let (same, v) = partial.upgrade(d.clone(), &SchemaId::new("task", 1), 3);
        assert_eq!((same, v), (d, 1));
    }

    #[test]
    fn binary_encoding_roundtrips_and_rejects_garbage() {
        let s = task_v1().field("due", FieldDef::new(FieldType::Date).default(Value::Date(5))).field("link", FieldDef::new(FieldType::Ref));
        let mut v2 = s.clone();
        v2.version = 2;
        v2.upgrade = vec![UpgradeStep::Rename { from: "a".into(), to: "b".into() }, UpgradeStep::Remove { field: "c".into() }, UpgradeStep::Convert { field: "d".into(), to: FieldType::Text }];
        for schema in [s, v2] {
            let mut w = Writer::new();
            schema.encode(&mut w);
            let b = w.into_bytes();
            let mut r = Reader::new(&b);
            assert_eq!(Schema::decode(&mut r).unwrap(), schema);
            r.finish("schema").unwrap();
            for cut in 0..b.len() {
                assert!(Schema::decode(&mut Reader::new(&b[..cut])).is_err());
            }
        }
        let mut w = Writer::new();
        Schema::new("x", 1).field("f", FieldDef::new(FieldType::String)).encode(&mut w);
        let mut b = w.into_bytes();
        let at = b.len() - 4; // the field type byte
        b[at] = 42;
        assert!(Schema::decode(&mut Reader::new(&b)).is_err());
    }

    #[test]
    fn latest_finds_newest_version() {
        let mut r = Registry::new();
        r.register(task_v1()).unwrap();
        r.register(Schema::new("task", 2).field("text", FieldDef::new(FieldType::String))).unwrap();
        r.register(Schema::new("tasl", 9)).unwrap();
        assert_eq!(r.latest("task").unwrap().version, 2);
        assert!(r.latest("tas").is_none());
    }
}
