//! Cost of reconciling two replicas after 1% divergence (benchmark W5):
//! both hold the same N commits, then each writes N/200 more (1% of N in
//! all), and the two reconcile over the sync protocol (`sync.rs`) with every
//! frame encoded and decoded as over a connection. Prints one JSON line:
//! frames, filter rounds, bytes of filters and of commits, time.
//!
//! `cargo run --release -p ibex-core --example reconcile -- 10000 100000`

use std::collections::VecDeque;
use std::time::Instant;

use ibex_core::sync::{Message, Reconciler};
use ibex_core::value::Value;
use ibex_core::*;

fn write(repo: &mut Repository, key: &SessionKey, item: &str, n: f64, now: i64) {
    let schema = SchemaId::new("bench", 1);
    repo.update(item, &schema, &[Change::Put { field: "count".into(), value: Value::Num(n) }], key, now).expect("local write");
}

fn run(n: usize) -> String {
    let path = RepoPath::parse("/data/w5").expect("path");
    let mut registry = Registry::new();
    registry.register(Schema::new("bench", 1).field("count", FieldDef::new(FieldType::Number))).expect("schema");
    let registry = std::sync::Arc::new(registry);
    let mut a = Repository::new(path.clone(), registry.clone());
    let mut b = Repository::new(path.clone(), registry);
    let (ka, kb) = (SessionKey::from_seed([1; 32]), SessionKey::from_seed([2; 32]));
    for i in 0..n {
        write(&mut a, &ka, &format!("k{i}"), i as f64, 1_000 + i as i64);
    }
    // B starts with exactly A's commits (one per item: no order needed).
    for id in a.commit_ids().copied().collect::<Vec<_>>() {
        b.insert(a.commit(&id).expect("held").to_signed().expect("valid")).expect("insert");
    }
    let extra = (n / 200).max(1);
    for i in 0..extra {
        write(&mut a, &ka, &format!("k{}", i * 2), -1.0, 10_000_000 + i as i64);
        write(&mut b, &kb, &format!("k{}", i * 2 + 1), -2.0, 10_000_000 + i as i64);
    }
    let (mut ra, mut rb) = (Reconciler::new(path.clone(), 1), Reconciler::new(path, 2));
    let t0 = Instant::now();
    let mut queue: VecDeque<(bool, Vec<u8>)> = VecDeque::from([(true, ra.start(&a).encode())]);
    let (mut frames, mut rounds, mut filter_bytes, mut commit_bytes, mut other_bytes) = (0, 0, 0, 0, 0);
    while let Some((to_b, frame)) = queue.pop_front() {
        frames += 1;
        let msg = Message::decode(&frame).expect("decodes");
        match msg {
            Message::Filter { .. } => {
                rounds += 1;
                filter_bytes += frame.len();
            }
            Message::Commits { .. } => commit_bytes += frame.len(),
            Message::InSync { .. } => other_bytes += frame.len(),
        }
        let (repo, rec) = if to_b { (&mut b, &mut rb) } else { (&mut a, &mut ra) };
        let h = rec.handle(repo, msg, &|c| c.verify()).expect("reconciles");
        assert!(h.rejected.is_empty(), "{:?}", h.rejected);
        queue.extend(h.replies.into_iter().map(|m| (!to_b, m.encode())));
    }
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(a.digest(), b.digest(), "replicas differ after reconciling");
    format!(
        r#"{{"commits":{n},"divergent":{},"frames":{frames},"filterRounds":{rounds},"filterBytes":{filter_bytes},"commitBytes":{commit_bytes},"otherBytes":{other_bytes},"ms":{ms:.1}}}"#,
        extra * 2
    )
}

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    for n in if sizes.is_empty() { vec![10_000] } else { sizes } {
        println!("{}", run(n));
    }
}
