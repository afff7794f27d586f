// Field types flow from the schema into get/set/create.

import { describe, expectTypeOf, it } from "vitest";

import { type IbexDB, type Item, type Scalar, defineSchema } from "../src/index.node.js";

const Note = defineSchema({
  ns: "note",
  version: 1,
  fields: {
    title: { type: "string", required: true },
    done: { type: "boolean", default: false },
    count: { type: "number" },
    at: { type: "date" },
    tags: { type: "set" },
    attrs: { type: "map" },
  },
});

declare const db: IbexDB;
declare const note: Item<typeof Note.fields>;

describe("schema types", () => {
  it("get returns the field's type; optional fields may be undefined", () => {
    expectTypeOf(note.get("title")).toEqualTypeOf<string>();
    expectTypeOf(note.get("done")).toEqualTypeOf<boolean>();
    expectTypeOf(note.get("count")).toEqualTypeOf<number | undefined>();
    expectTypeOf(note.get("at")).toEqualTypeOf<Date | undefined>();
    expectTypeOf(note.get("tags")).toEqualTypeOf<ReadonlySet<Scalar> | undefined>();
    expectTypeOf(note.get("attrs")).toEqualTypeOf<ReadonlyMap<string, Scalar> | undefined>();
  });

  it("set and create check names and types", () => {
    expectTypeOf(note.set).toBeCallableWith("count", 3);
    // @ts-expect-error wrong type
    note.set("count", "3");
    // @ts-expect-error unknown field
    note.set("nope", 1);
    expectTypeOf(db.create("/data/n", Note, { title: "x" })).toEqualTypeOf<Item<typeof Note.fields>>();
    // @ts-expect-error title is required
    db.create("/data/n", Note, { done: true });
  });
});

describe("db.item with a schema", () => {
  it("types the item by the schema", () => {
    expectTypeOf(db.item("/data/n/k", Note)).toEqualTypeOf<Item<typeof Note.fields> | undefined>();
    expectTypeOf(db.item("/data/n/k", Note)!.get("done")).toEqualTypeOf<boolean>();
    expectTypeOf(db.item("/data/n/k")!.get("done")).not.toEqualTypeOf<boolean>();
  });
});
