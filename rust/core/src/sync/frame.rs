//! The wire format of the sync protocol (version 2): every frame one
//! WebSocket binary message, `u8 type ‖ fields` (primitives of `codec.rs`).
//!
//! ```text
//! Repository frames (type < 16), each starting with `str repo`:
//!  1 begin      varint round, varint count, xor[32]        c→s  "what I hold" (digest)
//!  2 in-sync    varint round                               s→c  same commits; sent after a flush
//!  3 estimate   varint round, u64 salt, varint count,      s→c  digests differ: size the sketch
//!               strata[STRATA_BYTES]
//!  4 cells      varint round, varint from, varint upto,    c→s  rateless IBLT cells [from, from+n);
//!               varint n, n × cell[CELL_BYTES]                  more follow until `upto`
//!  5 more       varint round, varint upto                  s→c  not decoded yet: cells up to `upto`,
//!                                                               or upto = 0: send `list` instead
//!  6 list       varint round, varint total, varint n,      c→s  every key (fallback); frames follow
//!               n × key[12]                                     until `total` keys were sent
//!  7 commits    varint n, n × bytes                        both signed commits, parents first
//!  8 want       varint round, u8 all, varint n, n × key[12] s→c the server lacks these (all = 1: everything)
//!  9 done       varint round                               s→c  the round is over (after a flush)
//! 10 ack        varint n, n × id prefix[8]                 s→c  durable on the server
//! 11 want-ids   varint n, n × id[32]                       both missing parents: send these;
//!                                                               on /sys/sessions, s→c: the ids are
//!                                                               sessions whose certificate the
//!                                                               server lost (send them if you have them)
//! 12 resync     —                                          s→c  relays were dropped: begin again
//!
//! Connection frames (type ≥ 16):
//! 16 hello      u16 min, u16 max, nonce[32], root[32],     s→c  first frame
//!               zigzag time, str rules, sig[64]
//! 17 auth       u16 version, u8 role, session[32],          c→s  answers hello
//!               nonce[32], sig[64]
//! 18 welcome    str user, str email, zigzag expires,        s→c  certified; proof of the root
//!               zigzag time, sig[64]
//! 19 error      str repo, str code, str message,            both repo "" = the connection
//!               u8 has-id, [id[32]]
//! 20 login      str email            21 login-sent  str email
//! 22 redeem     str token            23 logout      —
//! 24 ping       varint n             25 pong        varint n
//! 26 login-info str token            27 login-is    str email
//! 28 repos      varint n, n × (str repo, varint count, xor[32])   s→peer: what I hold
//! ```
//!
//! Signatures (all Ed25519, `verify_strict`):
//!
//! * hello: the root over `"ibex-hello-v2" ‖ nonce ‖ zigzag time ‖ rules` —
//!   the rules are bound to this connection's nonce;
//! * auth: the session over `"ibex-auth-v2" ‖ role ‖ server nonce ‖
//!   client nonce ‖ root` — useless on any other connection;
//! * welcome: the root over `"ibex-welcome-v2" ‖ role ‖ server nonce ‖
//!   client nonce ‖ session` — the server proves it holds the root key on
//!   this very connection (a peer sends nothing before it checks this).
//!
//! Every decoder is linear in its input, bounds every field, and returns an
//! error (never panics) on hostile bytes.

use crate::codec::{Reader, Writer};
use crate::commit::CommitId;
use crate::error::{Error, Result};
use crate::path::RepoPath;
use crate::repository::SetDigest;
use crate::signing::{SessionId, SessionKey};

use super::riblt::{CELL_BYTES, Cell, KEY_BYTES, Key, Strata};

/// The protocol version this build speaks (and the only one).
pub const PROTOCOL_VERSION: u16 = 2;
/// Oldest version this build accepts.
pub const MIN_PROTOCOL_VERSION: u16 = 2;

/// Longest e-mail address accepted (RFC 5321 path limit).
pub const MAX_EMAIL: usize = 254;
/// Longest rules text.
pub const MAX_RULES: usize = 64 << 10;
/// Longest error message or code carried in a frame.
pub const MAX_MESSAGE: usize = 1024;
/// Longest login token.
pub const MAX_TOKEN: usize = 128;
/// Most commits in one `commits` frame.
pub const MAX_COMMITS_PER_FRAME: usize = 4096;
/// Most bytes of commits in one `commits` frame (a larger commit goes alone).
pub const MAX_COMMIT_BYTES_PER_FRAME: usize = 4 << 20;
/// Most cells, keys or ids in one frame.
pub const MAX_ITEMS_PER_FRAME: usize = 1 << 16;
/// Most repositories in one `repos` frame.
pub const MAX_REPOS_PER_FRAME: usize = 4096;

/// Who is on the client side of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An application replica (browser, Node).
    Client = 0,
    /// Another server holding the same root key (`--peer`).
    Peer = 1,
}

impl Role {
    fn from_u8(b: u8, at: usize) -> Result<Role> {
        match b {
            0 => Ok(Role::Client),
            1 => Ok(Role::Peer),
            _ => Err(Error::decode(format!("unknown role {b}"), at)),
        }
    }
}

/// Everything that travels on a sync connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Begin {
        repo: RepoPath,
        round: u64,
        digest: SetDigest,
    },
    InSync {
        repo: RepoPath,
        round: u64,
    },
    Estimate {
        repo: RepoPath,
        round: u64,
        salt: u64,
        count: u64,
        strata: Strata,
    },
    Cells {
        repo: RepoPath,
        round: u64,
        from: u64,
        upto: u64,
        cells: Vec<Cell>,
    },
    More {
        repo: RepoPath,
        round: u64,
        upto: u64,
    },
    List {
        repo: RepoPath,
        round: u64,
        total: u64,
        keys: Vec<Key>,
    },
    Commits {
        repo: RepoPath,
        commits: Vec<Vec<u8>>,
    },
    Want {
        repo: RepoPath,
        round: u64,
        all: bool,
        keys: Vec<Key>,
    },
    Done {
        repo: RepoPath,
        round: u64,
    },
    /// First 8 bytes of each id (the client matches its own commits).
    Ack {
        repo: RepoPath,
        ids: Vec<[u8; 8]>,
    },
    WantIds {
        repo: RepoPath,
        ids: Vec<CommitId>,
    },
    Resync {
        repo: RepoPath,
    },

    Hello {
        min: u16,
        max: u16,
        nonce: [u8; 32],
        root: SessionId,
        time: i64,
        rules: String,
        sig: [u8; 64],
    },
    Auth {
        version: u16,
        role: Role,
        session: SessionId,
        nonce: [u8; 32],
        sig: [u8; 64],
    },
    Welcome {
        user: String,
        email: String,
        expires: i64,
        time: i64,
        sig: [u8; 64],
    },
    Error {
        repo: String,
        code: String,
        message: String,
        id: Option<CommitId>,
    },
    Login {
        email: String,
    },
    LoginSent {
        email: String,
    },
    Redeem {
        token: String,
    },
    Logout,
    Ping {
        n: u64,
    },
    Pong {
        n: u64,
    },
    LoginInfo {
        token: String,
    },
    LoginIs {
        email: String,
    },
    Repos {
        repos: Vec<(RepoPath, SetDigest)>,
    },
}

const T_BEGIN: u8 = 1;
const T_IN_SYNC: u8 = 2;
const T_ESTIMATE: u8 = 3;
const T_CELLS: u8 = 4;
const T_MORE: u8 = 5;
const T_LIST: u8 = 6;
const T_COMMITS: u8 = 7;
const T_WANT: u8 = 8;
const T_DONE: u8 = 9;
const T_ACK: u8 = 10;
const T_WANT_IDS: u8 = 11;
const T_RESYNC: u8 = 12;
const T_HELLO: u8 = 16;
const T_AUTH: u8 = 17;
const T_WELCOME: u8 = 18;
const T_ERROR: u8 = 19;
const T_LOGIN: u8 = 20;
const T_LOGIN_SENT: u8 = 21;
const T_REDEEM: u8 = 22;
const T_LOGOUT: u8 = 23;
const T_PING: u8 = 24;
const T_PONG: u8 = 25;
const T_LOGIN_INFO: u8 = 26;
const T_LOGIN_IS: u8 = 27;
const T_REPOS: u8 = 28;

/// True for connection frames, false for repository frames.
pub fn is_connection_frame(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|t| *t >= T_HELLO)
}

/// The repository a repository frame is about, read without decoding the
/// rest (a server routes frames by it before any expensive work).
pub fn frame_repo(bytes: &[u8]) -> Result<RepoPath> {
    let mut r = Reader::new(bytes);
    let t = r.u8("frame type")?;
    if t >= T_HELLO || t == 0 || t > T_RESYNC {
        return Err(Error::decode(format!("frame type {t} is not a repository frame"), 0));
    }
    let at = r.offset();
    RepoPath::parse(r.str("repository")?).map_err(|e| Error::decode(e.to_string(), at))
}

/// The frame type byte's name, for logs and metrics.
pub fn frame_name(bytes: &[u8]) -> &'static str {
    match bytes.first().copied().unwrap_or(0) {
        T_BEGIN => "begin",
        T_IN_SYNC => "in-sync",
        T_ESTIMATE => "estimate",
        T_CELLS => "cells",
        T_MORE => "more",
        T_LIST => "list",
        T_COMMITS => "commits",
        T_WANT => "want",
        T_DONE => "done",
        T_ACK => "ack",
        T_WANT_IDS => "want-ids",
        T_RESYNC => "resync",
        T_HELLO => "hello",
        T_AUTH => "auth",
        T_WELCOME => "welcome",
        T_ERROR => "error",
        T_LOGIN => "login",
        T_LOGIN_SENT => "login-sent",
        T_REDEEM => "redeem",
        T_LOGOUT => "logout",
        T_PING => "ping",
        T_PONG => "pong",
        T_LOGIN_INFO => "login-info",
        T_LOGIN_IS => "login-is",
        T_REPOS => "repos",
        _ => "unknown",
    }
}

fn write_digest(w: &mut Writer, d: &SetDigest) {
    w.varint(d.count);
    w.raw(&d.xor);
}

fn read_digest(r: &mut Reader) -> Result<SetDigest> {
    Ok(SetDigest { count: r.varint("digest count")?, xor: r.array("digest xor")? })
}

fn bounded<'a>(r: &mut Reader<'a>, what: &str, max: usize) -> Result<&'a str> {
    let at = r.offset();
    let s = r.str(what)?;
    if s.len() > max {
        return Err(Error::decode(format!("{what} of {} bytes (at most {max})", s.len()), at));
    }
    Ok(s)
}

fn items<T>(r: &mut Reader, what: &str, size: usize, read: impl Fn(&mut Reader) -> Result<T>) -> Result<Vec<T>> {
    let at = r.offset();
    let n = r.count(what, size)?;
    if n > MAX_ITEMS_PER_FRAME {
        return Err(Error::decode(format!("{n} {what} in one frame (at most {MAX_ITEMS_PER_FRAME})"), at));
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(read(r)?);
    }
    Ok(v)
}

fn ids(r: &mut Reader, what: &str) -> Result<Vec<CommitId>> {
    items(r, what, 32, |r| Ok(CommitId(r.array("commit id")?)))
}

fn keys(r: &mut Reader, what: &str) -> Result<Vec<Key>> {
    items(r, what, KEY_BYTES, |r| Ok(Key(r.array("key")?)))
}

fn u16le(r: &mut Reader, what: &str) -> Result<u16> {
    Ok(u16::from_le_bytes(r.array(what)?))
}

/// Signed material of `hello`.
pub fn hello_payload(nonce: &[u8; 32], time: i64, rules: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(b"ibex-hello-v2");
    w.raw(nonce);
    w.zigzag(time);
    w.raw(rules.as_bytes());
    w.into_bytes()
}

/// Signed material of `auth`.
pub fn auth_payload(role: Role, server_nonce: &[u8; 32], client_nonce: &[u8; 32], root: &SessionId) -> Vec<u8> {
    [b"ibex-auth-v2".as_slice(), &[role as u8], server_nonce, client_nonce, &root.0].concat()
}

/// Signed material of `welcome`.
pub fn welcome_payload(role: Role, server_nonce: &[u8; 32], client_nonce: &[u8; 32], session: &SessionId) -> Vec<u8> {
    [b"ibex-welcome-v2".as_slice(), &[role as u8], server_nonce, client_nonce, &session.0].concat()
}

impl Frame {
    /// The repository of a repository frame.
    pub fn repo(&self) -> Option<&RepoPath> {
        match self {
            Frame::Begin { repo, .. }
            | Frame::InSync { repo, .. }
            | Frame::Estimate { repo, .. }
            | Frame::Cells { repo, .. }
            | Frame::More { repo, .. }
            | Frame::List { repo, .. }
            | Frame::Commits { repo, .. }
            | Frame::Want { repo, .. }
            | Frame::Done { repo, .. }
            | Frame::Ack { repo, .. }
            | Frame::WantIds { repo, .. }
            | Frame::Resync { repo } => Some(repo),
            _ => None,
        }
    }

    /// The server's greeting.
    pub fn hello(nonce: [u8; 32], root: &SessionKey, time: i64, rules: String) -> Frame {
        let sig = root.sign(&hello_payload(&nonce, time, &rules));
        Frame::Hello { min: MIN_PROTOCOL_VERSION, max: PROTOCOL_VERSION, nonce, root: root.id(), time, rules, sig }
    }

    /// An error frame from an engine error (`repo` "" for the connection).
    pub fn error(repo: &str, e: &Error) -> Frame {
        Frame::error_about(repo, e, None)
    }

    /// An error frame about one commit.
    pub fn error_about(repo: &str, e: &Error, id: Option<CommitId>) -> Frame {
        let message: String = e.to_string().chars().take(MAX_MESSAGE / 4).collect();
        Frame::Error { repo: repo.chars().take(MAX_MESSAGE / 4).collect(), code: e.code().to_owned(), message, id }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Frame::Begin { repo, round, digest } => {
                w.u8(T_BEGIN);
                w.str(repo.as_str());
                w.varint(*round);
                write_digest(&mut w, digest);
            }
            Frame::InSync { repo, round } => {
                w.u8(T_IN_SYNC);
                w.str(repo.as_str());
                w.varint(*round);
            }
            Frame::Estimate { repo, round, salt, count, strata } => {
                w.u8(T_ESTIMATE);
                w.str(repo.as_str());
                w.varint(*round);
                w.raw(&salt.to_le_bytes());
                w.varint(*count);
                strata.encode(&mut w);
            }
            Frame::Cells { repo, round, from, upto, cells } => {
                w.u8(T_CELLS);
                w.str(repo.as_str());
                w.varint(*round);
                w.varint(*from);
                w.varint(*upto);
                w.varint(cells.len() as u64);
                for c in cells {
                    c.encode(&mut w);
                }
            }
            Frame::More { repo, round, upto } => {
                w.u8(T_MORE);
                w.str(repo.as_str());
                w.varint(*round);
                w.varint(*upto);
            }
            Frame::List { repo, round, total, keys } => {
                w.u8(T_LIST);
                w.str(repo.as_str());
                w.varint(*round);
                w.varint(*total);
                w.varint(keys.len() as u64);
                keys.iter().for_each(|k| w.raw(&k.0));
            }
            Frame::Commits { repo, commits } => {
                w.u8(T_COMMITS);
                w.str(repo.as_str());
                w.varint(commits.len() as u64);
                commits.iter().for_each(|c| w.bytes(c));
            }
            Frame::Want { repo, round, all, keys } => {
                w.u8(T_WANT);
                w.str(repo.as_str());
                w.varint(*round);
                w.u8(*all as u8);
                w.varint(keys.len() as u64);
                keys.iter().for_each(|k| w.raw(&k.0));
            }
            Frame::Done { repo, round } => {
                w.u8(T_DONE);
                w.str(repo.as_str());
                w.varint(*round);
            }
            Frame::Ack { repo, ids } => {
                w.u8(T_ACK);
                w.str(repo.as_str());
                w.varint(ids.len() as u64);
                ids.iter().for_each(|i| w.raw(i));
            }
            Frame::WantIds { repo, ids } => {
                w.u8(T_WANT_IDS);
                w.str(repo.as_str());
                w.varint(ids.len() as u64);
                ids.iter().for_each(|i| w.raw(&i.0));
            }
            Frame::Resync { repo } => {
                w.u8(T_RESYNC);
                w.str(repo.as_str());
            }
            Frame::Hello { min, max, nonce, root, time, rules, sig } => {
                w.u8(T_HELLO);
                w.raw(&min.to_le_bytes());
                w.raw(&max.to_le_bytes());
                w.raw(nonce);
                w.raw(&root.0);
                w.zigzag(*time);
                w.str(rules);
                w.raw(sig);
            }
            Frame::Auth { version, role, session, nonce, sig } => {
                w.u8(T_AUTH);
                w.raw(&version.to_le_bytes());
                w.u8(*role as u8);
                w.raw(&session.0);
                w.raw(nonce);
                w.raw(sig);
            }
            Frame::Welcome { user, email, expires, time, sig } => {
                w.u8(T_WELCOME);
                w.str(user);
                w.str(email);
                w.zigzag(*expires);
                w.zigzag(*time);
                w.raw(sig);
            }
            Frame::Error { repo, code, message, id } => {
                w.u8(T_ERROR);
                w.str(repo);
                w.str(code);
                w.str(message);
                match id {
                    Some(id) => {
                        w.u8(1);
                        w.raw(&id.0);
                    }
                    None => w.u8(0),
                }
            }
            Frame::Login { email } | Frame::LoginSent { email } | Frame::LoginIs { email } => {
                w.u8(match self {
                    Frame::Login { .. } => T_LOGIN,
                    Frame::LoginSent { .. } => T_LOGIN_SENT,
                    _ => T_LOGIN_IS,
                });
                w.str(email);
            }
            Frame::Redeem { token } | Frame::LoginInfo { token } => {
                w.u8(if matches!(self, Frame::Redeem { .. }) { T_REDEEM } else { T_LOGIN_INFO });
                w.str(token);
            }
            Frame::Logout => w.u8(T_LOGOUT),
            Frame::Ping { n } | Frame::Pong { n } => {
                w.u8(if matches!(self, Frame::Ping { .. }) { T_PING } else { T_PONG });
                w.varint(*n);
            }
            Frame::Repos { repos } => {
                w.u8(T_REPOS);
                w.varint(repos.len() as u64);
                for (p, d) in repos {
                    w.str(p.as_str());
                    write_digest(&mut w, d);
                }
            }
        }
        w.into_bytes()
    }

    /// Decodes one frame.
    pub fn decode(bytes: &[u8]) -> Result<Frame> {
        let mut r = Reader::new(bytes);
        let t = r.u8("frame type")?;
        let f = if (T_BEGIN..=T_RESYNC).contains(&t) {
            let at = r.offset();
            let repo = RepoPath::parse(r.str("repository")?).map_err(|e| Error::decode(e.to_string(), at))?;
            match t {
                T_BEGIN => Frame::Begin { repo, round: r.varint("round")?, digest: read_digest(&mut r)? },
                T_IN_SYNC => Frame::InSync { repo, round: r.varint("round")? },
                T_ESTIMATE => Frame::Estimate { repo, round: r.varint("round")?, salt: u64::from_le_bytes(r.array("salt")?), count: r.varint("count")?, strata: Strata::decode(&mut r)? },
                T_CELLS => {
                    let round = r.varint("round")?;
                    let from = r.varint("first cell")?;
                    let upto = r.varint("last cell")?;
                    let cells = items(&mut r, "cells", CELL_BYTES, Cell::decode)?;
                    Frame::Cells { repo, round, from, upto, cells }
                }
                T_MORE => Frame::More { repo, round: r.varint("round")?, upto: r.varint("cells wanted")? },
                T_LIST => Frame::List { repo, round: r.varint("round")?, total: r.varint("total keys")?, keys: keys(&mut r, "keys")? },
                T_COMMITS => {
                    let at = r.offset();
                    let n = r.count("commit count", 1)?;
                    if n > MAX_COMMITS_PER_FRAME {
                        return Err(Error::decode(format!("{n} commits in one frame (at most {MAX_COMMITS_PER_FRAME})"), at));
                    }
                    let mut commits = Vec::with_capacity(n);
                    for _ in 0..n {
                        commits.push(r.bytes("commit")?.to_vec());
                    }
                    Frame::Commits { repo, commits }
                }
                T_WANT => Frame::Want { repo, round: r.varint("round")?, all: r.bool("want all")?, keys: keys(&mut r, "keys")? },
                T_DONE => Frame::Done { repo, round: r.varint("round")? },
                T_ACK => Frame::Ack { repo, ids: items(&mut r, "acknowledged ids", 8, |r| r.array("id prefix"))? },
                T_WANT_IDS => Frame::WantIds { repo, ids: ids(&mut r, "wanted ids")? },
                _ => Frame::Resync { repo },
            }
        } else {
            match t {
                T_HELLO => Frame::Hello {
                    min: u16le(&mut r, "min version")?,
                    max: u16le(&mut r, "max version")?,
                    nonce: r.array("nonce")?,
                    root: SessionId(r.array("root key")?),
                    time: r.zigzag("server time")?,
                    rules: bounded(&mut r, "rules", MAX_RULES)?.to_owned(),
                    sig: r.array("hello signature")?,
                },
                T_AUTH => {
                    let version = u16le(&mut r, "version")?;
                    let at = r.offset();
                    let role = Role::from_u8(r.u8("role")?, at)?;
                    Frame::Auth { version, role, session: SessionId(r.array("session key")?), nonce: r.array("client nonce")?, sig: r.array("auth signature")? }
                }
                T_WELCOME => Frame::Welcome {
                    user: bounded(&mut r, "user", MAX_EMAIL)?.to_owned(),
                    email: bounded(&mut r, "email", MAX_EMAIL)?.to_owned(),
                    expires: r.zigzag("expires")?,
                    time: r.zigzag("server time")?,
                    sig: r.array("welcome signature")?,
                },
                T_ERROR => Frame::Error {
                    repo: bounded(&mut r, "repo", MAX_MESSAGE)?.to_owned(),
                    code: bounded(&mut r, "code", 64)?.to_owned(),
                    message: bounded(&mut r, "message", MAX_MESSAGE)?.to_owned(),
                    id: if r.bool("has id")? { Some(CommitId(r.array("commit id")?)) } else { None },
                },
                T_LOGIN => Frame::Login { email: bounded(&mut r, "email", MAX_EMAIL)?.to_owned() },
                T_LOGIN_SENT => Frame::LoginSent { email: bounded(&mut r, "email", MAX_EMAIL)?.to_owned() },
                T_LOGIN_IS => Frame::LoginIs { email: bounded(&mut r, "email", MAX_EMAIL)?.to_owned() },
                T_REDEEM => Frame::Redeem { token: bounded(&mut r, "token", MAX_TOKEN)?.to_owned() },
                T_LOGIN_INFO => Frame::LoginInfo { token: bounded(&mut r, "token", MAX_TOKEN)?.to_owned() },
                T_LOGOUT => Frame::Logout,
                T_PING => Frame::Ping { n: r.varint("ping")? },
                T_PONG => Frame::Pong { n: r.varint("pong")? },
                T_REPOS => {
                    let at = r.offset();
                    let n = r.count("repository count", 34)?;
                    if n > MAX_REPOS_PER_FRAME {
                        return Err(Error::decode(format!("{n} repositories in one frame (at most {MAX_REPOS_PER_FRAME})"), at));
                    }
                    let mut repos = Vec::with_capacity(n);
                    for _ in 0..n {
                        let at = r.offset();
                        let p = RepoPath::parse(r.str("repository")?).map_err(|e| Error::decode(e.to_string(), at))?;
                        repos.push((p, read_digest(&mut r)?));
                    }
                    Frame::Repos { repos }
                }
                _ => return Err(Error::decode(format!("unknown frame type {t}"), 0)),
            }
        };
        r.finish("frame")?;
        Ok(f)
    }

    /// `commits` frames carrying `commits` (bytes), chunked by the limits.
    pub fn commits<'a>(repo: &RepoPath, commits: impl IntoIterator<Item = &'a [u8]>) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut cur: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0;
        for c in commits {
            if !cur.is_empty() && (cur.len() == MAX_COMMITS_PER_FRAME || bytes + c.len() > MAX_COMMIT_BYTES_PER_FRAME) {
                out.push(Frame::Commits { repo: repo.clone(), commits: std::mem::take(&mut cur) });
                bytes = 0;
            }
            bytes += c.len();
            cur.push(c.to_vec());
        }
        if !cur.is_empty() {
            out.push(Frame::Commits { repo: repo.clone(), commits: cur });
        }
        out
    }

    /// `ack` (or `want-ids`) frames for `ids`, chunked.
    pub fn chunked_ids(repo: &RepoPath, ids: &[CommitId], ack: bool) -> Vec<Frame> {
        ids.chunks(MAX_ITEMS_PER_FRAME)
            .map(|c| if ack { Frame::Ack { repo: repo.clone(), ids: c.iter().map(CommitId::prefix).collect() } } else { Frame::WantIds { repo: repo.clone(), ids: c.to_vec() } })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_frames_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Frame::decode(&b);
            let _ = frame_repo(&b);
        }
    }

    #[test]
    fn every_frame_roundtrips_and_truncations_fail() {
        let repo = RepoPath::parse("/data/x").unwrap();
        let root = SessionKey::from_seed([1; 32]);
        let d = SetDigest { count: 3, xor: [9; 32] };
        let frames = vec![
            Frame::Begin { repo: repo.clone(), round: 7, digest: d },
            Frame::InSync { repo: repo.clone(), round: 7 },
            Frame::Estimate { repo: repo.clone(), round: 1, salt: 99, count: 12, strata: Strata::default() },
            Frame::Cells { repo: repo.clone(), round: 1, from: 16, upto: 19, cells: vec![Cell::default(); 3] },
            Frame::More { repo: repo.clone(), round: 1, upto: 64 },
            Frame::List { repo: repo.clone(), round: 1, total: 1, keys: vec![Key([3; 12])] },
            Frame::Commits { repo: repo.clone(), commits: vec![vec![1, 2, 3], vec![]] },
            Frame::Want { repo: repo.clone(), round: 2, all: false, keys: vec![Key([4; 12]), Key([5; 12])] },
            Frame::Done { repo: repo.clone(), round: 2 },
            Frame::Ack { repo: repo.clone(), ids: vec![[6; 8]] },
            Frame::WantIds { repo: repo.clone(), ids: vec![CommitId([7; 32])] },
            Frame::Resync { repo: repo.clone() },
            Frame::hello([7; 32], &root, 1_700_000_000_000, "/data/* session session\n".into()),
            Frame::Auth { version: 2, role: Role::Peer, session: root.id(), nonce: [8; 32], sig: [1; 64] },
            Frame::Welcome { user: "u1".into(), email: "a@b.c".into(), expires: 1_700_000_000_000, time: 5, sig: [2; 64] },
            Frame::Error { repo: "/data/x".into(), code: "ERR_FORBIDDEN".into(), message: "no".into(), id: Some(CommitId([1; 32])) },
            Frame::Error { repo: String::new(), code: "ERR_QUOTA".into(), message: "no".into(), id: None },
            Frame::Login { email: "a@b.c".into() },
            Frame::LoginSent { email: "a@b.c".into() },
            Frame::Redeem { token: "abc".into() },
            Frame::Logout,
            Frame::Ping { n: 3 },
            Frame::Pong { n: 3 },
            Frame::LoginInfo { token: "abc".into() },
            Frame::LoginIs { email: "a@b.c".into() },
            Frame::Repos { repos: vec![(repo.clone(), d)] },
        ];
        for f in frames {
            let b = f.encode();
            assert_eq!(Frame::decode(&b).unwrap(), f, "{}", frame_name(&b));
            assert_eq!(is_connection_frame(&b), f.repo().is_none());
            if let Some(r) = f.repo() {
                assert_eq!(&frame_repo(&b).unwrap(), r);
            }
            for cut in 0..b.len() {
                assert!(Frame::decode(&b[..cut]).is_err(), "{} cut at {cut}", frame_name(&b));
            }
        }
    }

    #[test]
    fn lying_counts_are_refused_before_allocating() {
        let mut w = Writer::new();
        w.u8(T_CELLS);
        w.str("/data/x");
        w.varint(1);
        w.varint(0);
        w.varint(u64::MAX >> 1);
        assert_eq!(Frame::decode(&w.into_bytes()).unwrap_err().code(), "ERR_DECODE");
        let mut w = Writer::new();
        w.u8(T_COMMITS);
        w.str("/data/x");
        w.varint(1 << 40);
        assert_eq!(Frame::decode(&w.into_bytes()).unwrap_err().code(), "ERR_DECODE");
    }
}
