// A small admin view over the audit log: every session that changed this
// list, how many changes and when — and "revert this session", which
// removes its changes from every todo it touched while keeping everyone
// else's later edits (three-way, like `git revert`). The revert is new
// commits that sync like any edit; "undo" reverts the revert.

import type { HistoryEntry } from "@ibexdb/db";
import { useDB, useQueryCount } from "@ibexdb/react";
import { useEffect, useState } from "react";

import { who } from "./History";
import { TODOS, Todo } from "./schema";

interface SessionRow {
  session: string;
  user: string;
  changes: number;
  last: number;
}

function bySession(entries: HistoryEntry[]): SessionRow[] {
  const rows = new Map<string, SessionRow>();
  for (const e of entries) {
    const r = rows.get(e.session) ?? { session: e.session, user: e.user, changes: 0, last: 0 };
    r.changes++;
    r.last = Math.max(r.last, e.timestamp);
    rows.set(e.session, r);
  }
  return [...rows.values()].sort((a, b) => b.last - a.last);
}

export function Sessions() {
  const db = useDB();
  const [open, setOpen] = useState(false);
  const [rows, setRows] = useState<SessionRow[] | null>(null);
  const [reverted, setReverted] = useState<Map<string, string[]>>(new Map());
  const [error, setError] = useState<string | null>(null);
  // Re-read the audit log whenever the list changes.
  const total = useQueryCount({ source: TODOS, schema: Todo, includeDeleted: true }, []);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!open) return;
    let live = true;
    db.audit({ repo: TODOS }).then(
      (entries) => live && setRows(bySession(entries)),
      (e: unknown) => live && setError(String(e)),
    );
    return () => {
      live = false;
    };
  }, [db, open, total, tick]);
  const revert = async (session: string) => {
    try {
      const ids = await db.revert({ repo: TODOS, session });
      setReverted(new Map(reverted).set(session, ids));
      setTick(tick + 1);
    } catch (e) {
      setError(String(e));
    }
  };
  const undo = async (session: string) => {
    try {
      await db.revert({ repo: TODOS, commits: reverted.get(session)! });
      const next = new Map(reverted);
      next.delete(session);
      setReverted(next);
      setTick(tick + 1);
    } catch (e) {
      setError(String(e));
    }
  };
  const me = db.status.sessionId;
  return (
    <div className="sessions">
      <button data-testid="admin-toggle" onClick={() => setOpen(!open)}>
        {open ? "Close sessions" : "Sessions (admin)"}
      </button>
      {open && (
        <>
          {error && <p className="error">{error}</p>}
          {!rows ? (
            <p>Reading the audit log…</p>
          ) : (
            <table>
              <tbody>
                {rows.map((r) => (
                  <tr key={r.session} data-testid="admin-session" data-session={r.session}>
                    <td title={r.session}>{who(r, me)}</td>
                    <td>{r.changes} changes</td>
                    <td>last {new Date(r.last).toLocaleTimeString()}</td>
                    <td>
                      {reverted.has(r.session) ? (
                        <button data-testid="undo-revert" onClick={() => undo(r.session)}>
                          undo revert
                        </button>
                      ) : (
                        <button data-testid="revert-session" onClick={() => revert(r.session)}>
                          revert this session
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
    </div>
  );
}
