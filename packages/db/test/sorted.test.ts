// The block list behind query results (src/main/sorted.ts) against a plain
// sorted array, through enough insertions and removals that blocks split,
// empty and join.

import { describe, expect, it } from "vitest";

import { SortedList } from "../src/main/sorted.js";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe("SortedList", () => {
  it("stays equal to a sorted array through random insertions, sorted bulk insertions and removals", () => {
    const seed = Number(process.env.IBEX_SEED ?? Date.now() % 1e9);
    const rand = rng(seed);
    // Objects (removal is by identity), ordered by value then id.
    type X = { v: number; id: number };
    const cmp = (a: X, b: X) => a.v - b.v || a.id - b.id;
    const list = new SortedList<X>(cmp);
    let model: X[] = [];
    let id = 0;
    for (let round = 0; round < 60; round++) {
      const op = rand();
      if (op < 0.4) {
        for (let i = 0; i < 200; i++) {
          const x = { v: Math.floor(rand() * 500), id: id++ };
          list.insert(x);
          model.push(x);
        }
      } else if (op < 0.7) {
        // A slice of a load: sorted among itself, either after everything or anywhere.
        const after = rand() < 0.5;
        const base = after ? (model.length ? Math.max(...model.map((x) => x.v)) + 1 : 0) : 0;
        const xs = Array.from({ length: Math.floor(rand() * 1500) }, () => ({ v: base + Math.floor(rand() * 500), id: id++ })).sort(cmp);
        list.insertSorted(xs);
        model.push(...xs);
      } else {
        // Remove a random share (some twice: the second removal finds nothing).
        const gone = model.filter(() => rand() < 0.4);
        for (const x of gone) expect(list.remove(x)).toBe(true);
        if (gone[0]) expect(list.remove(gone[0])).toBe(false);
        const set = new Set(gone);
        model = model.filter((x) => !set.has(x));
      }
      model.sort(cmp);
      expect(list.size, `seed ${seed}`).toBe(model.length);
      expect(list.toArray()).toEqual(model);
      expect(list.first(37)).toEqual(model.slice(0, 37));
    }
  });

  it("finds an element the order no longer places (a comparator whose inputs changed)", () => {
    const items = Array.from({ length: 2000 }, (_, i) => ({ v: i }));
    const list = new SortedList<{ v: number }>((a, b) => a.v - b.v);
    list.insertSorted(items);
    const x = items[1234]!;
    x.v = -5;
    expect(list.remove(x)).toBe(true);
    expect(list.size).toBe(1999);
    expect(list.toArray().includes(x)).toBe(false);
  });
});
