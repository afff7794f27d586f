// The bytes that cross between the main thread and the engine, written and
// read exactly as the Rust side does (rust/core/src/{codec,value,change,
// schema}.rs, rust/wasm/src/batch.rs — the formats are documented there).
// Sets, map keys and field names are sorted by UTF-8 bytes, as in Rust.
// Golden vectors written by the Rust tests (test/golden/*.json) hold both
// sides to the same bytes: see test/golden_codec.test.ts.
//
// Strings must be well-formed UTF-16 (main/schema.ts refuses others before
// anything is encoded): UTF-8 has no encoding for a lone surrogate, and
// TextEncoder would write U+FFFD for each, silently changing the value.

import { IbexError } from "./errors.js";

export type Scalar = string | number | boolean;

/** A field value as the engine sees it. */
export type Value =
  | { t: "string"; v: string }
  | { t: "number"; v: number }
  | { t: "boolean"; v: boolean }
  | { t: "date"; v: number }
  | { t: "set"; v: Scalar[] }
  | { t: "map"; v: [string, Scalar][] }
  | { t: "text"; v: string }
  | { t: "ref"; v: string };

export interface Splice {
  pos: number;
  delete: number;
  insert: string;
}

export type Change =
  | { op: "put"; field: string; value: Value }
  | { op: "remove"; field: string }
  | { op: "setAdd"; field: string; elems: Scalar[] }
  | { op: "setRemove"; field: string; elems: Scalar[] }
  | { op: "mapPut"; field: string; key: string; value: Scalar }
  | { op: "mapRemove"; field: string; key: string }
  | { op: "text"; field: string; splices: Splice[] }
  | { op: "deleted"; deleted: boolean };

const TYPE_TAG = { string: 1, number: 2, boolean: 3, date: 4, set: 5, map: 6, text: 7, ref: 8 } as const;
const TAG_TYPE = ["", "string", "number", "boolean", "date", "set", "map", "text", "ref"] as const;

const encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is part of the string (Rust keeps it); by
// default TextDecoder would drop it. fatal: invalid UTF-8 is an error, as in
// Rust, not a U+FFFD.
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** |v| above which the zigzag of a negative `v` (2|v| - 1) is past 2^53 and
 * not exact as a number; dates reach 8.64e15. */
const ZIGZAG_EXACT = 2 ** 52;

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** Orders strings by their UTF-8 bytes (Rust's `str` order). */
export function compareUtf8(a: string, b: string): number {
  if (isAscii(a) && isAscii(b)) return a < b ? -1 : a > b ? 1 : 0;
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

function scalarRank(s: Scalar): number {
  return typeof s === "boolean" ? 0 : typeof s === "number" ? 1 : 2;
}

/** Rust's `Scalar` order: booleans < numbers < strings. */
export function compareScalar(a: Scalar, b: Scalar): number {
  const r = scalarRank(a) - scalarRank(b);
  if (r !== 0) return r;
  if (typeof a === "string") return compareUtf8(a, b as string);
  if (typeof a === "boolean") return Number(a) - Number(b as boolean);
  return (a as number) - (b as number);
}

export class Writer {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): void {
    this.reserve(1);
    this.buf[this.len++] = v;
  }

  /** Unsigned LEB128 of a non-negative safe integer. */
  varint(v: number): void {
    this.reserve(10);
    while (v >= 0x80) {
      this.buf[this.len++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.len++] = v;
  }

  zigzag(v: number): void {
    // 2v is exact for any integer; 2|v| - 1 only up to 2^53.
    if (v >= -ZIGZAG_EXACT) this.varint(v >= 0 ? v * 2 : -v * 2 - 1);
    else this.varintBig(BigInt(-v) * 2n - 1n);
  }

  private varintBig(v: bigint): void {
    this.reserve(10);
    while (v >= 0x80n) {
      this.buf[this.len++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.len++] = Number(v);
  }

  f64(v: number): void {
    this.reserve(8);
    this.view.setFloat64(this.len, v, true);
    this.len += 8;
  }

  str(s: string): void {
    if (isAscii(s)) {
      this.varint(s.length);
      this.reserve(s.length);
      for (let i = 0; i < s.length; i++) this.buf[this.len++] = s.charCodeAt(i);
      return;
    }
    this.bytes(encoder.encode(s));
  }

  bytes(b: Uint8Array): void {
    this.varint(b.length);
    this.raw(b);
  }

  raw(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Strings shorter than this decode through `CODES[length]`, a reused
 * array of char codes. */
const SHORT = 32;
const CODES: number[][] = Array.from({ length: SHORT }, (_, n) => new Array<number>(n).fill(0));

export class Reader {
  private view: DataView;
  pos = 0;

  constructor(private buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private fail(what: string): never {
    throw new IbexError("ERR_DECODE", `Decode error: ${what} at byte ${this.pos}`);
  }

  u8(what: string): number {
    if (this.pos >= this.buf.length) this.fail(`unexpected end reading ${what}`);
    return this.buf[this.pos++]!;
  }

  bool(what: string): boolean {
    const b = this.u8(what);
    if (b > 1) this.fail(`${what}: invalid boolean`);
    return b === 1;
  }

  varint(what: string): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.u8(what);
      v += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return v;
      mul *= 0x80;
    }
    return this.fail(`${what}: varint too large`);
  }

  zigzag(what: string): number {
    const start = this.pos;
    const v = this.varint(what);
    if (v <= Number.MAX_SAFE_INTEGER) return v % 2 === 0 ? v / 2 : -(v + 1) / 2;
    // Past 2^53 the sum in varint() rounded (dates before -2^52 ms): again, exactly.
    this.pos = start;
    let z = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const b = this.u8(what);
      z |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) break;
    }
    return Number((z >> 1n) ^ -(z & 1n));
  }

  f64(what: string): number {
    if (this.remaining < 8) this.fail(`unexpected end reading ${what}`);
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /** A value's number: finite and never -0 (one encoding per number). */
  number(what: string): number {
    const v = this.f64(what);
    if (!Number.isFinite(v) || Object.is(v, -0)) {
      this.pos -= 8;
      this.fail(`${what}: ${v === 0 ? "-0" : String(v)} is not a canonical number`);
    }
    return v;
  }

  take(n: number, what: string): Uint8Array {
    if (n > this.remaining) this.fail(`${what}: length ${n} exceeds the ${this.remaining} bytes left`);
    const s = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  str(what: string): string {
    const n = this.varint(what);
    if (n < SHORT) {
      // Short ASCII strings (keys, field names, most values) are common:
      // no TextDecoder, and no view of the bytes (an allocation each).
      if (n > this.remaining) this.fail(`${what}: length ${n} exceeds the ${this.remaining} bytes left`);
      const buf = this.buf;
      const p = this.pos;
      const codes = CODES[n]!;
      let i = 0;
      for (; i < n; i++) {
        const c = buf[p + i]!;
        if (c > 0x7f) break;
        codes[i] = c;
      }
      if (i === n) {
        this.pos = p + n;
        return String.fromCharCode.apply(null, codes);
      }
    }
    const b = this.take(n, what);
    try {
      return decoder.decode(b);
    } catch {
      this.pos -= n;
      return this.fail(`${what}: invalid UTF-8`);
    }
  }

  count(what: string, minSize: number): number {
    const n = this.varint(what);
    if (n * minSize > this.remaining) this.fail(`${what}: count ${n} exceeds the bytes left`);
    return n;
  }

  /** Skips a string (no view of its bytes is made). */
  skipStr(what: string): void {
    this.skip(this.varint(what), what);
  }

  skip(n: number, what: string): void {
    if (n > this.remaining) this.fail(`${what}: length ${n} exceeds the ${this.remaining} bytes left`);
    this.pos += n;
  }

  /** Reads a string that is usually one of `names` (UTF-8 bytes), looking
   * from index `from` on: its index, without decoding it (field names of
   * every item of a schema are the same few strings), else the string. */
  name(names: readonly Uint8Array[], from: number, what: string): number | string {
    const start = this.pos;
    const n = this.varint(what);
    if (n > this.remaining) this.fail(`${what}: length ${n} exceeds the ${this.remaining} bytes left`);
    const p = this.pos;
    const buf = this.buf;
    for (let i = from; i < names.length; i++) {
      const c = names[i]!;
      if (c.length !== n) continue;
      let k = 0;
      while (k < n && c[k] === buf[p + k]) k++;
      if (k === n) {
        this.pos = p + n;
        return i;
      }
    }
    this.pos = start;
    return this.str(what);
  }

  /** Whether the `n` bytes at `a` and at `b` are equal. */
  same(a: number, b: number, n: number): boolean {
    const buf = this.buf;
    for (let i = 0; i < n; i++) if (buf[a + i] !== buf[b + i]) return false;
    return true;
  }
}

// ---- values ---------------------------------------------------------------

function writeScalar(w: Writer, s: Scalar): void {
  if (typeof s === "boolean") {
    w.u8(1);
    w.u8(s ? 1 : 0);
  } else if (typeof s === "number") {
    w.u8(2);
    w.f64(s);
  } else {
    w.u8(3);
    w.str(s);
  }
}

export function readScalar(r: Reader): Scalar {
  const t = r.u8("scalar tag");
  if (t === 1) return r.bool("boolean");
  if (t === 2) return r.number("number");
  if (t === 3) return r.str("string");
  throw new IbexError("ERR_DECODE", `unknown scalar tag ${t}`);
}

function writeScalars(w: Writer, xs: Scalar[]): void {
  w.varint(xs.length);
  for (const x of xs) writeScalar(w, x);
}

function readScalars(r: Reader, what: string): Scalar[] {
  const n = r.count(what, 2);
  const out: Scalar[] = [];
  for (let i = 0; i < n; i++) out.push(readScalar(r));
  return out;
}

export function writeValue(w: Writer, v: Value): void {
  w.u8(TYPE_TAG[v.t]);
  switch (v.t) {
    case "string":
    case "text":
    case "ref":
      w.str(v.v);
      break;
    case "number":
      w.f64(v.v);
      break;
    case "boolean":
      w.u8(v.v ? 1 : 0);
      break;
    case "date":
      w.zigzag(v.v);
      break;
    case "set":
      writeScalars(w, v.v);
      break;
    case "map":
      w.varint(v.v.length);
      for (const [k, x] of v.v) {
        w.str(k);
        writeScalar(w, x);
      }
      break;
  }
}

export function readValue(r: Reader): Value {
  const tag = r.u8("value tag");
  const t = TAG_TYPE[tag];
  switch (t) {
    case "string":
    case "text":
    case "ref":
      return { t, v: r.str(t) };
    case "number":
      return { t, v: r.number("number") };
    case "boolean":
      return { t, v: r.bool("boolean") };
    case "date":
      return { t, v: r.zigzag("date") };
    // An empty collection is an absent field, never encoded (as in Rust).
    // The order of elements and keys is not re-checked: this side reads
    // only what the engine wrote.
    case "set": {
      const v = readScalars(r, "set");
      if (v.length === 0) throw new IbexError("ERR_DECODE", "empty set (an absent field is the canonical form)");
      return { t, v };
    }
    case "map": {
      const n = r.count("map size", 3);
      if (n === 0) throw new IbexError("ERR_DECODE", "empty map (an absent field is the canonical form)");
      const m: [string, Scalar][] = [];
      for (let i = 0; i < n; i++) m.push([r.str("map key"), readScalar(r)]);
      return { t, v: m };
    }
    default:
      throw new IbexError("ERR_DECODE", `unknown value tag ${tag}`);
  }
}

export function writeFields(w: Writer, fields: [string, Value][]): void {
  w.varint(fields.length);
  for (const [k, v] of fields) {
    w.str(k);
    writeValue(w, v);
  }
}

export function readFields(r: Reader): Map<string, Value> {
  const n = r.count("field count", 3);
  const out = new Map<string, Value>();
  for (let i = 0; i < n; i++) out.set(r.str("field name"), readValue(r));
  return out;
}

function skipScalar(r: Reader): void {
  const t = r.u8("scalar tag");
  if (t === 1) r.bool("boolean");
  else if (t === 2) r.skip(8, "number");
  else if (t === 3) r.skipStr("string");
  else throw new IbexError("ERR_DECODE", `unknown scalar tag ${t}`);
}

/** Moves past a field list (as `readFields` reads it) without decoding it. */
export function skipFields(r: Reader): void {
  const n = r.count("field count", 3);
  for (let i = 0; i < n; i++) {
    r.skipStr("field name");
    const tag = r.u8("value tag");
    switch (TAG_TYPE[tag]) {
      case "string":
      case "text":
      case "ref":
        r.skipStr(TAG_TYPE[tag]!);
        break;
      case "number":
        r.skip(8, "number");
        break;
      case "boolean":
        r.bool("boolean");
        break;
      case "date":
        r.varint("date");
        break;
      case "set": {
        const k = r.count("set", 2);
        for (let j = 0; j < k; j++) skipScalar(r);
        break;
      }
      case "map": {
        const k = r.count("map size", 3);
        for (let j = 0; j < k; j++) {
          r.skipStr("map key");
          skipScalar(r);
        }
        break;
      }
      default:
        throw new IbexError("ERR_DECODE", `unknown value tag ${tag}`);
    }
  }
}

// ---- changes --------------------------------------------------------------

export function writeChanges(w: Writer, changes: Change[]): void {
  w.varint(changes.length);
  for (const c of changes) {
    switch (c.op) {
      case "put":
        w.u8(1);
        w.str(c.field);
        writeValue(w, c.value);
        break;
      case "remove":
        w.u8(2);
        w.str(c.field);
        break;
      case "setAdd":
      case "setRemove":
        w.u8(c.op === "setAdd" ? 3 : 4);
        w.str(c.field);
        writeScalars(w, c.elems);
        break;
      case "mapPut":
        w.u8(5);
        w.str(c.field);
        w.str(c.key);
        writeScalar(w, c.value);
        break;
      case "mapRemove":
        w.u8(6);
        w.str(c.field);
        w.str(c.key);
        break;
      case "text":
        w.u8(7);
        w.str(c.field);
        w.varint(c.splices.length);
        for (const s of c.splices) {
          w.varint(s.pos);
          w.varint(s.delete);
          w.str(s.insert);
        }
        break;
      case "deleted":
        w.u8(8);
        w.u8(c.deleted ? 1 : 0);
        break;
    }
  }
}

// ---- schemas --------------------------------------------------------------

export interface WireField {
  name: string;
  type: keyof typeof TYPE_TAG;
  required: boolean;
  default?: Value;
}

export type WireStep =
  | { rename: { from: string; to: string } }
  | { remove: string }
  | { convert: { field: string; to: keyof typeof TYPE_TAG } };

export interface WireSchema {
  ns: string;
  version: number;
  fields: WireField[];
  upgrade: WireStep[];
}

export function writeSchemas(schemas: WireSchema[]): Uint8Array {
  const w = new Writer();
  w.varint(schemas.length);
  for (const s of schemas) {
    w.str(s.ns);
    w.varint(s.version);
    const fields = [...s.fields].sort((a, b) => compareUtf8(a.name, b.name));
    w.varint(fields.length);
    for (const f of fields) {
      w.str(f.name);
      w.u8(TYPE_TAG[f.type]);
      w.u8(f.required ? 1 : 0);
      if (f.default === undefined) w.u8(0);
      else {
        w.u8(1);
        writeValue(w, f.default);
      }
    }
    w.varint(s.upgrade.length);
    for (const st of s.upgrade) {
      if ("rename" in st) {
        w.u8(1);
        w.str(st.rename.from);
        w.str(st.rename.to);
      } else if ("remove" in st) {
        w.u8(2);
        w.str(st.remove);
      } else {
        w.u8(3);
        w.str(st.convert.field);
        w.u8(TYPE_TAG[st.convert.to]);
      }
    }
  }
  return w.finish();
}

// ---- batches (rust/wasm/src/batch.rs) --------------------------------------

export interface Mutation {
  repo: string;
  key: string;
  ns: string;
  version: number;
  changes: Change[];
}

export function writeMutations(ms: Mutation[]): Uint8Array {
  const w = new Writer();
  w.varint(ms.length);
  for (const m of ms) {
    w.str(m.repo);
    w.str(m.key);
    w.str(m.ns);
    w.varint(m.version);
    writeChanges(w, m.changes);
  }
  return w.finish();
}

export type Outcome = { status: "unchanged" } | { status: "committed"; id: string } | { status: "failed"; code: string; message: string };

function hex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

export function readOutcomes(bytes: Uint8Array): Outcome[] {
  const r = new Reader(bytes);
  const n = r.varint("outcome count");
  const out: Outcome[] = [];
  for (let i = 0; i < n; i++) {
    const s = r.u8("outcome");
    if (s === 0) out.push({ status: "unchanged" });
    else if (s === 1) out.push({ status: "committed", id: hex(r.take(32, "commit id")) });
    else out.push({ status: "failed", code: r.str("code"), message: r.str("message") });
  }
  return out;
}

/** One item's head as the engine sends it: where the item is, its schema,
 * and its field list left undecoded in `bytes` at offset `fields` (the
 * mirror decodes it when the item is first read). */
export interface Head {
  readonly repo: string;
  readonly key: string;
  readonly ns: string;
  readonly version: number;
  readonly deleted: boolean;
  readonly bytes: Uint8Array;
  readonly fields: number;
}

/** Walks a list of heads one at a time: itself the current `Head` (no
 * object per head), fields skipped, not decoded. Repository and namespace
 * strings are decoded once and reused while they repeat, as they do in a
 * repository's heads. */
export class HeadReader implements Head {
  readonly total: number;
  private readonly r: Reader;
  private left: number;
  repo = "";
  key = "";
  ns = "";
  version = 0;
  deleted = false;
  fields = 0;
  private repoAt = -1;
  private repoLen = -1;
  private nsAt = -1;
  private nsLen = -1;

  constructor(readonly bytes: Uint8Array) {
    this.r = new Reader(bytes);
    this.total = this.left = this.r.varint("head count");
  }

  /** Moves to the next head; false after the last one. */
  next(): boolean {
    if (this.left === 0) return false;
    this.left--;
    const r = this.r;
    let at = r.pos;
    let n = r.varint("repository");
    if (n === this.repoLen && r.remaining >= n && r.same(r.pos, this.repoAt, n)) r.pos += n;
    else {
      r.pos = at;
      this.repo = r.str("repository");
      this.repoLen = n;
      this.repoAt = r.pos - n;
    }
    this.key = r.str("key");
    at = r.pos;
    n = r.varint("schema namespace");
    if (n === this.nsLen && r.remaining >= n && r.same(r.pos, this.nsAt, n)) r.pos += n;
    else {
      r.pos = at;
      this.ns = r.str("schema namespace");
      this.nsLen = n;
      this.nsAt = r.pos - n;
    }
    this.version = r.varint("schema version");
    this.deleted = r.bool("deleted");
    this.fields = r.pos;
    skipFields(r);
    return true;
  }

  /** The current head as its own object (to keep it for later). */
  head(): Head {
    const { repo, key, ns, version, deleted, bytes, fields } = this;
    return { repo, key, ns, version, deleted, bytes, fields };
  }
}

/** The end of the field list at `at` in `bytes`. */
export function fieldsEnd(bytes: Uint8Array, at: number): number {
  const r = new Reader(bytes);
  r.pos = at;
  skipFields(r);
  return r.pos;
}
