// The engine's connection to ibex-server (rust/core/src/sync.rs protocol
// over a WebSocket): on connect every open repository is reconciled; local
// commits are pushed as they are made; frames from the server are handled
// by the engine (which verifies every commit) and changed heads go to the
// main thread. Reconnects with jittered exponential back-off.

import { Reader } from "./codec.js";
import type { WasmEngine } from "./engine_server.js";

const MIN_BACKOFF = 500;
const MAX_BACKOFF = 15_000;

export interface SyncEvents {
  /** Frames were applied: send changed heads to the main thread. */
  changed(): void;
  status(s: { online: boolean; synced: boolean; lastSync: number | null }): void;
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
      this.backoff = MIN_BACKOFF;
      for (const repo of this.repos()) this.reconcile(repo);
      this.report();
    };
    ws.onmessage = (e: MessageEvent<ArrayBuffer>) => {
      const engine = this.engine();
      try {
        for (const f of frames(engine.syncHandle(new Uint8Array(e.data)))) ws.send(f);
      } catch (err) {
        // A frame the engine refused (e.g. a sync that did not converge):
        // start over on a fresh connection.
        console.warn("ibex sync:", err);
        ws.close();
      }
      this.events.changed();
      this.report();
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.online = false;
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
    this.ws?.send(new Uint8Array(this.engine().syncStart(repo, seed)));
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
    if (!this.online || !this.ws) return;
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
