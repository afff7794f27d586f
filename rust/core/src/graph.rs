//! Commit-graph algorithms over the nodes of one repository.
//!
//! Every integrated commit is a [`Node`] with a *generation number*
//! (`1 + max(parent generations)`, 1 for roots). Parents always have a
//! strictly smaller generation, which lets the lowest-common-ancestor search
//! walk newest-first and stop as soon as nothing unexplored can matter, so
//! its cost follows the length of the fork, not the length of history.

use std::collections::BinaryHeap;

use foldhash::{HashMap, HashMapExt};

use crate::commit::CommitId;
use crate::stored::StoredCommit;

/// An integrated commit.
#[derive(Debug, Clone)]
pub struct Node {
    pub commit: StoredCommit,
    pub generation: u32,
    /// Number of delta hops to the nearest full value (0 for a full commit).
    pub depth: u16,
    /// Body bytes of the delta commits on that path (0 for a full commit):
    /// how much a replica reads and applies to rebuild this commit's value.
    pub chain_bytes: u32,
    /// Upper bound of the encoded size of this commit's value: the full
    /// value at the chain's root plus the deltas on the way (what rebuilding
    /// it copies).
    pub value_bytes: u32,
}

pub type Nodes = HashMap<CommitId, Node>;

const FROM_A: u8 = 1;
const FROM_B: u8 = 2;
const STALE: u8 = 4;

/// The best common ancestor of everything reachable from `a` and from `b`:
/// a common ancestor that is not an ancestor of another common ancestor.
/// When there are several (criss-cross histories), the one with the highest
/// `(generation, id)` is chosen, so every replica picks the same base.
/// `None` when the histories share nothing (concurrent creations).
pub fn lowest_common_ancestor(nodes: &Nodes, a: &[CommitId], b: CommitId) -> Option<CommitId> {
    let mut flags: HashMap<CommitId, u8> = HashMap::new();
    let mut queue: BinaryHeap<(u32, CommitId)> = BinaryHeap::new();
    let push = |id: CommitId, f: u8, flags: &mut HashMap<CommitId, u8>, queue: &mut BinaryHeap<(u32, CommitId)>| {
        let Some(n) = nodes.get(&id) else { return };
        let cur = flags.entry(id).or_insert(0);
        if *cur & f == f {
            return;
        }
        *cur |= f;
        queue.push((n.generation, id));
    };
    for id in a {
        push(*id, FROM_A, &mut flags, &mut queue);
    }
    push(b, FROM_B, &mut flags, &mut queue);
    let mut best: Option<CommitId> = None;
    while let Some((_, id)) = queue.pop() {
        let f = flags[&id];
        let mut pass = f;
        if f & (FROM_A | FROM_B) == (FROM_A | FROM_B) && f & STALE == 0 {
            // Popped newest-first, so the first common ancestor found has the
            // highest (generation, id); later ones are only kept out of the
            // walk by marking them stale.
            best.get_or_insert(id);
            pass |= STALE;
            flags.insert(id, pass);
        }
        if let Some(n) = nodes.get(&id) {
            for p in n.commit.parents() {
                push(p, pass, &mut flags, &mut queue);
            }
        }
        if best.is_some() && queue.iter().all(|(_, q)| flags[q] & STALE != 0) {
            break;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::commit::{Body, Commit};
    use crate::path::RepoPath;
    use crate::schema::SchemaId;
    use crate::signing::SessionKey;
    use crate::value::ItemData;

    /// Builds a graph from `(name, parents)` pairs in topological order.
    fn build(spec: &[(&str, &[&str])]) -> (Nodes, HashMap<String, CommitId>) {
        let key = SessionKey::from_seed([5; 32]);
        let mut nodes = Nodes::new();
        let mut ids = HashMap::new();
        for (i, (name, parents)) in spec.iter().enumerate() {
            let mut ps: Vec<CommitId> = parents.iter().map(|p| ids[*p]).collect();
            ps.sort();
            let generation = 1 + ps.iter().map(|p| nodes[p].generation).max().unwrap_or(0);
            let c = Commit {
                repo: RepoPath::parse("/data/g").unwrap(),
                key: "k".into(),
                parents: ps,
                timestamp: i as i64,
                session: key.id(),
                schema: SchemaId::new("s", 1),
                body: Body::Full(Arc::new(ItemData::default())),
            }
            .sign(&key)
            .unwrap();
            ids.insert(name.to_string(), c.id);
            nodes.insert(c.id, Node { commit: StoredCommit::from_signed(&c), generation, depth: 0, chain_bytes: 0, value_bytes: 0 });
        }
        (nodes, ids)
    }

    #[test]
    fn simple_fork() {
        let (n, id) = build(&[("r", &[]), ("a", &["r"]), ("b", &["a"]), ("c", &["a"]), ("d", &["c"])]);
        assert_eq!(lowest_common_ancestor(&n, &[id["b"]], id["d"]), Some(id["a"]));
        assert_eq!(lowest_common_ancestor(&n, &[id["d"]], id["b"]), Some(id["a"]));
        // An ancestor of the other side is itself the LCA.
        assert_eq!(lowest_common_ancestor(&n, &[id["a"]], id["d"]), Some(id["a"]));
    }

    #[test]
    fn disjoint_roots_have_no_ancestor() {
        let (n, id) = build(&[("r1", &[]), ("r2", &[]), ("a", &["r1"])]);
        assert_eq!(lowest_common_ancestor(&n, &[id["a"]], id["r2"]), None);
    }

    #[test]
    fn several_heads_on_one_side() {
        let (n, id) = build(&[("r", &[]), ("x", &["r"]), ("y", &["x"]), ("z", &["x"]), ("w", &["r"])]);
        // {y, z} versus w: only r is common.
        assert_eq!(lowest_common_ancestor(&n, &[id["y"], id["z"]], id["w"]), Some(id["r"]));
        // {y, w} versus z: x is reachable from y.
        assert_eq!(lowest_common_ancestor(&n, &[id["y"], id["w"]], id["z"]), Some(id["x"]));
    }

    #[test]
    fn criss_cross_picks_one_best_ancestor_deterministically() {
        let (n, id) = build(&[("r", &[]), ("a", &["r"]), ("b", &["r"]), ("m1", &["a", "b"]), ("m2", &["a", "b"])]);
        let lca = lowest_common_ancestor(&n, &[id["m1"]], id["m2"]).unwrap();
        assert!(lca == id["a"] || lca == id["b"]);
        assert_eq!(lowest_common_ancestor(&n, &[id["m2"]], id["m1"]), Some(lca));
    }
}
