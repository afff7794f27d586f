// A todo's history, read from its signed commit graph on demand: who
// changed which field from what to what, when — and "restore this
// version", which writes the old value as a new commit (history is never
// rewritten; the restore syncs like any edit and can itself be undone).

import type { HistoryEntry, Item } from "@ibexdb/db";
import { useDB, useHistory } from "@ibexdb/react";
import { useState } from "react";

import type { TodoFields } from "./schema";

/** A field value as people read it. */
export function show(v: unknown): string {
  if (v === undefined) return "—";
  if (v instanceof Date) return v.toLocaleString();
  if (typeof v === "string") return `“${v}”`;
  return String(v);
}

export function who(e: { session: string; user: string }, me: string | undefined): string {
  if (e.session === me) return "this device";
  return e.user ? `user ${e.user.slice(0, 8)}` : `session ${e.session.slice(0, 8)}`;
}

function Change({ entry }: { entry: HistoryEntry }) {
  if (entry.parents.length === 0) return <>created it</>;
  if (entry.changes.length === 0) return <>merged</>;
  return (
    <>
      {entry.changes.map((c, i) => (
        <span key={c.field} data-testid="history-change">
          {i > 0 && ", "}
          {c.field === "$deleted" ? (c.after ? "deleted it" : "restored it") : (
            <>
              {c.field}: <del>{show(c.before)}</del> → <ins>{show(c.after)}</ins>
            </>
          )}
        </span>
      ))}
    </>
  );
}

export function History({ item }: { item: Item<TodoFields> }) {
  const db = useDB();
  const entries = useHistory(item, { limit: 100 });
  const [error, setError] = useState<string | null>(null);
  const me = db.status.sessionId;
  if (error) return <div className="history">History unavailable: {error}</div>;
  if (entries.length === 0) return <div className="history">Loading history…</div>;
  const newest = entries[entries.length - 1]!.id;
  return (
    <ol className="history" data-testid="history">
      {[...entries].reverse().map((e) => (
        <li key={e.id} data-testid="history-entry">
          <time dateTime={new Date(e.timestamp).toISOString()}>{new Date(e.timestamp).toLocaleTimeString()}</time>{" "}
          <span className="who" title={e.session}>
            {who(e, me)}
          </span>{" "}
          <Change entry={e} />
          <code title={e.id}> #{e.id.slice(0, 7)}</code>
          {e.id !== newest && (
            <button className="restore" data-testid="restore-version" onClick={() => item.revert(e.id).catch((x: unknown) => setError(String(x)))}>
              restore this version
            </button>
          )}
        </li>
      ))}
    </ol>
  );
}
