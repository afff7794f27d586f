// Item.splice: edits of a text field that travel as splices, persist, and
// merge with concurrent edits made elsewhere in the same text.
import { describe, expect, it } from "vitest";

import { IbexError } from "../src/index.node.js";
import { Task, openDb, settle, tempDir } from "./helpers.js";

function code(fn: () => void): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(IbexError);
    return (e as IbexError).code;
  }
  return undefined;
}

describe("text splices", () => {
  it("edits in place, synchronously, and survives a reopen", async () => {
    const dir = tempDir();
    const db = await openDb({ storage: { dir } });
    const item = db.create("/data/notes", Task, { text: "t" }, { key: "n" });
    item.splice("notes", 0, 0, "hello world");
    await settle();
    item.splice("notes", 5, 6, ", there");
    await settle();
    item.splice("notes", 0, 1, "H");
    expect(item.get("notes")).toBe("Hello, there");
    await db.flush();
    await db.close();
    const again = await openDb({ storage: { dir }, repos: ["/data/notes"] });
    expect(again.item("/data/notes/n")!.get("notes")).toBe("Hello, there");
    // One commit per tick: create + first splice, then one per later splice.
    expect((await again.history("/data/notes/n")).length).toBe(3);
    await again.close();
  });

  it("counts UTF-16 positions like String.prototype.slice, also past surrogate pairs", async () => {
    const dir = tempDir();
    const db = await openDb({ storage: { dir } });
    const item = db.create("/data/notes", Task, { text: "t", notes: "a🐐b" }, { key: "n" });
    // "🐐" is two UTF-16 code units: "b" sits at index 3.
    item.splice("notes", 3, 1, "c🦫");
    expect(item.get("notes")).toBe("a🐐c🦫");
    expect(code(() => item.splice("notes", 2, 0, "x"))).toBe("ERR_VALIDATION"); // inside the pair
    await db.flush();
    await db.close();
    const again = await openDb({ storage: { dir }, repos: ["/data/notes"] });
    expect(again.item("/data/notes/n")!.get("notes")).toBe("a🐐c🦫");
    await again.close();
  });

  it("rejects bad splices with ERR_VALIDATION and changes nothing", async () => {
    const db = await openDb();
    const item = db.create("/data/notes", Task, { text: "abc", notes: "abc" });
    expect(code(() => item.splice("notes", 4, 0, "x"))).toBe("ERR_VALIDATION");
    expect(code(() => item.splice("notes", 1, 3))).toBe("ERR_VALIDATION");
    expect(code(() => item.splice("notes", -1, 0, "x"))).toBe("ERR_VALIDATION");
    expect(code(() => item.splice("notes", 0.5, 0, "x"))).toBe("ERR_VALIDATION");
    // Half a pair: the engine's UTF-8 cannot hold it (it would become U+FFFD).
    expect(code(() => item.splice("notes", 3, 0, "\uD83D"))).toBe("ERR_VALIDATION");
    expect(code(() => item.set("notes", "a\uDE00"))).toBe("ERR_VALIDATION");
    // @ts-expect-error a string field is not a text field (types say so too)
    expect(code(() => item.splice("text", 0, 0, "x"))).toBe("ERR_VALIDATION");
    // @ts-expect-error an unknown field
    expect(code(() => item.splice("nope", 0, 0, "x"))).toBe("ERR_VALIDATION");
    expect(item.get("notes")).toBe("abc");
    const rev = item.revision;
    item.splice("notes", 1, 0, "");
    expect(item.revision).toBe(rev);
    await db.close();
  });

  it("merges concurrent splices made on two replicas", async () => {
    const a = await openDb({ name: "a" });
    const b = await openDb({ name: "b" });
    a.create("/data/notes", Task, { text: "t", notes: "the quick fox" }, { key: "n" });
    await b.import("/data/notes", await a.export("/data/notes"));
    a.item<typeof Task.fields>("/data/notes/n")!.splice("notes", 4, 0, "very ");
    b.item<typeof Task.fields>("/data/notes/n")!.splice("notes", 10, 3, "goat");
    await a.flush();
    await b.flush();
    await b.import("/data/notes", await a.export("/data/notes"));
    await a.import("/data/notes", await b.export("/data/notes"));
    expect(a.item("/data/notes/n")!.get("notes")).toBe("the very quick goat");
    expect(b.item("/data/notes/n")!.get("notes")).toBe("the very quick goat");
    await a.close();
    await b.close();
  });
});
