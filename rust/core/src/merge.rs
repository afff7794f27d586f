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
use std::sync::Arc;

use crate::commit::CommitId;
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

/// Where a leaf sorts in a merge: `(timestamp, commit id)`.
pub type Order = (i64, CommitId);

#[derive(Debug, Clone)]
struct Winner<T> {
    /// The latest leaf that set a value different from the base, and it.
    edit: Option<(Order, T)>,
    /// Some leaf removed the value (an edit beats a removal).
    removed: bool,
}

impl<T> Default for Winner<T> {
    fn default() -> Self {
        Winner { edit: None, removed: false }
    }
}

impl<T: Clone + PartialEq> Winner<T> {
    fn vote(&mut self, order: Order, v: Option<&T>) {
        match v {
            Some(v) => {
                if self.edit.as_ref().is_none_or(|(o, _)| *o < order) {
                    self.edit = Some((order, v.clone()));
                }
            }
            None => self.removed = true,
        }
    }

    fn value<'a>(&'a self, base: Option<&'a T>) -> Option<&'a T> {
        match &self.edit {
            Some((_, v)) => Some(v),
            None if self.removed => None,
            None => base,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Primitive,
    Set,
    Map,
}

/// The merge of many concurrent leaves that all descend directly from the
/// same base — W writers editing the same version — kept up to date one
/// leaf at a time, in any order, at a cost proportional to what each leaf
/// changed (plus a comparison of the leaf with the base), not to W.
///
/// Folding such leaves pairwise with [`merge3`] (in `(timestamp, id)`
/// order, each step against the same base) has an order-independent
/// closed form, kept per field: for primitives and map keys, the latest
/// edit wins, else a removal, else the base (`primitive`'s "later wins, an
/// edit beats a removal"), so one comparison per arrival decides a field
/// set by W writers; for sets, the base minus every removal plus every
/// addition (additions are never base elements and removals always are, so
/// they commute). Text fields have no such form (insertions at one position
/// are ordered by leaf), so a leaf that changes text (or a field's kind) is
/// refused and the caller folds pairwise instead. The result equals the
/// pairwise fold exactly (property-tested below and, through the
/// repository, in `tests/merge_laws.rs`).
#[derive(Debug, Clone)]
pub struct StarMerge {
    base: ItemData,
    /// The merged value, updated in place (copy-on-write when shared).
    value: Arc<ItemData>,
    kinds: BTreeMap<String, Kind>,
    prims: BTreeMap<String, Winner<Value>>,
    maps: BTreeMap<String, BTreeMap<String, Winner<Scalar>>>,
    leaves: usize,
}

fn kind_of(b: Option<&Value>, x: Option<&Value>) -> Option<Kind> {
    match (b, x) {
        (Some(Value::Text(_)), _) | (_, Some(Value::Text(_))) => None,
        (Some(Value::Set(_)) | None, Some(Value::Set(_)) | None) if matches!(b, Some(Value::Set(_))) || matches!(x, Some(Value::Set(_))) => Some(Kind::Set),
        (Some(Value::Map(_)) | None, Some(Value::Map(_)) | None) if matches!(b, Some(Value::Map(_))) || matches!(x, Some(Value::Map(_))) => Some(Kind::Map),
        (Some(Value::Set(_) | Value::Map(_)), _) | (_, Some(Value::Set(_) | Value::Map(_))) => None,
        _ => Some(Kind::Primitive),
    }
}

impl StarMerge {
    pub fn new(base: ItemData) -> StarMerge {
        let value = Arc::new(base.clone());
        StarMerge { base, value, kinds: BTreeMap::new(), prims: BTreeMap::new(), maps: BTreeMap::new(), leaves: 0 }
    }

    /// Number of leaves added.
    pub fn len(&self) -> usize {
        self.leaves
    }

    pub fn is_empty(&self) -> bool {
        self.leaves == 0
    }

    /// Adds a leaf's value (in the base's schema version). False when the
    /// leaf changes something this form cannot merge (text, a field's
    /// kind); nothing is changed then.
    #[must_use]
    pub fn add(&mut self, order: Order, v: &ItemData) -> bool {
        let names: BTreeSet<&String> = self.base.fields.keys().chain(v.fields.keys()).collect();
        let mut changed = Vec::new();
        // Check first, so a refused leaf leaves the merge untouched.
        for name in names {
            let (b, x) = (self.base.fields.get(name), v.fields.get(name));
            if b == x {
                continue;
            }
            let Some(kind) = kind_of(b, x) else { return false };
            if self.kinds.get(name).is_some_and(|k| *k != kind) {
                return false;
            }
            changed.push((name, kind, b, x));
        }
        let value = Arc::make_mut(&mut self.value);
        if v.deleted != self.base.deleted {
            value.deleted = v.deleted;
        }
        let (empty_set, empty_map) = (BTreeSet::new(), BTreeMap::new());
        for (name, kind, b, x) in changed {
            self.kinds.insert(name.clone(), kind);
            match kind {
                Kind::Set => {
                    let (bs, xs) = (as_set(b, &empty_set).unwrap_or(&empty_set), as_set(x, &empty_set).unwrap_or(&empty_set));
                    let slot = value.fields.entry(name.clone()).or_insert_with(|| Value::Set(BTreeSet::new()));
                    if let Value::Set(set) = slot {
                        set.extend(xs.difference(bs).cloned());
                        for gone in bs.difference(xs) {
                            set.remove(gone);
                        }
                    }
                }
                Kind::Map => {
                    let (bm, xm) = (as_map(b, &empty_map).unwrap_or(&empty_map), as_map(x, &empty_map).unwrap_or(&empty_map));
                    let keys = self.maps.entry(name.clone()).or_default();
                    let slot = value.fields.entry(name.clone()).or_insert_with(|| Value::Map(BTreeMap::new()));
                    let Value::Map(m) = slot else { continue };
                    for k in bm.keys().chain(xm.keys()).collect::<BTreeSet<_>>() {
                        if bm.get(k) == xm.get(k) {
                            continue;
                        }
                        let w = keys.entry(k.clone()).or_default();
                        w.vote(order, xm.get(k));
                        match w.value(bm.get(k)) {
                            Some(s) => m.insert(k.clone(), s.clone()),
                            None => m.remove(k),
                        };
                    }
                }
                Kind::Primitive => {
                    let w = self.prims.entry(name.clone()).or_default();
                    w.vote(order, x);
                    match w.value(b) {
                        Some(s) => value.fields.insert(name.clone(), s.clone()),
                        None => value.fields.remove(name),
                    };
                }
            }
            if value.fields.get(name).is_some_and(Value::is_empty_collection) {
                value.fields.remove(name);
            }
        }
        self.leaves += 1;
        true
    }

    /// The merged value of every leaf added so far (shared, not copied).
    pub fn value(&self) -> Arc<ItemData> {
        self.value.clone()
    }
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

    use proptest::prelude::*;

    fn scalar() -> impl Strategy<Value = Scalar> {
        prop_oneof![(0u8..4).prop_map(|i| Scalar::Str(format!("e{i}"))), (0u8..3).prop_map(|i| Scalar::Num(f64::from(i)))]
    }

    fn value() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![Just(None), (0u8..3).prop_map(|i| Some(Value::Str(format!("s{i}")))), (0u8..3).prop_map(|i| Some(Value::Num(f64::from(i)))), any::<bool>().prop_map(|b| Some(Value::Bool(b))),]
    }

    fn item() -> impl Strategy<Value = ItemData> {
        (value(), value(), proptest::collection::btree_set(scalar(), 0..4), proptest::collection::btree_map("[ab]", scalar(), 0..3), any::<bool>()).prop_map(|(a, b, set, map, deleted)| {
            let mut f = BTreeMap::new();
            if let Some(a) = a {
                f.insert("a".to_owned(), a);
            }
            if let Some(b) = b {
                f.insert("b".to_owned(), b);
            }
            f.insert("tags".to_owned(), Value::Set(set));
            f.insert("attrs".to_owned(), Value::Map(map));
            let mut d = ItemData::new(f);
            d.deleted = deleted;
            d
        })
    }

    proptest! {
        /// Leaves of one base added in any order give exactly the pairwise
        /// fold in (timestamp, id) order.
        #[test]
        fn star_merge_equals_the_pairwise_fold_in_any_order(base in item(), leaves in proptest::collection::vec(item(), 1..12), shuffle in any::<u64>()) {
            let order = |i: usize| (i as i64 / 2, CommitId([i as u8; 32]));
            let mut fold = leaves[0].clone();
            for l in &leaves[1..] {
                fold = merge3(&base, &fold, l);
            }
            let mut idx: Vec<usize> = (0..leaves.len()).collect();
            let mut s = shuffle | 1;
            for i in (1..idx.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                idx.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut star = StarMerge::new(base.clone());
            for i in idx {
                prop_assert!(star.add(order(i), &leaves[i]));
            }
            prop_assert_eq!(&*star.value(), &fold);
        }
    }

    #[test]
    fn star_merge_refuses_text_and_changes_nothing() {
        let base = d(&[("t", Value::Text("ab".into())), ("n", Value::Num(1.0))]);
        let mut star = StarMerge::new(base.clone());
        assert!(star.add((1, CommitId([1; 32])), &d(&[("t", Value::Text("ab".into())), ("n", Value::Num(2.0))])));
        assert!(!star.add((2, CommitId([2; 32])), &d(&[("t", Value::Text("abc".into())), ("n", Value::Num(3.0))])));
        assert_eq!(*star.value(), d(&[("t", Value::Text("ab".into())), ("n", Value::Num(2.0))]));
        assert_eq!(star.len(), 1);
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
