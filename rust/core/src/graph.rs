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
    /// Where its record is in the repository's log (none in memory-only
    /// repositories), for checkpoints.
    pub at: Option<crate::log::RecordMark>,
}

impl Node {
    /// Depth, chain bytes and value bytes of a commit whose body (`body`
    /// bytes) is a delta on this one: what integrating it records, and what
    /// a writer checks before choosing a delta.
    pub fn extended_by(&self, body: u32) -> (u16, u32, u32) {
        (self.depth + 1, self.chain_bytes.saturating_add(body), self.value_bytes.saturating_add(body))
    }
}

pub type Nodes = HashMap<CommitId, Node>;

const FROM_A: u8 = 1;
const FROM_B: u8 = 2;
const STALE: u8 = 4;
/// In the queue now (each commit is queued at most once: every flag it can
/// get comes from a child, and children have higher generations, so they
/// are all popped before it).
const QUEUED: u8 = 8;

/// The best common ancestor of everything reachable from `a` and from `b`:
/// a common ancestor that is not an ancestor of another common ancestor.
/// When there are several (criss-cross histories), the one with the highest
/// `(generation, id)` is chosen, so every replica picks the same base.
/// `None` when the histories share nothing (concurrent creations).
///
/// Cost: O(k log k) for the k commits newer than the answer (plus those of
/// equal generation), whatever the length of the history below it.
pub fn lowest_common_ancestor(nodes: &Nodes, a: &[CommitId], b: CommitId) -> Option<CommitId> {
    let mut flags: HashMap<CommitId, u8> = HashMap::new();
    let mut queue: BinaryHeap<(u32, CommitId)> = BinaryHeap::new();
    // Queued commits that are not stale: the walk ends when an answer is
    // known and this reaches zero.
    let mut live = 0usize;
    let push = |id: CommitId, f: u8, flags: &mut HashMap<CommitId, u8>, queue: &mut BinaryHeap<(u32, CommitId)>, live: &mut usize| {
        let Some(n) = nodes.get(&id) else { return };
        let cur = flags.entry(id).or_insert(0);
        if *cur & f == f {
            return;
        }
        let was = *cur;
        *cur |= f | QUEUED;
        if was & QUEUED == 0 {
            queue.push((n.generation, id));
            if *cur & STALE == 0 {
                *live += 1;
            }
        } else if was & STALE == 0 && *cur & STALE != 0 {
            *live -= 1;
        }
    };
    for id in a {
        push(*id, FROM_A, &mut flags, &mut queue, &mut live);
    }
    push(b, FROM_B, &mut flags, &mut queue, &mut live);
    let mut best: Option<CommitId> = None;
    while let Some((_, id)) = queue.pop() {
        let f = flags[&id] & !QUEUED;
        if f & STALE == 0 {
            live -= 1;
        }
        let mut pass = f;
        if f & (FROM_A | FROM_B) == (FROM_A | FROM_B) && f & STALE == 0 {
            // Popped newest-first, so the first common ancestor found has the
            // highest (generation, id); later ones are only kept out of the
            // walk by marking them stale.
            best.get_or_insert(id);
            pass |= STALE;
        }
        flags.insert(id, pass);
        if let Some(n) = nodes.get(&id) {
            for p in n.commit.parents() {
                push(p, pass, &mut flags, &mut queue, &mut live);
            }
        }
        if best.is_some() && live == 0 {
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
            nodes.insert(c.id, Node { commit: StoredCommit::from_signed(&c), generation, depth: 0, chain_bytes: 0, value_bytes: 0, at: None });
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

    fn ancestors(n: &Nodes, from: &[CommitId]) -> std::collections::HashSet<CommitId> {
        let mut seen = std::collections::HashSet::new();
        let mut stack = from.to_vec();
        while let Some(id) = stack.pop() {
            if seen.insert(id) {
                stack.extend(n[&id].commit.parents());
            }
        }
        seen
    }

    proptest::proptest! {
        /// On random DAGs the walk answers the definition: the common
        /// ancestor with the highest (generation, id).
        #[test]
        fn answers_the_definition_on_random_graphs(edges in proptest::collection::vec(proptest::collection::vec(0usize..1000, 0..3), 1..40), pick in proptest::collection::vec(0usize..1000, 1..6)) {
            let names: Vec<String> = (0..edges.len()).map(|i| format!("c{i}")).collect();
            let spec_parents: Vec<Vec<&str>> = edges.iter().enumerate().map(|(i, ps)| {
                let mut v: Vec<&str> = if i == 0 { vec![] } else { ps.iter().map(|p| names[p % i].as_str()).collect() };
                v.sort();
                v.dedup();
                v
            }).collect();
            let spec: Vec<(&str, &[&str])> = names.iter().zip(&spec_parents).map(|(n, p)| (n.as_str(), p.as_slice())).collect();
            let (n, id) = build(&spec);
            let all: Vec<CommitId> = names.iter().map(|x| id[x]).collect();
            let a: Vec<CommitId> = pick[1..].iter().map(|i| all[i % all.len()]).collect();
            let b = all[pick[0] % all.len()];
            let (ra, rb) = (ancestors(&n, &a), ancestors(&n, &[b]));
            let want = ra.intersection(&rb).max_by_key(|c| (n[*c].generation, **c)).copied();
            proptest::prop_assert_eq!(lowest_common_ancestor(&n, &a, b), want);
        }
    }
}
