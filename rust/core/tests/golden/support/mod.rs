//! What the golden tests share: a JSON writer, the golden-file check, engine
//! values as tagged JSON, and the model of what applications hand the SDK.
//! Used by the golden tests of `ibex-core` (this directory's parent),
//! `ibex-wasm` and `ibex-server` (which include it with `#[path]`).
#![allow(dead_code)]

pub mod file;
pub mod js;
pub mod json;
pub mod wire;

pub use file::check;
pub use json::Json;
