//! `ibex-wasm`: wasm-bindgen bindings of `ibex-core` for the browser worker
//! (and for Node, where the same module runs in-process).
//!
//! One file per exported type: [`engine::Engine`] is what JavaScript
//! drives; [`database`] holds its logic in plain Rust (tested natively);
//! [`batch`] documents the bytes that cross between threads; storage comes
//! from OPFS ([`opfs_storage`]) or a JS backend ([`js_storage`]).

pub mod batch;
pub mod database;
pub mod engine;
pub mod error;
pub mod js_storage;
pub mod opfs_storage;

use wasm_bindgen::prelude::*;

/// Panics (internal bugs only: external input returns errors) are reported
/// on the console with a Rust backtrace instead of `unreachable`.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Version of the Ibex engine compiled into this module.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
