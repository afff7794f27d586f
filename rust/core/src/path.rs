//! Repository and item paths.
//!
//! A repository is `/type/name` (`/data/todos`, `/user/u1`, `/sys/sessions`);
//! an item is `/type/name/key`. Each segment is 1–128 characters of ASCII
//! letters, digits, `_`, `-` and `.` (not `.` or `..` alone), so paths are safe
//! as file names on every platform and need no escaping in URLs.

use std::fmt;

use crate::error::{Error, Result};

const MAX_SEGMENT: usize = 128;

fn check_segment(full: &str, seg: &str, what: &str) -> Result<()> {
    if seg.is_empty() {
        return Err(Error::path(full, format!("the {what} is empty")));
    }
    if seg.len() > MAX_SEGMENT {
        return Err(Error::path(full, format!("the {what} is longer than {MAX_SEGMENT} characters")));
    }
    if seg == "." || seg == ".." {
        return Err(Error::path(full, format!("the {what} cannot be `.` or `..`")));
    }
    if let Some(c) = seg.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.')) {
        return Err(Error::path(full, format!("the {what} contains `{c}`; use letters, digits, '_', '-' or '.'")));
    }
    Ok(())
}

/// Checks an item key (the last segment of an item path).
pub fn check_key(key: &str) -> Result<()> {
    check_segment(key, key, "item key")
}

/// `/type/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoPath(String);

impl RepoPath {
    pub fn parse(s: &str) -> Result<Self> {
        Self::check(s)?;
        Ok(RepoPath(s.to_owned()))
    }

    /// Validates a repository path without allocating.
    pub fn check(s: &str) -> Result<()> {
        let rest = s.strip_prefix('/').ok_or_else(|| Error::path(s, "must start with `/`"))?;
        let mut it = rest.split('/');
        let (Some(ty), Some(name), None) = (it.next(), it.next(), it.next()) else {
            return Err(Error::path(s, "a repository path has exactly two segments: /type/name"));
        };
        check_segment(s, ty, "type")?;
        check_segment(s, name, "repository name")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first segment (`data`, `user`, `sys`, …).
    pub fn kind(&self) -> &str {
        self.0[1..].split('/').next().unwrap_or_default()
    }

    /// The second segment.
    pub fn name(&self) -> &str {
        self.0[1..].split('/').nth(1).unwrap_or_default()
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `/type/name/key`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemPath {
    pub repo: RepoPath,
    pub key: String,
}

impl ItemPath {
    pub fn parse(s: &str) -> Result<Self> {
        let (repo, key) = s.rsplit_once('/').ok_or_else(|| Error::path(s, "must start with `/`"))?;
        if repo.matches('/').count() != 2 {
            return Err(Error::path(s, "an item path has exactly three segments: /type/name/key"));
        }
        check_segment(s, key, "item key")?;
        Ok(ItemPath { repo: RepoPath::parse(repo).map_err(|_| Error::path(s, "an item path has exactly three segments: /type/name/key"))?, key: key.to_owned() })
    }
}

impl fmt::Display for ItemPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.repo, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_paths() {
        let r = RepoPath::parse("/data/todos").unwrap();
        assert_eq!((r.kind(), r.name()), ("data", "todos"));
        let i = ItemPath::parse("/data/todos/a1-B_2.x").unwrap();
        assert_eq!(i.key, "a1-B_2.x");
        assert_eq!(i.to_string(), "/data/todos/a1-B_2.x");
    }

    #[test]
    fn invalid_paths_say_why() {
        for (p, why) in
            [("data/todos", "start with"), ("/data", "two segments"), ("/data/todos/x", "two segments"), ("/data/to do", "contains ` `"), ("//todos", "type is empty"), ("/data/..", "cannot be")]
        {
            let e = RepoPath::parse(p).unwrap_err();
            assert!(e.to_string().contains(why), "{p}: {e}");
            assert_eq!(e.code(), "ERR_PATH");
        }
        for p in ["/data/todos", "/data/todos/", "/a/b/c/d", "/data/todos/k é"] {
            assert!(ItemPath::parse(p).is_err(), "{p}");
        }
        assert!(ItemPath::parse(&format!("/a/b/{}", "k".repeat(200))).is_err());
    }
}
