// A todo's history, read from its signed commit graph: who changed which
// fields, when. Re-read whenever the item changes.

import type { HistoryEntry, Item } from "@ibexdb/db";
import { useDB } from "@ibexdb/react";
import { useEffect, useState } from "react";

import type { TodoFields } from "./schema";

export function History({ item }: { item: Item<TodoFields> }) {
  const db = useDB();
  const [entries, setEntries] = useState<HistoryEntry[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const revision = item.revision;
  useEffect(() => {
    let live = true;
    item.history().then(
      (h) => live && setEntries(h),
      (e) => live && setError(String(e)),
    );
    return () => {
      live = false;
    };
  }, [item, revision]);
  if (error) return <div className="history">History unavailable: {error}</div>;
  if (!entries) return <div className="history">Loading history…</div>;
  const me = db.status.sessionId;
  return (
    <ol className="history" data-testid="history">
      {[...entries].reverse().map((e) => (
        <li key={e.id} data-testid="history-entry">
          <time dateTime={new Date(e.timestamp).toISOString()}>{new Date(e.timestamp).toLocaleTimeString()}</time>{" "}
          <span className="who" title={e.session}>
            {e.session === me ? "this device" : `session ${e.session.slice(0, 8)}`}
          </span>{" "}
          {e.parents.length === 0 ? "created it" : e.changed.length ? `changed ${e.changed.map((f) => (f === "$deleted" ? "deleted" : f)).join(", ")}` : "merged"}
          <code title={e.id}> #{e.id.slice(0, 7)}</code>
        </li>
      ))}
    </ol>
  );
}
