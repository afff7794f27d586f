// The SDK's schema checks and validation (src/main/schema.ts) against the
// engine's verdicts on the same definitions and new items, from the golden
// files the Rust tests write (rust/core/tests/golden/{schemas,validation}.rs).
import { describe, expect, it } from "vitest";

import { checkNew, defineSchema, initialFields, toWireSchema } from "../src/main/schema.js";
import { Writer, compareUtf8, writeFields, writeSchemas } from "../src/wire/codec.js";
import { IbexError } from "../src/wire/errors.js";
import { type J, codeOf, fields, golden, hex, jsDef, jsObject, list, wireSchema } from "./tagged.js";

const schemas = golden("schemas.json");
const items = golden("validation.json");

describe("golden schema definitions", () => {
  for (const c of list(schemas.schemas)) {
    it(c.name as string, () => {
      const def = jsDef(c.def as J);
      if (c.error !== undefined) {
        expect(codeOf(() => defineSchema(def))).toBe(c.error);
        return;
      }
      const ok = c.ok as J;
      const wire = toWireSchema(defineSchema(def));
      expect(hex(writeSchemas([wire]))).toBe(ok.hex);
      // The same through the wire form the engine reads back.
      wire.fields.sort((a, b) => compareUtf8(a.name, b.name));
      expect(wire).toEqual(wireSchema(ok.wire as J));
      expect(hex(writeSchemas([wireSchema(ok.wire as J)]))).toBe(ok.hex);
    });
  }
});

describe("golden validation of new items", () => {
  for (const c of list(items.items)) {
    it(c.name as string, () => {
      const schema = defineSchema(jsDef(c.schema as J));
      const values = jsObject(c.item);
      if (c.error !== undefined) {
        const want = c.error as J;
        let got: unknown;
        try {
          checkNew(schema, values);
        } catch (e) {
          got = e;
        }
        expect(got).toBeInstanceOf(IbexError);
        expect({ code: (got as IbexError).code, field: (got as IbexError).field }).toEqual({ code: want.code, field: want.field });
        return;
      }
      const ok = c.ok as J;
      checkNew(schema, values);
      const stored = initialFields(schema, values).sort((a, b) => compareUtf8(a[0], b[0]));
      expect(stored).toEqual(fields(ok.fields));
      const w = new Writer();
      writeFields(w, stored);
      expect(hex(w.finish())).toBe(ok.hex);
    });
  }
});
