// Errors carry a stable `code` (the same codes as the Rust engine:
// rust/core/src/error.rs) so applications can branch on them.

export type ErrorCode =
  | "ERR_DECODE"
  | "ERR_VALIDATION"
  | "ERR_SCHEMA"
  | "ERR_UNKNOWN_SCHEMA"
  | "ERR_PATH"
  | "ERR_INVALID_COMMIT"
  | "ERR_BAD_SIGNATURE"
  | "ERR_BAD_KEY"
  | "ERR_MISSING_COMMIT"
  | "ERR_PENDING_FULL"
  | "ERR_LOG_HEADER"
  | "ERR_STORAGE"
  | "ERR_CLOSED"
  | "ERR_SYNC_TIMEOUT"
  | "ERR_WORKER"
  | "ERR_FORBIDDEN"
  | "ERR_UNKNOWN_SESSION"
  | "ERR_SESSION_EXPIRED"
  | "ERR_HANDSHAKE"
  | "ERR_LOGIN"
  | "ERR_OFFLINE"
  | "ERR_QUOTA"
  | "ERR_CLOCK"
  | "ERR_VERSION"
  | "ERR_TIMEOUT"
  | "ERR_TOO_SLOW"
  | "ERR_UNAVAILABLE"
  | "ERR_CONFIG";

export class IbexError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "IbexError";
    this.code = code;
  }
}

/** Rebuilds an error that crossed from the engine (an Error with `code`). */
export function fromEngine(e: unknown): IbexError {
  if (e instanceof IbexError) return e;
  const code = (e as { code?: string })?.code;
  const message = e instanceof Error ? e.message : String(e);
  return new IbexError((code as ErrorCode) ?? "ERR_WORKER", message);
}
