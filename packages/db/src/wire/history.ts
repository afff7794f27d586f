// Reads the history answers of the engine: the `entries`, `conflicts` and
// `steps` bytes documented in rust/wasm/src/database/history.rs. Values
// stay in their wire form here; the main thread turns them into field
// values (main/history.ts).

import { Reader, type Value, readValue } from "./codec.js";

export interface WireChange {
  field: string;
  before: Value | undefined;
  after: Value | undefined;
}

export interface WireEntry {
  id: string;
  key: string;
  session: string;
  user: string;
  timestamp: number;
  parents: string[];
  ns: string;
  version: number;
  changes: WireChange[];
}

export interface WireWritten {
  id: string;
  session: string;
  user: string;
  timestamp: number;
  value: Value | undefined;
}

export interface WireConflict {
  field: string;
  winner: WireWritten;
  losers: WireWritten[];
}

/** The engine's history requests (one message type, `t: "history"`). */
export interface HistoryFilter {
  sessions: string[];
  user?: string;
  since?: number;
  until?: number;
}

export type HistoryRequest =
  | { op: "history"; repo: string; key: string; before?: string; limit?: number }
  | { op: "itemAt"; repo: string; key: string; time?: number; commit?: string }
  | { op: "snapshotAt"; repo: string; time: number }
  | { op: "playback"; repo: string; from: number; to: number }
  | { op: "conflicts"; repo: string; key: string }
  | { op: "audit"; repo: string; filter: HistoryFilter }
  | { op: "revert"; repo: string; commits: string[]; filter: HistoryFilter }
  | { op: "restore"; repo: string; key: string; commit: string };

function opt(r: Reader): Value | undefined {
  return r.bool("value present") ? readValue(r) : undefined;
}

/** An item's history page: how many entries the whole history has, and the page's. */
export function readPage(bytes: Uint8Array): { total: number; entries: WireEntry[] } {
  const r = new Reader(bytes);
  const total = r.varint("history length");
  return { total, entries: entries(r) };
}

export function readEntries(bytes: Uint8Array): WireEntry[] {
  return entries(new Reader(bytes));
}

function entries(r: Reader): WireEntry[] {
  const n = r.count("history entries", 8);
  const out: WireEntry[] = [];
  for (let i = 0; i < n; i++) {
    const id = r.str("commit id");
    const key = r.str("item key");
    const session = r.str("session");
    const user = r.str("user");
    const timestamp = r.zigzag("timestamp");
    const np = r.count("parents", 1);
    const parents: string[] = [];
    for (let j = 0; j < np; j++) parents.push(r.str("parent"));
    const ns = r.str("schema namespace");
    const version = r.varint("schema version");
    const nc = r.count("changes", 3);
    const changes: WireChange[] = [];
    for (let j = 0; j < nc; j++) changes.push({ field: r.str("field"), before: opt(r), after: opt(r) });
    out.push({ id, key, session, user, timestamp, parents, ns, version, changes });
  }
  return out;
}

function written(r: Reader): WireWritten {
  return { id: r.str("commit id"), session: r.str("session"), user: r.str("user"), timestamp: r.zigzag("timestamp"), value: opt(r) };
}

export function readConflicts(bytes: Uint8Array): WireConflict[] {
  const r = new Reader(bytes);
  const n = r.count("conflicts", 3);
  const out: WireConflict[] = [];
  for (let i = 0; i < n; i++) {
    const field = r.str("field");
    const winner = written(r);
    const nl = r.count("losers", 5);
    const losers: WireWritten[] = [];
    for (let j = 0; j < nl; j++) losers.push(written(r));
    out.push({ field, winner, losers });
  }
  return out;
}

/** Times and commit ids of a playback's steps, in order. */
export function readSteps(bytes: Uint8Array): { time: number; id: string }[] {
  const r = new Reader(bytes);
  const n = r.count("steps", 2);
  const out: { time: number; id: string }[] = [];
  for (let i = 0; i < n; i++) out.push({ time: r.zigzag("step time"), id: r.str("step commit") });
  return out;
}
