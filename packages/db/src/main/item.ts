// An item as the main thread sees it: current values in memory, read and
// written synchronously. Writes are validated, applied at once, and queued
// for the engine; until the engine acknowledges them they are re-applied on
// top of any value arriving from it (local intent wins until the merge).
// While writes are outstanding the item also keeps the engine's state
// (`base`), so a write the engine refuses is undone exactly.

import { type Change, type Scalar, fieldsEnd } from "../wire/codec.js";
import type { At, Conflict, HistoryEntry, HistoryOptions } from "./history.js";
import type { ItemHost } from "./internal.js";
import {
  type FieldValue,
  type Fields,
  type ItemData,
  type Schema,
  type TextFields,
  checkValue,
  fieldDef,
  fromWire,
  initialFields,
  isEmptyCollection,
  sameValue,
  sortedScalars,
  toWire,
  validateField,
  validationError,
} from "./schema.js";
import { applySplices, hasSurrogates, splitsPair, toCodePoints } from "./text.js";
import { type Layout, type Vals, layoutOf } from "./values.js";

interface PendingWrite {
  seq: number;
  changes: Change[];
}

/** Field values (see values.ts) and the soft-delete flag. */
interface State {
  vals: Vals;
  deleted: boolean;
}

/** What only some items need, allocated on first need and dropped when no
 * longer needed: most of a large repository's items are never written,
 * watched or edited as text, and the mirror holds all of them. */
interface Local {
  /** Writes sent but not acknowledged: `pending[pendingStart..]` (a queue
   * without `shift()`, which is O(n) per call on long arrays: an editor
   * typing faster than the engine answers would go quadratic). */
  pending: PendingWrite[];
  pendingStart: number;
  /** Changes waiting for the next batch. */
  queued: Change[] | null;
  /** The engine's state of this item while local writes are outstanding
   * (null when none are: the view is the engine's state then). */
  base: (State & { exists: boolean }) | null;
  listeners: Set<() => void> | null;
  /** Per text field: whether its current value has no surrogate pairs. */
  plain: Map<string, { text: string; plain: boolean }> | null;
}

const DELETED = 1;
/** The engine has this item (it sent a head, or acknowledged a write). */
const EXISTS = 2;
/** Never stored by the engine and no longer in the database. */
const GONE = 4;

/** Whether two field lists (`a` at `i`, `b` at `j`) are the same bytes. */
function sameFields(a: Uint8Array, i: number, b: Uint8Array, j: number): boolean {
  const n = fieldsEnd(a, i) - i;
  if (fieldsEnd(b, j) - j !== n) return false;
  for (let k = 0; k < n; k++) if (a[i + k] !== b[j + k]) return false;
  return true;
}

function valueSignature(v: unknown): string {
  if (v instanceof Date) return `d${v.getTime()}`;
  if (v instanceof Set) return `s${[...v].join("\u0000")}`;
  // A set not read since it was decoded (values.ts).
  if (Array.isArray(v)) return `s${v.join("\u0000")}`;
  if (v instanceof Map) return `m${[...v].join("\u0000")}`;
  return `${typeof v}${String(v)}`;
}

export class Item<F extends Fields = Fields> {
  /** Increases on every change of value; a cheap snapshot for UI bindings. */
  revision = 0;
  private lay: Layout;
  /** The values, or null while they are still the engine's undecoded
   * head: `src` at offset `at` (decoded on first read; a repository's
   * load does not pay for values nobody reads). */
  private vals: Vals | null = null;
  private src: Uint8Array | null = null;
  private srcAt = 0;
  private flags = 0;
  private local: Local | null = null;
  private pathStr: string | undefined = undefined;

  /** @internal */
  constructor(
    private readonly db: ItemHost,
    readonly repo: string,
    readonly key: string,
    schema: Schema<F>,
  ) {
    this.lay = layoutOf(schema);
  }

  /** `repo/key` (made on first use: most items are never asked). */
  get path(): string {
    return (this.pathStr ??= `${this.repo}/${this.key}`);
  }

  private values(): Vals {
    if (this.vals) return this.vals;
    const v = this.src ? this.lay.decode(this.src, this.srcAt) : this.lay.empty();
    this.vals = v;
    this.src = null;
    return v;
  }

  private ensureLocal(): Local {
    return (this.local ??= { pending: [], pendingStart: 0, queued: null, base: null, listeners: null, plain: null });
  }

  /** Drops `local` once nothing in it is needed. */
  private releaseLocal(): void {
    const l = this.local;
    if (l && l.pendingStart === l.pending.length && !l.queued && !l.base && !l.listeners?.size && !l.plain) this.local = null;
  }

  private setDeleted(deleted: boolean): void {
    this.flags = deleted ? this.flags | DELETED : this.flags & ~DELETED;
  }

  /** @internal never stored by the engine and no longer in the database
   * (its creation failed). */
  get gone(): boolean {
    return (this.flags & GONE) !== 0;
  }

  get schema(): Schema<F> {
    return this.lay.schema as Schema<F>;
  }

  /** Soft-deleted items keep their values and history. */
  get isDeleted(): boolean {
    return (this.flags & DELETED) !== 0;
  }

  get<K extends keyof F & string>(field: K): FieldValue<F, K> {
    return this.lay.get(this.values(), field) as FieldValue<F, K>;
  }

  has(field: keyof F & string): boolean {
    const vals = this.values();
    const k = this.lay.find(vals, field);
    return k >= 0 && vals[k] !== undefined;
  }

  /** Sets one field; `undefined` removes an optional field. Throws (and
   * changes nothing) if the value does not fit the schema. */
  set<K extends keyof F & string>(field: K, value: FieldValue<F, K> | undefined): void {
    validateField(this.schema, field, value);
    this.commitChanges(this.changesFor(field, value));
  }

  /** Sets several fields at once; all are validated before any is applied. */
  update(values: { [K in keyof F]?: FieldValue<F, K> }): void {
    const entries = Object.entries(values) as [string, unknown][];
    for (const [k, v] of entries) validateField(this.schema, k, v);
    this.commitChanges(entries.flatMap(([k, v]) => this.changesFor(k, v)));
  }

  /** Edits a text field in place, like `Array.prototype.splice` on its
   * characters: removes `deleteCount` UTF-16 code units at `index` and
   * inserts `insert` there. Only the edit travels (not the whole text), and
   * concurrent edits elsewhere in the text merge with it. Throws
   * ERR_VALIDATION (changing nothing) if the field is not a text field or
   * the range is outside the text or splits a surrogate pair. */
  splice(field: TextFields<F>, index: number, deleteCount: number, insert = ""): void {
    const schema = this.schema;
    const def = fieldDef(schema, field);
    if (!def) throw validationError(schema, field, "unknown field: the schema does not declare it");
    if (def.type !== "text") throw validationError(schema, field, `splice needs a text field; this one is ${def.type}`);
    if (typeof insert !== "string") throw validationError(schema, field, `splice inserts a string, not ${typeof insert}`);
    // A well-formed insert that splits no pair keeps the text well-formed.
    const why = checkValue("text", insert);
    if (why) throw validationError(schema, field, why);
    const cur = (this.lay.get(this.values(), field) as string | undefined) ?? "";
    if (!Number.isInteger(index) || !Number.isInteger(deleteCount) || index < 0 || deleteCount < 0 || index + deleteCount > cur.length) {
      throw validationError(schema, field, `splice(${index}, ${deleteCount}) is outside the ${cur.length}-character text`);
    }
    if (splitsPair(cur, index) || splitsPair(cur, index + deleteCount)) throw validationError(schema, field, `splice(${index}, ${deleteCount}) splits a surrogate pair`);
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
    const l = this.ensureLocal();
    const known = l.plain?.get(field);
    if (known && known.text === cur) return known.plain;
    const plain = !hasSurrogates(cur);
    (l.plain ??= new Map()).set(field, { text: cur, plain });
    return plain;
  }

  /** Soft-deletes the item (its history stays; `restore()` undoes it). */
  delete(): void {
    if (!this.isDeleted) this.commitChanges([{ op: "deleted", deleted: true }]);
  }

  restore(): void {
    if (this.isDeleted) this.commitChanges([{ op: "deleted", deleted: false }]);
  }

  /** Called after every change of this item's value. */
  subscribe(listener: () => void): () => void {
    const set = (this.ensureLocal().listeners ??= new Set());
    set.add(listener);
    return () => {
      set.delete(listener);
      if (this.local?.listeners === set && set.size === 0) {
        this.local.listeners = null;
        this.releaseLocal();
      }
    };
  }

  /** A plain snapshot of the fields. */
  toObject(): ItemData<F> {
    const out: Record<string, unknown> = {};
    this.lay.forEach(this.values(), (k, v) => (out[k] = v));
    return out as ItemData<F>;
  }

  /** Every commit of this item, oldest first: who (verified session and
   * user), when, and each changed field before → after. Read from the log
   * on demand. With `limit` (and `before`), one page of the newest
   * entries: read a long history a page at a time. */
  history(opts?: HistoryOptions): Promise<HistoryEntry[]> {
    return this.db.history(this.path, opts);
  }

  /** The item as it was at a time (Date or ms) or right after a commit
   * (its id from `history()`): a read-only Item (writes throw
   * ERR_FORBIDDEN), or undefined if it did not exist yet. */
  at(at: At): Promise<Item<F> | undefined> {
    return this.db.itemAt(this.path, at) as Promise<Item<F> | undefined>;
  }

  /** Restores this item's value as of `commit` (an id from `history()`)
   * by writing it as a new commit, which syncs like any edit; history is
   * never rewritten. Resolves with the new commit's id (undefined if the
   * value already is that). */
  revert(commit: string): Promise<string | undefined> {
    return this.db.revertItem(this.path, commit);
  }

  /** Fields whose concurrent values a merge decided and nobody has written
   * since: the value shown and the ones that lost, with who and when. */
  conflicts(): Promise<Conflict[]> {
    return this.db.conflicts(this.path);
  }

  private changesFor(field: string, value: unknown): Change[] {
    const cur = this.lay.get(this.values(), field);
    if (value === undefined || isEmptyCollection(value)) return cur === undefined ? [] : [{ op: "remove", field }];
    if (sameValue(cur, value)) return [];
    const type = fieldDef(this.schema, field)!.type;
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
    const vals = this.values();
    // First outstanding write: remember what the engine has.
    const l = this.ensureLocal();
    l.base ??= { vals: vals.slice(), deleted: this.isDeleted, exists: (this.flags & EXISTS) !== 0 };
    const view = { vals, deleted: this.isDeleted };
    for (const c of changes) this.applyChange(view, c);
    this.setDeleted(view.deleted);
    this.db.enqueue(this, changes);
    this.changed();
  }

  /** Applies one change to `s` in place (collections are replaced, never
   * mutated: a snapshot shares them). */
  private applyChange(s: State, c: Change): void {
    const lay = this.lay;
    switch (c.op) {
      case "put":
        lay.set(s.vals, c.field, fromWire(c.value));
        break;
      case "remove":
        lay.remove(s.vals, c.field);
        break;
      case "setAdd":
      case "setRemove": {
        const set = new Set(lay.get(s.vals, c.field) as Set<Scalar> | undefined);
        for (const e of c.elems) c.op === "setAdd" ? set.add(e) : set.delete(e);
        set.size ? lay.set(s.vals, c.field, set) : lay.remove(s.vals, c.field);
        break;
      }
      case "mapPut":
      case "mapRemove": {
        const m = new Map(lay.get(s.vals, c.field) as Map<string, Scalar> | undefined);
        c.op === "mapPut" ? m.set(c.key, c.value) : m.delete(c.key);
        m.size ? lay.set(s.vals, c.field, m) : lay.remove(s.vals, c.field);
        break;
      }
      case "text": {
        const k = lay.find(s.vals, c.field);
        const cur = ((k >= 0 ? s.vals[k] : undefined) as string | undefined) ?? "";
        const plain = this.plainText(c.field, cur);
        const next = applySplices(cur, c.splices, plain);
        this.local!.plain!.set(c.field, { text: next, plain: plain && c.splices.every((x) => !hasSurrogates(x.insert)) });
        if (next !== "" || (k >= 0 && s.vals[k] !== undefined)) lay.set(s.vals, c.field, next);
        break;
      }
      case "deleted":
        s.deleted = c.deleted;
        break;
    }
  }

  /** @internal queues changes for the next batch. */
  queue(changes: Change[]): void {
    (this.ensureLocal().queued ??= []).push(...changes);
  }

  /** @internal the queued changes go out in batch `seq`. */
  send(seq: number): Change[] {
    const l = this.ensureLocal();
    const changes = l.queued ?? [];
    l.queued = null;
    l.pending.push({ seq, changes });
    return changes;
  }

  /** Outstanding writes, oldest first. */
  private *outstanding(): Generator<Change[]> {
    const l = this.local;
    if (!l) return;
    for (let i = l.pendingStart; i < l.pending.length; i++) yield l.pending[i]!.changes;
    if (l.queued) yield l.queued;
  }

  /** Removes batch `seq` (and older) from the outstanding writes, giving
   * its changes to `apply` (the engine holds them now). */
  private settle(l: Local, seq: number, apply: ((changes: Change[]) => void) | null): void {
    while (l.pendingStart < l.pending.length && l.pending[l.pendingStart]!.seq <= seq) {
      apply?.(l.pending[l.pendingStart]!.changes);
      l.pendingStart++;
    }
    if (l.pendingStart === l.pending.length) {
      l.pending = [];
      l.pendingStart = 0;
    } else if (l.pendingStart > 1024 && l.pendingStart * 2 > l.pending.length) {
      l.pending = l.pending.slice(l.pendingStart);
      l.pendingStart = 0;
    }
    if (l.pending.length === 0 && !l.queued) l.base = null;
  }

  /** @internal the engine stored this item's writes up to batch `seq`. */
  acknowledged(seq: number): void {
    this.flags |= EXISTS;
    const l = this.local;
    if (!l) return;
    const base = l.base;
    this.settle(
      l,
      seq,
      base
        ? (changes) => {
            for (const c of changes) this.applyChange(base, c);
            base.exists = true;
          }
        : null,
    );
    this.releaseLocal();
  }

  /** @internal the engine refused this item's write of batch `seq`: the
   * view goes back to the engine's state plus the other outstanding writes. */
  rejected(seq: number): void {
    const l = this.local;
    if (!l) return;
    const base = l.base;
    // Only the refused batch: earlier ones were settled in order.
    const i = l.pending.findIndex((p, j) => j >= l.pendingStart && p.seq === seq);
    if (i >= 0) l.pending.splice(i, 1);
    if (l.pending.length === l.pendingStart && !l.queued) l.base = null;
    if (base) this.rebuild(base);
    this.releaseLocal();
  }

  /** @internal the queued changes cannot be sent (their repository failed to load). */
  rejectQueued(): void {
    const l = this.local;
    if (!l) return;
    const base = l.base;
    l.queued = null;
    if (l.pending.length === l.pendingStart) l.base = null;
    if (base) this.rebuild(base);
    this.releaseLocal();
  }

  /** The view = `base` + every outstanding write; tells listeners if it
   * changed, and the database if the item is gone (it never reached the
   * engine and nothing is outstanding). */
  private rebuild(base: State & { exists: boolean }): void {
    const before = this.signature();
    const view: State = { vals: base.vals.slice(), deleted: base.deleted };
    for (const changes of this.outstanding()) for (const c of changes) this.applyChange(view, c);
    this.vals = view.vals;
    this.src = null;
    this.setDeleted(view.deleted);
    const gone = !base.exists && !this.local?.base;
    if (gone) {
      this.flags |= GONE;
      this.db.itemGone(this);
    }
    if (this.signature() !== before || gone) this.changed();
  }

  /** @internal a value from the engine (loaded, merged or remote): its
   * field list is `bytes` at offset `at`. With `notify`, a change tells
   * listeners and the database (a new value while loading does not). */
  applyHead(schema: Schema<F>, deleted: boolean, bytes: Uint8Array, at: number, notify: boolean): void {
    const lay = layoutOf(schema);
    const base = this.local?.base;
    this.flags = (this.flags | EXISTS) & ~GONE;
    if (!base) {
      if (!notify) {
        // Loading: keep the bytes; the values decode when first read.
        this.lay = lay;
        this.vals = null;
        this.src = bytes;
        this.srcAt = at;
        this.setDeleted(deleted);
        this.revision++;
        return;
      }
      // Never decoded: compare bytes, not values.
      const undecoded = this.vals === null && this.src !== null;
      if (undecoded && lay === this.lay && deleted === this.isDeleted && sameFields(this.src!, this.srcAt, bytes, at)) {
        this.db.itemTouched(this);
        return;
      }
      const before = this.vals === null ? null : this.signature();
      this.lay = lay;
      this.vals = null;
      this.src = bytes;
      this.srcAt = at;
      this.setDeleted(deleted);
      if (before === null || this.signature() !== before) this.changed();
      else this.db.itemTouched(this);
      return;
    }
    const before = notify ? this.signature() : "";
    this.lay = lay;
    const engine: State = { vals: lay.decode(bytes, at), deleted };
    this.local!.base = { vals: engine.vals.slice(), deleted, exists: true };
    for (const changes of this.outstanding()) for (const c of changes) this.applyChange(engine, c);
    this.vals = engine.vals;
    this.src = null;
    this.setDeleted(engine.deleted);
    if (!notify) {
      this.revision++;
    } else if (this.signature() !== before) {
      this.changed();
    } else {
      this.db.itemTouched(this);
    }
  }

  private signature(): string {
    const parts: string[] = [String(this.isDeleted)];
    const vals = this.values();
    const lay = this.lay;
    for (let i = 0; i < lay.n; i++) if (vals[i] !== undefined) parts.push(lay.names[i]!, valueSignature(vals[i]));
    for (let j = lay.n; j < vals.length; j += 2) parts.push(vals[j] as string, valueSignature(vals[j + 1]));
    return parts.join("\u0001");
  }

  private changed(): void {
    this.revision++;
    this.db.itemChanged(this);
    const listeners = this.local?.listeners;
    if (listeners) for (const l of [...listeners]) l();
  }

  /** @internal a read-only view of the past moved to before this item
   * existed: queries drop it, reading it shows no values. */
  vanish(): void {
    if (this.gone) return;
    this.flags = (this.flags | GONE) & ~EXISTS;
    this.vals = this.lay.empty();
    this.src = null;
    this.changed();
  }

  /** @internal values for a new item (defaults filled in), committed. */
  initialize(values: Record<string, unknown>): void {
    const changes: Change[] = initialFields(this.schema, values).map(([field, value]) => ({ op: "put", field, value }));
    // An item with no values still exists once created: send the write.
    this.commitChanges(changes, true);
  }
}
