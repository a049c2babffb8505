//! The neutral types both sides of the engine use: a change as pulled from the upstream's
//! log, its row image, what the upstream says about itself, a pull and its outcome, a
//! history check's verdict, the items of a snapshot stream, a batch to apply and what
//! applying it did, and the replica's cursor. The Postgres side ([`crate::pg`]) produces
//! them; the SQLite side ([`crate::replica`]) consumes them; the engine
//! ([`crate::engine`]) carries them from one to the other through its two traits; neither
//! side imports the other.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::catalog::Table;
use crate::history::{Digest64, Window};
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

/// How far this replica has applied the primary's change stream, and which primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// Every change of every transaction with `txid < watermark` is applied.
    pub watermark: u64,
    /// The last resync's snapshot while it still matters (changes visible in it are skipped).
    pub snapshot: Option<String>,
    pub snapshot_xmax: Option<u64>,
    pub primary_system_id: Option<i64>,
    pub primary_epoch: String,
    /// `changed_at` of the newest applied change, in unix microseconds.
    pub last_change_at_us: Option<i64>,
    pub resynced_at: String,
}

impl ReplicaState {
    /// Whether `view` is the primary this replica was built from: same system, same sync
    /// epoch. (Whether it still holds the same *history*, after a failover or a restore
    /// that kept both, is [`ReplicaState::history_went_back`] and [`crate::history`].)
    pub fn same_primary(&self, view: &PrimaryView) -> bool {
        let other_system =
            matches!((self.primary_system_id, view.system_id), (Some(a), Some(b)) if a != b);
        !other_system && self.primary_epoch == view.epoch
    }

    /// Whether the primary's horizon is below the watermark. On one history the horizon
    /// only moves forward (every transaction below the watermark had finished when it was
    /// set), so a horizon below it means txids restarted: a promoted standby that lacked
    /// commits, or a restore.
    pub fn history_went_back(&self, view: &PrimaryView) -> bool {
        view.xmin < self.watermark
    }
}

/// Where the replica stands, as the pull needs it.
#[derive(Debug, Clone)]
pub struct PullFrom<'a> {
    pub watermark: u64,
    /// The last resync's snapshot, while it still matters: its visible changes are skipped.
    pub snapshot: Option<&'a str>,
    pub max_changes: usize,
}

/// Whole transactions read from the log.
#[derive(Debug)]
pub struct Pulled {
    pub view: PrimaryView,
    /// When the pull was sent (about when its snapshot was taken).
    pub pulled_at: chrono::DateTime<chrono::Utc>,
    pub changes: Vec<RawChange>,
    /// The watermark once these changes are applied.
    pub next_watermark: u64,
    /// True when everything below the horizon was read.
    pub caught_up: bool,
    /// Caught up, but an open transaction holds the horizon (the snapshot's xmin is below
    /// its xmax), so transactions that already committed above it may wait. When it ends it
    /// may not notify (a rollback, a transaction without replicated writes, one of another
    /// database of the cluster: txids and the horizon are cluster-wide, NOTIFY is not), so
    /// the caller should look again soon rather than wait for the fallback poll.
    pub held_back: bool,
}

/// What a pull found.
#[derive(Debug)]
pub enum PullOutcome {
    Pulled(Pulled),
    /// The log cannot bring this replica up to date; only a resync can.
    NeedsResync(ResyncReason),
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryCheck {
    /// Every window the primary can still answer for matches (`checked` of them; windows
    /// below its prune point cannot be checked).
    Same { checked: usize },
    /// The primary's log differs from what the replica applied in this window.
    Forked(ForkEvidence),
}

/// The first window found to differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkEvidence {
    pub lo: u64,
    pub hi: u64,
    pub replica: Digest64,
    pub primary: Digest64,
}

/// A pulled batch, ready to apply.
#[derive(Debug)]
pub struct ApplyBatch {
    /// The cursor (watermark and resync snapshot) the batch was pulled from; if the
    /// replica's differs (a resync ran in between) the batch is refused.
    pub from_watermark: u64,
    pub from_snapshot: Option<String>,
    pub next_watermark: u64,
    /// `xmax` of the snapshot the batch was pulled under (tombstone expiry).
    pub pulled_xmax: u64,
    pub changes: Vec<RawChange>,
}

/// What applying a batch did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Changes that changed a row (newer than what the replica held).
    pub applied: usize,
    /// Changes that were older than the replica's row or tombstone.
    pub skipped: usize,
    /// Changes of tables this binary does not replicate (a newer primary schema), ignored.
    pub ignored: usize,
    /// `(table, owner_id)` pairs whose rows changed: what caches must forget.
    pub touched: BTreeSet<(&'static str, String)>,
    /// The replica's cursor as committed with the batch.
    pub state: ReplicaState,
}

/// Why a replica was (or is being) rebuilt from a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResyncReason {
    /// No replica yet (first start, or a new volume).
    EmptyReplica,
    /// An operator asked for it.
    Requested,
    /// The cursor is older than the primary's prune point.
    Pruned,
    /// The primary is not the one the replica was built from (restored or replaced).
    PrimaryChanged,
    /// The primary's history forked from the one the replica applied (a failover to a
    /// standby that lacked commits, a point-in-time restore): converge to the new one.
    Forked,
    /// This binary added columns to an older replica file; a merge fills them.
    SchemaUpgrade,
}

/// The primary session whose open transaction holds the horizon.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HorizonHolder {
    pub pid: Option<i32>,
    pub application_name: Option<String>,
    pub database: Option<String>,
    pub state: Option<String>,
    pub transaction_age_s: Option<f64>,
    /// A prepared (two-phase) transaction's global id, when that is what holds it.
    pub prepared_gid: Option<String>,
}

/// What the engine is pulling from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Upstream {
    #[default]
    Primary,
    Standby,
}
