//! History for the SDK: entries with values, an item or repository at a
//! time, reverts, conflicts, audit and playback (rules in `ibex-core`'s
//! `repository/history.rs`), as bytes the SDK decodes (`wire/history.ts`).
//!
//! ```text
//! page      = varint total, entries                 (an item's history)
//! entries   = varint n, n × entry
//! entry     = str id, str key, str session, str user, zigzag timestamp,
//!             varint np, np × str parent, str ns, varint version,
//!             varint nc, nc × change
//! change    = str field, opt before, opt after      ("$deleted": booleans)
//! opt       = u8 0 | u8 1, value                    (value.rs)
//! conflicts = varint n, n × (str field, written winner, varint nl, nl × written)
//! written   = str id, str session, str user, zigzag timestamp, opt value
//! steps     = varint n, n × (zigzag time, str id)   (one per head of the steps' heads)
//! ```
//! Ids and sessions are lowercase hex; `user` is "" when the session's
//! certificate names no user (anonymous, or not known here). Heads use the
//! `heads` format of `batch.rs`.

use ibex_core::codec::Writer;
use ibex_core::repository::At;
use ibex_core::{CommitId, Conflict, Error, Head, HistoryEntry, Playback, RepoPath, Result, SessionId, StoredCommit, Value, Written};

use super::Database;

/// Which commits an audit or a revert covers.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Sessions (hex); empty with no `user`: every session.
    pub sessions: Vec<String>,
    /// A user id: every session certified for it.
    pub user: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

fn opt_value(w: &mut Writer, v: &Option<Value>) {
    match v {
        None => w.u8(0),
        Some(v) => {
            w.u8(1);
            ibex_core::value::encode_value(w, v);
        }
    }
}

fn head(w: &mut Writer, repo: &str, key: &str, h: &Head) {
    w.str(repo);
    w.str(key);
    w.str(&h.schema.ns);
    w.varint(h.schema.version.into());
    w.u8(h.data.deleted as u8);
    ibex_core::value::encode_fields(w, &h.data.fields);
}

fn parse_id(hex: &str) -> Result<CommitId> {
    CommitId::from_hex(hex).map_err(|_| Error::NotFound(format!("`{hex}` is not a commit id (64 hex digits)")))
}

impl Database {
    /// The user a session is certified for, as far as this replica knows.
    fn user_of(&self, s: &SessionId) -> String {
        self.sync.trust().certificate(s).and_then(|c| c.owner.clone()).unwrap_or_default()
    }

    fn entries(&self, entries: &[HistoryEntry]) -> Vec<u8> {
        let mut w = Writer::new();
        w.varint(entries.len() as u64);
        for e in entries {
            w.str(&e.id.to_hex());
            w.str(&e.key);
            w.str(&e.session.to_hex());
            w.str(&self.user_of(&e.session));
            w.zigzag(e.timestamp);
            w.varint(e.parents.len() as u64);
            for p in &e.parents {
                w.str(&p.to_hex());
            }
            w.str(&e.schema.ns);
            w.varint(e.schema.version.into());
            w.varint(e.changes.len() as u64);
            for c in &e.changes {
                w.str(&c.field);
                opt_value(&mut w, &c.before);
                opt_value(&mut w, &c.after);
            }
        }
        w.into_bytes()
    }

    /// A page of an item's history, oldest first (`page`): the `limit`
    /// entries before commit `before` (the newest when `None`).
    pub fn history(&mut self, repo: &str, key: &str, before: Option<&str>, limit: Option<u32>) -> Result<Vec<u8>> {
        let before = before.map(parse_id).transpose()?;
        let (h, total) = self.repo_mut(repo)?.history_page(key, before, limit.map_or(usize::MAX, |l| l as usize))?;
        let mut w = Writer::new();
        w.varint(total as u64);
        w.raw(&self.entries(&h));
        Ok(w.into_bytes())
    }

    /// The item at a time or commit (`heads` with zero or one head).
    pub fn item_at(&mut self, repo: &str, key: &str, time: Option<i64>, commit: Option<&str>) -> Result<Vec<u8>> {
        let at = match (commit, time) {
            (Some(c), _) => At::Commit(parse_id(c)?),
            (None, Some(t)) => At::Time(t),
            (None, None) => return Err(Error::NotFound("item_at needs a time or a commit id".into())),
        };
        let h = self.repo_mut(repo)?.item_at(key, at)?;
        let mut w = Writer::new();
        w.varint(h.is_some() as u64);
        if let Some(h) = h {
            head(&mut w, repo, key, &h);
        }
        Ok(w.into_bytes())
    }

    /// Every item of a repository at a time (`heads`).
    pub fn snapshot_at(&mut self, repo: &str, time: i64) -> Result<Vec<u8>> {
        let all = self.repo_mut(repo)?.snapshot_at(time)?;
        let mut w = Writer::new();
        w.varint(all.len() as u64);
        for (k, h) in &all {
            head(&mut w, repo, k, h);
        }
        Ok(w.into_bytes())
    }

    /// The repository at `from` (`heads`), the steps' heads (`heads`) and
    /// their times and commits (`steps`).
    pub fn playback(&mut self, repo: &str, from: i64, to: i64) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        let Playback { start, steps } = self.repo_mut(repo)?.playback(from, to)?;
        let mut s = Writer::new();
        s.varint(start.len() as u64);
        for (k, h) in &start {
            head(&mut s, repo, k, h);
        }
        let (mut heads, mut meta) = (Writer::new(), Writer::new());
        heads.varint(steps.len() as u64);
        meta.varint(steps.len() as u64);
        for st in &steps {
            head(&mut heads, repo, &st.key, &st.head);
            meta.zigzag(st.time);
            meta.str(&st.id.to_hex());
        }
        Ok((s.into_bytes(), heads.into_bytes(), meta.into_bytes()))
    }

    fn written(&self, w: &mut Writer, x: &Written) {
        w.str(&x.id.to_hex());
        w.str(&x.session.to_hex());
        w.str(&self.user_of(&x.session));
        w.zigzag(x.timestamp);
        opt_value(w, &x.value);
    }

    /// The conflicts of an item (`conflicts`).
    pub fn conflicts(&mut self, repo: &str, key: &str) -> Result<Vec<u8>> {
        let cs: Vec<Conflict> = self.repo_mut(repo)?.conflicts(key)?;
        let mut w = Writer::new();
        w.varint(cs.len() as u64);
        for c in &cs {
            w.str(&c.field);
            self.written(&mut w, &c.winner);
            w.varint(c.losers.len() as u64);
            for l in &c.losers {
                self.written(&mut w, l);
            }
        }
        Ok(w.into_bytes())
    }

    /// Whether a commit falls under a filter.
    fn matcher(&self, f: &Filter) -> impl Fn(&StoredCommit) -> bool + use<> {
        let sessions: Vec<String> = f.sessions.iter().map(|s| s.to_ascii_lowercase()).collect();
        let user = f.user.clone();
        let users: Vec<SessionId> = match &user {
            Some(u) => self.sync.trust().sessions_of(u),
            None => Vec::new(),
        };
        let (since, until) = (f.since.unwrap_or(i64::MIN), f.until.unwrap_or(i64::MAX));
        move |c: &StoredCommit| {
            let s = c.session();
            let who = if sessions.is_empty() && user.is_none() { true } else { sessions.iter().any(|x| *x == s.to_hex()) || users.contains(&s) };
            who && c.timestamp >= since && c.timestamp <= until
        }
    }

    /// Changes across a repository's items (`entries`, in the order they appeared).
    pub fn audit(&mut self, repo: &str, filter: &Filter) -> Result<Vec<u8>> {
        let keep = self.matcher(filter);
        let entries = self.repo_mut(repo)?.audit(keep)?;
        Ok(self.entries(&entries))
    }

    /// Reverts the given commits (hex ids) or, without ids, every commit
    /// matching `filter`, as new commits of this session; returns their
    /// ids. They sync like any write and reach the main thread as changes.
    pub fn revert(&mut self, repo: &str, commits: &[String], filter: &Filter, now: i64) -> Result<Vec<CommitId>> {
        let path = RepoPath::parse(repo)?;
        self.sync.trust().rules().check_write(&path, &self.sync.conn.me())?;
        let targets: Vec<CommitId> = if commits.is_empty() {
            let keep = self.matcher(filter);
            self.repo_mut(repo)?.audit(keep)?.iter().map(|e| e.id).collect()
        } else {
            commits.iter().map(|c| parse_id(c)).collect::<Result<_>>()?
        };
        let now = self.sync.conn.commit_time(now);
        let session = self.session().clone();
        let ids = self.repo_mut(repo)?.revert(&targets, &session, now)?;
        self.wrote(&path, &ids);
        Ok(ids)
    }

    /// Writes the item's value at `commit` as a new commit ("restore this version").
    pub fn restore(&mut self, repo: &str, key: &str, commit: &str, now: i64) -> Result<Option<CommitId>> {
        let path = RepoPath::parse(repo)?;
        self.sync.trust().rules().check_write(&path, &self.sync.conn.me())?;
        let id = parse_id(commit)?;
        let now = self.sync.conn.commit_time(now);
        let session = self.session().clone();
        let out = self.repo_mut(repo)?.restore(key, id, &session, now)?;
        self.wrote(&path, out.as_slice());
        Ok(out)
    }

    /// New local commits made here (not through `mutate`): pushed to the
    /// server; their items stay marked changed so the main thread hears.
    fn wrote(&mut self, path: &RepoPath, ids: &[CommitId]) {
        if !ids.is_empty() {
            self.sync.pushed(&mut self.repos, path, ids);
        }
    }
}
