//! Schema branches: clients on two versions of one schema, side by side,
//! during a rolling deploy.
//!
//! A replica knows some versions of each namespace (its registry). A commit
//! in a *newer* version of a namespace than the replica knows is **hidden**
//! from it: it is stored, synced and listed in history like any commit,
//! but the values the replica shows and writes are made only of the
//! commits it can read. The rules, for an item whose leaves include hidden
//! commits:
//!
//! 1. **Old clients see their branch.** The item's *visible leaves* are its
//!    visible leaves plus, for each hidden leaf, its nearest visible
//!    ancestors, minus any that is an ancestor of another. The head is their
//!    merge, in the replica's newest version. A v1 client therefore keeps
//!    the value it wrote and is never handed a value it cannot read.
//! 2. **Old clients write on their branch.** A local write lists the
//!    visible leaves as parents (never a hidden commit), so it does not
//!    claim to have seen the newer version's edits.
//! 3. **New clients see everything.** A replica that knows the newer
//!    version hides nothing: the v1 leaf written under rule 2 and the v2
//!    leaves are merged as usual, v1's values upgraded first (its `upgrade`
//!    steps), so v2 sees v1's writes and v1 never sees v2's — a one-way
//!    merge. A v1 client that upgrades stops hiding and sees all of it.
//! 4. **Servers hide nothing** (they know no app schemas), so they relay and
//!    store every branch.
//!
//! Unknown *namespaces* are never hidden (nothing to compare with); an item
//! whose leaves span namespaces is merged as before (the newest leaf's
//! namespace wins).

use std::sync::Arc;

use foldhash::{HashSet, HashSetExt};

use super::Repository;
use crate::commit::CommitId;
use crate::error::Result;
use crate::schema::{Registry, SchemaId};

/// Whether a replica with `registry` hides commits written in `schema`.
pub(super) fn hides(registry: &Arc<Registry>, schema: &SchemaId) -> bool {
    registry.latest(&schema.ns).is_some_and(|l| l.version < schema.version)
}

impl Repository {
    /// The leaves of `key` this replica merges and writes on (rule 1),
    /// sorted by `(timestamp, id)`. Reads the whole history when some leaf
    /// is hidden (only replicas behind a rolling deploy pay for it).
    pub(super) fn visible_leaves(&mut self, key: &str) -> Result<Vec<CommitId>> {
        let leaves = self.leaves(key);
        for l in &leaves {
            self.hot(l)?;
        }
        if !leaves.iter().any(|l| hides(&self.registry, &self.nodes[l].commit.schema)) {
            return Ok(leaves);
        }
        self.unseal()?;
        let mut out = Vec::new();
        let mut stack = Vec::new();
        for l in leaves {
            if hides(&self.registry, &self.nodes[&l].commit.schema) { stack.push(l) } else { out.push(l) }
        }
        let mut seen: HashSet<CommitId> = HashSet::new();
        while let Some(id) = stack.pop() {
            for p in self.nodes[&id].commit.parents() {
                if seen.insert(p) {
                    if hides(&self.registry, &self.nodes[&p].commit.schema) { stack.push(p) } else { out.push(p) }
                }
            }
        }
        self.by_time(&mut out);
        out.dedup();
        let shadowed: Vec<CommitId> = out.iter().filter(|a| out.iter().any(|b| b != *a && self.is_ancestor(a, b))).copied().collect();
        out.retain(|id| !shadowed.contains(id));
        Ok(out)
    }
}
