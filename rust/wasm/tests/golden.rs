//! `batches.json`: the bytes that cross between the SDK's main thread and
//! the worker (`src/batch.rs`): mutation batches the SDK writes, outcomes
//! and heads it reads — heads as a real engine produces them. See
//! `rust/core/tests/golden/main.rs` for how golden files work.

#[path = "../../core/tests/golden/support/mod.rs"]
mod support;

use ibex_core::codec::{Reader, Writer};
use ibex_core::text::Splice;
use ibex_core::value::decode_fields;
use ibex_core::{Change, CommitId, Error, FieldDef, FieldType, MemStorage, RepoPath, Scalar, Schema, SchemaId, Value};
use ibex_wasm::batch::{Mutation, Outcome, decode_mutations, encode_mutations, encode_outcomes};
use ibex_wasm::database::Database;
use support::file::hex;
use support::{Json, check, wire};

const REPO: &str = "/data/golden";

fn m(repo: &str, key: &str, ns: &str, version: u32, changes: Vec<Change>) -> Mutation {
    Mutation { repo: RepoPath::parse(repo).unwrap(), key: key.into(), schema: SchemaId::new(ns, version), changes }
}

fn put(field: &str, value: Value) -> Change {
    Change::Put { field: field.into(), value }
}

/// The writes of `heads_from_an_engine`, and more encoding cases.
fn creates() -> Vec<Mutation> {
    let st = |s: &str| Scalar::Str(s.into());
    vec![
        m(
            REPO,
            "a",
            "task",
            1,
            vec![
                put("title", Value::Str("milk".into())),
                put("tags", Value::Set([st("b"), st("é"), Scalar::Num(-1.5), Scalar::Bool(true)].into())),
                put("attrs", Value::Map([("😀".to_owned(), st("v")), ("k".to_owned(), Scalar::Num(2.0))].into())),
                put("due", Value::Date(-8_640_000_000_000_000)),
                put("body", Value::Text("hé😀 world, a text long enough that an edit is stored as a delta".into())),
                put("n", Value::Num(0.1)),
                put("link", Value::Ref("/data/golden/b".into())),
            ],
        ),
        m(REPO, "b", "task", 1, vec![put("title", Value::Str("\u{feff}bom".into())), Change::Deleted(true)]),
        m(REPO, "c", "task", 1, vec![put("title", Value::Str("".into()))]),
    ]
}

fn edits() -> Vec<Mutation> {
    vec![m(
        REPO,
        "a",
        "task",
        1,
        vec![
            Change::SetAdd { field: "tags".into(), elems: [Scalar::Str("z".into())].into() },
            Change::SetRemove { field: "tags".into(), elems: [Scalar::Bool(true)].into() },
            Change::MapPut { field: "attrs".into(), key: "k".into(), value: Scalar::Num(3.0) },
            Change::MapRemove { field: "attrs".into(), key: "😀".into() },
            Change::Text { field: "body".into(), splices: vec![Splice { pos: 2, delete: 1, insert: "é".into() }] },
            Change::Remove { field: "link".into() },
        ],
    )]
}

fn batches() -> Vec<(&'static str, Vec<Mutation>)> {
    vec![
        ("empty batch", vec![]),
        ("new items", creates()),
        ("edits of every kind", edits()),
        ("other repositories, schema versions up to 2^32 - 1", vec![m("/user/u1", "k-1.x_Y", "n.s-1", u32::MAX, vec![]), m("/sys/sessions", "k", "t", 128, vec![Change::Deleted(false)])]),
    ]
}

fn mutation(mu: &Mutation) -> Json {
    Json::obj([
        ("repo", Json::str(mu.repo.as_str())),
        ("key", Json::str(&mu.key)),
        ("ns", Json::str(&mu.schema.ns)),
        ("version", Json::int(mu.schema.version)),
        ("changes", wire::changes(&mu.changes)),
    ])
}

fn outcome(o: &Outcome) -> Json {
    match o {
        Outcome::Unchanged => Json::obj([("status", Json::str("unchanged"))]),
        Outcome::Committed(id) => Json::obj([("status", Json::str("committed")), ("id", hex(&id.0))]),
        Outcome::Failed(e) => Json::obj([("status", Json::str("failed")), ("code", Json::str(e.code())), ("message", Json::str(&e.to_string()))]),
    }
}

/// The heads of every item after `creates` then `edits`, from an engine
/// (`a` was edited after it was created; `b` and `c` were written once).
fn heads_from_an_engine() -> Vec<u8> {
    let schema = Schema::new("task", 1)
        .field("title", FieldDef::new(FieldType::String).required())
        .field("tags", FieldDef::new(FieldType::Set))
        .field("attrs", FieldDef::new(FieldType::Map))
        .field("due", FieldDef::new(FieldType::Date))
        .field("body", FieldDef::new(FieldType::Text))
        .field("n", FieldDef::new(FieldType::Number))
        .field("link", FieldDef::new(FieldType::Ref));
    let mut w = Writer::new();
    w.varint(1);
    schema.encode(&mut w);
    let mut db = Database::new([7; 32], &w.into_bytes()).unwrap();
    db.open(REPO, Box::new(MemStorage::new()), None).unwrap();
    for (batch, now) in [(creates(), 1000), (edits(), 2000)] {
        let out = db.mutate(&encode_mutations(&batch), now).unwrap();
        let mut r = Reader::new(&out);
        for _ in 0..r.varint("n").unwrap() {
            assert_eq!(r.u8("status").unwrap(), 1, "every write commits");
            r.take(32, "id").unwrap();
        }
    }
    db.heads(REPO, 0, usize::MAX).unwrap()
}

/// Reads `heads` (the format in `src/batch.rs`) into the SDK's
/// `HeadRecord`s, and the bytes again with the records in key order: the
/// engine lists items in hash order, which changes from run to run.
fn head_records(b: &[u8]) -> (Json, Vec<u8>) {
    let mut r = Reader::new(b);
    let n = r.varint("n").unwrap();
    let mut records: Vec<(String, Json, &[u8])> = (0..n)
        .map(|_| {
            let start = r.offset();
            let repo = Json::str(r.str("repo").unwrap());
            let key = r.str("key").unwrap().to_owned();
            let ns = Json::str(r.str("ns").unwrap());
            let version = Json::int(r.u32("version").unwrap());
            let deleted = Json::Bool(r.bool("deleted").unwrap());
            let fields = wire::fields(&decode_fields(&mut r).unwrap());
            let json = Json::obj([("repo", repo), ("key", Json::str(&key)), ("ns", ns), ("version", version), ("deleted", deleted), ("fields", fields)]);
            (key, json, &b[start..r.offset()])
        })
        .collect();
    r.finish("heads").unwrap();
    records.sort_by(|x, y| x.0.cmp(&y.0));
    let mut w = Writer::new();
    w.varint(n);
    for (_, _, bytes) in &records {
        w.raw(bytes);
    }
    (Json::arr(records.into_iter().map(|(_, json, _)| json)), w.into_bytes())
}

#[test]
fn golden_batches() {
    let mutations = batches().into_iter().map(|(name, ms)| {
        let b = encode_mutations(&ms);
        let back: Vec<Mutation> = decode_mutations(&b).into_iter().map(Result::unwrap).collect();
        assert_eq!(back, ms, "{name}");
        Json::obj([("name", Json::str(name)), ("mutations", Json::arr(ms.iter().map(mutation))), ("hex", hex(&b))])
    });
    let outcomes: Vec<(&str, Vec<Outcome>)> = vec![
        ("none", vec![]),
        (
            "one of each",
            vec![
                Outcome::Unchanged,
                Outcome::Committed(CommitId(std::array::from_fn(|i| i as u8 * 8))),
                Outcome::Failed(Error::Validation { schema: "task@1".into(), field: "title".into(), reason: "expected string, got number".into() }),
                Outcome::Failed(Error::path("/data/é", "the repository name contains `é`; use letters, digits, '_', '-' or '.'")),
            ],
        ),
    ];
    let outcomes = outcomes.into_iter().map(|(name, os)| Json::obj([("name", Json::str(name)), ("outcomes", Json::arr(os.iter().map(outcome))), ("hex", hex(&encode_outcomes(&os)))]));
    let (heads, heads_bytes) = head_records(&heads_from_an_engine());
    check(
        "batches.json",
        &Json::obj([
            ("about", Json::str("Written by rust/wasm/tests/golden.rs (IBEX_BLESS=1 cargo test --workspace golden); checked by packages/db/test/golden_codec.test.ts.")),
            ("mutations", Json::arr(mutations)),
            ("outcomes", Json::arr(outcomes)),
            ("heads", Json::arr([Json::obj([("name", Json::str("after new items and edits of every kind")), ("heads", heads), ("hex", hex(&heads_bytes))])])),
        ]),
    );
}
