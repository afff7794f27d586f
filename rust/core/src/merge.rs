//! Three-way merge of item values, field by field (DESIGN.md §4).
//!
//! `merge3(base, earlier, later)`: `earlier` and `later` are two values that
//! both descend from `base`; "later" is the side whose tip sorts last by
//! `(timestamp, commit id)`. Per field, a side that did not change the field
//! from the base does not vote. When both changed it:
//!
//! | type                                 | rule                                                   |
//! |--------------------------------------|--------------------------------------------------------|
//! | string, number, boolean, date, ref   | later wins; an edit beats a removal                    |
//! | set                                  | union of additions; a removal on either side applies   |
//! | map                                  | per key, as for primitives                             |
//! | text                                 | character-level three-way merge (`text::merge3`)       |
//!
//! The soft-delete flag is merged like a boolean field. The function is pure,
//! so every replica holding the same commits computes the same value.

use std::collections::{BTreeMap, BTreeSet};

use crate::text;
use crate::value::{ItemData, Scalar, Value};

/// Merges two descendants of `base`.
pub fn merge3(base: &ItemData, earlier: &ItemData, later: &ItemData) -> ItemData {
    let deleted = primitive(Some(&base.deleted), Some(&earlier.deleted), Some(&later.deleted)).copied().unwrap_or(false);
    let names: BTreeSet<&String> = base.fields.keys().chain(earlier.fields.keys()).chain(later.fields.keys()).collect();
    let mut fields = BTreeMap::new();
    for name in names {
        if let Some(v) = merge_field(base.fields.get(name), earlier.fields.get(name), later.fields.get(name)) {
            fields.insert(name.clone(), v);
        }
    }
    let mut out = ItemData { deleted, fields };
    out.normalize();
    out
}

fn merge_field(b: Option<&Value>, x: Option<&Value>, y: Option<&Value>) -> Option<Value> {
    if x == y || y == b {
        return x.cloned();
    }
    if x == b {
        return y.cloned();
    }
    // Both sides changed the field.
    let (empty_set, empty_map) = (BTreeSet::new(), BTreeMap::new());
    let any_is = |f: fn(&Value) -> bool| [b, x, y].into_iter().flatten().any(f);
    if any_is(|v| matches!(v, Value::Set(_)))
        && let (Some(sb), Some(sx), Some(sy)) = (as_set(b, &empty_set), as_set(x, &empty_set), as_set(y, &empty_set))
    {
        let kept: BTreeSet<Scalar> = sb.iter().filter(|e| sx.contains(e) && sy.contains(e)).cloned().collect();
        let added = sx.difference(sb).chain(sy.difference(sb)).cloned();
        return Some(Value::Set(kept.into_iter().chain(added).collect()));
    }
    if any_is(|v| matches!(v, Value::Map(_)))
        && let (Some(mb), Some(mx), Some(my)) = (as_map(b, &empty_map), as_map(x, &empty_map), as_map(y, &empty_map))
    {
        let keys: BTreeSet<&String> = mb.keys().chain(mx.keys()).chain(my.keys()).collect();
        let merged = keys.into_iter().filter_map(|k| primitive(mb.get(k), mx.get(k), my.get(k)).map(|v| (k.clone(), v.clone()))).collect();
        return Some(Value::Map(merged));
    }
    if any_is(|v| matches!(v, Value::Text(_)))
        && let (Some(tb), Some(tx), Some(ty)) = (as_text(b), as_text(x), as_text(y))
    {
        return Some(Value::Text(text::merge3(tb, tx, ty)));
    }
    primitive(b, x, y).cloned()
}

// An absent field reads as an empty collection, so adding to a field that was
// absent in the base merges like adding to an empty one.
fn as_set<'a>(v: Option<&'a Value>, empty: &'a BTreeSet<Scalar>) -> Option<&'a BTreeSet<Scalar>> {
    match v {
        Some(Value::Set(s)) => Some(s),
        None => Some(empty),
        _ => None,
    }
}

fn as_map<'a>(v: Option<&'a Value>, empty: &'a BTreeMap<String, Scalar>) -> Option<&'a BTreeMap<String, Scalar>> {
    match v {
        Some(Value::Map(m)) => Some(m),
        None => Some(empty),
        _ => None,
    }
}

fn as_text(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::Text(t)) => Some(t),
        None => Some(""),
        _ => None,
    }
}

/// Later wins, except that an edit beats a removal.
fn primitive<'a, T: PartialEq>(b: Option<&'a T>, x: Option<&'a T>, y: Option<&'a T>) -> Option<&'a T> {
    if x == y || y == b {
        return x;
    }
    if x == b {
        return y;
    }
    y.or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(pairs: &[(&str, Value)]) -> ItemData {
        ItemData::new(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }
    fn s(x: &str) -> Scalar {
        Scalar::Str(x.into())
    }

    #[test]
    fn unchanged_side_does_not_vote() {
        let base = d(&[("a", Value::Num(1.0)), ("b", Value::Num(1.0))]);
        let x = d(&[("a", Value::Num(2.0)), ("b", Value::Num(1.0))]);
        let y = d(&[("a", Value::Num(1.0)), ("b", Value::Num(3.0))]);
        assert_eq!(merge3(&base, &x, &y), d(&[("a", Value::Num(2.0)), ("b", Value::Num(3.0))]));
    }

    #[test]
    fn later_wins_and_edit_beats_removal() {
        let base = d(&[("a", Value::Str("o".into()))]);
        let x = d(&[("a", Value::Str("x".into()))]);
        let y = d(&[("a", Value::Str("y".into()))]);
        assert_eq!(merge3(&base, &x, &y), y);
        assert_eq!(merge3(&base, &y, &x), x);
        let removed = d(&[]);
        assert_eq!(merge3(&base, &x, &removed), x);
        assert_eq!(merge3(&base, &removed, &x), x);
    }

    #[test]
    fn sets_union_additions_and_apply_removals() {
        let base = d(&[("t", Value::Set([s("a"), s("b")].into()))]);
        let x = d(&[("t", Value::Set([s("a"), s("c")].into()))]); // removed b, added c
        let y = d(&[("t", Value::Set([s("a"), s("b"), s("d")].into()))]); // kept b, added d
        assert_eq!(merge3(&base, &x, &y), d(&[("t", Value::Set([s("a"), s("c"), s("d")].into()))]));
        assert_eq!(merge3(&base, &y, &x), merge3(&base, &x, &y));
    }

    #[test]
    fn maps_merge_per_key() {
        let m = |p: &[(&str, &str)]| Value::Map(p.iter().map(|(k, v)| (k.to_string(), s(v))).collect());
        let base = d(&[("m", m(&[("k", "0"), ("j", "0")]))]);
        let x = d(&[("m", m(&[("k", "x")]))]); // changed k, removed j
        let y = d(&[("m", m(&[("k", "y"), ("j", "y"), ("n", "y")]))]);
        assert_eq!(merge3(&base, &x, &y), d(&[("m", m(&[("k", "y"), ("j", "y"), ("n", "y")]))]));
        let y2 = d(&[("m", m(&[("k", "0"), ("j", "0"), ("n", "y")]))]);
        assert_eq!(merge3(&base, &x, &y2), d(&[("m", m(&[("k", "x"), ("n", "y")]))]));
    }

    #[test]
    fn text_merges_by_character() {
        let base = d(&[("t", Value::Text("the cat".into()))]);
        let x = d(&[("t", Value::Text("the black cat".into()))]);
        let y = d(&[("t", Value::Text("the cat sat".into()))]);
        assert_eq!(merge3(&base, &x, &y), d(&[("t", Value::Text("the black cat sat".into()))]));
    }

    #[test]
    fn deleted_flag_is_merged_like_a_field() {
        let base = d(&[("a", Value::Num(1.0))]);
        let mut x = base.clone();
        x.deleted = true;
        let y = d(&[("a", Value::Num(2.0))]);
        let m = merge3(&base, &x, &y);
        assert!(m.deleted);
        assert_eq!(m.fields.get("a"), Some(&Value::Num(2.0)));
    }
}
