// Schemas: field types flow from `defineSchema` into `item.get`/`item.set`.
// Validation mirrors the engine's (rust/core/src/schema.rs) so an invalid
// write throws synchronously, before anything changes. Golden vectors from
// the Rust tests (test/golden/{schemas,validation}.json) hold both to the
// same verdicts; rust/core/tests/golden/support/js.rs states the rules for
// turning JavaScript values into engine values.

import { type Scalar, type Value, type WireSchema, type WireStep, compareScalar, compareUtf8 } from "../wire/codec.js";
import { IbexError } from "../wire/errors.js";

export type { Scalar };

export type FieldType = "string" | "number" | "boolean" | "date" | "set" | "map" | "text" | "ref";

/** The JavaScript type of each field type. */
export interface FieldTypes {
  string: string;
  number: number;
  boolean: boolean;
  date: Date;
  set: ReadonlySet<Scalar>;
  map: ReadonlyMap<string, Scalar>;
  text: string;
  ref: string;
}

export interface FieldDef<T extends FieldType = FieldType> {
  readonly type: T;
  readonly required?: boolean;
  readonly default?: FieldTypes[T];
}

export type Fields = { readonly [name: string]: FieldDef };

/** Declarative upgrade from the previous version (engine-side, so every replica agrees). */
export type UpgradeStep =
  | { readonly rename: { readonly from: string; readonly to: string } }
  | { readonly remove: string }
  | { readonly convert: { readonly field: string; readonly to: FieldType } };

export interface Schema<F extends Fields = Fields> {
  readonly ns: string;
  readonly version: number;
  readonly fields: F;
  readonly upgrade: readonly UpgradeStep[];
  /** `ns@version`. */
  readonly id: string;
}

type AlwaysPresent<D> = D extends { readonly required: true } ? true : D extends { readonly default: unknown } ? true : false;

/** The type `item.get(field)` returns. */
export type FieldValue<F extends Fields, K extends keyof F> = AlwaysPresent<F[K]> extends true
  ? FieldTypes[F[K]["type"]]
  : FieldTypes[F[K]["type"]] | undefined;

type RequiredKeys<F extends Fields> = {
  [K in keyof F]: F[K] extends { readonly required: true } ? (F[K] extends { readonly default: unknown } ? never : K) : never;
}[keyof F];

/** What `db.create` needs: required fields without defaults, and any others. */
export type InitData<F extends Fields> = { [K in RequiredKeys<F>]: FieldTypes[F[K]["type"]] } & {
  [K in Exclude<keyof F, RequiredKeys<F>>]?: FieldTypes[F[K]["type"]];
};

/** A plain snapshot of an item's fields. */
export type ItemData<F extends Fields> = { [K in keyof F]: FieldValue<F, K> };

/** Names of the `text` fields of `F` (what `item.splice` edits). */
export type TextFields<F extends Fields> = { [K in keyof F & string]: F[K]["type"] extends "text" ? K : never }[keyof F & string];

export type FieldsOf<S> = S extends Schema<infer F> ? F : never;

const NS = /^[A-Za-z0-9_.-]{1,64}$/;
const FIELD = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
/** Versions travel as 32-bit integers. */
const MAX_VERSION = 0xffff_ffff;
/** With the `u` flag a surrogate pair is one code point, so this matches
 * only lone surrogates (`String.prototype.isWellFormed` is ES2024). */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** Declares a schema; `const` keeps literal field types for inference. */
export function defineSchema<const F extends Fields>(def: { ns: string; version: number; fields: F; upgrade?: readonly UpgradeStep[] }): Schema<F> {
  const id = `${def.ns}@${def.version}`;
  const bad = (reason: string) => new IbexError("ERR_SCHEMA", `Invalid schema \`${id}\`: ${reason}`);
  if (!NS.test(def.ns)) throw bad("namespace must be 1-64 characters of a-z, A-Z, 0-9, '_', '-' or '.'");
  if (!Number.isInteger(def.version) || def.version < 1 || def.version > MAX_VERSION) throw bad("versions are integers from 1 to 4294967295");
  if (def.version === 1 && def.upgrade?.length) throw bad("version 1 has no previous version to upgrade from");
  for (const [name, f] of Object.entries(def.fields)) {
    if (!FIELD.test(name)) throw bad(`field name \`${name}\` must be 1-64 characters of letters, digits and '_', not starting with a digit`);
    if (!TYPES.includes(f.type)) throw bad(`field \`${name}\` has unknown type \`${String(f.type)}\``);
    if (f.default !== undefined) {
      const why = checkValue(f.type, f.default);
      if (why) throw bad(`default of \`${name}\`: ${why}`);
    }
  }
  for (const st of def.upgrade ?? []) {
    if ("convert" in st && !TYPES.includes(st.convert.to)) throw bad(`upgrade converts \`${st.convert.field}\` to unknown type \`${String(st.convert.to)}\``);
  }
  return Object.freeze({ ns: def.ns, version: def.version, fields: def.fields, upgrade: def.upgrade ?? [], id });
}

const TYPES: readonly FieldType[] = ["string", "number", "boolean", "date", "set", "map", "text", "ref"];

const SEGMENT = /^[A-Za-z0-9_.-]{1,128}$/;

export function checkSegment(path: string, seg: string, what: string): void {
  if (!SEGMENT.test(seg) || seg === "." || seg === "..") {
    throw new IbexError("ERR_PATH", `Invalid path \`${path}\`: the ${what} must be 1-128 characters of letters, digits, '_', '-' or '.'`);
  }
}

/** Checks `/type/name`. */
export function checkRepoPath(p: string): void {
  const parts = p.split("/");
  if (parts.length !== 3 || parts[0] !== "") throw new IbexError("ERR_PATH", `Invalid path \`${p}\`: a repository path has exactly two segments: /type/name`);
  checkSegment(p, parts[1]!, "type");
  checkSegment(p, parts[2]!, "repository name");
}

/** Splits `/type/name/key` into repository and key. */
export function splitItemPath(p: string): { repo: string; key: string } {
  const parts = p.split("/");
  if (parts.length !== 4 || parts[0] !== "") throw new IbexError("ERR_PATH", `Invalid path \`${p}\`: an item path has exactly three segments: /type/name/key`);
  checkSegment(p, parts[1]!, "type");
  checkSegment(p, parts[2]!, "repository name");
  checkSegment(p, parts[3]!, "item key");
  return { repo: `/${parts[1]}/${parts[2]}`, key: parts[3]! };
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (v instanceof Date) return "date";
  if (v instanceof Set) return "set";
  if (v instanceof Map) return "map";
  return typeof v;
}

function checkNumber(n: number): string | undefined {
  return Number.isFinite(n) ? undefined : "numbers must be finite";
}

/** The engine stores UTF-8, which cannot hold a lone surrogate; encoding
 * would turn it into U+FFFD (and two different strings into one). */
function checkString(s: string): string | undefined {
  return LONE_SURROGATE.test(s) ? "lone surrogate: strings must be well-formed UTF-16" : undefined;
}

function checkScalar(s: unknown): string | undefined {
  if (typeof s === "number") return checkNumber(s);
  if (typeof s === "string") return checkString(s);
  if (typeof s === "boolean") return undefined;
  return `set and map elements must be strings, numbers or booleans, got ${typeName(s)}`;
}

/** Why `v` is not a valid value of `type`, or undefined if it is. */
export function checkValue(type: FieldType, v: unknown): string | undefined {
  const expected = (ok: boolean) => (ok ? undefined : `expected ${type}, got ${typeName(v)}`);
  switch (type) {
    case "string":
    case "text":
      return expected(typeof v === "string") ?? checkString(v as string);
    case "ref":
      if (typeof v !== "string") return expected(false);
      try {
        splitItemPath(v);
        return undefined;
      } catch (e) {
        return `not an item path: ${(e as Error).message}`;
      }
    case "number":
      return expected(typeof v === "number") ?? checkNumber(v as number);
    case "boolean":
      return expected(typeof v === "boolean");
    case "date":
      if (!(v instanceof Date)) return expected(false);
      return Number.isFinite(v.getTime()) ? undefined : "invalid Date";
    case "set":
      if (!(v instanceof Set)) return expected(false);
      for (const e of v) {
        const why = checkScalar(e);
        if (why) return why;
      }
      return undefined;
    case "map":
      if (!(v instanceof Map)) return expected(false);
      for (const [k, e] of v) {
        if (typeof k !== "string") return `map keys must be strings, got ${typeName(k)}`;
        const why = checkString(k) ?? checkScalar(e);
        if (why) return why;
      }
      return undefined;
  }
}

export function validationError(schema: Schema, field: string, reason: string): IbexError {
  return new IbexError("ERR_VALIDATION", `Invalid value for field \`${field}\` of \`${schema.id}\`: ${reason}`, { field });
}

/** The definition of `field`, if the schema declares it (its own property:
 * `toString` is not a field because every object has one). */
export function fieldDef(schema: Schema, field: string): FieldDef | undefined {
  return Object.hasOwn(schema.fields, field) ? schema.fields[field] : undefined;
}

/** Throws unless `field` may hold `v` (undefined = absent). */
export function validateField(schema: Schema, field: string, v: unknown): void {
  const def = fieldDef(schema, field);
  if (!def) throw validationError(schema, field, "unknown field: the schema does not declare it");
  if (v === undefined) {
    if (def.required) throw validationError(schema, field, "required field cannot be removed");
    return;
  }
  const why = checkValue(def.type, v);
  if (why) throw validationError(schema, field, why);
  if (def.required && isEmptyCollection(v)) throw validationError(schema, field, "required, and an empty collection counts as missing");
}

export function isEmptyCollection(v: unknown): boolean {
  return (v instanceof Set || v instanceof Map) && v.size === 0;
}

/** What a new item gets for a field given `v`: `undefined` and an empty
 * collection are no value, so the default applies — as in the engine,
 * which starts a new item from the defaults and cannot tell the two apart. */
function initialValue(def: FieldDef, v: unknown): unknown {
  if (v !== undefined && !isEmptyCollection(v)) return v;
  return def.default === undefined || isEmptyCollection(def.default) ? undefined : def.default;
}

/** Throws ERR_VALIDATION, changing nothing, if `values` cannot create an
 * item of `schema` (a required field missing, a value of the wrong type). */
export function checkNew(schema: Schema, values: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(values)) {
    const def = fieldDef(schema, k);
    if (!def) throw validationError(schema, k, "unknown field: the schema does not declare it");
    const why = v === undefined ? undefined : checkValue(def.type, v);
    if (why) throw validationError(schema, k, why);
  }
  for (const [k, def] of Object.entries(schema.fields)) {
    if (def.required && initialValue(def, own(values, k)) === undefined) throw validationError(schema, k, "required field is missing");
  }
}

/** `values[k]` unless inherited (`toString`, `constructor`, …). */
function own(values: Record<string, unknown>, k: string): unknown {
  return Object.hasOwn(values, k) ? values[k] : undefined;
}

/** The fields of a new item made from `values` (checked by `checkNew`),
 * defaults filled in, as the engine will store them. */
export function initialFields(schema: Schema, values: Record<string, unknown>): [string, Value][] {
  const out: [string, Value][] = [];
  for (const [k, def] of Object.entries(schema.fields)) {
    const v = initialValue(def, own(values, k));
    if (v !== undefined) out.push([k, toWire(def.type, v)]);
  }
  return out;
}

/** JS value → engine value; -0 becomes 0 (the canonical number). */
export function toWire(type: FieldType, v: unknown): Value {
  const num = (n: number) => (n === 0 ? 0 : n);
  switch (type) {
    case "string":
    case "text":
    case "ref":
      return { t: type, v: v as string };
    case "number":
      return { t: "number", v: num(v as number) };
    case "boolean":
      return { t: "boolean", v: v as boolean };
    case "date":
      return { t: "date", v: (v as Date).getTime() };
    case "set":
      return { t: "set", v: sortedScalars([...(v as Set<Scalar>)]) };
    case "map":
      return { t: "map", v: [...(v as Map<string, Scalar>)].map(([k, x]) => [k, typeof x === "number" ? num(x) : x] as [string, Scalar]).sort((a, b) => compareUtf8(a[0], b[0])) };
  }
}

export function sortedScalars(xs: Scalar[]): Scalar[] {
  return xs.map((x) => (x === 0 ? 0 : x)).sort(compareScalar);
}

/** Engine value → JS value. */
export function fromWire(v: Value): unknown {
  switch (v.t) {
    case "date":
      return new Date(v.v);
    case "set":
      return new Set(v.v);
    case "map":
      return new Map(v.v);
    default:
      return v.v;
  }
}

/** Structural equality of two JS field values. */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  if (a instanceof Set && b instanceof Set) return a.size === b.size && [...a].every((x) => b.has(x));
  if (a instanceof Map && b instanceof Map) return a.size === b.size && [...a].every(([k, x]) => b.has(k) && b.get(k) === x);
  return false;
}

export function toWireSchema(s: Schema): WireSchema {
  return {
    ns: s.ns,
    version: s.version,
    fields: Object.entries(s.fields).map(([name, f]) => ({
      name,
      type: f.type,
      required: !!f.required,
      // An empty collection is no value, and has no encoding: no default.
      ...(f.default !== undefined && !isEmptyCollection(f.default) ? { default: toWire(f.type, f.default) } : {}),
    })),
    upgrade: s.upgrade.map((st): WireStep => ("rename" in st ? { rename: { ...st.rename } } : "remove" in st ? { remove: st.remove } : { convert: { ...st.convert } })),
  };
}
