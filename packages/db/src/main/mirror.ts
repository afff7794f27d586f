// The in-memory copy of every loaded item, by repository and key: what
// makes reads synchronous. Values arrive from the engine as heads.

import type { Head } from "../wire/codec.js";
import type { ItemHost } from "./internal.js";
import { Item } from "./item.js";
import type { Fields, Schema } from "./schema.js";

/** Paths remembered by `at` (cleared when full). */
const PATH_CACHE = 4_096;

export class Mirror {
  private byRepo = new Map<string, Map<string, Item>>();
  /** Items recently looked up by full path: `item(path)` in a render loop
   * without splitting the path again. Not every item's path: a map of all
   * of them (and their path strings) cost ~50 bytes per item. */
  private byPath = new Map<string, Item>();
  private keysCache = new Map<string, string[]>();
  private lastRepo = "";
  private lastItems: Map<string, Item> | undefined = undefined;
  private schemas = new Map<string, Schema>();
  private latest = new Map<string, Schema>();
  /** Schemas with no declared fields for namespaces the app does not know. */
  private unknown = new Map<string, Schema>();
  /** The last schema looked up for a head (heads of a load repeat it). */
  private lastNs = "";
  private lastVersion = -1;
  private lastSchema: Schema | null = null;

  constructor(
    schemas: readonly Schema[],
    private readonly host: ItemHost,
  ) {
    for (const s of schemas) {
      this.schemas.set(s.id, s);
      const cur = this.latest.get(s.ns);
      if (!cur || cur.version < s.version) this.latest.set(s.ns, s);
    }
  }

  /** Every schema the database was opened with. */
  get schemaList(): Schema[] {
    return [...this.schemas.values()];
  }

  knows(schema: Schema): boolean {
    return this.schemas.has(schema.id);
  }

  get(repo: string, key: string): Item | undefined {
    return this.byRepo.get(repo)?.get(key);
  }

  /** The item at `path`, if loaded (a malformed path finds nothing). */
  at(path: string): Item | undefined {
    let item = this.byPath.get(path);
    if (item) return item;
    // The repository of the last lookup, without slicing and hashing it
    // again (lookups come in runs over one repository).
    const r = this.lastRepo;
    let items: Map<string, Item> | undefined;
    let key: string;
    if (r.length && path.length > r.length && path.charCodeAt(r.length) === 47 && path.startsWith(r)) {
      items = this.lastItems;
      key = path.slice(r.length + 1);
    } else {
      const i = path.lastIndexOf("/");
      if (i <= 0) return undefined;
      const repo = path.slice(0, i);
      items = this.byRepo.get(repo);
      if (!items) return undefined;
      this.lastRepo = repo;
      this.lastItems = items;
      key = path.slice(i + 1);
    }
    item = items?.get(key);
    if (item) {
      if (this.byPath.size >= PATH_CACHE) this.byPath.clear();
      this.byPath.set(path, item);
    }
    return item;
  }

  count(repo: string): number {
    return this.byRepo.get(repo)?.size ?? 0;
  }

  /** The keys of a repository's items (a copy: callers may sort it). */
  keys(repo: string): string[] {
    let k = this.keysCache.get(repo);
    if (!k) {
      k = [...(this.byRepo.get(repo)?.keys() ?? [])];
      this.keysCache.set(repo, k);
    }
    return k.slice();
  }

  values(repo: string): Iterable<Item> {
    return this.byRepo.get(repo)?.values() ?? [];
  }

  /** A new, empty item (not in the mirror until `add`). */
  newItem<F extends Fields>(repo: string, key: string, schema: Schema<F>): Item<F> {
    return new Item<F>(this.host, repo, key, schema);
  }

  add(item: Item<any>): void {
    let m = this.byRepo.get(item.repo);
    if (!m) {
      m = new Map();
      this.byRepo.set(item.repo, m);
    }
    m.set(item.key, item);
    this.keysCache.delete(item.repo);
  }

  remove(item: Item<any>): void {
    if (this.byRepo.get(item.repo)?.get(item.key) !== item) return;
    this.byRepo.get(item.repo)!.delete(item.key);
    if (this.byPath.size) this.byPath.delete(item.path);
    this.keysCache.delete(item.repo);
  }

  /** Applies a head from the engine to its item (created if new). While a
   * repository loads (`notify` false) its values stay undecoded. */
  applyHead(h: Head, notify: boolean): Item {
    let repo = this.byRepo.get(h.repo);
    if (!repo) {
      repo = new Map();
      this.byRepo.set(h.repo, repo);
    }
    let item = repo.get(h.key);
    const schema = this.schemaFor(h.ns, h.version);
    if (!item) {
      item = new Item(this.host, h.repo, h.key, schema);
      repo.set(h.key, item);
      if (this.keysCache.size) this.keysCache.delete(h.repo);
    }
    item.applyHead(schema, h.deleted, h.bytes, h.fields, notify);
    return item;
  }

  /** The schema a head is in: the exact version if the app knows it, else
   * its newest version of that namespace (the engine upgrades values to
   * the newest version it knows), else a schema with no declared fields. */
  private schemaFor(ns: string, version: number): Schema {
    if (ns === this.lastNs && version === this.lastVersion) return this.lastSchema!;
    const id = `${ns}@${version}`;
    let s = this.schemas.get(id) ?? this.latest.get(ns) ?? this.unknown.get(id);
    if (!s) {
      s = { ns, version, fields: {}, upgrade: [], id };
      this.unknown.set(id, s);
    }
    this.lastNs = ns;
    this.lastVersion = version;
    this.lastSchema = s;
    return s;
  }
}
