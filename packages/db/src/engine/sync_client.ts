// The engine's connection to ibex-server: a WebSocket carrying the sync
// protocol (rust/core/src/sync/). All protocol state — handshake,
// reconciliation rounds, pushes, acknowledgements, heartbeats — lives in
// the engine's Rust session; this class only moves bytes, runs its timer
// and reconnects with jittered exponential back-off.
//
// "Synced" comes from the engine: a live connection (frames within the
// heartbeat window), every open repository reconciled on it, every local
// commit acknowledged as durable by the server, none refused. `db.sync()`
// starts a fresh round for every repository and waits for it, so it never
// resolves against a frozen or partitioned server.

import { Reader } from "../wire/codec.js";
import { IbexError } from "../wire/errors.js";
import type { EngineEvent, WasmEngine } from "./wasm_engine.js";

const MIN_BACKOFF = 500;
const MAX_BACKOFF = 15_000;
const TICK_MS = 1_000;

/** The subset of the WebSocket API the client uses (browsers' WebSocket
 * and the `ws` package in Node both provide it). */
export interface SocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(): void;
}

export type SocketFactory = (url: string) => SocketLike;

export interface SyncStatus {
  online: boolean;
  synced: boolean;
  lastSync: number | null;
  /** Local commits not yet acknowledged as durable by the server. */
  unacked: number;
}

export interface SyncEvents {
  /** Frames were applied: send changed heads to the main thread. */
  changed(): void;
  status(s: SyncStatus): void;
  /** What the engine reported about the connection. */
  engine(events: EngineEvent[]): void;
}

function frames(bytes: Uint8Array): Uint8Array<ArrayBuffer>[] {
  const r = new Reader(bytes);
  const n = r.varint("frame count");
  const out: Uint8Array<ArrayBuffer>[] = [];
  for (let i = 0; i < n; i++) out.push(new Uint8Array(r.take(r.varint("frame length"), "frame")));
  return out;
}

const OPEN = 1;

export class SyncClient {
  private ws: SocketLike | null = null;
  private open = false;
  private backoff = MIN_BACKOFF;
  private lastSync: number | null = null;
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private stopped = false;
  private networkUp = true;
  private timer: ReturnType<typeof setInterval> | null = null;
  private retry: ReturnType<typeof setTimeout> | null = null;
  private last: SyncStatus | null = null;
  /** The server certified this session on the current connection. */
  welcomed = false;

  constructor(
    private readonly engine: () => WasmEngine,
    private readonly url: string,
    private readonly events: SyncEvents,
    private readonly socket: SocketFactory,
  ) {}

  start(): void {
    if (typeof addEventListener === "function") {
      addEventListener("offline", () => this.setNetwork(false));
      addEventListener("online", () => this.setNetwork(true));
    }
    this.timer = setInterval(() => this.tick(), TICK_MS);
    // Node: the timer must not keep the process alive by itself.
    (this.timer as { unref?: () => void }).unref?.();
    this.connect();
  }

  /** The network went down or came back (as the page or worker sees it). */
  /** An unreachable server was reported (until a connection opens again). */
  private unreachableReported = false;

  setNetwork(up: boolean): void {
    this.networkUp = up;
    if (!up) this.drop();
    else if (!this.ws) {
      this.backoff = MIN_BACKOFF;
      this.connect();
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.retry) clearTimeout(this.retry);
    this.drop();
    for (const w of this.waiters.splice(0)) w.reject(new IbexError("ERR_CLOSED", "the database was closed"));
  }

  private connect(): void {
    if (this.stopped || !this.networkUp || this.ws) return;
    let ws: SocketLike;
    try {
      ws = this.socket(this.url);
    } catch (e) {
      this.events.engine([{ t: "error", repo: "", code: "ERR_OFFLINE", message: `cannot connect to ${this.url}: ${e instanceof Error ? e.message : String(e)}` }]);
      this.scheduleReconnect();
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.open = true;
      this.unreachableReported = false;
      this.backoff = MIN_BACKOFF;
      this.engine().syncConnected(Date.now());
      this.report();
    };
    ws.onmessage = (e) => {
      if (this.ws !== ws) return;
      const data = e.data instanceof ArrayBuffer ? new Uint8Array(e.data) : ArrayBuffer.isView(e.data) ? new Uint8Array(e.data.buffer, e.data.byteOffset, e.data.byteLength) : null;
      if (!data) return;
      const engine = this.engine();
      try {
        engine.syncReceive(data, Date.now());
      } catch (err) {
        // The engine refused the connection (a bad handshake, a server with
        // another root key or protocol version): report, close, retry later.
        const code = (err as { code?: string }).code ?? "ERR_HANDSHAKE";
        this.events.engine([{ t: "error", repo: "", code, message: err instanceof Error ? err.message : String(err) }]);
        this.drop();
      }
      this.flushFrames();
      const events = engine.takeEvents();
      for (const ev of events) {
        if (ev.t === "welcome") this.welcomed = true;
        if (ev.t === "rejected") console.warn(`ibex sync: refused a commit in ${ev.repo}: ${ev.message}`);
      }
      if (events.length) this.events.engine(events);
      this.events.changed();
      this.report();
    };
    // Closing is handled once, in onclose; an error is always followed by it.
    ws.onerror = () => {};
    ws.onclose = () => {
      if (this.ws !== ws) return;
      if (!this.open && !this.unreachableReported) {
        // Said once per outage, not on every retry: the status says the rest.
        this.unreachableReported = true;
        this.events.engine([{ t: "error", repo: "", code: "ERR_OFFLINE", message: `cannot connect to ${this.url}; retrying with back-off` }]);
      }
      this.ws = null;
      this.open = false;
      this.welcomed = false;
      this.engine().syncDisconnected();
      this.report();
      this.scheduleReconnect();
    };
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.retry) return;
    const wait = this.backoff * (0.5 + Math.random());
    this.backoff = Math.min(MAX_BACKOFF, this.backoff * 2);
    this.retry = setTimeout(() => {
      this.retry = null;
      this.connect();
    }, wait);
    (this.retry as { unref?: () => void }).unref?.();
  }

  /** Closes the current socket (it reconnects later unless stopped). */
  private drop(): void {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    this.open = false;
    this.welcomed = false;
    ws.onmessage = null;
    ws.onopen = null;
    ws.onclose = null;
    try {
      ws.close();
    } catch {
      // Closing a socket that never opened may throw; it is gone either way.
    }
    this.engine().syncDisconnected();
    this.report();
    this.scheduleReconnect();
  }

  private tick(): void {
    if (this.ws && this.open) {
      try {
        this.engine().syncTick(Date.now());
      } catch (err) {
        // The server stopped answering (heartbeat): drop the link.
        const code = (err as { code?: string }).code ?? "ERR_TIMEOUT";
        this.events.engine([{ t: "error", repo: "", code, message: err instanceof Error ? err.message : String(err) }]);
        this.drop();
        return;
      }
      this.flushFrames();
    }
    this.report();
  }

  /** Sends whatever the engine queued (pushes, rounds, answers). */
  flushFrames(): void {
    const ws = this.ws;
    const bytes = this.engine().syncFrames();
    if (!ws || !this.open || ws.readyState !== OPEN) return;
    for (const f of frames(bytes)) ws.send(f);
  }

  /** Drops the connection and connects again soon (after a session change). */
  reconnect(): void {
    this.backoff = MIN_BACKOFF / 2;
    if (this.ws) this.drop();
    else this.connect();
  }

  /** A repository was opened, or local commits were made: send what the
   * engine queued for them. */
  kick(): void {
    this.flushFrames();
    this.report();
  }

  get connected(): boolean {
    return this.open;
  }

  private report(): void {
    const engine = this.engine();
    const now = Date.now();
    const synced = this.open && engine.synced(now);
    if (synced) this.lastSync = now;
    if (this.waiters.length && this.open && engine.syncComplete(now)) {
      engine.syncDone();
      for (const w of this.waiters.splice(0)) w.resolve();
    }
    const s: SyncStatus = { online: this.open, synced, lastSync: this.lastSync, unacked: engine.unacked };
    const l = this.last;
    if (!l || l.online !== s.online || l.synced !== s.synced || l.unacked !== s.unacked || (synced && l.lastSync !== s.lastSync && now - (l.lastSync ?? 0) > 1000)) {
      this.last = s;
      this.events.status(s);
    }
  }

  /** Starts a round for every open repository and resolves once it is
   * complete and every local commit is acknowledged as durable. */
  whenSynced(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        const engine = this.engine();
        if (!this.waiters.length) engine.syncDone();
        const refused = engine.refused() as { repo: string; code: string; message: string }[];
        const why = !this.open
          ? `not connected to ${this.url}`
          : refused.length
            ? `the server refused ${refused.length} commit(s): ${refused[0]!.code} ${refused[0]!.message}`
            : engine.unacked
              ? `${engine.unacked} local commit(s) not acknowledged by the server yet`
              : "the server has not answered";
        reject(new IbexError("ERR_SYNC_TIMEOUT", `not synced with ${this.url} within ${timeoutMs} ms: ${why}`));
      }, timeoutMs);
      this.waiters.push(waiter);
      this.engine().syncNow();
      this.flushFrames();
      this.report();
    });
  }
}
