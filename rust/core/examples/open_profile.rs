//! Times the phases of opening a repository log: `cargo run --release -p
//! ibex-core --example open_profile -- <file.log>`. A development aid for
//! the open path (what a checkpoint must save), not a benchmark.

use std::sync::Arc;
use std::time::Instant;

use ibex_core::*;

fn main() {
    let path = std::env::args().nth(1).expect("usage: open_profile <file.log>");
    let bytes = std::fs::read(&path).unwrap();
    let t = Instant::now();
    let scan = log::scan(&bytes).unwrap();
    println!("scan (crc of every record): {:?}, {} records", t.elapsed(), scan.records.len());
    let t = Instant::now();
    let mut parsed = Vec::with_capacity(scan.records.len());
    for (_, c) in compact::commits(&bytes, &scan, "/data/items") {
        parsed.push(StoredCommit::parse(c.unwrap(), false).unwrap());
    }
    println!("expand + parse + sha-256 of every commit: {:?}", t.elapsed());
    let mut reg = Registry::new();
    let _ =
        reg.register(Schema::new("w1", 1).field("title", FieldDef::new(FieldType::String).required()).field("count", FieldDef::new(FieldType::Number)).field("tags", FieldDef::new(FieldType::Set)));
    let t = Instant::now();
    let (mut repo, report) = Repository::open(RepoPath::parse("/data/items").unwrap(), Arc::new(reg), Box::new(MemStorage::from_bytes(bytes.clone()))).unwrap();
    println!("Repository::open total: {:?} ({} commits)", t.elapsed(), report.commits);
    let keys: Vec<String> = repo.keys().map(str::to_owned).collect();
    let t = Instant::now();
    let mut w = codec::Writer::new();
    for k in &keys {
        repo.encode_head(k, &mut w);
    }
    println!("encode every head: {:?}, {} bytes", t.elapsed(), w.into_bytes().len());
    // With a checkpoint: the first open writes it, the second uses it.
    let ckpt = MemStorage::new();
    let reg = repo.registry().clone();
    let t = Instant::now();
    let (_, report) = Repository::open_checkpointed(RepoPath::parse("/data/items").unwrap(), reg.clone(), Box::new(MemStorage::from_bytes(bytes.clone())), Box::new(ckpt.clone())).unwrap();
    println!("open + write a checkpoint: {:?} ({:?}, {} bytes)", t.elapsed(), report.checkpoint, ckpt.bytes().len());
    let t = Instant::now();
    let (mut repo, report) = Repository::open_checkpointed(RepoPath::parse("/data/items").unwrap(), reg, Box::new(MemStorage::from_bytes(bytes.clone())), Box::new(ckpt)).unwrap();
    println!("open from the checkpoint: {:?} ({:?})", t.elapsed(), report.checkpoint);
    let t = Instant::now();
    let mut w = codec::Writer::new();
    for k in &keys {
        repo.encode_head(k, &mut w);
    }
    println!("encode every head from the checkpoint: {:?}, {} bytes", t.elapsed(), w.into_bytes().len());
}
