//! Character-level diff and three-way merge for `text` fields.
//!
//! A change to a text is a list of [`Splice`]s against the *base* text:
//! positions count Unicode scalar values (Rust `char`s) of the base, splices
//! are sorted and separated by at least one unchanged character (adjacent
//! edits are one splice), and each splice changes something. This is the
//! canonical form both the diff produces and the decoder requires.
//!
//! Three-way merge: deletions of base text from either side apply; both
//! sides' insertions are kept; two insertions at the same base position are
//! ordered earlier side first, and kept once when identical.

use std::collections::BTreeMap;

use similar::{Algorithm, DiffOp, capture_diff_slices};

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};

/// Replace `delete` characters of the base at `pos` with `insert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splice {
    pub pos: u32,
    pub delete: u32,
    pub insert: String,
}

/// The eight bytes of `s` at `at` as one word.
fn word(s: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"))
}

/// Length in bytes of the longest common prefix of `a` and `b` that ends on
/// a character boundary of both.
fn common_prefix(a: &str, b: &str) -> usize {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let max = x.len().min(y.len());
    // Eight bytes at a time, then bytes: every keystroke in a long text is
    // diffed against the text before it, and a byte loop was a fifth of
    // the engine's time writing (W4 profile).
    let mut n = 0;
    while n + 8 <= max && word(x, n) == word(y, n) {
        n += 8;
    }
    while n < max && x[n] == y[n] {
        n += 1;
    }
    // Equal bytes up to `n`: a boundary in `a` is one in `b`.
    (0..=n).rev().find(|&i| a.is_char_boundary(i)).unwrap_or(0)
}

/// Length in bytes of the longest common suffix of `a` and `b` that starts
/// on a character boundary of both.
fn common_suffix(a: &str, b: &str) -> usize {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let max = x.len().min(y.len());
    let mut n = 0;
    while n + 8 <= max && word(x, x.len() - n - 8) == word(y, y.len() - n - 8) {
        n += 8;
    }
    while n < max && x[x.len() - n - 1] == y[y.len() - n - 1] {
        n += 1;
    }
    (0..=n).rev().find(|&i| a.is_char_boundary(a.len() - i)).unwrap_or(0)
}

/// The splices that turn `base` into `new`.
///
/// The common prefix and suffix are stripped first (byte comparisons), so
/// an edit in a long text diffs only the characters around it; Myers runs
/// on what is left.
pub fn diff(base: &str, new: &str) -> Vec<Splice> {
    if base == new {
        return Vec::new();
    }
    let pre = common_prefix(base, new);
    let suf = common_suffix(&base[pre..], &new[pre..]);
    let offset = base[..pre].chars().count();
    let a: Vec<char> = base[pre..base.len() - suf].chars().collect();
    let b: Vec<char> = new[pre..new.len() - suf].chars().collect();
    let mut out: Vec<Splice> = Vec::new();
    // Insert ops from `similar` do not carry a reliable base position, so the
    // position in the base is tracked from the ops that consume base text.
    let mut old_pos = 0usize;
    for op in capture_diff_slices(Algorithm::Myers, &a, &b) {
        let (pos, del, ins) = match op {
            DiffOp::Equal { old_index, len, .. } => {
                old_pos = old_index + len;
                continue;
            }
            DiffOp::Delete { old_index, old_len, .. } => (old_index, old_len, 0..0),
            DiffOp::Insert { new_index, new_len, .. } => (old_pos, 0, new_index..new_index + new_len),
            DiffOp::Replace { old_index, old_len, new_index, new_len } => (old_index, old_len, new_index..new_index + new_len),
        };
        old_pos = pos + del;
        let insert: String = b[ins].iter().collect();
        let pos = pos + offset;
        match out.last_mut() {
            // Adjacent edits become one splice (canonical form).
            Some(last) if (last.pos + last.delete) as usize == pos => {
                last.delete += del as u32;
                last.insert.push_str(&insert);
            }
            _ => out.push(Splice { pos: pos as u32, delete: del as u32, insert }),
        }
    }
    out
}

/// Checks the canonical-form rules against a base of `base_len` characters.
pub fn check(splices: &[Splice], base_len: usize) -> std::result::Result<(), String> {
    let mut min_pos: u64 = 0;
    for s in splices {
        if s.delete == 0 && s.insert.is_empty() {
            return Err("empty splice".into());
        }
        if u64::from(s.pos) < min_pos {
            return Err("splices overlap, touch, or are not sorted".into());
        }
        let end = u64::from(s.pos) + u64::from(s.delete);
        if end > base_len as u64 {
            return Err(format!("splice at {} deleting {} goes past the end of the {base_len}-character text", s.pos, s.delete));
        }
        min_pos = end + 1;
    }
    Ok(())
}

/// Applies splices made against `base`. External input: every position is
/// checked, nothing panics.
///
/// Works on bytes: character positions become byte offsets by walking the
/// text once (not at all for ASCII), so a keystroke in a long text costs a
/// copy of it, not a decode into characters.
pub fn apply(base: &str, splices: &[Splice]) -> std::result::Result<String, String> {
    let ascii = base.is_ascii();
    check(splices, if ascii { base.len() } else { base.chars().count() })?;
    let mut out = String::with_capacity(base.len() + splices.iter().map(|s| s.insert.len()).sum::<usize>());
    // (character position, byte offset) reached so far in `base`.
    let mut cursor = (0usize, 0usize);
    let mut byte_of = |pos: usize| -> usize {
        if ascii {
            return pos;
        }
        let (cp, cb) = cursor;
        // `check` bounded every position by the character count.
        let b = base[cb..].char_indices().nth(pos - cp).map_or(base.len(), |(i, _)| cb + i);
        cursor = (pos, b);
        b
    };
    let mut at = 0usize;
    for s in splices {
        let from = byte_of(s.pos as usize);
        out.push_str(&base[at..from]);
        out.push_str(&s.insert);
        at = byte_of((s.pos + s.delete) as usize);
    }
    out.push_str(&base[at..]);
    Ok(out)
}

/// Three-way merge of two texts derived from `base`; `earlier` is the side
/// that sorts first by (timestamp, commit id), so its insertions go first.
pub fn merge3(base: &str, earlier: &str, later: &str) -> String {
    if earlier == later {
        return earlier.to_owned();
    }
    if earlier == base {
        return later.to_owned();
    }
    if later == base {
        return earlier.to_owned();
    }
    let chars: Vec<char> = base.chars().collect();
    let mut deleted = vec![false; chars.len()];
    let mut inserts: [BTreeMap<usize, String>; 2] = Default::default();
    for (side, text) in [earlier, later].into_iter().enumerate() {
        for s in diff(base, text) {
            deleted[s.pos as usize..(s.pos + s.delete) as usize].iter_mut().for_each(|d| *d = true);
            if !s.insert.is_empty() {
                inserts[side].insert(s.pos as usize, s.insert);
            }
        }
    }
    let mut out = String::with_capacity(earlier.len().max(later.len()));
    for i in 0..=chars.len() {
        let (a, b) = (inserts[0].get(&i), inserts[1].get(&i));
        if let Some(a) = a {
            out.push_str(a);
        }
        if let Some(b) = b
            && a != Some(b)
        {
            out.push_str(b);
        }
        if i < chars.len() && !deleted[i] {
            out.push(chars[i]);
        }
    }
    out
}

pub fn encode(w: &mut Writer, splices: &[Splice]) {
    w.varint(splices.len() as u64);
    for s in splices {
        w.varint(s.pos.into());
        w.varint(s.delete.into());
        w.str(&s.insert);
    }
}

/// Decodes splices; the canonical-form rules are checked against the base
/// when they are applied (the base length is not known here), except the
/// ones that need no base.
pub fn decode(r: &mut Reader) -> Result<Vec<Splice>> {
    let n = r.count("splice count", 3)?;
    let mut out: Vec<Splice> = Vec::with_capacity(n);
    // Checked as they arrive, against the previous splice only: linear in
    // the input (re-checking the whole prefix per splice was quadratic).
    let mut min_pos: u64 = 0;
    for _ in 0..n {
        let at = r.offset();
        let s = Splice { pos: r.u32("splice position")?, delete: r.u32("splice length")?, insert: r.str("splice text")?.to_owned() };
        if s.delete == 0 && s.insert.is_empty() {
            return Err(Error::decode("text splices: empty splice", at));
        }
        if u64::from(s.pos) < min_pos {
            return Err(Error::decode("text splices: splices overlap, touch, or are not sorted", at));
        }
        min_pos = u64::from(s.pos) + u64::from(s.delete) + 1;
        out.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn diff_is_minimal_and_canonical() {
        let d = diff("hello world", "hello brave world");
        assert_eq!(d, vec![Splice { pos: 6, delete: 0, insert: "brave ".into() }]);
        let d = diff("abcdef", "aXcdeY");
        assert_eq!(d.len(), 2);
        check(&d, 6).unwrap();
        assert!(diff("same", "same").is_empty());
    }

    #[test]
    fn merge_keeps_both_insertions_and_applies_deletions() {
        assert_eq!(merge3("The cat", "The black cat", "The cat sat"), "The black cat sat");
        // Same position: earlier side first.
        assert_eq!(merge3("ab", "aXb", "aYb"), "aXYb");
        // Identical concurrent edits are kept once.
        assert_eq!(merge3("ab", "aXb", "aXb"), "aXb");
        // Delete on one side, insert inside the deleted range on the other: the insert survives.
        assert_eq!(merge3("abcdef", "af", "abcXdef"), "aXf");
        // Deletions from both sides apply.
        assert_eq!(merge3("abcdef", "bcdef", "abcde"), "bcde");
        assert_eq!(merge3("héllo wörld", "héllo", "hé wörld!"), "hé!");
    }

    #[test]
    fn regression_insert_positions_follow_base_cursor() {
        // Minimized by proptest: `similar` reports a stale base index for
        // inserts that follow a delete.
        let (a, b) = ("aaaé a  caéa aéaaaa", "  b   éé c ééaa  é b ");
        let d = diff(a, b);
        check(&d, a.chars().count()).unwrap();
        assert_eq!(apply(a, &d).unwrap(), b);
    }

    #[test]
    fn bad_splices_are_errors_not_panics() {
        assert!(apply("abc", &[Splice { pos: 2, delete: 5, insert: String::new() }]).is_err());
        assert!(apply("abc", &[Splice { pos: 9, delete: 0, insert: "x".into() }]).is_err());
        assert!(apply("abc", &[Splice { pos: 2, delete: 0, insert: "x".into() }, Splice { pos: 1, delete: 0, insert: "y".into() }]).is_err());
        assert!(apply("abc", &[Splice { pos: 1, delete: 0, insert: String::new() }]).is_err());
    }

    proptest! {
        #[test]
        fn diff_then_apply_roundtrips(a in "[abc é🐐]{0,40}", b in "[abc é🐐]{0,40}") {
            let d = diff(&a, &b);
            prop_assert!(check(&d, a.chars().count()).is_ok());
            prop_assert_eq!(apply(&a, &d).unwrap(), b.clone());
            let mut w = Writer::new();
            encode(&mut w, &d);
            let bytes = w.into_bytes();
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(decode(&mut r).unwrap(), d);
        }

        #[test]
        fn an_edit_inside_long_shared_text_roundtrips(p in "[abc é🐐]{0,60}", x in "[aé🐐]{0,6}", y in "[aé🐐]{0,6}", s in "[abc é🐐]{0,60}") {
            // The prefix and suffix are compared eight bytes at a time; the
            // cut must still land on character boundaries of both texts.
            let (a, b) = (format!("{p}{x}{s}"), format!("{p}{y}{s}"));
            let d = diff(&a, &b);
            prop_assert!(check(&d, a.chars().count()).is_ok());
            prop_assert_eq!(apply(&a, &d).unwrap(), b.clone());
            prop_assert!(d.iter().all(|sp| sp.pos as usize >= p.chars().count()), "{d:?}");
        }

        #[test]
        fn merge_with_unchanged_side_is_the_other_side(base in "[ab]{0,20}", x in "[abc]{0,20}") {
            prop_assert_eq!(merge3(&base, &base, &x), x.clone());
            prop_assert_eq!(merge3(&base, &x, &base), x);
        }

        #[test]
        fn merge_keeps_every_inserted_character(base in "[ab]{0,12}", x in "[abX]{0,12}", y in "[abY]{0,12}") {
            let m = merge3(&base, &x, &y);
            // Characters only one side could have inserted survive.
            prop_assert_eq!(m.matches('X').count(), x.matches('X').count());
            prop_assert_eq!(m.matches('Y').count(), y.matches('Y').count());
        }
    }
}
