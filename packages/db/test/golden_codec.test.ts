// The SDK's encoders and decoders (src/wire/codec.ts) against the bytes the
// engine's own produce, from the golden files the Rust tests write
// (test/golden/, rust/core/tests/golden/, rust/wasm/tests/golden.rs).
import { describe, expect, it } from "vitest";

import { type FieldType, type Fields, defineSchema, fromWire, sortedScalars, toWire } from "../src/main/schema.js";
import { layoutOf, readPlain } from "../src/main/values.js";
import { type Value, HeadReader, Reader, Writer, readFields, readOutcomes, readValue, writeChanges, writeFields, writeMutations, writeValue } from "../src/wire/codec.js";
import { change, codeOf, fields, golden, hex, list, mutation, outcome, unhex, value } from "./tagged.js";

const values = golden("values.json");
const changes = golden("changes.json");
const batches = golden("batches.json");

function encoded(v: Value): string {
  const w = new Writer();
  writeValue(w, v);
  return hex(w.finish());
}

/** What the mirror keeps for `v` (values.ts: sets stay sorted arrays). */
function plain(v: Value): unknown {
  return v.t === "set" ? v.v : fromWire(v);
}

/** A field list as the mirror decodes it (values.ts `Layout.decode`), with
 * the fields declared by a schema (matched by their bytes) or not (read
 * as strings), as plain values in wire order. */
function mirrorFields(bytes: Uint8Array, at: number, declare: boolean, want: [string, Value][]): [string, unknown][] {
  const decl: Fields = declare ? Object.fromEntries(want.map(([k, v]) => [k, { type: v.t as FieldType }])) : {};
  const lay = layoutOf(defineSchema({ ns: "golden", version: 1, fields: decl }));
  const got: [string, unknown][] = [];
  lay.forEach(lay.decode(bytes, at), (k, v) => got.push([k, v]));
  return got;
}

/** `want` as `mirrorFields` reports it (declared fields in schema order,
 * which is the wire order here; sets read back as `Set`). */
function mirrorWant(want: [string, Value][]): [string, unknown][] {
  return want.map(([k, v]) => [k, fromWire(v)]);
}

describe("golden values", () => {
  for (const c of list(values.values)) {
    it(`${c.name}: same bytes both ways`, () => {
      const v = value(c.value);
      expect(encoded(v)).toBe(c.hex);
      const r = new Reader(unhex(c.hex));
      expect(readValue(r)).toEqual(v);
      expect(r.remaining).toBe(0);
      // The mirror's own decoder (values.ts), which reads every head.
      const m = new Reader(unhex(c.hex));
      expect(readPlain(m)).toEqual(plain(v));
      expect(m.remaining).toBe(0);
    });
  }

  it("sorts set elements and map keys as the engine does", () => {
    for (const c of list(values.values)) {
      const v = value(c.value);
      if (v.t === "set") expect(sortedScalars([...v.v].reverse())).toEqual(v.v);
      if (v.t === "map") expect(toWire("map", new Map([...v.v].reverse())).v).toEqual(v.v);
    }
  });

  for (const c of list(values.fields)) {
    it(`fields, ${c.name}`, () => {
      const f = fields(c.fields);
      const w = new Writer();
      writeFields(w, f);
      expect(hex(w.finish())).toBe(c.hex);
      expect(readFields(new Reader(unhex(c.hex)))).toEqual(new Map(f));
      for (const declare of [true, false]) expect(mirrorFields(unhex(c.hex), 0, declare, f)).toEqual(mirrorWant(f));
    });
  }

  // The engine also refuses elements out of order (`why: "order"`); this
  // side reads only what the engine wrote and does not re-check the order.
  for (const c of list(values.rejected).filter((c) => c.why !== "order")) {
    it(`refuses ${c.name}`, () => {
      expect(c.code).toBe("ERR_DECODE");
      expect(codeOf(() => readValue(new Reader(unhex(c.hex))))).toBe("ERR_DECODE");
      expect(codeOf(() => readPlain(new Reader(unhex(c.hex))))).toBe("ERR_DECODE");
    });
  }
});

describe("golden changes", () => {
  for (const c of list(changes.changes)) {
    it(c.name as string, () => {
      const w = new Writer();
      writeChanges(w, list(c.changes).map(change));
      expect(hex(w.finish())).toBe(c.hex);
    });
  }
});

describe("golden batches", () => {
  for (const c of list(batches.mutations)) {
    it(`mutations: ${c.name}`, () => {
      expect(hex(writeMutations(list(c.mutations).map(mutation)))).toBe(c.hex);
    });
  }
  for (const c of list(batches.outcomes)) {
    it(`outcomes: ${c.name}`, () => {
      expect(readOutcomes(unhex(c.hex))).toEqual(list(c.outcomes).map(outcome));
    });
  }
  // As the mirror reads heads: HeadReader walks them, Layout.decode reads
  // an item's fields when it is first read.
  for (const c of list(batches.heads)) {
    it(`heads: ${c.name}`, () => {
      const bytes = unhex(c.hex);
      const want = list(c.heads);
      const r = new HeadReader(bytes);
      expect(r.total).toBe(want.length);
      for (const h of want) {
        expect(r.next()).toBe(true);
        const { repo, key, ns, version, deleted } = r;
        expect({ repo, key, ns, version, deleted }).toEqual({ repo: h.repo, key: h.key, ns: h.ns, version: h.version, deleted: h.deleted });
        const f = fields(h.fields);
        const rf = new Reader(bytes);
        rf.pos = r.fields;
        expect(readFields(rf)).toEqual(new Map(f));
        for (const declare of [true, false]) expect(mirrorFields(bytes, r.fields, declare, f)).toEqual(mirrorWant(f));
      }
      expect(r.next()).toBe(false);
    });
  }
});
