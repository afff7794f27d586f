// Playback: the whole list replayed from its commits into a read-only
// view, step by step or at a speed — "how this list changed". The slider
// moves through every commit; the list below is a live query over the
// playback, the same API the real list uses.

import type { Playback } from "@ibexdb/db";
import { useDB, usePlayback } from "@ibexdb/react";
import { useEffect, useMemo, useState } from "react";

import { TODOS, Todo } from "./schema";

export function Timeline() {
  const db = useDB();
  const [open, setOpen] = useState(false);
  const [playback, setPlayback] = useState<Playback | null>(null);
  useEffect(() => {
    if (!open) return;
    let live = true;
    db.playback({ repo: TODOS }).then((p) => live && setPlayback(p));
    return () => {
      live = false;
      setPlayback(null);
    };
  }, [db, open]);
  return (
    <div className="timeline">
      <button data-testid="timeline-toggle" onClick={() => setOpen(!open)}>
        {open ? "Close playback" : "Play back history"}
      </button>
      {open && (playback ? <Player playback={playback} /> : <p>Reading history…</p>)}
    </div>
  );
}

function Player({ playback: p }: { playback: Playback }) {
  usePlayback(p);
  const query = useMemo(() => p.query({ source: TODOS, schema: Todo, sortBy: "createdAt" }), [p]);
  useEffect(() => () => p.pause(), [p]);
  const rows = query.results;
  return (
    <div className="player">
      <div className="controls">
        <button aria-label="Step back" onClick={() => p.back()}>
          ⏮
        </button>
        {p.playing ? (
          <button aria-label="Pause" onClick={() => p.pause()}>
            ⏸
          </button>
        ) : (
          <button aria-label="Play" onClick={() => p.play({ speed: 4, maxWaitMs: 400 })}>
            ▶
          </button>
        )}
        <button aria-label="Step forward" onClick={() => p.step()}>
          ⏭
        </button>
        <input
          data-testid="timeline-slider"
          type="range"
          min={0}
          max={p.steps.length}
          value={p.position}
          onChange={(e) => {
            p.pause();
            p.seek(Number(e.target.value));
          }}
        />
        <span data-testid="timeline-position">
          {p.position} / {p.steps.length}
        </span>
        <time>{p.position ? new Date(p.time).toLocaleTimeString() : "start"}</time>
      </div>
      <ul className="replay">
        {rows.map((t) => (
          <li key={t.path} data-testid="timeline-item" className={t.get("completed") ? "completed" : ""}>
            {t.get("title")}
          </li>
        ))}
      </ul>
    </div>
  );
}
