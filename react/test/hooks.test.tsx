// Render counts prove that an edit re-renders only what shows it;
// StrictMode and inline options must not open databases or create queries
// twice, and unmounting releases everything.

import { IbexDB, type Item, defineSchema } from "@ibexdb/db";
import { StrictMode, memo, useState } from "react";
import { act } from "react";
import { type Root, createRoot } from "react-dom/client";
import { afterEach, describe, expect, it, vi } from "vitest";

import { IbexProvider, useConflicts, useDB, useDBReady, useHistory, useItem, usePlayback, useQuery, useQueryObject } from "../src/index.js";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const Todo = defineSchema({ ns: "todo", version: 1, fields: { text: { type: "string", required: true }, done: { type: "boolean", default: false } } });
type T = Item<typeof Todo.fields>;

let root: Root | null = null;
let container: HTMLElement;

async function render(ui: React.ReactNode) {
  container = document.createElement("div");
  document.body.appendChild(container);
  root = createRoot(container);
  await act(async () => root!.render(ui));
}

afterEach(async () => {
  await act(async () => root?.unmount());
  root = null;
  container?.remove();
});

/** Waits (inside act) until `check` passes: the event, not a guessed delay. */
const until = (check: () => void) => act(() => vi.waitFor(check, { timeout: 5_000, interval: 5 }));

describe("render counts", () => {
  it("toggling one of 200 todos re-renders only its row and the counter", async () => {
    const db = await IbexDB.open({ name: "rc", schemas: [Todo], storage: "memory", repos: ["/data/todos"] });
    for (let i = 0; i < 200; i++) db.create("/data/todos", Todo, { text: `todo ${String(i).padStart(3, "0")}` }, { key: `t${i}` });
    const renders = { list: 0, counter: 0, rows: new Map<string, number>() };

    const Row = memo(function Row({ path }: { path: string }) {
      const item = useItem<typeof Todo.fields>(path);
      renders.rows.set(path, (renders.rows.get(path) ?? 0) + 1);
      return <li data-done={String(item?.get("done"))}>{item?.get("text")}</li>;
    });
    function List() {
      const todos = useQuery({ source: "/data/todos", schema: Todo, sortBy: "text" });
      renders.list++;
      return <ul>{todos.map((t) => <Row key={t.path} path={t.path} />)}</ul>;
    }
    function Counter() {
      const open = useQuery({ source: "/data/todos", schema: Todo, where: (t: T) => !t.get("done") }, []);
      renders.counter++;
      return <span id="count">{open.length} items left</span>;
    }
    await render(
      <IbexProvider db={db}>
        <Counter />
        <List />
      </IbexProvider>,
    );
    expect(container.querySelectorAll("li")).toHaveLength(200);
    expect(container.querySelector("#count")!.textContent).toBe("200 items left");
    const before = { list: renders.list, counter: renders.counter, rows: new Map(renders.rows) };

    await act(async () => db.item<typeof Todo.fields>("/data/todos/t7")!.set("done", true));
    expect(container.querySelector("#count")!.textContent).toBe("199 items left");
    expect(container.querySelectorAll("li")[7]!.getAttribute("data-done")).toBe("true");
    expect(renders.list - before.list).toBe(0);
    expect(renders.counter - before.counter).toBe(1);
    const rerendered = [...renders.rows].filter(([p, n]) => n !== before.rows.get(p)).map(([p]) => p);
    expect(rerendered).toEqual(["/data/todos/t7"]);
    await db.close();
  });
});

describe("lifecycle", () => {
  it("StrictMode opens the database once and queries are shared, not re-created", async () => {
    const open = vi.spyOn(IbexDB, "open");
    const seen = new Set<IbexDB>();
    let db: IbexDB | null = null;
    function Probe() {
      const d = useDB();
      db = d;
      seen.add(d);
      const [n, setN] = useState(0);
      // Inline options, a new object on every render.
      const q = useQueryObject({ source: "/data/s", schema: Todo, where: (t: T) => !t.get("done"), sortBy: "text" }, []);
      return (
        <button id="b" onClick={() => setN(n + 1)}>
          {n}:{q.count}
        </button>
      );
    }
    await render(
      <StrictMode>
        <IbexProvider options={{ name: "strict", schemas: [Todo], storage: "memory" }} fallback={<p id="fb">loading</p>}>
          <Probe />
        </IbexProvider>
      </StrictMode>,
    );
    await until(() => expect(container.querySelector("#b")).not.toBeNull());
    expect(open).toHaveBeenCalledTimes(1);
    expect(seen.size).toBe(1);
    for (let i = 0; i < 5; i++) await act(async () => (container.querySelector("#b") as HTMLButtonElement).click());
    expect(container.querySelector("#b")!.textContent).toBe("5:0");
    expect(db!.liveQueries).toBe(1);
    await act(async () => db!.create("/data/s", Todo, { text: "x" }));
    expect(container.querySelector("#b")!.textContent).toBe("5:1");
    // Unmounting releases the query after its grace period (1 s), not
    // before: on a fake clock, so the test neither sleeps nor races it.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      await act(async () => root!.unmount());
      root = null;
      vi.advanceTimersByTime(999);
      expect(db!.liveQueries).toBe(1);
      vi.advanceTimersByTime(1);
      expect(db!.liveQueries).toBe(0);
    } finally {
      vi.useRealTimers();
    }
    open.mockRestore();
  });

  it("useDBReady reports loading with progress, then ready", async () => {
    const dir = (await import("node:fs")).mkdtempSync((await import("node:path")).join((await import("node:os")).tmpdir(), "ibex-react-"));
    const setup = await IbexDB.open({ name: "ready", schemas: [Todo], storage: { dir } });
    for (let i = 0; i < 3000; i++) setup.create("/data/big", Todo, { text: `t${i}` });
    await setup.close();

    const db = await IbexDB.open({ name: "ready2", schemas: [Todo], storage: { dir } });
    const states: string[] = [];
    function Status() {
      const r = useDBReady();
      states.push(`${r.state}:${r.progress.loaded}/${r.progress.total}`);
      const items = useQuery({ source: "/data/big" });
      return <p id="s">{r.state === "ready" ? `${items.length} loaded` : `loading ${r.progress.loaded}/${r.progress.total}`}</p>;
    }
    await render(
      <IbexProvider db={db}>
        <Status />
      </IbexProvider>,
    );
    await act(async () => db.open("/data/big"));
    await until(() => expect(container.querySelector("#s")!.textContent).toBe("3000 loaded"));
    // Progress was visible part-way (heads are applied in slices), then ready.
    expect(states.some((s) => /^loading:[1-9][0-9]*\/3000$/.test(s)), states.join(" ")).toBe(true);
    expect(states.at(-1)).toBe("ready:3000/3000");
    await db.close();
  });

  it("useItem is undefined until the item exists, then follows it", async () => {
    const db = await IbexDB.open({ name: "later", schemas: [Todo], storage: "memory" });
    function Show() {
      const it = useItem<typeof Todo.fields>("/data/l/k");
      return <p id="v">{it ? it.get("text") : "missing"}</p>;
    }
    await render(
      <IbexProvider db={db}>
        <Show />
      </IbexProvider>,
    );
    expect(container.querySelector("#v")!.textContent).toBe("missing");
    await act(async () => db.create("/data/l", Todo, { text: "here" }, { key: "k" }));
    expect(container.querySelector("#v")!.textContent).toBe("here");
    await act(async () => db.item<typeof Todo.fields>("/data/l/k")!.set("text", "changed"));
    expect(container.querySelector("#v")!.textContent).toBe("changed");
    await db.close();
  });

  it("hooks outside a provider fail with a clear message", async () => {
    function Bad() {
      useDB();
      return null;
    }
    const err = vi.spyOn(console, "error").mockImplementation(() => {});
    await expect(render(<Bad />)).rejects.toThrow(/inside <IbexProvider>/);
    err.mockRestore();
  });

  it("a database that cannot open shows errorFallback and calls onError, not the fallback forever", async () => {
    const seen: unknown[] = [];
    // Browser storage asked for in Node: open rejects (as a worker that does not load would).
    await render(
      <IbexProvider options={{ name: "broken", schemas: [Todo], storage: "opfs" }} fallback={<p id="fb">loading</p>} errorFallback={(e) => <p id="ef">{(e as { code: string }).code}</p>} onError={(e) => seen.push(e)}>
        <p id="child">never</p>
      </IbexProvider>,
    );
    await until(() => expect(container.querySelector("#ef")?.textContent).toBe("ERR_STORAGE"));
    expect(container.querySelector("#fb")).toBeNull();
    expect(container.querySelector("#child")).toBeNull();
    expect(seen).toEqual([expect.objectContaining({ code: "ERR_STORAGE" })]);
  });
});

describe("history hooks", () => {
  it("useHistory and useConflicts follow the item; usePlayback re-renders on every move", async () => {
    const db = await IbexDB.open({ name: "hist", schemas: [Todo], storage: "memory", repos: ["/data/todos"] });
    const from = Date.now() - 1;
    const t = db.create("/data/todos", Todo, { text: "a" });
    function Panel() {
      const item = useItem<typeof Todo.fields>(t.path);
      const history = useHistory(item);
      const conflicts = useConflicts(item);
      return (
        <p id="h">
          {history.map((e) => e.changes.map((c) => `${c.field}:${String(c.before)}>${String(c.after)}`).join(",")).join(" | ")}
          {conflicts.length ? " CONFLICT" : ""}
        </p>
      );
    }
    await render(
      <IbexProvider db={db}>
        <Panel />
      </IbexProvider>,
    );
    await until(() => expect(container.querySelector("#h")!.textContent).toBe("done:undefined>false,text:undefined>a"));
    await act(async () => t.set("text", "b"));
    await until(() => expect(container.querySelector("#h")!.textContent).toBe("done:undefined>false,text:undefined>a | text:a>b"));

    const p = await db.playback({ repo: "/data/todos", from });
    let renders = 0;
    function Player() {
      usePlayback(p);
      renders++;
      const rows = useQueryOf(p);
      return <span id="p">{`${p.position}/${p.steps.length}:${rows}`}</span>;
    }
    function useQueryOf(pb: typeof p) {
      const [q] = useState(() => pb.query({ source: "/data/todos", schema: Todo }));
      return q.results.map((r) => r.get("text")).join(",");
    }
    await act(async () => root!.render(<IbexProvider db={db}><Player /></IbexProvider>));
    expect(container.querySelector("#p")!.textContent).toBe("0/2:");
    await act(async () => void p.step());
    expect(container.querySelector("#p")!.textContent).toBe("1/2:a");
    await act(async () => void p.step());
    expect(container.querySelector("#p")!.textContent).toBe("2/2:b");
    const before = renders;
    await act(async () => void p.back());
    expect(renders).toBeGreaterThan(before);
    expect(container.querySelector("#p")!.textContent).toBe("1/2:a");
    await db.close();
  });
});
