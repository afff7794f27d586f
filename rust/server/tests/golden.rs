//! `error_codes.json`: every error code the engine and the server produce,
//! which the SDK's `ENGINE_CODES` (`packages/db/src/wire/errors.ts`) must
//! equal. See `rust/core/tests/golden/main.rs` for how golden files work.

#[path = "../../core/tests/golden/support/mod.rs"]
mod support;

use ibex_server::error::ServerError;
use support::{Json, check};

#[test]
fn golden_error_codes() {
    let list = |codes: &[&str]| Json::arr(codes.iter().map(|c| Json::str(c)));
    check(
        "error_codes.json",
        &Json::obj([
            (
                "about",
                Json::str(
                    "Written by rust/server/tests/golden.rs (IBEX_BLESS=1 cargo test --workspace golden); checked by packages/db/test/golden_errors.test.ts. ENGINE_CODES = engine + server; server_internal codes never reach a client.",
                ),
            ),
            ("engine", list(ibex_core::Error::CODES)),
            ("server", list(ServerError::CLIENT_CODES)),
            ("server_internal", list(ServerError::INTERNAL_CODES)),
        ]),
    );
}
