//! Golden vectors: cases built with the engine's own encoders and
//! validators, written as JSON to `packages/db/test/golden/`, where vitest
//! (`packages/db/test/golden_*.test.ts`) checks that the SDK's copies of
//! them (`src/wire/codec.ts`, `src/main/schema.ts`) produce the same bytes
//! and the same verdicts. A test here fails when its file differs from what
//! it generates; `IBEX_BLESS=1 cargo test --workspace golden` rewrites the
//! files (then review and commit them).

mod changes;
mod schemas;
mod support;
mod validation;
mod values;
