//! The binary batches that cross between the main thread and the worker.
//!
//! The SDK (`packages/db/src/codec.ts`) writes and reads the same bytes; the
//! primitives, values and changes are those of `ibex-core` (`codec.rs`,
//! `value.rs`, `change.rs`).
//!
//! ```text
//! main → worker
//!   mutations = varint n, n × mutation
//!   mutation  = str repo, str key, str ns, varint version, changes
//!
//! worker → main
//!   outcomes  = varint n, n × outcome        (one per mutation, same order)
//!   outcome   = u8 0 unchanged
//!             | u8 1 committed, 32 B commit id
//!             | u8 2 failed, str code, str message
//!   heads     = varint n, n × (str repo, str key, head)
//!   head      = str ns, varint version, u8 deleted, fields
//! ```
//!
//! Everything the worker receives is external input: decoding errors are
//! returned, never panics.

use ibex_core::codec::{Reader, Writer};
use ibex_core::{Change, CommitId, Error, RepoPath, Result, SchemaId, change, path};

/// One write requested by the main thread.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub repo: RepoPath,
    pub key: String,
    pub schema: SchemaId,
    pub changes: Vec<Change>,
}

pub fn decode_mutations(bytes: &[u8]) -> Result<Vec<Mutation>> {
    let mut r = Reader::new(bytes);
    let n = r.count("mutation count", 5)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let at = r.offset();
        let repo = RepoPath::parse(r.str("repository path")?).map_err(|e| Error::decode(e.to_string(), at))?;
        let key = r.str("item key")?.to_owned();
        path::check_key(&key)?;
        let schema = SchemaId::new(r.str("schema namespace")?, r.u32("schema version")?);
        out.push(Mutation { repo, key, schema, changes: change::decode(&mut r)? });
    }
    r.finish("mutations")?;
    Ok(out)
}

pub fn encode_mutations(ms: &[Mutation]) -> Vec<u8> {
    let mut w = Writer::new();
    w.varint(ms.len() as u64);
    for m in ms {
        w.str(m.repo.as_str());
        w.str(&m.key);
        w.str(&m.schema.ns);
        w.varint(m.schema.version.into());
        change::encode(&mut w, &m.changes);
    }
    w.into_bytes()
}

/// What became of one mutation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Unchanged,
    Committed(CommitId),
    Failed(Error),
}

pub fn encode_outcomes(outcomes: &[Outcome]) -> Vec<u8> {
    let mut w = Writer::new();
    w.varint(outcomes.len() as u64);
    for o in outcomes {
        match o {
            Outcome::Unchanged => w.u8(0),
            Outcome::Committed(id) => {
                w.u8(1);
                w.raw(&id.0);
            }
            Outcome::Failed(e) => {
                w.u8(2);
                w.str(e.code());
                w.str(&e.to_string());
            }
        }
    }
    w.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ibex_core::Value;

    #[test]
    fn mutations_roundtrip() {
        let ms = vec![
            Mutation {
                repo: RepoPath::parse("/data/todos").unwrap(),
                key: "k1".into(),
                schema: SchemaId::new("task", 2),
                changes: vec![Change::Put { field: "text".into(), value: Value::Str("milk".into()) }, Change::Deleted(true)],
            },
            Mutation { repo: RepoPath::parse("/user/u1").unwrap(), key: "x".into(), schema: SchemaId::new("n", 1), changes: vec![] },
        ];
        let b = encode_mutations(&ms);
        assert_eq!(decode_mutations(&b).unwrap(), ms);
        for cut in 0..b.len() {
            assert!(decode_mutations(&b[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn bad_paths_are_errors() {
        let mut m = Mutation { repo: RepoPath::parse("/data/todos").unwrap(), key: "ok".into(), schema: SchemaId::new("t", 1), changes: vec![] };
        m.key = "bad/key".into();
        let e = decode_mutations(&encode_mutations(&[m])).unwrap_err();
        assert_eq!(e.code(), "ERR_PATH");
    }
}
