//! Authorization rules: who may read and who may write each repository.
//!
//! A rule matches repository paths with a pattern of two segments, each a
//! literal, `*` (any name) or `{user}` (any name, which an `owner` access
//! then compares with the session's user). The first matching rule decides;
//! a path no rule matches can be neither read nor written. The root session
//! (the server's key) is allowed everything.
//!
//! Text format (the `--rules` file of `ibex-server`; also what the server
//! sends, signed by its root, in its handshake):
//!
//! ```text
//! # pattern        read      write      ← comments and blank lines ignored
//! /sys/*           root      root
//! /user/{user}     owner     owner
//! /data/*          session   session
//! ```
//!
//! Access levels: `anyone` (even a connection without a certificate),
//! `session` (any session certified by a trusted root, anonymous or
//! logged in), `owner` (a session whose user is the `{user}` segment),
//! `root`, `nobody`.
//!
//! [`Rules::with_builtins`] puts the `/sys` rules above a file's rules, so a
//! rules file can never open up `/sys` (sessions are certificates; only the
//! root writes them).

use std::fmt;

use crate::error::{Error, Result};
use crate::path::RepoPath;

/// Who a rule lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Anyone,
    Session,
    Owner,
    Root,
    Nobody,
}

impl Access {
    fn parse(s: &str) -> Option<Access> {
        Some(match s {
            "anyone" => Access::Anyone,
            "session" => Access::Session,
            "owner" => Access::Owner,
            "root" => Access::Root,
            "nobody" => Access::Nobody,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Access::Anyone => "anyone",
            Access::Session => "session",
            Access::Owner => "owner",
            Access::Root => "root",
            Access::Nobody => "nobody",
        }
    }
}

/// Who is asking: what a session's certificate says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A trusted root key (a server).
    Root,
    /// A certified session, bound to a user or anonymous.
    Session { user: Option<String> },
    /// No (valid) certificate.
    Uncertified,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Any,
    User,
}

impl Segment {
    fn parse(s: &str) -> Segment {
        match s {
            "*" => Segment::Any,
            "{user}" => Segment::User,
            lit => Segment::Literal(lit.to_owned()),
        }
    }

    fn matches(&self, s: &str) -> bool {
        match self {
            Segment::Literal(l) => l == s,
            Segment::Any | Segment::User => true,
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Literal(l) => f.write_str(l),
            Segment::Any => f.write_str("*"),
            Segment::User => f.write_str("{user}"),
        }
    }
}

/// One line of the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    kind: Segment,
    name: Segment,
    pub read: Access,
    pub write: Access,
}

impl Rule {
    fn matches(&self, repo: &RepoPath) -> bool {
        self.kind.matches(repo.kind()) && self.name.matches(repo.name())
    }

    /// The user an `owner` access compares with, for this path.
    fn user_segment<'a>(&self, repo: &'a RepoPath) -> Option<&'a str> {
        if self.kind == Segment::User {
            Some(repo.kind())
        } else if self.name == Segment::User {
            Some(repo.name())
        } else {
            None
        }
    }

    fn allows(&self, access: Access, repo: &RepoPath, who: &Principal) -> bool {
        match (access, who) {
            (_, Principal::Root) => true,
            (Access::Anyone, _) => true,
            (Access::Session, Principal::Session { .. }) => true,
            (Access::Owner, Principal::Session { user: Some(u) }) => self.user_segment(repo) == Some(u.as_str()),
            _ => false,
        }
    }
}

/// An ordered list of rules; the first match decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules(Vec<Rule>);

/// `/sys` (certificates, users) is the root's: servers replicate it between
/// themselves; clients receive the certificates they need with the commits
/// they verify, never the whole list (nor the users' addresses).
const BUILTIN_SYS: &str = "/sys/* root root\n";
const DEFAULT_APP: &str = "/user/{user} owner owner\n/data/* session session\n";

impl Default for Rules {
    /// The defaults: `/sys` root only, `/user/<id>` its owner only, `/data/*` any certified session.
    fn default() -> Self {
        Rules::with_builtins(DEFAULT_APP).expect("the default rules parse")
    }
}

impl Rules {
    /// Parses rules text (see the module docs); errors name the line.
    pub fn parse(text: &str) -> Result<Rules> {
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |reason: String| Error::path(line, format!("rules line {}: {reason}", i + 1));
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [pattern, read, write] = parts[..] else {
                return Err(err("expected `<pattern> <read> <write>`, e.g. `/data/* session session`".into()));
            };
            let segs: Vec<&str> = pattern.strip_prefix('/').map(|p| p.split('/').collect()).unwrap_or_default();
            let [kind, name] = segs[..] else {
                return Err(err(format!("pattern `{pattern}` must be /<type>/<name>, each a name, `*` or `{{user}}`")));
            };
            for s in [kind, name] {
                if !matches!(s, "*" | "{user}") {
                    RepoPath::check(&format!("/{s}/x")).map_err(|e| err(format!("pattern `{pattern}`: {e}")))?;
                }
            }
            let (kind, name) = (Segment::parse(kind), Segment::parse(name));
            let access = |s: &str| Access::parse(s).ok_or_else(|| err(format!("`{s}` is not one of anyone, session, owner, root, nobody")));
            let (read, write) = (access(read)?, access(write)?);
            if (read == Access::Owner || write == Access::Owner) && kind != Segment::User && name != Segment::User {
                return Err(err(format!("`owner` needs a `{{user}}` segment in the pattern (`{pattern}` has none)")));
            }
            rules.push(Rule { kind, name, read, write });
        }
        Ok(Rules(rules))
    }

    /// The built-in `/sys` rules followed by `text`'s rules, so a rules file
    /// cannot change who reads or writes `/sys`.
    pub fn with_builtins(text: &str) -> Result<Rules> {
        let mut rules = Rules::parse(BUILTIN_SYS)?;
        rules.0.extend(Rules::parse(text)?.0);
        Ok(rules)
    }

    fn rule_for(&self, repo: &RepoPath) -> Option<&Rule> {
        self.0.iter().find(|r| r.matches(repo))
    }

    pub fn can_read(&self, repo: &RepoPath, who: &Principal) -> bool {
        match self.rule_for(repo) {
            Some(r) => r.allows(r.read, repo, who),
            None => *who == Principal::Root,
        }
    }

    pub fn can_write(&self, repo: &RepoPath, who: &Principal) -> bool {
        match self.rule_for(repo) {
            Some(r) => r.allows(r.write, repo, who),
            None => *who == Principal::Root,
        }
    }

    /// `Ok` if `who` may read `repo`, else an `ERR_FORBIDDEN` naming both.
    pub fn check_read(&self, repo: &RepoPath, who: &Principal) -> Result<()> {
        if self.can_read(repo, who) { Ok(()) } else { Err(Error::Forbidden(format!("{} may not read {repo}", describe(who)))) }
    }

    /// `Ok` if `who` may write `repo`, else an `ERR_FORBIDDEN` naming both.
    pub fn check_write(&self, repo: &RepoPath, who: &Principal) -> Result<()> {
        if self.can_write(repo, who) { Ok(()) } else { Err(Error::Forbidden(format!("{} may not write {repo}", describe(who)))) }
    }
}

fn describe(who: &Principal) -> String {
    match who {
        Principal::Root => "the root".into(),
        Principal::Session { user: Some(u) } => format!("user {u}"),
        Principal::Session { user: None } => "an anonymous session".into(),
        Principal::Uncertified => "an uncertified session".into(),
    }
}

impl fmt::Display for Rules {
    /// The text format; `Rules::parse` reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.0 {
            writeln!(f, "/{}/{} {} {}", r.kind, r.name, r.read.name(), r.write.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RepoPath {
        RepoPath::parse(s).unwrap()
    }
    fn user(u: &str) -> Principal {
        Principal::Session { user: Some(u.into()) }
    }
    const ANON: Principal = Principal::Session { user: None };

    #[test]
    fn default_rules() {
        let r = Rules::default();
        assert!(!r.can_read(&p("/sys/sessions"), &Principal::Uncertified), "certificates travel with commits, not as a list");
        assert!(!r.can_read(&p("/sys/users"), &ANON));
        assert!(!r.can_write(&p("/sys/sessions"), &ANON));
        assert!(r.can_write(&p("/sys/sessions"), &Principal::Root));
        assert!(!r.can_read(&p("/sys/users"), &user("a")));
        assert!(r.can_read(&p("/user/alice"), &user("alice")) && r.can_write(&p("/user/alice"), &user("alice")));
        assert!(!r.can_read(&p("/user/alice"), &user("bob")) && !r.can_write(&p("/user/alice"), &user("bob")));
        assert!(!r.can_read(&p("/user/alice"), &ANON));
        assert!(r.can_write(&p("/data/todos"), &ANON) && r.can_read(&p("/data/todos"), &user("x")));
        assert!(!r.can_read(&p("/data/todos"), &Principal::Uncertified));
        // No rule: nobody but the root.
        assert!(!r.can_read(&p("/other/x"), &user("x")) && r.can_read(&p("/other/x"), &Principal::Root));
        assert_eq!(r.check_write(&p("/user/alice"), &user("bob")).unwrap_err().code(), "ERR_FORBIDDEN");
    }

    #[test]
    fn text_roundtrips_and_errors_name_the_line() {
        let r = Rules::default();
        assert_eq!(Rules::parse(&r.to_string()).unwrap(), r);
        let e = Rules::parse("/data/* session\n").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = Rules::parse("# c\n/data/* session everyone").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("everyone"), "{e}");
        assert!(Rules::parse("/data/* owner owner").unwrap_err().to_string().contains("{user}"));
        assert!(Rules::parse("/da ta/x anyone anyone").is_err());
        assert!(Rules::parse("data/x anyone anyone").is_err());
    }

    #[test]
    fn a_rules_file_cannot_open_sys() {
        let r = Rules::with_builtins("/*/* anyone anyone").unwrap();
        assert!(!r.can_write(&p("/sys/sessions"), &ANON));
        assert!(!r.can_read(&p("/sys/users"), &ANON));
        assert!(r.can_write(&p("/public/x"), &Principal::Uncertified));
    }
}
