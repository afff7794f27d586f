//! A small JSON writer (the workspace has no JSON crate and needs none).
//!
//! Strings are UTF-16 code units so that a case can hold a lone surrogate,
//! which is what JavaScript strings may carry and `String` cannot; they are
//! written as `\uXXXX` escapes, everything else valid as is.

use std::fmt::Write;

#[derive(Debug, Clone)]
pub enum Json {
    Null,
    Bool(bool),
    /// Already formatted.
    Num(String),
    Str(Vec<u16>),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn str(s: &str) -> Json {
        Json::Str(s.encode_utf16().collect())
    }

    pub fn int(n: impl Into<i128>) -> Json {
        let n = n.into();
        // Beyond 2^53 a JavaScript number would round it silently.
        assert!(n.unsigned_abs() <= 1 << 53, "{n} is not exact in JavaScript");
        Json::Num(n.to_string())
    }

    /// Finite numbers as JSON numbers (Rust's `{:?}` is the shortest text
    /// that reads back to the same f64, as `JSON.parse` does); the values
    /// JSON has no number for as strings.
    pub fn num(f: f64) -> Json {
        if f.is_nan() {
            Json::str("NaN")
        } else if f.is_infinite() {
            Json::str(if f > 0.0 { "Infinity" } else { "-Infinity" })
        } else if f == 0.0 && f.is_sign_negative() {
            Json::str("-0")
        } else {
            Json::Num(format!("{f:?}"))
        }
    }

    pub fn obj<'a>(pairs: impl IntoIterator<Item = (&'a str, Json)>) -> Json {
        Json::Obj(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    pub fn arr(items: impl IntoIterator<Item = Json>) -> Json {
        Json::Arr(items.into_iter().collect())
    }

    /// One line.
    pub fn compact(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    /// A top-level object with one key per line and, in its arrays, one
    /// case per line: diffs of a golden file show which cases changed.
    pub fn pretty(&self) -> String {
        let Json::Obj(pairs) = self else { return self.compact() };
        let mut out = String::from("{\n");
        for (i, (k, v)) in pairs.iter().enumerate() {
            out.push_str("  ");
            write_str(&mut out, &k.encode_utf16().collect::<Vec<_>>());
            out.push_str(": ");
            match v {
                Json::Arr(items) if !items.is_empty() => {
                    out.push_str("[\n");
                    for (j, item) in items.iter().enumerate() {
                        out.push_str("    ");
                        item.write(&mut out);
                        out.push_str(if j + 1 < items.len() { ",\n" } else { "\n" });
                    }
                    out.push_str("  ]");
                }
                _ => v.write(&mut out),
            }
            out.push_str(if i + 1 < pairs.len() { ",\n" } else { "\n" });
        }
        out.push_str("}\n");
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(n),
            Json::Str(s) => write_str(out, s),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Obj(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, &k.encode_utf16().collect::<Vec<_>>());
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_str(out: &mut String, units: &[u16]) {
    out.push('"');
    for c in char::decode_utf16(units.iter().copied()) {
        match c {
            Ok('"') => out.push_str("\\\""),
            Ok('\\') => out.push_str("\\\\"),
            Ok(c) if (c as u32) < 0x20 || c == '\u{feff}' => {
                // Control characters must be escaped; a BOM is escaped so
                // that it stays visible in the file.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            Ok(c) => out.push(c),
            Err(lone) => {
                let _ = write!(out, "\\u{:04x}", lone.unpaired_surrogate());
            }
        }
    }
    out.push('"');
}
