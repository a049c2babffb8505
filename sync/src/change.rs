//! The neutral types both sides of the engine use: a change as pulled from the upstream's
//! log, its row image, what the upstream says about itself, and the items of a snapshot
//! stream. The Postgres side ([`crate::pg`]) produces them; the SQLite side
//! ([`crate::replica`]) consumes them; neither imports the other.

use crate::catalog::Table;
use crate::history::Window;
use crate::rows::RowBlock;

/// What the primary says about itself at the start of a pull or a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryView {
    /// `pg_control_system().system_identifier`, when the role may read it.
    pub system_id: Option<i64>,
    /// The sync epoch created by the migrations.
    pub epoch: String,
    /// Changes of transactions with txid below this may have been pruned.
    pub pruned_below: u64,
    /// Every transaction with txid below this has finished (the horizon).
    pub xmin: u64,
    /// No transaction with txid at or above this had started.
    pub xmax: u64,
}

/// One row of `sync.changes`, still in its wire form (decoding happens on the applier's
/// blocking thread).
#[derive(Debug, Clone)]
pub struct RawChange {
    /// `sync.changes.id`.
    pub id: i64,
    pub txid: u64,
    pub table: String,
    pub row_id: String,
    pub op: Op,
    pub version: i64,
    /// The row image; `None` for deletes.
    pub data: Option<RowImage>,
    pub changed_at_us: i64,
}

/// A change's row image: as pulled, or already decoded into the replica's values (see
/// [`crate::replica::apply::decode_images`]).
#[derive(Debug, Clone)]
pub enum RowImage {
    Json(String),
    Decoded(Vec<rusqlite::types::Value>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
}

/// What the snapshot stream carries, in order: one `Begin`, any number of `Rows`, one `End`.
/// A loader that sees the channel close without `End` must roll back.
#[derive(Debug)]
pub enum SnapshotItem {
    Begin(SnapshotMeta),
    Rows(&'static Table, RowBlock),
    End,
}

#[derive(Debug, Clone)]
pub struct SnapshotMeta {
    pub view: PrimaryView,
    /// `pg_current_snapshot()` as text: changes visible in it are already in the copy.
    pub snapshot: String,
    /// Whether each table's rows come in `id` order (only such a copy can be merged with
    /// existing rows).
    pub key_order: bool,
    /// The recent changes the snapshot holds, as the first window of the replica's history.
    pub recent: Window,
}
