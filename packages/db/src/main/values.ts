// An item's field values, kept compactly: the mirror holds every item of
// every open repository, so a `Map` per item (plus its field-name strings,
// plus a `Set` per set field) cost ~500 bytes per item on the JS heap. Here
// an item's values are one array laid out by its schema — `vals[slot]` for
// each declared field in declaration order (`undefined` = absent) — then
// `[name, value]` pairs for fields the schema does not declare (an older
// or unknown schema). Set fields decoded from the engine stay the sorted
// array the wire carries until first read (a `Set` costs ~3× the array);
// JS field values are never arrays, so an array in a slot always means
// "set, not converted yet".

import { Reader, type Scalar, compareUtf8, readScalar } from "../wire/codec.js";
import { IbexError } from "../wire/errors.js";
import type { Schema } from "./schema.js";

export type Vals = unknown[];

const encoder = new TextEncoder();

/** Where each field of a schema lives in an item's value array. */
export class Layout {
  /** Declared field names, in declaration order (slot order). */
  readonly names: readonly string[];
  readonly n: number;
  private readonly slots = new Map<string, number>();
  /** Declared names as UTF-8, sorted by bytes like a head's field list,
   * and the slot of each: decoding matches names without making strings. */
  readonly sortedBytes: readonly Uint8Array[];
  readonly sortedSlot: readonly number[];

  constructor(readonly schema: Schema) {
    this.names = Object.keys(schema.fields);
    this.n = this.names.length;
    this.names.forEach((name, i) => this.slots.set(name, i));
    const order = this.names.map((_, i) => i).sort((a, b) => compareUtf8(this.names[a]!, this.names[b]!));
    this.sortedBytes = order.map((i) => encoder.encode(this.names[i]!));
    this.sortedSlot = order;
    this.blank = this.names.map(() => undefined);
  }

  private readonly blank: Vals;

  /** An empty value array. */
  empty(): Vals {
    return this.blank.slice();
  }

  /** Index in `vals` of `field`'s value, or -1 (absent undeclared field). */
  find(vals: Vals, field: string): number {
    const i = this.slots.get(field);
    if (i !== undefined) return i;
    for (let j = this.n; j < vals.length; j += 2) if (vals[j] === field) return j + 1;
    return -1;
  }

  /** `field`'s value (sets converted to `Set` on first read, in place). */
  get(vals: Vals, field: string): unknown {
    const k = this.find(vals, field);
    return k < 0 ? undefined : this.at(vals, k);
  }

  /** The value at index `k`, converted if it is a raw set. */
  at(vals: Vals, k: number): unknown {
    const v = vals[k];
    if (!Array.isArray(v)) return v;
    const s = new Set(v);
    vals[k] = s;
    return s;
  }

  set(vals: Vals, field: string, v: unknown): void {
    const k = this.find(vals, field);
    if (k >= 0) vals[k] = v;
    else vals.push(field, v);
  }

  remove(vals: Vals, field: string): void {
    const k = this.find(vals, field);
    if (k < 0) return;
    if (k < this.n) vals[k] = undefined;
    else vals.splice(k - 1, 2);
  }

  /** Calls `f` for every present field, declared ones first. */
  forEach(vals: Vals, f: (name: string, v: unknown) => void): void {
    for (let i = 0; i < this.n; i++) if (vals[i] !== undefined) f(this.names[i]!, this.at(vals, i));
    for (let j = this.n; j < vals.length; j += 2) f(vals[j] as string, this.at(vals, j + 1));
  }

  /** Decodes a head's field list (`bytes` at `at`, see codec.ts
   * `readFields`) straight into a value array. */
  decode(bytes: Uint8Array, at: number): Vals {
    const r = readerAt(bytes, at);
    const vals = this.empty();
    const n = r.count("field count", 3);
    let from = 0;
    for (let f = 0; f < n; f++) {
      const name = r.name(this.sortedBytes, from, "field name");
      const v = readPlain(r);
      if (typeof name === "number") {
        vals[this.sortedSlot[name]!] = v;
        from = name + 1;
      } else {
        this.set(vals, name, v);
      }
    }
    return vals;
  }
}

const layouts = new WeakMap<Schema, Layout>();

export function layoutOf(schema: Schema): Layout {
  let l = layouts.get(schema);
  if (!l) {
    l = new Layout(schema);
    layouts.set(schema, l);
  }
  return l;
}

/** Integral numbers as small integers (no heap number per value). */
function num(x: number): number {
  const i = x | 0;
  return i === x ? i : x;
}

let lastReader: Reader | null = null;
let lastBytes: Uint8Array | null = null;

/** A reader of `bytes` at `at`: reused by the items of one buffer that
 * decode in the same task (a query reading every item), dropped after it
 * so it does not keep a large buffer alive. */
function readerAt(bytes: Uint8Array, at: number): Reader {
  if (lastBytes !== bytes) {
    if (lastBytes === null) {
      queueMicrotask(() => {
        lastReader = null;
        lastBytes = null;
      });
    }
    lastReader = new Reader(bytes);
    lastBytes = bytes;
  }
  lastReader!.pos = at;
  return lastReader!;
}

/** @internal A wire value (codec.ts `readValue`, refusing what it
 * refuses) as the JS value the mirror keeps: sets stay a sorted array (see
 * above), maps become `Map`, dates `Date`. */
export function readPlain(r: Reader): unknown {
  const tag = r.u8("value tag");
  switch (tag) {
    case 1:
    case 7:
    case 8:
      return r.str("string");
    case 2:
      return num(r.number("number"));
    case 3:
      return r.bool("boolean");
    case 4:
      return new Date(r.zigzag("date"));
    case 5: {
      const n = r.count("set", 2);
      if (n === 0) throw new IbexError("ERR_DECODE", "empty set (an absent field is the canonical form)");
      const out: Scalar[] = [];
      for (let i = 0; i < n; i++) {
        const s = readScalar(r);
        out.push(typeof s === "number" ? num(s) : s);
      }
      return out;
    }
    case 6: {
      const n = r.count("map size", 3);
      if (n === 0) throw new IbexError("ERR_DECODE", "empty map (an absent field is the canonical form)");
      const m = new Map<string, Scalar>();
      for (let i = 0; i < n; i++) m.set(r.str("map key"), readScalar(r));
      return m;
    }
    default:
      throw new IbexError("ERR_DECODE", `unknown value tag ${tag}`);
  }
}
