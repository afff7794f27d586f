//! The sync protocol (version 2): how a replica and a server (or two
//! servers) come to hold the same commits, and stay so, over one ordered,
//! reliable connection (a WebSocket), whatever faults happen in between.
//!
//! * [`frame`] — the bytes on the wire, every frame type, the signatures;
//! * [`riblt`] — rateless IBLTs: the set difference in cost proportional
//!   to its size;
//! * [`client`] / [`server`] — the two sides of one repository's exchange;
//! * [`session`] — the client side of a whole connection (handshake,
//!   heartbeat, certificates, every repository), shared by the browser
//!   engine, Node, the test client and the simulation.
//!
//! ## The exchange
//!
//! ```text
//! client                                   server
//!   ── (connect) ──────────────────────────▶
//!   ◀── hello (versions, nonce, root, rules signed with the nonce)
//!   ── auth (version, role, session, own nonce, signature) ─▶
//!   ◀── welcome (user, expiry, proof: root signs both nonces)
//! per repository:
//!   ── begin (round, count, xor of ids) ──▶
//!   ◀── in-sync                                 equal: one round trip, ~60 bytes
//!   ◀── estimate (salt, count, strata)          otherwise
//!   ── cells [0, k) ───────────────────────▶    k from the estimate
//!   ◀── more (upto) … ── cells ──▶              rarely: not decoded yet
//!   ◀── commits you lack, want (keys), done
//!   ── commits the server wanted ──────────▶
//!   ◀── ack (ids)                                only once durable
//! live: either side sends `commits` as they are made; the server acks
//! (after its flush) and relays them to every other subscriber, sending a
//! session's certificate before the first commit of that session.
//! ```
//!
//! **Why rateless IBLTs.** The first version sent a Bloom filter of every
//! commit per round: bytes grew with the history (590 KB of filters in 5
//! rounds for 1% divergence of 100k commits). Range-based reconciliation
//! (Negentropy, Evolu) is O(d·log n) only when differences cluster in key
//! order; commit ids are hashes, so differences are spread at random and
//! it would cost more than the filters. A rateless IBLT costs about 1.35–
//! 1.7 cells of 17 bytes per differing commit whatever their order, the
//! sender never needs to know the difference in advance (a 128-byte strata
//! estimator sizes the first batch; more cells can always follow), and
//! decoding is peeling, linear in the cells. Measured (`examples/
//! reconcile.rs`, `bench/RESULTS.md` W5): see the README's performance table.
//!
//! **Rounds are snapshots.** A round compares what the two sides hold when
//! it runs; commits made meanwhile travel live and are acknowledged
//! separately, so a round always ends, whatever the write rate (the first
//! version compared digests until they matched and gave up after 64 rounds
//! under concurrent writers).
//!
//! **Durable means flushed.** `in-sync`, `done` and `ack` leave the server
//! only after its storage flush; a client says "synced" only when a round
//! completed on a live connection, every local commit is acknowledged, and
//! the server refused none.
//!
//! **Certificates travel with commits.** A client downloads only the
//! certificates of sessions whose commits it receives, each just before the
//! first such commit, so it can always verify what it is sent.

pub mod client;
pub mod frame;
pub mod riblt;
pub mod server;
pub mod session;

pub use client::{Handled, RepoClient};
pub use frame::{Frame, PROTOCOL_VERSION, Role};
pub use server::{Ctx, RepoServe, Served};
pub use session::{ClientSession, ConnClient, Event, RepoStore, Timers};
