// The engine's connection to ibex-server (rust/core/src/sync.rs protocol
// over a WebSocket): on connect every open repository is reconciled; local
// commits are pushed as they are made; frames from the server are handled
// by the engine (which verifies every commit) and changed heads go to the
// main thread. Reconnects with jittered exponential back-off.
//
// Every connection starts with the handshake (rust/core/src/handshake.rs):
// the engine answers the server's hello with a signature over its nonce,
// and starts reconciling once the server's welcome says the session is
// certified. Connection events (welcome, errors, login links, rejected
// commits) go to `events.engine`.

import { Reader } from "./codec.js";
import type { EngineEvent, WasmEngine } from "./engine_server.js";

const MIN_BACKOFF = 500;
const MAX_BACKOFF = 15_000;

export interface SyncEvents {
  /** Frames were applied: send changed heads to the main thread. */
  changed(): void;
  status(s: { online: boolean; synced: boolean; lastSync: number | null }): void;
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

export class SyncClient {
  private ws: WebSocket | null = null;
  private online = false;
  /** The server certified this session on the current connection. */
  private welcomed = false;
  private backoff = MIN_BACKOFF;
  private lastSync: number | null = null;
  private waiters: (() => void)[] = [];
  private stopped = false;
  /** False while the page reports the network down: no reconnecting. */
  private networkUp = true;

  constructor(
    private readonly engine: () => WasmEngine,
    private readonly url: string,
    private readonly repos: () => string[],
    private readonly events: SyncEvents,
  ) {}

  start(): void {
    if (typeof WebSocket === "undefined") throw Object.assign(new Error("WebSocket is not available in this runtime"), { code: "ERR_WORKER" });
    // Going offline closes the connection at once; coming back reconnects
    // without waiting for the back-off.
    if (typeof addEventListener === "function") {
      addEventListener("offline", () => this.setNetwork(false));
      addEventListener("online", () => this.setNetwork(true));
    }
    this.connect();
  }

  /** The network went down or came back (as the page or worker sees it). */
  setNetwork(up: boolean): void {
    this.networkUp = up;
    if (!up) {
      const ws = this.ws;
      if (ws) {
        ws.onclose?.(new CloseEvent("close"));
        ws.close();
      }
    } else if (!this.ws) {
      this.backoff = MIN_BACKOFF;
      this.connect();
    }
  }

  stop(): void {
    this.stopped = true;
    this.ws?.close();
  }

  private connect(): void {
    if (this.stopped || !this.networkUp || this.ws) return;
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.online = true;
      this.welcomed = false;
      this.backoff = MIN_BACKOFF;
      this.report();
    };
    ws.onmessage = (e: MessageEvent<ArrayBuffer>) => {
      const engine = this.engine();
      try {
        for (const f of frames(engine.syncHandle(new Uint8Array(e.data)))) ws.send(f);
      } catch (err) {
        // A frame the engine refused (a bad handshake, a server with another
        // root key, a sync that did not converge): start over later.
        console.warn("ibex sync:", err);
        const code = (err as { code?: string }).code ?? "ERR_SYNC";
        this.events.engine([{ t: "error", repo: "", code, message: err instanceof Error ? err.message : String(err) }]);
        ws.close();
      }
      const events = engine.takeEvents();
      if (events.some((ev) => ev.t === "welcome")) this.welcomed = true;
      for (const ev of events) if (ev.t === "rejected") console.warn(`ibex sync: refused a commit in ${ev.repo}: ${ev.message}`);
      if (events.length) this.events.engine(events);
      this.events.changed();
      this.report();
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.online = false;
      this.welcomed = false;
      // Stop reacting to this socket: closing may take a while to complete.
      ws.onmessage = null;
      this.engine().syncReset();
      this.report();
      if (this.stopped) return;
      const wait = this.backoff * (0.5 + Math.random());
      this.backoff = Math.min(MAX_BACKOFF, this.backoff * 2);
      setTimeout(() => this.connect(), wait);
    };
    ws.onerror = () => ws.close();
  }

  private reconcile(repo: string): void {
    const seed = Math.floor(Math.random() * 2 ** 52);
    // Empty until the server has welcomed this session.
    const frame = this.engine().syncStart(repo, seed);
    if (frame.length) this.ws?.send(new Uint8Array(frame));
  }

  /** Sends a control frame on a welcomed connection. */
  send(frame: Uint8Array): void {
    if (!this.ws || !this.welcomed) throw Object.assign(new Error(`not connected to ${this.url}: logging in needs the server`), { code: "ERR_OFFLINE" });
    this.ws.send(new Uint8Array(frame));
  }

  get isWelcomed(): boolean {
    return this.welcomed;
  }

  /** Drops the connection and connects again soon (after a session change). */
  reconnect(): void {
    this.backoff = MIN_BACKOFF / 2;
    if (this.ws) this.ws.close();
    else this.connect();
  }

  /** A repository was opened: reconcile it now if connected. */
  repoOpened(repo: string): void {
    if (this.online) {
      this.reconcile(repo);
      this.report();
    }
  }

  /** Local commits were made: push them now if connected. */
  afterMutate(): void {
    if (!this.online || !this.ws || !this.welcomed) return;
    for (const f of frames(this.engine().pushFrames())) this.ws.send(f);
  }

  private report(): void {
    const synced = this.online && this.engine().synced;
    if (synced) {
      this.lastSync = Date.now();
      for (const w of this.waiters.splice(0)) w();
    }
    this.events.status({ online: this.online, synced, lastSync: this.lastSync });
  }

  /** Resolves once connected and every open repository is reconciled. */
  whenSynced(timeoutMs: number): Promise<void> {
    if (this.online && this.engine().synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(Object.assign(new Error(`not synced with ${this.url} within ${timeoutMs} ms (${this.online ? "online" : "offline"})`), { code: "ERR_SYNC_TIMEOUT" })), timeoutMs);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
