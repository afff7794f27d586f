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

/// Decodes a batch write by write: one result per write, so a write that
/// cannot be read fails alone and the batch is still answered with one
/// outcome per write. Past an unreadable write the framing is lost, so every
/// later write fails too; a batch with bytes after its last write (or whose
/// count cannot be read) fails entirely and nothing of it is applied.
pub fn decode_mutations(bytes: &[u8]) -> Vec<Result<Mutation>> {
    let mut r = Reader::new(bytes);
    let n = match r.count("mutation count", 5) {
        Ok(n) => n,
        Err(e) => return vec![Err(e)],
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        match decode_mutation(&mut r) {
            Ok(m) => out.push(Ok(m)),
            Err(e) => {
                out.push(Err(e));
                out.extend((i + 1..n).map(|_| Err(Error::decode(format!("write {i} of this batch could not be read, nor can the ones after it"), r.offset()))));
                return out;
            }
        }
    }
    if let Err(e) = r.finish("mutations") {
        return (0..n).map(|_| Err(e.clone())).collect();
    }
    out
}

fn decode_mutation(r: &mut Reader) -> Result<Mutation> {
    let at = r.offset();
    let repo = RepoPath::parse(r.str("repository path")?).map_err(|e| Error::decode(e.to_string(), at))?;
    let key = r.str("item key")?.to_owned();
    path::check_key(&key)?;
    let schema = SchemaId::new(r.str("schema namespace")?, r.u32("schema version")?);
    Ok(Mutation { repo, key, schema, changes: change::decode(r)? })
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
        let decoded: Vec<Mutation> = decode_mutations(&b).into_iter().map(|m| m.unwrap()).collect();
        assert_eq!(decoded, ms);
        // A cut batch: the writes before the cut decode, the rest fail, and
        // there is still one answer per write (or one error when the count
        // does not fit the bytes left).
        for cut in 0..b.len() {
            let d = decode_mutations(&b[..cut]);
            assert!(d.iter().any(|m| m.is_err()), "cut {cut}");
            assert!(d.len() == ms.len() || d.len() == 1, "cut {cut}: {} answers", d.len());
            for (m, want) in d.iter().zip(&ms) {
                if let Ok(m) = m {
                    assert_eq!(m, want);
                }
            }
        }
        // Trailing bytes: nothing of the batch is trusted.
        let mut long = b.clone();
        long.push(0);
        assert!(decode_mutations(&long).iter().all(|m| m.as_ref().is_err_and(|e| e.code() == "ERR_DECODE")));
    }

    #[test]
    fn a_write_that_cannot_be_read_fails_alone() {
        let good = Mutation { repo: RepoPath::parse("/data/a").unwrap(), key: "k".into(), schema: SchemaId::new("t", 1), changes: vec![Change::Deleted(true)] };
        let mut bad = good.clone();
        bad.key = "bad/key".into();
        let d = decode_mutations(&encode_mutations(&[good.clone(), bad]));
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].as_ref().unwrap(), &good);
        assert_eq!(d[1].as_ref().unwrap_err().code(), "ERR_PATH");
    }

    #[test]
    fn bad_paths_are_errors() {
        let mut m = Mutation { repo: RepoPath::parse("/data/todos").unwrap(), key: "ok".into(), schema: SchemaId::new("t", 1), changes: vec![] };
        m.key = "bad/key".into();
        let d = decode_mutations(&encode_mutations(&[m]));
        assert_eq!(d[0].as_ref().unwrap_err().code(), "ERR_PATH");
    }
}
