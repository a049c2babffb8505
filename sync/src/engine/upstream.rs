//! What the engine asks of the server it pulls from: the [`Upstream`] (connecting, and which
//! server it is) and a connected [`Session`] (pulls, the backlog, the snapshot, the history
//! check, who holds the horizon). Postgres implements them in [`crate::source`] and
//! [`crate::pg::session`]; the engine's tests implement them with a scripted history.
//!
//! Everything crosses in the neutral types of [`crate::change`]: an upstream never sees the
//! replica's types, and the engine never sees a Postgres client.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::change::Upstream as Server;
use crate::change::{HistoryCheck, PrimaryView, PullFrom, PullOutcome, SnapshotItem};
use crate::change::{HorizonHolder, ResyncReason};
use crate::error::SyncError;
use crate::history::Window;

/// A fresh session, and what the upstream's schema has that this binary does not replicate
/// (`table.column` or `table`, sorted; a destructive difference is a fatal error instead).
pub struct Connected<S> {
    pub session: S,
    pub schema_newer: Vec<String>,
}

/// Where pulls and snapshots come from (the primary, or a standby with the primary as
/// fallback), and how to reach it.
pub trait Upstream: Send {
    type Session: Session;

    /// Connects to whichever server is due and checks its schema. `wake` is notified when
    /// changes may be waiting (a `NOTIFY`) and when the connection closes.
    fn connect(
        &mut self,
        wake: Arc<Notify>,
    ) -> impl Future<Output = Result<Connected<Self::Session>, SyncError>> + Send;

    /// Which server the current (or last tried) connection goes to.
    fn connected_to(&self) -> Server;

    /// Why the preferred server is bypassed, while it is.
    fn note(&self) -> Option<&str>;

    /// The pause between looks when caught up, for the current connection (a server that
    /// cannot notify is polled more often).
    fn poll_interval(&self, usual: Duration) -> Duration;

    /// Whether the preferred server is due to be tried again: the engine reconnects.
    fn reconnect_due(&self) -> bool;

    /// Called after each pull with the replica's watermark: true when the current server
    /// lags so far behind that the engine must reconnect (to another) now.
    fn lags(&mut self, watermark: u64) -> impl Future<Output = bool> + Send;
}

/// One connection to the upstream. Dropping it disconnects. The engine bounds pulls, counts,
/// history checks and lookups by its `pull_timeout` (a black-holed server must not hold a
/// step); a snapshot copies everything and is not bounded.
pub trait Session: Send {
    /// Reads the upstream's view and the next whole transactions from `from`. Through
    /// `check` the engine refuses to go on (a changed identity, a pruned cursor), and then
    /// nothing read is used.
    fn pull(
        &mut self,
        from: PullFrom<'_>,
        check: impl Fn(&PrimaryView) -> Option<ResyncReason> + Send + Sync,
    ) -> impl Future<Output = Result<PullOutcome, SyncError>> + Send;

    /// How many changes wait at or above `watermark` below the horizon, counted up to `cap`
    /// (for the status only).
    fn count_backlog(
        &mut self,
        watermark: u64,
        cap: i64,
    ) -> impl Future<Output = Result<u64, SyncError>> + Send;

    /// Streams a consistent copy of every replicated table into `sink` (in key order if
    /// `key_order`); returns the number of rows.
    fn snapshot(
        &mut self,
        sink: mpsc::Sender<SnapshotItem>,
        key_order: bool,
    ) -> impl Future<Output = Result<u64, SyncError>> + Send;

    /// Compares the applied history's `windows` with the upstream's log; also returns its
    /// view and its timeline (where readable), read in the same snapshot.
    fn check_history(
        &mut self,
        windows: &[Window],
    ) -> impl Future<Output = Result<(HistoryCheck, PrimaryView, Option<i32>), SyncError>> + Send;

    /// The session or prepared transaction whose txid is `xmin` (the horizon's holder).
    fn horizon_holder(
        &mut self,
        xmin: u64,
    ) -> impl Future<Output = Result<Option<HorizonHolder>, SyncError>> + Send;
}
