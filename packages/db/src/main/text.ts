// Text splices in the mirror. The wire (and the Rust core, text.rs) counts
// positions in Unicode scalar values; JavaScript strings index UTF-16 code
// units. The two agree unless the text holds characters outside the Basic
// Multilingual Plane (surrogate pairs), so the conversion only scans the
// text when it does — an editor replaying keystrokes on a long ASCII text
// pays O(1) per splice for the positions.

import type { Splice } from "../wire/codec.js";

const SURROGATE = /[\uD800-\uDFFF]/;

export function hasSurrogates(s: string): boolean {
  return SURROGATE.test(s);
}

/** The code point index of UTF-16 index `i` of `s` (`i` not inside a pair). */
export function toCodePoints(s: string, i: number): number {
  let n = 0;
  for (let j = 0; j < i; j++) {
    const c = s.charCodeAt(j);
    if (c < 0xdc00 || c > 0xdfff) n++;
  }
  return n;
}

/** The UTF-16 index of code point index `cp` of `s`. */
function toUtf16(s: string, cp: number): number {
  let j = 0;
  for (let n = 0; n < cp && j < s.length; n++) {
    const c = s.charCodeAt(j);
    j += c >= 0xd800 && c <= 0xdbff && j + 1 < s.length ? 2 : 1;
  }
  return j;
}

/** True if UTF-16 index `i` falls between the halves of a surrogate pair. */
export function splitsPair(s: string, i: number): boolean {
  if (i <= 0 || i >= s.length) return false;
  const a = s.charCodeAt(i - 1);
  const b = s.charCodeAt(i);
  return a >= 0xd800 && a <= 0xdbff && b >= 0xdc00 && b <= 0xdfff;
}

/** Applies splices (code point positions against `s`, sorted, disjoint:
 * the wire's canonical form) to `s`. `plain` = `s` has no surrogates. */
export function applySplices(s: string, splices: readonly Splice[], plain: boolean): string {
  let out = "";
  let at = 0;
  for (const sp of splices) {
    const from = plain ? sp.pos : toUtf16(s, sp.pos);
    const to = plain ? sp.pos + sp.delete : from + toUtf16(s.slice(from), sp.delete);
    out += s.slice(at, from) + sp.insert;
    at = to;
  }
  return out + s.slice(at);
}
