//! Engine values as tagged JSON, the form `packages/db/test/tagged.ts`
//! reads: `{"str":"a"}`, `{"num":1.5}` (or `"-0"`, `"NaN"`, `"Infinity"`),
//! `{"bool":true}`, `{"date":ms}`, `{"set":[scalar…]}`,
//! `{"map":[[key,scalar]…]}`, `{"text":"…"}`, `{"ref":"/a/b/c"}`; changes
//! and schemas as the SDK's `Change` and `WireSchema` objects.

use ibex_core::text::Splice;
use ibex_core::value::Fields;
use ibex_core::{Change, Scalar, Schema, UpgradeStep, Value};

use super::Json;

pub fn scalar(s: &Scalar) -> Json {
    match s {
        Scalar::Bool(b) => Json::obj([("bool", Json::Bool(*b))]),
        Scalar::Num(n) => Json::obj([("num", Json::num(*n))]),
        Scalar::Str(s) => Json::obj([("str", Json::str(s))]),
    }
}

pub fn value(v: &Value) -> Json {
    let (tag, body) = match v {
        Value::Str(s) => ("str", Json::str(s)),
        Value::Num(n) => ("num", Json::num(*n)),
        Value::Bool(b) => ("bool", Json::Bool(*b)),
        Value::Date(d) => ("date", Json::int(*d)),
        Value::Set(s) => ("set", Json::arr(s.iter().map(scalar))),
        Value::Map(m) => ("map", Json::arr(m.iter().map(|(k, v)| Json::arr([Json::str(k), scalar(v)])))),
        Value::Text(s) => ("text", Json::str(s)),
        Value::Ref(s) => ("ref", Json::str(s)),
    };
    Json::obj([(tag, body)])
}

/// Fields in their encoded order (names ascending by UTF-8 bytes).
pub fn fields(f: &Fields) -> Json {
    Json::arr(f.iter().map(|(k, v)| Json::arr([Json::str(k), value(v)])))
}

fn splice(s: &Splice) -> Json {
    Json::obj([("pos", Json::int(s.pos)), ("delete", Json::int(s.delete)), ("insert", Json::str(&s.insert))])
}

pub fn change(c: &Change) -> Json {
    let op = |name: &str| ("op", Json::str(name));
    let field = |f: &str| ("field", Json::str(f));
    match c {
        Change::Put { field: f, value: v } => Json::obj([op("put"), field(f), ("value", value(v))]),
        Change::Remove { field: f } => Json::obj([op("remove"), field(f)]),
        Change::SetAdd { field: f, elems } => Json::obj([op("setAdd"), field(f), ("elems", Json::arr(elems.iter().map(scalar)))]),
        Change::SetRemove { field: f, elems } => Json::obj([op("setRemove"), field(f), ("elems", Json::arr(elems.iter().map(scalar)))]),
        Change::MapPut { field: f, key, value: v } => Json::obj([op("mapPut"), field(f), ("key", Json::str(key)), ("value", scalar(v))]),
        Change::MapRemove { field: f, key } => Json::obj([op("mapRemove"), field(f), ("key", Json::str(key))]),
        Change::Text { field: f, splices } => Json::obj([op("text"), field(f), ("splices", Json::arr(splices.iter().map(splice)))]),
        Change::Deleted(d) => Json::obj([op("deleted"), ("deleted", Json::Bool(*d))]),
    }
}

pub fn changes(cs: &[Change]) -> Json {
    Json::arr(cs.iter().map(change))
}

pub fn step(s: &UpgradeStep) -> Json {
    match s {
        UpgradeStep::Rename { from, to } => Json::obj([("rename", Json::obj([("from", Json::str(from)), ("to", Json::str(to))]))]),
        UpgradeStep::Remove { field } => Json::obj([("remove", Json::str(field))]),
        UpgradeStep::Convert { field, to } => Json::obj([("convert", Json::obj([("field", Json::str(field)), ("to", Json::str(to.name()))]))]),
    }
}

/// The SDK's `WireSchema`.
pub fn schema(s: &Schema) -> Json {
    let field = |(name, def): (&String, &ibex_core::FieldDef)| {
        let mut f = vec![("name", Json::str(name)), ("type", Json::str(def.ty.name())), ("required", Json::Bool(def.required))];
        if let Some(d) = &def.default {
            f.push(("default", value(d)));
        }
        Json::obj(f)
    };
    Json::obj([("ns", Json::str(&s.ns)), ("version", Json::int(s.version)), ("fields", Json::arr(s.fields.iter().map(field))), ("upgrade", Json::arr(s.upgrade.iter().map(step)))])
}
