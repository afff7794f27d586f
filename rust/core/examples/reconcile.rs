//! Cost of reconciling a client and a server (benchmark W5) over the sync
//! protocol (`ibex_core::sync`), with every frame encoded and decoded as
//! over a connection. Both hold the same N commits, then diverge:
//!
//! * `random`: each side writes d/2 new commits (differences spread over
//!   the id space, as commit ids are hashes);
//! * `one-sided`: only the server writes d commits (a client that was away);
//! * `nothing`: no divergence (a reconnect with nothing new).
//!
//! Prints one JSON line per case: round trips, bytes beyond the missing
//! commits (`overheadBytes`), bytes of commits, frames, time.
//!
//! `cargo run --release -p ibex-core --example reconcile -- 100000:0.01 1000000:0.001`

use std::collections::VecDeque;
use std::time::Instant;

use ibex_core::sync::frame::Frame;
use ibex_core::sync::{Ctx, RepoClient, RepoServe};
use ibex_core::value::Value;
use ibex_core::*;

fn write(repo: &mut Repository, key: &SessionKey, item: &str, n: f64, now: i64) {
    let schema = SchemaId::new("bench", 1);
    repo.update(item, &schema, &[Change::Put { field: "count".into(), value: Value::Num(n) }], key, now).expect("local write");
}

fn run(n: usize, rate: f64, mode: &str) -> String {
    let path = RepoPath::parse("/data/w5").expect("path");
    let mut registry = Registry::new();
    registry.register(Schema::new("bench", 1).field("count", FieldDef::new(FieldType::Number))).expect("schema");
    let registry = std::sync::Arc::new(registry);
    let mut client = Repository::new(path.clone(), registry.clone());
    let mut server = Repository::new(path.clone(), registry);
    let (kc, ks) = (SessionKey::from_seed([1; 32]), SessionKey::from_seed([2; 32]));
    for i in 0..n {
        write(&mut server, &ks, &format!("k{i}"), i as f64, 1_000 + i as i64);
    }
    for id in server.commit_ids().collect::<Vec<_>>() {
        client.insert(server.commit(&id).expect("held").to_signed().expect("valid")).expect("insert");
    }
    let d = if mode == "nothing" { 0 } else { ((n as f64 * rate).round() as usize).max(2) };
    let mut pushed = Vec::new();
    match mode {
        "random" => {
            for i in 0..d / 2 {
                write(&mut server, &ks, &format!("k{}", i * 2), -1.0, 10_000_000 + i as i64);
                write(&mut client, &kc, &format!("k{}", i * 2 + 1), -2.0, 10_000_000 + i as i64);
                pushed.extend(client.take_integrated());
            }
        }
        "one-sided" => {
            for i in 0..d {
                write(&mut server, &ks, &format!("k{i}"), -1.0, 10_000_000 + i as i64);
            }
        }
        _ => {}
    }
    let mut rc = RepoClient::new(path.clone());
    // The client's own commits are unacknowledged until the server says so.
    rc.push(&client, &pushed);
    let mut rs = RepoServe::new();
    let t0 = Instant::now();
    let mut to_server: VecDeque<Vec<u8>> = VecDeque::from([rc.begin(&client).0.encode()]);
    let mut to_client: VecDeque<Vec<u8>> = VecDeque::new();
    let (mut frames, mut overhead, mut commit_bytes, mut round_trips) = (0, 0, 0, 1);
    while !to_server.is_empty() || !to_client.is_empty() {
        if let Some(f) = to_server.pop_front() {
            frames += 1;
            let frame = Frame::decode(&f).expect("decodes");
            match frame {
                Frame::Commits { .. } => commit_bytes += f.len(),
                Frame::Cells { from: 0, .. } | Frame::List { .. } => {
                    round_trips += 1;
                    overhead += f.len();
                }
                _ => overhead += f.len(),
            }
            let ctx = Ctx { verify: &|c| c.verify(), owner: 1, now: 0, salt: 0x5eed };
            let s = rs.handle(&mut server, frame, &ctx).expect("serves");
            assert!(s.rejected.is_empty());
            to_client.extend(ibex_core::sync::server::commit_frames(&server, &s.send).iter().chain(&s.now).chain(&s.after_flush).map(Frame::encode));
        }
        if let Some(f) = to_client.pop_front() {
            frames += 1;
            let frame = Frame::decode(&f).expect("decodes");
            match frame {
                Frame::Commits { .. } => commit_bytes += f.len(),
                Frame::More { .. } => {
                    round_trips += 1;
                    overhead += f.len();
                }
                _ => overhead += f.len(),
            }
            let h = rc.handle(&mut client, frame, &|c| c.verify()).expect("handles");
            assert!(h.rejected.is_empty());
            to_server.extend(h.replies.iter().map(Frame::encode));
        }
    }
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(client.digest(), server.digest(), "replicas differ after reconciling");
    assert!(rc.synced(), "the client's commits are acknowledged");
    format!(r#"{{"commits":{n},"mode":"{mode}","divergent":{d},"roundTrips":{round_trips},"overheadBytes":{overhead},"commitBytes":{commit_bytes},"frames":{frames},"ms":{ms:.1}}}"#)
}

fn main() {
    let mut cases: Vec<(usize, f64)> = std::env::args().skip(1).filter_map(|a| a.split_once(':').and_then(|(n, r)| Some((n.parse().ok()?, r.parse().ok()?)))).collect();
    if cases.is_empty() {
        cases = vec![(10_000, 0.01)];
    }
    for (n, rate) in cases {
        for mode in ["random", "one-sided", "nothing"] {
            println!("{}", run(n, rate, mode));
        }
    }
}
