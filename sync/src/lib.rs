//! The sync engine: keeps a local SQLite replica equal to the primary Postgres.
//!
//! ```text
//!  primary Postgres                               this edge
//!  ───────────────                                ─────────
//!  row write ─▶ triggers ─▶ sync.changes ──pull──▶ Engine::step ─▶ Replica::apply ─▶ replica.db
//!        announcer: NOTIFY sync_changes ───wake─┘      │                 (one SQLite txn:
//!  REPEATABLE READ snapshot ─COPY─▶ Replica::load ◀─resync──┘                  rows + cursor)
//! ```
//!
//! # Layout
//! - [`change`]: the neutral types both sides use (a pulled change, the upstream's view,
//!   snapshot items): [`pg`] produces them, [`replica`] consumes them.
//! - [`catalog`]: the replicated tables and their columns (what both sides must agree on).
//! - [`pg`]: everything that talks to Postgres: connecting (TLS), pulling changes under the
//!   horizon, the snapshot, migrations, pruning, and the schema check.
//! - [`replica`]: everything that touches the SQLite file: schema, reader pool, applying a
//!   batch, loading a snapshot, the persisted cursor.
//! - [`rows`]: snapshot rows in transit, a chunk of them to one buffer.
//! - [`source`]: where pulls come from: the primary, or a standby in the region with the
//!   primary as fallback.
//! - [`engine`]: the state machine (`step()` does one unit of work) and its `run()` loop,
//!   generic over the upstream it pulls from and the replica it applies to (two traits).
//! - [`handle`]: what the rest of the process holds: status, "has txid t been applied?",
//!   resync requests, change events (cache invalidation) and timings (duration metrics).
//! - [`history`]: digests of the applied history, to tell a forked primary (a failover that
//!   lost commits) from the same one.
//! - [`error`]: transient vs fatal errors.
//!
//! # Progress tracking
//! The replica's cursor is one number, the **watermark** `W`: every change of every primary
//! transaction with `txid < W` has been applied. Changes are applied a whole primary
//! transaction at a time, in the same SQLite transaction that moves `W`, so a crash leaves
//! either all or nothing of a transaction. See `docs/SYNC.md` for why the cursor is a txid and
//! not a change id.

pub mod catalog;
pub mod change;
pub mod decode;
pub mod engine;
pub mod error;
pub mod handle;
pub mod history;
pub mod pg;
pub mod replica;
pub mod rows;
pub mod source;

pub use engine::{Applier, Engine, EngineConfig, Session, Upstream};
pub use error::SyncError;
pub use handle::{ResyncReason, SyncHandle, SyncStatus};
pub use pg::{ConnectorError, PgConnector};
pub use replica::Replica;
pub use source::StandbySettings;

/// The SQLite binding the replica is built on, for readers of the replica.
pub use rusqlite;
