// An item as the main thread sees it: current values in memory, read and
// written synchronously. Writes are validated, applied at once, and queued
// for the engine; until the engine acknowledges them they are re-applied on
// top of any value arriving from it (local intent wins until the merge).
// While writes are outstanding the item also keeps the engine's state
// (`base`), so a write the engine refuses is undone exactly.

import type { Change, Scalar, Value } from "../wire/codec.js";
import type { ItemHost } from "./internal.js";
import {
  type FieldValue,
  type Fields,
  type ItemData,
  type Schema,
  type TextFields,
  fromWire,
  isEmptyCollection,
  sameValue,
  sortedScalars,
  toWire,
  validateField,
  validationError,
} from "./schema.js";
import { applySplices, hasSurrogates, splitsPair, toCodePoints } from "./text.js";

interface PendingWrite {
  seq: number;
  changes: Change[];
}

/** Field values and the soft-delete flag. */
interface State {
  data: Map<string, unknown>;
  deleted: boolean;
}

export class Item<F extends Fields = Fields> {
  readonly path: string;
  /** Increases on every change of value; a cheap snapshot for UI bindings. */
  revision = 0;
  private data = new Map<string, unknown>();
  private deletedFlag = false;
  /** Writes sent but not acknowledged: `pending[pendingStart..]` (a queue
   * without `shift()`, which is O(n) per call on long arrays: an editor
   * typing faster than the engine answers would go quadratic). */
  private pending: PendingWrite[] = [];
  private pendingStart = 0;
  private listeners = new Set<() => void>();
  private plain = new Map<string, { text: string; plain: boolean }>();
  /** Changes waiting for the next batch. */
  private queued: Change[] | null = null;
  /** The engine's state of this item while local writes are outstanding
   * (null when none are: the view is the engine's state then). */
  private base: (State & { exists: boolean }) | null = null;
  /** The engine has this item (it sent a head, or acknowledged a write). */
  private exists = false;

  /** @internal */
  constructor(
    private readonly db: ItemHost,
    readonly repo: string,
    readonly key: string,
    private schemaRef: Schema<F>,
  ) {
    this.path = `${repo}/${key}`;
  }

  get schema(): Schema<F> {
    return this.schemaRef;
  }

  /** Soft-deleted items keep their values and history. */
  get isDeleted(): boolean {
    return this.deletedFlag;
  }

  get<K extends keyof F & string>(field: K): FieldValue<F, K> {
    return this.data.get(field) as FieldValue<F, K>;
  }

  has(field: keyof F & string): boolean {
    return this.data.has(field);
  }

  /** Sets one field; `undefined` removes an optional field. Throws (and
   * changes nothing) if the value does not fit the schema. */
  set<K extends keyof F & string>(field: K, value: FieldValue<F, K> | undefined): void {
    validateField(this.schemaRef, field, value);
    this.commitChanges(this.changesFor(field, value));
  }

  /** Sets several fields at once; all are validated before any is applied. */
  update(values: { [K in keyof F]?: FieldValue<F, K> }): void {
    const entries = Object.entries(values) as [string, unknown][];
    for (const [k, v] of entries) validateField(this.schemaRef, k, v);
    this.commitChanges(entries.flatMap(([k, v]) => this.changesFor(k, v)));
  }

  /** Edits a text field in place, like `Array.prototype.splice` on its
   * characters: removes `deleteCount` UTF-16 code units at `index` and
   * inserts `insert` there. Only the edit travels (not the whole text), and
   * concurrent edits elsewhere in the text merge with it. Throws
   * ERR_VALIDATION (changing nothing) if the field is not a text field or
   * the range is outside the text or splits a surrogate pair. */
  splice(field: TextFields<F>, index: number, deleteCount: number, insert = ""): void {
    const def = this.schemaRef.fields[field];
    if (!def) throw validationError(this.schemaRef, field, "unknown field: the schema does not declare it");
    if (def.type !== "text") throw validationError(this.schemaRef, field, `splice needs a text field; this one is ${def.type}`);
    if (typeof insert !== "string") throw validationError(this.schemaRef, field, `splice inserts a string, not ${typeof insert}`);
    const cur = (this.data.get(field) as string | undefined) ?? "";
    if (!Number.isInteger(index) || !Number.isInteger(deleteCount) || index < 0 || deleteCount < 0 || index + deleteCount > cur.length) {
      throw validationError(this.schemaRef, field, `splice(${index}, ${deleteCount}) is outside the ${cur.length}-character text`);
    }
    if (splitsPair(cur, index) || splitsPair(cur, index + deleteCount)) throw validationError(this.schemaRef, field, `splice(${index}, ${deleteCount}) splits a surrogate pair`);
    if (deleteCount === 0 && insert === "") return;
    const plain = this.plainText(field, cur);
    const pos = plain ? index : toCodePoints(cur, index);
    const del = plain ? deleteCount : toCodePoints(cur.slice(index), deleteCount);
    this.commitChanges([{ op: "text", field, splices: [{ pos, delete: del, insert }] }]);
  }

  /** Whether text `field` (now `cur`) has no surrogate pairs, so UTF-16 and
   * code point positions agree; remembered per value so typing into a long
   * text does not rescan it. */
  private plainText(field: string, cur: string): boolean {
    const known = this.plain.get(field);
    if (known && known.text === cur) return known.plain;
    const plain = !hasSurrogates(cur);
    this.plain.set(field, { text: cur, plain });
    return plain;
  }

  /** Soft-deletes the item (its history stays; `restore()` undoes it). */
  delete(): void {
    if (!this.deletedFlag) this.commitChanges([{ op: "deleted", deleted: true }]);
  }

  restore(): void {
    if (this.deletedFlag) this.commitChanges([{ op: "deleted", deleted: false }]);
  }

  /** Called after every change of this item's value. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A plain snapshot of the fields. */
  toObject(): ItemData<F> {
    return Object.fromEntries(this.data) as ItemData<F>;
  }

  /** Commits the changes of who/when on the engine: see `db.history()`. */
  history() {
    return this.db.history(this.path);
  }

  private changesFor(field: string, value: unknown): Change[] {
    const cur = this.data.get(field);
    if (value === undefined || isEmptyCollection(value)) return cur === undefined ? [] : [{ op: "remove", field }];
    if (sameValue(cur, value)) return [];
    const type = this.schemaRef.fields[field]!.type;
    // Collections change element by element, so concurrent additions made
    // elsewhere survive when these changes are re-applied on a newer value.
    if (type === "set" && cur instanceof Set) {
      const next = value as Set<Scalar>;
      const add = [...next].filter((x) => !cur.has(x));
      const rem = [...cur].filter((x) => !next.has(x)) as Scalar[];
      const out: Change[] = [];
      if (add.length) out.push({ op: "setAdd", field, elems: sortedScalars(add) });
      if (rem.length) out.push({ op: "setRemove", field, elems: sortedScalars(rem) });
      return out;
    }
    if (type === "map" && cur instanceof Map) {
      const next = value as Map<string, Scalar>;
      const out: Change[] = [];
      for (const [k, x] of next) if (cur.get(k) !== x) out.push({ op: "mapPut", field, key: k, value: x === 0 ? 0 : x });
      for (const k of cur.keys()) if (!next.has(k)) out.push({ op: "mapRemove", field, key: k });
      return out;
    }
    return [{ op: "put", field, value: toWire(type, value) }];
  }

  private commitChanges(changes: Change[], evenIfEmpty = false): void {
    if (changes.length === 0 && !evenIfEmpty) return;
    this.db.checkWritable(this.repo);
    // First outstanding write: remember what the engine has.
    this.base ??= { data: new Map(this.data), deleted: this.deletedFlag, exists: this.exists };
    const view = { data: this.data, deleted: this.deletedFlag };
    for (const c of changes) this.applyChange(view, c);
    this.deletedFlag = view.deleted;
    this.db.enqueue(this, changes);
    this.changed();
  }

  /** Applies one change to `s` in place (collections are replaced, never
   * mutated: a snapshot shares them). */
  private applyChange(s: State, c: Change): void {
    switch (c.op) {
      case "put":
        s.data.set(c.field, fromWire(c.value));
        break;
      case "remove":
        s.data.delete(c.field);
        break;
      case "setAdd":
      case "setRemove": {
        const set = new Set(s.data.get(c.field) as Set<Scalar> | undefined);
        for (const e of c.elems) c.op === "setAdd" ? set.add(e) : set.delete(e);
        set.size ? s.data.set(c.field, set) : s.data.delete(c.field);
        break;
      }
      case "mapPut":
      case "mapRemove": {
        const m = new Map(s.data.get(c.field) as Map<string, Scalar> | undefined);
        c.op === "mapPut" ? m.set(c.key, c.value) : m.delete(c.key);
        m.size ? s.data.set(c.field, m) : s.data.delete(c.field);
        break;
      }
      case "text": {
        const cur = (s.data.get(c.field) as string | undefined) ?? "";
        const plain = this.plainText(c.field, cur);
        const next = applySplices(cur, c.splices, plain);
        this.plain.set(c.field, { text: next, plain: plain && c.splices.every((x) => !hasSurrogates(x.insert)) });
        if (next !== "" || s.data.has(c.field)) s.data.set(c.field, next);
        break;
      }
      case "deleted":
        s.deleted = c.deleted;
        break;
    }
  }

  /** @internal queues changes for the next batch. */
  queue(changes: Change[]): void {
    (this.queued ??= []).push(...changes);
  }

  /** @internal the queued changes go out in batch `seq`. */
  send(seq: number): Change[] {
    const changes = this.queued ?? [];
    this.queued = null;
    this.pending.push({ seq, changes });
    return changes;
  }

  /** Outstanding writes, oldest first. */
  private *outstanding(): Generator<Change[]> {
    for (let i = this.pendingStart; i < this.pending.length; i++) yield this.pending[i]!.changes;
    if (this.queued) yield this.queued;
  }

  /** Removes batch `seq` (and older) from the outstanding writes, giving
   * its changes to `apply` (the engine holds them now). */
  private settle(seq: number, apply: ((changes: Change[]) => void) | null): void {
    while (this.pendingStart < this.pending.length && this.pending[this.pendingStart]!.seq <= seq) {
      apply?.(this.pending[this.pendingStart]!.changes);
      this.pendingStart++;
    }
    if (this.pendingStart === this.pending.length) {
      this.pending = [];
      this.pendingStart = 0;
    } else if (this.pendingStart > 1024 && this.pendingStart * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.pendingStart);
      this.pendingStart = 0;
    }
    if (this.pending.length === 0 && !this.queued) this.base = null;
  }

  /** @internal the engine stored this item's writes up to batch `seq`. */
  acknowledged(seq: number): void {
    const base = this.base;
    this.exists = true;
    this.settle(
      seq,
      base
        ? (changes) => {
            for (const c of changes) this.applyChange(base, c);
            base.exists = true;
          }
        : null,
    );
  }

  /** @internal the engine refused this item's write of batch `seq`: the
   * view goes back to the engine's state plus the other outstanding writes. */
  rejected(seq: number): void {
    const base = this.base;
    // Only the refused batch: earlier ones were settled in order.
    const i = this.pending.findIndex((p, j) => j >= this.pendingStart && p.seq === seq);
    if (i >= 0) this.pending.splice(i, 1);
    if (this.pending.length === this.pendingStart && !this.queued) this.base = null;
    if (base) this.rebuild(base);
  }

  /** @internal the queued changes cannot be sent (their repository failed to load). */
  rejectQueued(): void {
    const base = this.base;
    this.queued = null;
    if (this.pending.length === this.pendingStart) this.base = null;
    if (base) this.rebuild(base);
  }

  /** The view = `base` + every outstanding write; tells listeners if it
   * changed, and the database if the item is gone (it never reached the
   * engine and nothing is outstanding). */
  private rebuild(base: State & { exists: boolean }): void {
    const before = this.signature();
    const view: State = { data: new Map(base.data), deleted: base.deleted };
    for (const changes of this.outstanding()) for (const c of changes) this.applyChange(view, c);
    this.data = view.data;
    this.deletedFlag = view.deleted;
    if (!base.exists && !this.base) {
      this.gone = true;
      this.db.itemGone(this);
    }
    if (this.signature() !== before || this.gone) this.changed();
  }

  /** @internal never stored by the engine and no longer in the database
   * (its creation failed). */
  gone = false;

  /** @internal a value from the engine (loaded, merged or remote). */
  applyHead(schema: Schema<F>, deleted: boolean, fields: Map<string, Value>, notify: boolean): void {
    this.schemaRef = schema;
    this.exists = true;
    this.gone = false;
    const before = notify ? this.signature() : "";
    const engine: State = { data: new Map(), deleted };
    for (const [k, v] of fields) engine.data.set(k, fromWire(v));
    if (this.base) {
      this.base = { data: new Map(engine.data), deleted, exists: true };
      for (const changes of this.outstanding()) for (const c of changes) this.applyChange(engine, c);
    }
    this.data = engine.data;
    this.deletedFlag = engine.deleted;
    if (!notify) {
      this.revision++;
    } else if (this.signature() !== before) {
      this.changed();
    }
  }

  private signature(): string {
    const parts: string[] = [String(this.deletedFlag)];
    for (const [k, v] of this.data) parts.push(k, v instanceof Date ? `d${v.getTime()}` : v instanceof Set ? `s${[...v].join("\u0000")}` : v instanceof Map ? `m${[...v].join("\u0000")}` : `${typeof v}${String(v)}`);
    return parts.join("\u0001");
  }

  private changed(): void {
    this.revision++;
    this.db.itemChanged(this);
    for (const l of [...this.listeners]) l();
  }

  /** @internal values for a new item (defaults filled in), committed. */
  initialize(values: Record<string, unknown>): void {
    const changes: Change[] = [];
    for (const [field, def] of Object.entries(this.schemaRef.fields)) {
      const v = field in values ? values[field] : def.default;
      if (v !== undefined && !isEmptyCollection(v)) changes.push({ op: "put", field, value: toWire(def.type, v) });
    }
    // An item with no values still exists once created: send the write.
    this.commitChanges(changes, true);
  }
}
