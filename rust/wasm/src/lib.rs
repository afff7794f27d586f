//! `ibex-wasm`: wasm-bindgen bindings of `ibex-core` for the browser worker.
//!
//! The engine object, OPFS storage and worker protocol arrive with the
//! browser-engine issue; for now the crate exposes the build's version so the
//! toolchain (wasm-bindgen CLI pinned to the crate version) is exercised.

use wasm_bindgen::prelude::*;

/// Version of the Ibex engine compiled into this module.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
