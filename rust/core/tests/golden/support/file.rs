//! Compares a golden file with what the Rust side generates now, or
//! rewrites it when `IBEX_BLESS=1`.

use std::path::PathBuf;

use super::Json;

/// `packages/db/test/golden/`, from any crate of the workspace.
pub fn dir() -> PathBuf {
    let mut d = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !d.join("packages/db").is_dir() {
        assert!(d.pop(), "no packages/db above {}", env!("CARGO_MANIFEST_DIR"));
    }
    d.join("packages/db/test/golden")
}

/// Fails unless `packages/db/test/golden/<name>` holds exactly `json`: a
/// format change must show up as a changed file in review, never slip
/// through (the TypeScript side is checked against this file).
pub fn check(name: &str, json: &Json) {
    let path = dir().join(name);
    let want = json.pretty();
    if std::env::var("IBEX_BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(dir()).unwrap();
        std::fs::write(&path, &want).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let Ok(have) = std::fs::read_to_string(&path) else {
        panic!("{} is missing: create it with IBEX_BLESS=1 (IBEX_BLESS=1 cargo test --workspace golden) and commit it.", path.display());
    };
    if have != want {
        let line = have.lines().zip(want.lines()).position(|(a, b)| a != b).unwrap_or_else(|| have.lines().count().min(want.lines().count()));
        let (old, new) = (have.lines().nth(line).unwrap_or(""), want.lines().nth(line).unwrap_or(""));
        // Long lines: show them from a little before where they differ.
        let col = old.chars().zip(new.chars()).take_while(|(a, b)| a == b).count().saturating_sub(40);
        let show = |l: &str| if l.is_empty() { "(nothing)".to_owned() } else { format!("…{}", l.chars().skip(col).take(160).collect::<String>()) };
        panic!(
            "{} differs from what the Rust side generates (line {}):\n  file: {}\n  now:  {}\n\
             If the change is intended, rerun with IBEX_BLESS=1 (IBEX_BLESS=1 cargo test --workspace golden), \
             commit the file, and run the vitest golden tests against it.",
            path.display(),
            line + 1,
            show(old),
            show(new)
        );
    }
}

/// Lower-case hex of the exact bytes.
pub fn hex(b: &[u8]) -> Json {
    Json::str(&b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}
