import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { IbexDB, type IbexOpenOptions, defineSchema } from "../src/index.node.js";

export const Task = defineSchema({
  ns: "task",
  version: 1,
  fields: {
    text: { type: "string", required: true },
    done: { type: "boolean", default: false },
    tags: { type: "set" },
    due: { type: "date" },
    prio: { type: "number" },
    meta: { type: "map" },
    notes: { type: "text" },
    parent: { type: "ref" },
  },
});

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "ibex-test-"));
}

export function openDb(opts: Partial<IbexOpenOptions> = {}): Promise<IbexDB> {
  return IbexDB.open({ name: "test", schemas: [Task], ...opts });
}

/** Lets queued microtasks and engine replies run. */
export function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}
