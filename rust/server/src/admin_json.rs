//! The JSON of the operator's audit (`POST /admin/audit`, `ibex-server
//! audit`) and the times its commands accept.
//!
//! # One line per commit
//!
//! ```json
//! {"id":"<64 hex>","key":"a","session":"<64 hex>","user":"u…"|null,
//!  "timestamp":1764550800000,"time":"2025-12-01T01:00:00.000Z",
//!  "schema":"todo@1","parents":["<64 hex>"],
//!  "changes":[{"field":"title","before":"Milk","after":"Milk!"}]}
//! ```
//!
//! `user` is the owner the server's certificate of the session names
//! (`null`: anonymous, or a session this server holds no certificate of; the
//! root's own commits, reverts included, have `"session"` = the root key and
//! `user` `null`). `changes` lists each field whose value differs from the
//! merge of the commit's parents, and `"$deleted"` (booleans) when the
//! soft-delete flag changed. A field absent on one side is `null` there.
//!
//! # Values
//!
//! | type | JSON |
//! |---|---|
//! | string, text | string |
//! | number | number (`null` if not finite) |
//! | boolean | boolean |
//! | date | `{"date": <ms since the epoch>}` |
//! | set | array of its elements (strings, numbers, booleans), sorted |
//! | map | object (values strings, numbers, booleans) |
//! | ref | `{"ref": "<item path>"}` |
//!
//! # Times
//!
//! `--since`/`--until` take milliseconds since the epoch or RFC 3339
//! (`2026-12-01T01:00:00Z`, `2026-12-01T02:00:00.5+01:00`); both bounds are
//! inclusive and compare with the commit's timestamp.

use ibex_core::{HistoryEntry, Scalar, Value};
use serde_json::{Map, Value as Json, json};

fn scalar(s: &Scalar) -> Json {
    match s {
        Scalar::Bool(b) => Json::Bool(*b),
        Scalar::Num(n) => json!(n),
        Scalar::Str(s) => Json::String(s.clone()),
    }
}

/// A field value as JSON (see the module's table).
pub fn value(v: &Value) -> Json {
    match v {
        Value::Str(s) | Value::Text(s) => Json::String(s.clone()),
        Value::Num(n) => serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number),
        Value::Bool(b) => Json::Bool(*b),
        Value::Date(ms) => json!({ "date": ms }),
        Value::Set(s) => Json::Array(s.iter().map(scalar).collect()),
        Value::Map(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), scalar(v))).collect::<Map<_, _>>()),
        Value::Ref(p) => json!({ "ref": p }),
    }
}

/// One audit line (without the newline).
pub fn entry(e: &HistoryEntry, user: Option<&str>) -> String {
    let changes: Vec<Json> =
        e.changes.iter().map(|c| json!({ "field": c.field, "before": c.before.as_ref().map_or(Json::Null, value), "after": c.after.as_ref().map_or(Json::Null, value) })).collect();
    json!({
        "id": e.id.to_hex(),
        "key": &*e.key,
        "session": e.session.to_hex(),
        "user": user,
        "timestamp": e.timestamp,
        "time": iso(e.timestamp),
        "schema": e.schema.to_string(),
        "parents": e.parents.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
        "changes": changes,
    })
    .to_string()
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `ms` since the epoch as RFC 3339 UTC with milliseconds; years outside
/// 0000–9999 as the number of milliseconds.
pub fn iso(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return ms.to_string();
    }
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// Milliseconds since the epoch, or RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.f](Z|±HH:MM)`).
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || format!("{s:?} is neither milliseconds since the epoch nor an RFC 3339 time (2026-12-01T01:00:00Z)");
    let b = s.as_bytes();
    if b.len() < 20 || !s.is_ascii() || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<i64>().map_err(|_| bad());
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut i = 19;
    let mut milli = 0;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        let frac = &s[start..i.min(start + 3)];
        milli = frac.parse::<i64>().map_err(|_| bad())? * 10_i64.pow(3 - frac.len() as u32);
    }
    let offset = match &s[i..] {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let (oh, om) = (o[1..3].parse::<i64>().map_err(|_| bad())?, o[4..6].parse::<i64>().map_err(|_| bad())?);
            let v = (oh * 60 + om) * 60_000;
            if o.starts_with('-') { -v } else { v }
        }
        _ => return Err(bad()),
    };
    Ok(((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + milli - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        assert_eq!(parse_time("0").unwrap(), 0);
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_time("2000-01-01T00:00:00Z").unwrap(), 946_684_800_000);
        assert_eq!(parse_time("2024-02-29T12:34:56.789Z").unwrap(), 1_709_210_096_789);
        for ms in [0, 1, 951_782_400_123, 1_764_550_800_000, -86_400_001, 253_402_300_799_999] {
            assert_eq!(parse_time(&iso(ms)).unwrap(), ms, "{}", iso(ms));
        }
        assert_eq!(parse_time("2026-12-01T02:00:00.5+01:00").unwrap(), parse_time("2026-12-01T01:00:00.500Z").unwrap());
        for bad in ["", "yesterday", "2026-13-01T00:00:00Z", "2026-12-01T00:00:00", "2026-12-01T00:00:00.Z", "2026-12-01T00:00:00+0100"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_map_to_json() {
        use std::collections::{BTreeMap, BTreeSet};
        assert_eq!(value(&Value::Str("a".into())), json!("a"));
        assert_eq!(value(&Value::Text("t".into())), json!("t"));
        assert_eq!(value(&Value::Num(1.5)), json!(1.5));
        assert_eq!(value(&Value::Num(f64::NAN)), Json::Null);
        assert_eq!(value(&Value::Bool(true)), json!(true));
        assert_eq!(value(&Value::Date(5)), json!({ "date": 5 }));
        assert_eq!(value(&Value::Set(BTreeSet::from([Scalar::Str("x".into()), Scalar::Num(2.0)]))), json!([2.0, "x"]));
        assert_eq!(value(&Value::Map(BTreeMap::from([("k".to_owned(), Scalar::Bool(false))]))), json!({ "k": false }));
        assert_eq!(value(&Value::Ref("/data/a/b".into())), json!({ "ref": "/data/a/b" }));
    }
}
