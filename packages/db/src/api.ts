// Everything @ibexdb/db exports, the same in browsers and in Node; each
// entry (index.ts for browsers and bundlers, index.node.ts for Node) adds
// only how the engine is started.

export type { OpenOptions } from "./main/database.js";
export type { EngineStats, Phase, RepoStatus, Status } from "./main/status.js";
export { queryKey, type SharedQuery } from "./main/shared_queries.js";
export { IbexError, type ErrorCode, ENGINE_CODES, SDK_CODES } from "./wire/errors.js";
export { Item } from "./main/item.js";
export type { LoadReport, User } from "./wire/protocol.js";
export {
  type At,
  type ChangeFilter,
  type Conflict,
  type FieldChange,
  type HistoryEntry,
  type HistoryOptions,
  type HistoryPage,
  PastView,
  Playback,
  type PlaybackStep,
  type RevertOptions,
  type Written,
} from "./main/history.js";
export { Query, type QueryOptions } from "./main/query.js";
export {
  defineSchema,
  type FieldDef,
  type FieldType,
  type FieldTypes,
  type FieldValue,
  type TextFields,
  type Fields,
  type FieldsOf,
  type InitData,
  type ItemData,
  type Scalar,
  type Schema,
  type UpgradeStep,
} from "./main/schema.js";
export { IbexDB, type IbexOpenOptions, type StorageOption } from "./ibexdb.js";
