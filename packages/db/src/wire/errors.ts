// One error type for every layer of the SDK: `IbexError`, with a stable
// `code` applications branch on (tests assert codes, never message text).
//
// Codes come from two places:
// * the engine and the server (Rust): `ENGINE_CODES` must equal
//   `ibex_core::Error::CODES` plus `ServerError::CLIENT_CODES` — a golden
//   file written by the Rust tests (`test/golden/error_codes.json`) is
//   compared with this list by vitest (test/golden_errors.test.ts), so
//   neither side can drift;
// * the SDK itself: `SDK_CODES`, for what only the TypeScript side knows
//   (a closed database, a worker that failed to start, a sync timeout).
//   The server's `ERR_CONFIG` (a bad flag, reported when it starts) never
//   reaches a client, so it is not an engine code; the SDK has its own
//   `ERR_CONFIG` for a bad option, with the same meaning.

/** Codes the Rust engine and server send (`Error::code`, `ServerError::code`). */
export const ENGINE_CODES = [
  "ERR_DECODE",
  "ERR_VALIDATION",
  "ERR_SCHEMA",
  "ERR_UNKNOWN_SCHEMA",
  "ERR_PATH",
  "ERR_INVALID_COMMIT",
  "ERR_BAD_SIGNATURE",
  "ERR_BAD_KEY",
  "ERR_MISSING_COMMIT",
  "ERR_PENDING_FULL",
  "ERR_LOG_HEADER",
  "ERR_STORAGE",
  "ERR_FORBIDDEN",
  "ERR_UNKNOWN_SESSION",
  "ERR_SESSION_EXPIRED",
  "ERR_HANDSHAKE",
  "ERR_LOGIN",
  "ERR_QUOTA",
  "ERR_CLOCK",
  "ERR_VERSION",
  "ERR_TIMEOUT",
  "ERR_NOT_FOUND",
  // The server's own (rust/server/src/error.rs).
  "ERR_TOO_SLOW",
  "ERR_UNAVAILABLE",
] as const;

/** Codes only the SDK produces. */
export const SDK_CODES = [
  /** The database was closed; reopen it with `IbexDB.open`. */
  "ERR_CLOSED",
  /** `db.sync()` did not complete in time (the message says why). */
  "ERR_SYNC_TIMEOUT",
  /** The engine's worker or WASM module failed to load or crashed. */
  "ERR_WORKER",
  /** The sync server cannot be reached. */
  "ERR_OFFLINE",
  /** An option is wrong (a relative server URL in Node, no server configured). */
  "ERR_CONFIG",
  /** A repository opened with damaged records skipped (see its load report). */
  "ERR_LOG_DAMAGED",
  /** A bug: an answer the SDK did not expect. Please report it. */
  "ERR_INTERNAL",
] as const;

export type ErrorCode = (typeof ENGINE_CODES)[number] | (typeof SDK_CODES)[number];

const KNOWN = new Set<string>([...ENGINE_CODES, ...SDK_CODES]);

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && KNOWN.has(code);
}

export class IbexError extends Error {
  readonly code: ErrorCode;
  /** The item a failed write was for, when the error is about one. */
  readonly path?: string;
  /** The field an ERR_VALIDATION the SDK raised is about. */
  readonly field?: string;

  constructor(code: ErrorCode, message: string, details: { path?: string; field?: string; cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "IbexError";
    this.code = code;
    if (details.path !== undefined) this.path = details.path;
    if (details.field !== undefined) this.field = details.field;
  }
}

/** An error that crossed a thread boundary (structured clone keeps only
 * `code` and `message`), or anything thrown, as an `IbexError`. A code this
 * SDK does not know becomes ERR_INTERNAL, keeping the original in the
 * message. */
export function toIbexError(e: unknown): IbexError {
  if (e instanceof IbexError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : typeof (e as { message?: unknown })?.message === "string" ? (e as { message: string }).message : String(e);
  if (isErrorCode(code)) return new IbexError(code, message);
  return new IbexError("ERR_INTERNAL", code === undefined ? message : `${String(code)}: ${message}`, { cause: e });
}
