// TodoMVC on Ibex. Each component subscribes to exactly what it shows, so
// toggling one todo re-renders that row and the counter — nothing else.
// Render counts are kept in `window.__renders` for the end-to-end tests.

import type { Item, QueryOptions } from "@ibexdb/db";
import { useConflicts, useDB, useDBReady, useItem, useQuery, useQueryCount, useQuerySelect, useSyncStatus } from "@ibexdb/react";
import { type KeyboardEvent, memo, useEffect, useRef, useState, useSyncExternalStore } from "react";

import { History, show, who } from "./History";
import { Sessions } from "./Sessions";
import { Timeline } from "./Timeline";
import { Account } from "./Account";
import { TODOS, Todo, type TodoFields } from "./schema";

type TodoItem = Item<TodoFields>;
type Route = "all" | "active" | "completed";

declare global {
  interface Window {
    __renders: { rows: Record<string, number>; counter: number; list: number; app: number };
    __db: ReturnType<typeof useDB>;
    __Todo: typeof Todo;
  }
}
window.__renders ??= { rows: {}, counter: 0, list: 0, app: 0 };

// Module-level options read no component state: their `deps` are `[]`.
const ALL: QueryOptions<TodoFields> = { source: TODOS, schema: Todo, sortBy: "createdAt" };
const ACTIVE: QueryOptions<TodoFields> = { source: TODOS, schema: Todo, sortBy: "createdAt", where: (t) => !t.get("completed") };
const COMPLETED: QueryOptions<TodoFields> = { source: TODOS, schema: Todo, sortBy: "createdAt", where: (t) => t.get("completed") };

function routeFromHash(): Route {
  const h = location.hash.replace(/^#\/?/, "");
  return h === "active" || h === "completed" ? h : "all";
}

function useRoute(): Route {
  return useSyncExternalStore(
    (cb) => {
      addEventListener("hashchange", cb);
      return () => removeEventListener("hashchange", cb);
    },
    routeFromHash,
  );
}

export function App() {
  window.__renders.app++;
  // The database, for debugging from the console (and the browser tests).
  window.__db = useDB();
  window.__Todo = Todo;
  const route = useRoute();
  const ready = useDBReady();
  const total = useQueryCount(ALL, []);
  return (
    <>
      <section className="todoapp">
        <header className="header">
          <h1>todos</h1>
          <NewTodo />
        </header>
        {ready.state === "loading" && (
          <p className="loading">
            Loading {ready.progress.loaded} / {ready.progress.total}…
          </p>
        )}
        {total > 0 && (
          <>
            <section className="main">
              <ToggleAll />
              <TodoList route={route} />
            </section>
            <footer className="footer">
              <TodoCount />
              <Filters route={route} />
              <ClearCompleted />
            </footer>
          </>
        )}
      </section>
      <footer className="info">
        <StatusBar />
        <Account />
        <Timeline />
        <Sessions />
        <p>Double-click to edit a todo · the clock beside a todo shows its history</p>
        <p>
          Built on <strong>Ibex</strong>, a local-first, Git-like database
        </p>
      </footer>
    </>
  );
}

function NewTodo() {
  const db = useDB();
  const [text, setText] = useState("");
  const onKeyDown = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key !== "Enter") return;
    const title = text.trim();
    if (!title) return;
    db.create(TODOS, Todo, { title, createdAt: new Date() });
    setText("");
  };
  return <input className="new-todo" placeholder="What needs to be done?" autoFocus value={text} onChange={(e) => setText(e.target.value)} onKeyDown={onKeyDown} />;
}

function ToggleAll() {
  const db = useDB();
  const allDone = useQuerySelect(ACTIVE, (q) => q.count === 0, []);
  const toggle = () => {
    const todos = db.query(ALL);
    for (const t of todos.results) t.set("completed", !allDone);
    todos.close();
  };
  return (
    <div className="toggle-all-container">
      <input id="toggle-all" className="toggle-all" type="checkbox" checked={allDone} onChange={toggle} />
      <label htmlFor="toggle-all">Mark all as complete</label>
    </div>
  );
}

function TodoList({ route }: { route: Route }) {
  window.__renders.list++;
  const todos = useQuery(route === "active" ? ACTIVE : route === "completed" ? COMPLETED : ALL, []);
  return (
    <ul className="todo-list">
      {todos.map((t) => (
        <TodoRow key={t.path} path={t.path} />
      ))}
    </ul>
  );
}

const TodoRow = memo(function TodoRow({ path }: { path: string }) {
  window.__renders.rows[path] = (window.__renders.rows[path] ?? 0) + 1;
  const todo = useItem<TodoFields>(path);
  // A title two people set at once: the value that lost, until someone
  // writes the title again.
  const conflicts = useConflicts(todo);
  const db = useDB();
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState("");
  const [showHistory, setShowHistory] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const cancelled = useRef(false);
  useEffect(() => {
    if (editing) input.current?.focus();
  }, [editing]);
  if (!todo || todo.isDeleted) return null;

  const save = () => {
    if (cancelled.current) {
      cancelled.current = false;
      return;
    }
    const title = draft.trim();
    if (title) todo.set("title", title);
    else todo.delete();
    setEditing(false);
  };
  const onKeyDown = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === "Enter") save();
    if (e.key === "Escape") {
      cancelled.current = true;
      setEditing(false);
    }
  };
  const completed = todo.get("completed");
  return (
    <li data-testid="todo-item" className={`${completed ? "completed" : ""} ${editing ? "editing" : ""}`.trim()}>
      <div className="view">
        <input className="toggle" type="checkbox" checked={completed} onChange={() => todo.set("completed", !completed)} />
        <label
          data-testid="todo-title"
          onDoubleClick={() => {
            setDraft(todo.get("title"));
            cancelled.current = false;
            setEditing(true);
          }}
        >
          {todo.get("title")}
        </label>
        {conflicts.map((c) => (
          <span
            key={c.field}
            className="conflict"
            data-testid="conflict-badge"
            title={c.losers.map((l) => `${who(l, db.status.sessionId)} set ${c.field} to ${show(l.value)} at ${new Date(l.timestamp).toLocaleTimeString()}`).join("\n")}
          >
            also {c.losers.map((l) => show(l.value)).join(", ")}
          </span>
        ))}
        <button className="history-toggle" title="History" aria-label="Show history" onClick={() => setShowHistory(!showHistory)}>
          <svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true">
            <circle cx="12" cy="12" r="9" fill="none" stroke="currentColor" strokeWidth="2" />
            <path d="M12 7v5l3 3" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" />
          </svg>
        </button>
        <button className="destroy" aria-label="Delete" onClick={() => todo.delete()} />
      </div>
      {editing && <input ref={input} className="edit" value={draft} onChange={(e) => setDraft(e.target.value)} onBlur={save} onKeyDown={onKeyDown} />}
      {showHistory && <History item={todo as TodoItem} />}
    </li>
  );
});

function TodoCount() {
  window.__renders.counter++;
  const left = useQueryCount(ACTIVE, []);
  return (
    <span className="todo-count" data-testid="todo-count">
      <strong>{left}</strong> {left === 1 ? "item" : "items"} left
    </span>
  );
}

function Filters({ route }: { route: Route }) {
  const link = (r: Route, href: string, label: string) => (
    <li>
      <a href={href} className={route === r ? "selected" : undefined}>
        {label}
      </a>
    </li>
  );
  return (
    <ul className="filters">
      {link("all", "#/", "All")}
      {link("active", "#/active", "Active")}
      {link("completed", "#/completed", "Completed")}
    </ul>
  );
}

function ClearCompleted() {
  const db = useDB();
  const any = useQuerySelect(COMPLETED, (q) => q.count > 0, []);
  if (!any) return null;
  const clear = () => {
    const done = db.query(COMPLETED);
    for (const t of done.results) t.delete();
    done.close();
  };
  return (
    <button className="clear-completed" onClick={clear}>
      Clear completed
    </button>
  );
}

function StatusBar() {
  const { online, synced, pendingWrites } = useSyncStatus();
  return (
    <p className="status" data-testid="sync-status">
      <span className={`dot ${online ? "online" : "offline"}`} /> <span data-testid="online">{online ? (synced ? "Online · synced" : "Online · syncing…") : "Offline · changes wait on this device"}</span> ·{" "}
      <span data-testid="pending">{pendingWrites > 0 ? `saving ${pendingWrites}…` : "all changes saved on this device"}</span>
    </p>
  );
}
