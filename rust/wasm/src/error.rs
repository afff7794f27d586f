//! Errors cross into JavaScript as `Error` objects with a stable `code`
//! property (`"ERR_VALIDATION"`, …) that callers can branch on.

use ibex_core::Error;
use wasm_bindgen::JsValue;

/// Converts an engine error into a JS `Error` carrying `code`.
pub fn to_js(e: &Error) -> JsValue {
    js_error(e.code(), &e.to_string())
}

pub fn js_error(code: &str, message: &str) -> JsValue {
    let err = js_sys::Error::new(message);
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&err, &JsValue::from_str("code"), &JsValue::from_str(code));
    err.into()
}

/// Describes a JS exception thrown by a storage backend, for `ERR_STORAGE`.
pub fn describe(v: &JsValue) -> String {
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        return format!("{}: {}", String::from(e.name()), String::from(e.message()));
    }
    v.as_string().unwrap_or_else(|| format!("{v:?}"))
}

use wasm_bindgen::JsCast;
