// What the hooks' types allow: a query with a function (`where`, a `sortBy`
// comparator) must list `deps`, the values the function reads.

import { type Item, defineSchema } from "@ibexdb/db";
import { describe, expectTypeOf, it } from "vitest";

import { useItem, useQuery, useQueryCount } from "../src/index.js";

const Todo = defineSchema({ ns: "todo", version: 1, fields: { text: { type: "string", required: true }, done: { type: "boolean", default: false } } });
type T = Item<typeof Todo.fields>;

describe("useQuery deps", () => {
  it("plain options need no deps; results are typed items", () => {
    expectTypeOf(useQuery({ source: "/data/t", schema: Todo, sortBy: "text" })).toEqualTypeOf<readonly T[]>();
    expectTypeOf(useQueryCount({ source: "/data/t" })).toEqualTypeOf<number>();
  });

  it("a where function without deps does not compile", () => {
    const done = true;
    // @ts-expect-error `where` reads `done`: deps are required
    useQuery({ source: "/data/t", schema: Todo, where: (t: T) => t.get("done") === done });
    expectTypeOf(useQuery({ source: "/data/t", schema: Todo, where: (t: T) => t.get("done") === done }, [done])).toEqualTypeOf<readonly T[]>();
    // @ts-expect-error a comparator is a function too
    useQueryCount({ source: "/data/t", schema: Todo, sortBy: (a: T, b: T) => a.get("text").localeCompare(b.get("text")) });
  });
});

describe("useItem with a schema", () => {
  it("types the item by the schema; without it, fields are untyped", () => {
    const todo = useItem("/data/t/k", Todo);
    expectTypeOf(todo).toEqualTypeOf<T | undefined>();
    expectTypeOf(todo!.get("done")).toEqualTypeOf<boolean>();
    // @ts-expect-error not a field of Todo
    todo!.get("title");
    expectTypeOf(useItem("/data/t/k")!.get("done")).not.toEqualTypeOf<boolean>();
  });
});
