// Reads the golden files the Rust tests write (test/golden/*.json): engine
// values as tagged JSON (rust/core/tests/golden/support/wire.rs) and
// application values and schema definitions (…/support/js.rs).
import { readFileSync } from "node:fs";

import type { FieldDef, Fields, UpgradeStep } from "../src/main/schema.js";
import type { Change, Mutation, Outcome, Scalar, Splice, Value, WireSchema, WireStep } from "../src/wire/codec.js";
import { IbexError } from "../src/wire/errors.js";

/** A JSON object of a golden file. */
export type J = { [key: string]: unknown };

export function golden(name: string): J {
  return JSON.parse(readFileSync(new URL(`./golden/${name}`, import.meta.url), "utf8")) as J;
}

export function list(x: unknown): J[] {
  if (!Array.isArray(x)) throw new Error(`expected an array: ${JSON.stringify(x)}`);
  return x as J[];
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

export function unhex(s: unknown): Uint8Array {
  return new Uint8Array(Buffer.from(String(s), "hex"));
}

/** The code of what `fn` throws (undefined if nothing), which must be an IbexError. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof IbexError)) throw e;
    return e.code;
  }
  return undefined;
}

/** JSON has no -0, NaN or infinities: the files spell them as strings. */
export function num(x: unknown): number {
  if (typeof x === "number") return x;
  const special: Record<string, number> = { "-0": -0, NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity };
  if (typeof x === "string" && x in special) return special[x]!;
  throw new Error(`not a number: ${JSON.stringify(x)}`);
}

/** `{"tag": body}` → [tag, body]. */
function tag(t: unknown): [string, unknown] {
  const entries = Object.entries(t as J);
  if (entries.length !== 1) throw new Error(`expected one tag: ${JSON.stringify(t)}`);
  return entries[0]!;
}

export function scalar(t: unknown): Scalar {
  const [k, v] = tag(t);
  if (k === "bool") return v as boolean;
  if (k === "num") return num(v);
  if (k === "str") return v as string;
  throw new Error(`not a scalar: ${k}`);
}

export function value(t: unknown): Value {
  const [k, v] = tag(t);
  switch (k) {
    case "str":
      return { t: "string", v: v as string };
    case "num":
      return { t: "number", v: num(v) };
    case "bool":
      return { t: "boolean", v: v as boolean };
    case "date":
      return { t: "date", v: v as number };
    case "set":
      return { t: "set", v: (v as unknown[]).map(scalar) };
    case "map":
      return { t: "map", v: (v as [string, unknown][]).map(([key, x]) => [key, scalar(x)]) };
    case "text":
      return { t: "text", v: v as string };
    case "ref":
      return { t: "ref", v: v as string };
  }
  throw new Error(`not a value: ${k}`);
}

export function fields(t: unknown): [string, Value][] {
  return (t as [string, unknown][]).map(([k, v]) => [k, value(v)]);
}

export function change(c: J): Change {
  const field = c.field as string;
  switch (c.op) {
    case "put":
      return { op: "put", field, value: value(c.value) };
    case "remove":
      return { op: "remove", field };
    case "setAdd":
    case "setRemove":
      return { op: c.op, field, elems: list(c.elems).map(scalar) };
    case "mapPut":
      return { op: "mapPut", field, key: c.key as string, value: scalar(c.value) };
    case "mapRemove":
      return { op: "mapRemove", field, key: c.key as string };
    case "text":
      return { op: "text", field, splices: list(c.splices) as unknown as Splice[] };
    case "deleted":
      return { op: "deleted", deleted: c.deleted as boolean };
  }
  throw new Error(`not a change: ${String(c.op)}`);
}

export function mutation(m: J): Mutation {
  return { repo: m.repo as string, key: m.key as string, ns: m.ns as string, version: m.version as number, changes: list(m.changes).map(change) };
}

export function outcome(o: J): Outcome {
  return o as unknown as Outcome;
}

export function wireSchema(s: J): WireSchema {
  return {
    ns: s.ns as string,
    version: s.version as number,
    fields: list(s.fields).map((f) => ({
      name: f.name as string,
      type: f.type as WireSchema["fields"][number]["type"],
      required: f.required as boolean,
      ...(f.default !== undefined ? { default: value(f.default) } : {}),
    })),
    upgrade: list(s.upgrade) as unknown as WireStep[],
  };
}

/** An application's value: a string, number, boolean, Date, Set, Map or undefined. */
export function js(t: unknown): unknown {
  const [k, v] = tag(t);
  switch (k) {
    case "undefined":
      return undefined;
    case "str":
    case "text":
    case "ref":
      return v as string;
    case "num":
      return num(v);
    case "bool":
      return v as boolean;
    case "date":
      return new Date(v as number);
    case "set":
      return new Set((v as unknown[]).map(js));
    case "map":
      return new Map((v as [string, unknown][]).map(([key, x]) => [key, js(x)]));
  }
  throw new Error(`not a value: ${k}`);
}

/** An object of application values, own properties in file order. */
export function jsObject(t: unknown): Record<string, unknown> {
  return Object.fromEntries(Object.entries(t as J).map(([k, v]) => [k, js(v)]));
}

/** The argument of `defineSchema`. */
export function jsDef(d: J): { ns: string; version: number; fields: Fields; upgrade: UpgradeStep[] } {
  const fields = Object.fromEntries(
    Object.entries(d.fields as J).map(([name, f]): [string, FieldDef] => {
      const def = f as J;
      return [name, { type: def.type, ...(def.required ? { required: true } : {}), ...(def.default !== undefined ? { default: js(def.default) } : {}) } as FieldDef];
    }),
  );
  return { ns: d.ns as string, version: d.version as number, fields, upgrade: list(d.upgrade) as unknown as UpgradeStep[] };
}
