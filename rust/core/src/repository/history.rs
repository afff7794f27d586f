//! History as a feature: what each commit changed (values before and
//! after), an item or a whole repository as it was at a time or a commit,
//! reverts, the conflicts a merge decided, an audit across items, and the
//! events of a playback.
//!
//! Everything here reads history on demand: an item's questions read that
//! item's commits from the log (not the repository's), and only questions
//! about the whole repository (as of a time, audit, playback, revert of a
//! session) read every commit.
//!
//! # Rules
//!
//! * **Values** are presented in the newest schema version this replica
//!   knows for the commit's namespace, like heads. *Before* a commit is the
//!   merge of its parents (nothing for a creation); *after* is its value.
//! * **As of time `t`**, an item is the merge of its commits stamped `≤ t`
//!   whose ancestors all are too: each commit *appears* at
//!   `max(its timestamp, when its parents appeared)`, so a commit whose
//!   writer's clock ran behind its parent's appears with its parent. That is
//!   exactly what a replica that had received only those commits would show.
//! * **Revert** of commits `C` of one item, newest first, each a three-way
//!   merge ([`merge3`]) with base = the value *after* `c`, one side = the
//!   value *before* `c` and the other = the current value as the later side:
//!   where nobody changed a field since `c`, the value before `c` comes back;
//!   where someone did, their edit stays (text merges character by
//!   character, sets element by element). *Before* a creation is the same
//!   value soft-deleted: reverting a creation deletes the item. Reverting the
//!   revert's commits gives back the value before the revert when nothing
//!   changed in between (base = revert, one side = what it replaced).
//! * **Conflicts**: per field, its *latest writers* are the commits that
//!   changed it from their parents' merged value and are not ancestors of
//!   another such commit. When two or more are concurrent and the head holds
//!   one's value, the others' values lost. Writing the field again (a commit
//!   that descends from all of them) settles it. Fields merged rather than
//!   decided (text, sets, maps whose sides touched different keys) hold
//!   neither side's value alone and are not conflicts.

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::{Head, Repository, sort_ranked};
use crate::commit::CommitId;
use crate::error::{Error, Result};
use crate::merge::merge3;
use crate::schema::SchemaId;
use crate::signing::{SessionId, SessionKey};
use crate::stored::StoredCommit;
use crate::value::{ItemData, Value};

/// The field name that stands for the soft-delete flag in history.
pub const DELETED: &str = "$deleted";

/// One field a commit changed.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    /// The field, or [`DELETED`] (values `Bool`).
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// One entry of an item's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub id: CommitId,
    pub key: Arc<str>,
    pub session: SessionId,
    pub timestamp: i64,
    pub parents: Vec<CommitId>,
    pub schema: SchemaId,
    /// Names of the fields in `changes` (`"$deleted"` for the flag).
    pub changed: Vec<String>,
    /// What this commit changed relative to its parents' merged value.
    pub changes: Vec<FieldChange>,
}

/// A point in an item's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Milliseconds since the epoch (the commits' clock).
    Time(i64),
    Commit(CommitId),
}

/// One value of a field and who wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub id: CommitId,
    pub session: SessionId,
    pub timestamp: i64,
    pub value: Option<Value>,
}

/// A field whose concurrent values a merge decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub field: String,
    pub winner: Written,
    pub losers: Vec<Written>,
}

/// One step of a playback: after commit `id` appeared at `time`, item
/// `key` is `head`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub time: i64,
    pub id: CommitId,
    pub key: Arc<str>,
    pub head: Head,
}

/// What [`Repository::playback`] returns: the repository at `from`, then
/// every step after it up to `to`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Playback {
    pub start: Vec<(Arc<str>, Head)>,
    pub steps: Vec<Step>,
}

/// The fields (and the flag) whose values differ, by name.
pub fn field_changes(before: &ItemData, after: &ItemData) -> Vec<FieldChange> {
    let mut out = Vec::new();
    if before.deleted != after.deleted {
        out.push(FieldChange { field: DELETED.into(), before: Some(Value::Bool(before.deleted)), after: Some(Value::Bool(after.deleted)) });
    }
    // Both field maps are sorted: walk them together (no sort to compile).
    let (mut b, mut a) = (before.fields.keys().peekable(), after.fields.keys().peekable());
    let mut names: Vec<&String> = Vec::new();
    loop {
        let order = match (b.peek(), a.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x.cmp(y),
        };
        match order {
            std::cmp::Ordering::Less => names.extend(b.next()),
            std::cmp::Ordering::Greater => names.extend(a.next()),
            std::cmp::Ordering::Equal => {
                a.next();
                names.extend(b.next());
            }
        }
    }
    for n in names {
        let (b, a) = (before.fields.get(n), after.fields.get(n));
        if b != a {
            out.push(FieldChange { field: n.clone(), before: b.cloned(), after: a.cloned() });
        }
    }
    out
}

fn field_of(d: &ItemData, field: &str) -> Option<Value> {
    if field == DELETED { Some(Value::Bool(d.deleted)) } else { d.fields.get(field).cloned() }
}

// History questions read from the log what they need (an item's questions
// only that item's commits); what they read stays in memory until the
// repository closes, because a commit in memory must have its delta chain
// in memory (values are rebuilt along it).
impl Repository {
    /// The history of an item in the order its commits appeared (parents
    /// before children), each entry with the values it changed. Reads that
    /// item's commits from the log if they are only in the checkpoint.
    pub fn history(&mut self, key: &str) -> Result<Vec<HistoryEntry>> {
        self.history_now(key, None, usize::MAX).map(|(e, _)| e)
    }

    /// One page of an item's history: the `limit` entries that appeared
    /// just before commit `before` (before the newest end when `None`),
    /// oldest first, and how many entries the whole history has. Each entry
    /// carries whole values, so a long history (a text edited character by
    /// character) is read a page at a time: the cost is the page's, not the
    /// history's. A `before` that is not in the item's history is
    /// `ERR_NOT_FOUND`.
    pub fn history_page(&mut self, key: &str, before: Option<CommitId>, limit: usize) -> Result<(Vec<HistoryEntry>, usize)> {
        self.history_now(key, before, limit)
    }

    /// The item `key` as it was at a time or right after a commit of it;
    /// `None` if it did not exist yet. A commit of another item, or one
    /// this replica does not hold, is `ERR_NOT_FOUND`.
    pub fn item_at(&mut self, key: &str, at: At) -> Result<Option<Head>> {
        self.item_at_now(key, at)
    }

    /// Every item as it was at time `t` (items that did not exist yet are
    /// absent), by key. Reads the whole history.
    pub fn snapshot_at(&mut self, t: i64) -> Result<Vec<(Arc<str>, Head)>> {
        self.snapshot_at_now(t)
    }

    /// Commits across items matching `keep`, in the order they appeared,
    /// with the values each changed: an audit log. Reads the whole history.
    pub fn audit(&mut self, keep: impl Fn(&StoredCommit) -> bool) -> Result<Vec<HistoryEntry>> {
        self.audit_now(keep)
    }

    /// The repository at `from`, then one step per commit that appeared
    /// after it, up to `to` (inclusive), each with its item's new value.
    pub fn playback(&mut self, from: i64, to: i64) -> Result<Playback> {
        self.playback_now(from, to)
    }

    /// The conflicts a merge decided in item `key` and nobody settled since
    /// (see the module's rules). Reads that item's history.
    pub fn conflicts(&mut self, key: &str) -> Result<Vec<Conflict>> {
        self.conflicts_now(key)
    }

    /// The values that revert `targets` (commits of this repository, any
    /// items) on top of the current heads, one per item that changes (see
    /// the module's rules). Commits this replica does not hold are
    /// `ERR_NOT_FOUND`.
    pub fn revert_values(&mut self, targets: &[CommitId]) -> Result<Vec<(Arc<str>, Head)>> {
        self.revert_values_now(targets)
    }

    /// Reverts `targets` (see [`Repository::revert_values`]) as new commits
    /// signed by `session`, one per item that changes; returns their ids.
    /// The values come from the items' own history, so a schema this
    /// replica does not know (a server) is not an obstacle.
    pub fn revert(&mut self, targets: &[CommitId], session: &SessionKey, now: i64) -> Result<Vec<CommitId>> {
        self.revert_now(targets, session, now)
    }

    /// Writes the item's value as it was at `commit` (a commit of it) as a
    /// new commit: "restore this version". `None` if that is the current value.
    pub fn restore(&mut self, key: &str, commit: CommitId, session: &SessionKey, now: i64) -> Result<Option<CommitId>> {
        self.restore_now(key, commit, session, now)
    }
    /// Every commit of `key` (the ancestors of its leaves), read from the
    /// log if they are only in the checkpoint; parents first.
    fn item_commits(&mut self, key: &str) -> Result<Vec<CommitId>> {
        let Some(item) = self.items.get(key) else { return Ok(Vec::new()) };
        let mut ids: Vec<CommitId> = item.leaves.clone();
        for l in &ids {
            self.hot(l)?;
        }
        let mut seen: HashSet<CommitId> = ids.iter().copied().collect();
        let mut i = 0;
        while i < ids.len() {
            let parents: Vec<CommitId> = self.nodes[&ids[i]].commit.parents().collect();
            for p in parents {
                if seen.insert(p) {
                    self.hot(&p)?;
                    ids.push(p);
                }
            }
            i += 1;
        }
        self.by_appearance(&mut ids);
        Ok(ids)
    }

    /// When each commit appears (see the module's rules), for `ids` sorted
    /// parents first; a parent outside `ids` counts as appeared.
    fn appearances(&self, ids: &[CommitId]) -> HashMap<CommitId, i64> {
        let mut at: HashMap<CommitId, i64> = HashMap::with_capacity(ids.len());
        let mut order: Vec<(i64, u32, CommitId)> = ids.iter().map(|id| (i64::from(self.nodes[id].generation), 0, *id)).collect();
        sort_ranked(&mut order);
        for (_, _, id) in &order {
            let c = &self.nodes[id].commit;
            let t = c.parents().filter_map(|p| at.get(&p).copied()).fold(c.timestamp, i64::max);
            at.insert(*id, t);
        }
        at
    }

    /// Sorts commits in the order they appeared (parents first).
    fn by_appearance(&self, ids: &mut [CommitId]) {
        let at = self.appearances(ids);
        let mut ranked: Vec<(i64, u32, CommitId)> = ids.iter().map(|id| (at[id], self.nodes[id].generation, *id)).collect();
        sort_ranked(&mut ranked);
        for (slot, (_, _, id)) in ids.iter_mut().zip(ranked) {
            *slot = id;
        }
    }

    /// Sorts commits by `(timestamp, id)`: the order of leaves.
    pub(super) fn by_time(&self, ids: &mut [CommitId]) {
        let mut ranked: Vec<(i64, u32, CommitId)> = ids.iter().map(|id| (self.nodes[id].commit.timestamp, 0, *id)).collect();
        sort_ranked(&mut ranked);
        for (slot, (_, _, id)) in ids.iter_mut().zip(ranked) {
            *slot = id;
        }
    }

    /// The value of a commit as this replica presents it (newest known
    /// version of its namespace).
    fn presented(&self, id: &CommitId) -> Result<Head> {
        let schema = &self.nodes[id].commit.schema;
        let latest = self.registry.latest(&schema.ns).map_or(schema.version, |s| s.version).max(schema.version);
        let (data, reached) = self.registry.upgrade((*self.value_of(id)?).clone(), schema, latest);
        Ok(Head { schema: SchemaId::new(schema.ns.clone(), reached), data: Arc::new(data) })
    }

    /// The merged value of `parents` (nothing for none), presented.
    fn before(&self, parents: &[CommitId], memo: &HashMap<CommitId, Head>) -> Result<Option<Head>> {
        match parents {
            [] => Ok(None),
            [one] => match memo.get(one) {
                Some(h) => Ok(Some(h.clone())),
                None => self.presented(one).map(Some),
            },
            many => self.merge_heads(many).map(|(h, _)| Some(h)),
        }
    }

    /// The entries of `ids` (parents before children). A value is kept only
    /// until the last of its children in `ids` has used it, so memory holds
    /// the open forks' values, not one value per commit (a text edited
    /// 60,000 times would otherwise keep 60,000 copies of itself).
    fn entries(&self, ids: &[CommitId]) -> Result<Vec<HistoryEntry>> {
        let mut out = Vec::with_capacity(ids.len());
        self.each_entry(ids, |e| out.push(e))?;
        Ok(out)
    }

    /// [`Self::entries`], one at a time (for callers that keep less).
    fn each_entry(&self, ids: &[CommitId], mut f: impl FnMut(HistoryEntry)) -> Result<()> {
        let mut uses: HashMap<CommitId, usize> = HashMap::new();
        for id in ids {
            for p in self.nodes[id].commit.parents() {
                *uses.entry(p).or_default() += 1;
            }
        }
        let mut memo: HashMap<CommitId, Head> = HashMap::new();
        for id in ids {
            let (entry, after) = self.entry(id, &memo)?;
            for p in &entry.parents {
                if let Some(n) = uses.get_mut(p) {
                    *n -= 1;
                    if *n == 0 {
                        memo.remove(p);
                    }
                }
            }
            if uses.get(id).is_some_and(|n| *n > 0) {
                memo.insert(*id, after);
            }
            f(entry);
        }
        Ok(())
    }

    fn entry(&self, id: &CommitId, memo: &HashMap<CommitId, Head>) -> Result<(HistoryEntry, Head)> {
        let c = &self.nodes[id].commit;
        let parents: Vec<CommitId> = c.parents().collect();
        let before = self.before(&parents, memo)?;
        let after = self.presented(id)?;
        let empty = ItemData::default();
        let changes = field_changes(before.as_ref().map_or(&empty, |h| &h.data), &after.data);
        let entry = HistoryEntry {
            id: *id,
            key: c.key.clone(),
            session: c.session(),
            timestamp: c.timestamp,
            parents,
            schema: c.schema.clone(),
            changed: changes.iter().map(|ch| ch.field.clone()).collect(),
            changes,
        };
        Ok((entry, after))
    }

    fn history_now(&mut self, key: &str, before: Option<CommitId>, limit: usize) -> Result<(Vec<HistoryEntry>, usize)> {
        let ids = self.item_commits(key)?;
        let end = match before {
            None => ids.len(),
            Some(b) => ids.iter().position(|id| *id == b).ok_or_else(|| Error::NotFound(format!("commit {} is not in the history of item `{key}`", b.to_hex())))?,
        };
        let page = &ids[end.saturating_sub(limit)..end];
        Ok((self.entries(page)?, ids.len()))
    }

    fn item_at_now(&mut self, key: &str, at: At) -> Result<Option<Head>> {
        let ids = self.item_commits(key)?;
        match at {
            At::Commit(id) => {
                if !ids.contains(&id) {
                    return Err(Error::NotFound(format!("commit {} is not in the history of item `{key}`", id.to_hex())));
                }
                self.presented(&id).map(Some)
            }
            At::Time(t) => {
                let appeared = self.appearances(&ids);
                let upto: Vec<CommitId> = ids.into_iter().filter(|id| appeared[id] <= t).collect();
                self.merge_of(&upto)
            }
        }
    }

    /// The merge of the leaves of an ancestor-closed set of one item's
    /// commits, presented.
    fn merge_of(&self, ids: &[CommitId]) -> Result<Option<Head>> {
        if ids.is_empty() {
            return Ok(None);
        }
        let inner: HashSet<CommitId> = ids.iter().flat_map(|id| self.nodes[id].commit.parents()).collect();
        let mut leaves: Vec<CommitId> = ids.iter().filter(|id| !inner.contains(id)).copied().collect();
        self.by_time(&mut leaves);
        self.merge_heads(&leaves).map(|(h, _)| Some(h))
    }

    fn snapshot_at_now(&mut self, t: i64) -> Result<Vec<(Arc<str>, Head)>> {
        self.unseal()?;
        let ids: Vec<CommitId> = self.nodes.keys().copied().collect();
        let appeared = self.appearances(&ids);
        let mut by_key: HashMap<Arc<str>, Vec<CommitId>> = HashMap::new();
        for id in ids {
            if appeared[&id] <= t {
                by_key.entry(self.nodes[&id].commit.key.clone()).or_default().push(id);
            }
        }
        // In no particular order (callers key them by item).
        let keys: Vec<Arc<str>> = by_key.keys().cloned().collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(h) = self.merge_of(&by_key[&key])? {
                out.push((key, h));
            }
        }
        Ok(out)
    }

    fn audit_now(&mut self, keep: impl Fn(&StoredCommit) -> bool) -> Result<Vec<HistoryEntry>> {
        self.unseal()?;
        let mut ids: Vec<CommitId> = self.nodes.values().filter(|n| keep(&n.commit)).map(|n| n.commit.id).collect();
        self.by_appearance(&mut ids);
        self.entries(&ids)
    }

    fn playback_now(&mut self, from: i64, to: i64) -> Result<Playback> {
        self.unseal()?;
        let mut ids: Vec<CommitId> = self.nodes.keys().copied().collect();
        let appeared = self.appearances(&ids);
        ids.retain(|id| appeared[id] <= to);
        let mut ranked: Vec<(i64, u32, CommitId)> = ids.iter().map(|id| (appeared[id], self.nodes[id].generation, *id)).collect();
        sort_ranked(&mut ranked);
        let ids: Vec<CommitId> = ranked.into_iter().map(|(_, _, id)| id).collect();
        let mut leaves: HashMap<Arc<str>, Vec<CommitId>> = HashMap::new();
        let mut out = Playback::default();
        let mut started = false;
        for id in ids {
            let t = appeared[&id];
            if !started && t > from {
                out.start = self.heads_of(&leaves)?;
                started = true;
            }
            let c = &self.nodes[&id].commit;
            let key = c.key.clone();
            let l = leaves.entry(key.clone()).or_default();
            l.retain(|x| !c.parents().any(|p| p == *x));
            l.push(id);
            let mut l = std::mem::take(l);
            self.by_time(&mut l);
            leaves.insert(key.clone(), l);
            if started {
                let (head, _) = self.merge_heads(&leaves[&key])?;
                out.steps.push(Step { time: t, id, key, head });
            }
        }
        if !started {
            out.start = self.heads_of(&leaves)?;
        }
        Ok(out)
    }

    fn heads_of(&self, leaves: &HashMap<Arc<str>, Vec<CommitId>>) -> Result<Vec<(Arc<str>, Head)>> {
        leaves.iter().map(|(k, l)| Ok((k.clone(), self.merge_heads(l)?.0))).collect()
    }

    fn conflicts_now(&mut self, key: &str) -> Result<Vec<Conflict>> {
        // A fork is needed for a conflict: a linear history (most items)
        // has none, and is answered without computing a value.
        let ids = self.item_commits(key)?;
        if self.items.get(key).is_none_or(|i| i.leaves.len() <= 1) && ids.iter().all(|id| self.nodes[id].commit.parents().nth(1).is_none()) {
            return Ok(Vec::new());
        }
        // Which fields each commit changed; values are read only for the
        // few commits that end up in a conflict (a long text's history
        // would otherwise be held whole, twice per commit).
        let mut by_id: HashMap<CommitId, HistoryEntry> = HashMap::with_capacity(ids.len());
        self.each_entry(&ids, |mut e| {
            e.changes.clear();
            by_id.insert(e.id, e);
        })?;
        let Some(head) = self.head(key) else { return Ok(Vec::new()) };
        let mut fields: Vec<&str> = Vec::new();
        for f in ids.iter().flat_map(|id| by_id[id].changed.iter().map(String::as_str)) {
            // Few fields per item: a linear check compiles smaller than a sort.
            if !fields.contains(&f) {
                fields.push(f);
            }
        }
        let leaves = self.items[key].leaves.clone();
        let mut out = Vec::new();
        for field in fields {
            let writes = |id: &CommitId| by_id.get(id).is_some_and(|e| e.changed.iter().any(|f| f == field));
            // The writers reached from the leaves without passing another.
            let mut latest: Vec<CommitId> = Vec::new();
            let mut seen: HashSet<CommitId> = HashSet::new();
            let mut stack = leaves.clone();
            while let Some(id) = stack.pop() {
                if !seen.insert(id) {
                    continue;
                }
                if writes(&id) {
                    latest.push(id);
                } else {
                    stack.extend(self.nodes[&id].commit.parents());
                }
            }
            if latest.len() < 2 {
                continue;
            }
            // Drop writers that are ancestors of another one (reached by a
            // path around it).
            let shadowed: HashSet<CommitId> = latest.iter().filter(|a| latest.iter().any(|b| b != *a && self.is_ancestor(a, b))).copied().collect();
            latest.retain(|id| !shadowed.contains(id));
            if latest.len() < 2 {
                continue;
            }
            let now = field_of(&head.data, field);
            let written = |id: &CommitId| -> Result<Written> {
                let e = &by_id[id];
                let value = field_of(&self.presented(id)?.data, field);
                Ok(Written { id: *id, session: e.session, timestamp: e.timestamp, value })
            };
            // Newest first.
            self.by_time(&mut latest);
            latest.reverse();
            let mut all: Vec<Written> = latest.iter().map(written).collect::<Result<_>>()?;
            let Some(win) = all.iter().position(|w| w.value == now) else { continue };
            let winner = all.remove(win);
            all.retain(|w| w.value != winner.value);
            if !all.is_empty() {
                out.push(Conflict { field: field.to_owned(), winner, losers: all });
            }
        }
        Ok(out)
    }

    /// Whether `a` is an ancestor of `b` (both in memory).
    pub(super) fn is_ancestor(&self, a: &CommitId, b: &CommitId) -> bool {
        let floor = self.nodes[a].generation;
        let mut stack: Vec<CommitId> = self.nodes[b].commit.parents().collect();
        let mut seen: HashSet<CommitId> = HashSet::new();
        while let Some(id) = stack.pop() {
            if id == *a {
                return true;
            }
            if !seen.insert(id) {
                continue;
            }
            if let Some(n) = self.nodes.get(&id)
                && n.generation > floor
            {
                stack.extend(n.commit.parents());
            }
        }
        false
    }

    fn revert_values_now(&mut self, targets: &[CommitId]) -> Result<Vec<(Arc<str>, Head)>> {
        let mut by_key: HashMap<Arc<str>, Vec<CommitId>> = HashMap::new();
        for id in targets {
            if !self.hot(id)? {
                return Err(Error::NotFound(format!("commit {} is not in repository {}", id.to_hex(), self.path)));
            }
            by_key.entry(self.nodes[id].commit.key.clone()).or_default().push(*id);
        }
        let keys: Vec<Arc<str>> = by_key.keys().cloned().collect();
        let mut out = Vec::new();
        for key in keys {
            // The item's commits in memory: merges and values reach them.
            let order = self.item_commits(&key)?;
            let Some(head) = self.head(&key) else { continue };
            // The item's targeted commits, newest first (`order` is the
            // order they appeared in).
            let wanted: HashSet<CommitId> = by_key.remove(&key).unwrap_or_default().into_iter().collect();
            let mine: Vec<CommitId> = order.iter().rev().filter(|id| wanted.contains(id)).copied().collect();
            let version = head.schema.version;
            let ns = head.schema.ns.clone();
            let mut cur = (*head.data).clone();
            for id in mine {
                let c = &self.nodes[&id].commit;
                if c.schema.ns != ns {
                    continue;
                }
                let parents: Vec<CommitId> = c.parents().collect();
                let after = self.registry.upgrade((*self.value_of(&id)?).clone(), &c.schema, version).0;
                let before = match parents.as_slice() {
                    [] => ItemData { deleted: true, fields: after.fields.clone() },
                    ps => {
                        let (h, _) = self.merge_heads(ps)?;
                        if h.schema.ns == ns { self.registry.upgrade((*h.data).clone(), &h.schema, version).0 } else { ItemData { deleted: true, fields: after.fields.clone() } }
                    }
                };
                cur = merge3(&after, &before, &cur);
            }
            if cur != *head.data {
                out.push((key, Head { schema: head.schema.clone(), data: Arc::new(cur) }));
            }
        }
        Ok(out)
    }

    fn revert_now(&mut self, targets: &[CommitId], session: &SessionKey, now: i64) -> Result<Vec<CommitId>> {
        let values = self.revert_values_now(targets)?;
        let mut ids = Vec::with_capacity(values.len());
        for (key, head) in values {
            if let Some(id) = self.write_trusted(&key, &head.schema, (*head.data).clone(), session, now)? {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    fn restore_now(&mut self, key: &str, commit: CommitId, session: &SessionKey, now: i64) -> Result<Option<CommitId>> {
        let Some(old) = self.item_at_now(key, At::Commit(commit))? else { return Ok(None) };
        let Some(head) = self.head(key) else { return Ok(None) };
        let data = if old.schema.ns == head.schema.ns { self.registry.upgrade((*old.data).clone(), &old.schema, head.schema.version).0 } else { (*old.data).clone() };
        let schema = if old.schema.ns == head.schema.ns { head.schema.clone() } else { old.schema.clone() };
        self.write_trusted(key, &schema, data, session, now)
    }
}
