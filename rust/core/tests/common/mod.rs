//! Helpers shared by the contract tests: a schema with every field type, and
//! replicas that write, exchange commits and compare state.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use ibex_core::*;

/// `all@1`: one field of every type.
pub fn schema_v1() -> Schema {
    Schema::new("all", 1)
        .field("title", FieldDef::new(FieldType::String))
        .field("count", FieldDef::new(FieldType::Number))
        .field("done", FieldDef::new(FieldType::Boolean).default(Value::Bool(false)))
        .field("due", FieldDef::new(FieldType::Date))
        .field("tags", FieldDef::new(FieldType::Set))
        .field("attrs", FieldDef::new(FieldType::Map))
        .field("body", FieldDef::new(FieldType::Text))
        .field("link", FieldDef::new(FieldType::Ref))
}

/// `all@2`: `title` renamed to `name`, new `prio` with a default.
pub fn schema_v2() -> Schema {
    let mut s = schema_v1();
    s.version = 2;
    let title = s.fields.remove("title").unwrap();
    s.fields.insert("name".into(), title);
    s.field("prio", FieldDef::new(FieldType::Number).default(Value::Num(0.0))).step(UpgradeStep::Rename { from: "title".into(), to: "name".into() })
}

/// A replica of an app that knows only `all@1`.
pub fn registry() -> Arc<Registry> {
    let mut r = Registry::new();
    r.register(schema_v1()).unwrap();
    Arc::new(r)
}

/// A replica of a newer app that knows `all@1` and `all@2`.
pub fn registry_v2() -> Arc<Registry> {
    let mut r = Registry::new();
    r.register(schema_v1()).unwrap();
    r.register(schema_v2()).unwrap();
    Arc::new(r)
}

pub fn v1() -> SchemaId {
    SchemaId::new("all", 1)
}
pub fn v2() -> SchemaId {
    SchemaId::new("all", 2)
}

pub fn repo_path() -> RepoPath {
    RepoPath::parse("/data/test").unwrap()
}

pub fn s(x: &str) -> Scalar {
    Scalar::Str(x.into())
}

pub fn put(field: &str, v: Value) -> Change {
    Change::Put { field: field.into(), value: v }
}

/// One replica: a repository (optionally persisted in memory), its session
/// key and its clock.
pub struct Replica {
    pub repo: Repository,
    pub key: SessionKey,
    pub clock: i64,
    pub storage: Option<MemStorage>,
}

impl Replica {
    pub fn new(n: u8) -> Self {
        Self::with_registry(n, registry())
    }

    pub fn with_registry(n: u8, registry: Arc<Registry>) -> Self {
        Replica { repo: Repository::new(repo_path(), registry), key: SessionKey::from_seed([n; 32]), clock: 1_000, storage: None }
    }

    pub fn persistent(n: u8) -> Self {
        let storage = MemStorage::new();
        let (repo, report) = Repository::open(repo_path(), registry(), Box::new(storage.clone())).unwrap();
        assert_eq!(report, LoadReport::default());
        Replica { repo, key: SessionKey::from_seed([n; 32]), clock: 1_000, storage: Some(storage) }
    }

    /// Advances the clock and applies changes to the item.
    pub fn update(&mut self, key: &str, schema: &SchemaId, changes: &[Change]) -> Option<CommitId> {
        self.clock += 10;
        self.repo.update(key, schema, changes, &self.key, self.clock).unwrap()
    }

    pub fn write(&mut self, key: &str, schema: &SchemaId, data: ItemData) -> Option<CommitId> {
        self.clock += 10;
        self.repo.write(key, schema, data, &self.key, self.clock).unwrap()
    }

    /// Every commit this replica holds, parents before children.
    pub fn commits(&self) -> Vec<SignedCommit> {
        let mut v: Vec<_> = self.repo.commit_ids().map(|id| self.repo.commit(&id).unwrap().to_signed().unwrap()).collect();
        v.sort_by_key(|c| (c.commit.timestamp, c.id));
        // Timestamps of local writes exceed their parents', so this order is
        // topological.
        v
    }

    /// Delivers commits as they would arrive from the network: verified,
    /// then inserted.
    pub fn receive(&mut self, commits: &[SignedCommit]) {
        for c in commits {
            let c = SignedCommit::decode(&c.encode()).unwrap();
            c.verify().unwrap();
            self.repo.insert(c).unwrap();
        }
    }

    pub fn head(&mut self, key: &str) -> Option<Arc<Head>> {
        self.repo.head(key)
    }

    pub fn field(&mut self, key: &str, f: &str) -> Option<Value> {
        self.head(key).and_then(|h| h.data.fields.get(f).cloned())
    }

    /// Every item's head, for comparing replicas.
    pub fn state(&mut self) -> BTreeMap<String, (SchemaId, ItemData)> {
        state(&mut self.repo)
    }
}

pub fn state(repo: &mut Repository) -> BTreeMap<String, (SchemaId, ItemData)> {
    let keys: Vec<String> = repo.keys().map(str::to_owned).collect();
    keys.into_iter()
        .map(|k| {
            let h = repo.head(&k).unwrap();
            (k, (h.schema.clone(), (*h.data).clone()))
        })
        .collect()
}

/// Makes two replicas hold the same commits.
pub fn exchange(a: &mut Replica, b: &mut Replica) {
    let (ca, cb) = (a.commits(), b.commits());
    a.receive(&cb);
    b.receive(&ca);
}

/// Property-test configuration with a printed, replayable seed: set
/// `IBEX_SEED=<n>` to re-run exactly the same cases.
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, RngSeed};
    let seed =
        std::env::var("IBEX_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0));
    println!("proptest seed: {seed} (replay with IBEX_SEED={seed})");
    eprintln!("proptest seed: {seed} (replay with IBEX_SEED={seed})");
    Config { cases, rng_seed: RngSeed::Fixed(seed), failure_persistence: None, ..Config::default() }
}

/// Deterministic shuffle for delivery orders (xorshift64*, Fisher–Yates).
pub fn shuffle<T>(v: &mut [T], mut seed: u64) {
    seed |= 1;
    for i in (1..v.len()).rev() {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
        v.swap(i, (r % (i as u64 + 1)) as usize);
    }
}
