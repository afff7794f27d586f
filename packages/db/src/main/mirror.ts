// The in-memory copy of every loaded item, by repository and by path: what
// makes reads synchronous. Values arrive from the engine as heads.

import type { HeadRecord } from "../wire/codec.js";
import type { ItemHost } from "./internal.js";
import { Item } from "./item.js";
import type { Fields, Schema } from "./schema.js";

export class Mirror {
  private byRepo = new Map<string, Map<string, Item>>();
  /** Every item by full path: `item(path)` without parsing the path again. */
  private byPath = new Map<string, Item>();
  private keysCache = new Map<string, string[]>();
  private schemas = new Map<string, Schema>();
  private latest = new Map<string, Schema>();

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

  at(path: string): Item | undefined {
    return this.byPath.get(path);
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
    this.byPath.set(item.path, item);
    this.keysCache.delete(item.repo);
  }

  remove(item: Item<any>): void {
    if (this.byRepo.get(item.repo)?.get(item.key) !== item) return;
    this.byRepo.get(item.repo)!.delete(item.key);
    this.byPath.delete(item.path);
    this.keysCache.delete(item.repo);
  }

  /** Applies a head from the engine to its item (created if new). */
  applyHead(h: HeadRecord, notify: boolean): Item {
    let item = this.get(h.repo, h.key);
    const schema = this.schemaFor(h.ns, h.version);
    if (!item) {
      item = new Item(this.host, h.repo, h.key, schema);
      this.add(item);
    }
    item.applyHead(schema, h.deleted, h.fields, notify);
    return item;
  }

  /** The schema a head is in: the exact version if the app knows it, else
   * its newest version of that namespace (the engine upgrades values to
   * the newest version it knows), else a schema with no declared fields. */
  private schemaFor(ns: string, version: number): Schema {
    return this.schemas.get(`${ns}@${version}`) ?? this.latest.get(ns) ?? { ns, version, fields: {}, upgrade: [], id: `${ns}@${version}` };
  }
}
