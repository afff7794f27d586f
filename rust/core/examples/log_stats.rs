//! Where a log's bytes go: `cargo run --release -p ibex-core --example
//! log_stats -- <file.log> <repository path>`. Counts records by kind and,
//! for commits, full values against deltas (framing and signature
//! included). A development aid for the W4 bytes analysis.

use ibex_core::*;

fn main() {
    let mut args = std::env::args().skip(1);
    let (path, repo) = (args.next().expect("usage: log_stats <file.log> <repo>"), args.next().expect("usage: log_stats <file.log> <repo>"));
    let bytes = std::fs::read(&path).unwrap();
    let scan = log::scan(&bytes).unwrap();
    let sizes: std::collections::HashMap<u64, usize> = scan.records.iter().map(|(o, _, r)| (*o, r.end - *o as usize)).collect();
    let (mut full, mut full_bytes, mut delta, mut delta_bytes) = (0usize, 0usize, 0usize, 0usize);
    for (at, c) in compact::commits(&bytes, &scan, &repo) {
        let c = StoredCommit::parse(c.unwrap(), false).unwrap();
        let size = sizes[&at];
        if c.full_value_bytes().is_some() {
            full += 1;
            full_bytes += size;
        } else {
            delta += 1;
            delta_bytes += size;
        }
    }
    println!("format {}, {} bytes, {} records", scan.version, bytes.len(), scan.records.len());
    println!("full values: {full} records, {full_bytes} bytes");
    println!("deltas: {delta} records, {delta_bytes} bytes, {:.1} bytes each", delta_bytes as f64 / delta.max(1) as f64);
}
