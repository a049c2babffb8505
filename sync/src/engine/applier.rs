//! What the engine asks of the replica it keeps: its cursor, applying a batch, loading a
//! snapshot, the applied history. [`Replica`] (SQLite) implements it here; the engine's
//! tests can use it on a temporary directory or a fake.
//!
//! Each call is one unit of the replica's work and either commits whole or leaves the
//! replica as it was (the SQLite transaction is rolled back by the failing call), so the
//! engine may change state on any error without cleaning up after it.

use std::future::Future;

use tokio::sync::mpsc;

use crate::change::{Applied, ApplyBatch, RawChange, ReplicaState, SnapshotItem};
use crate::error::SyncError;
use crate::history::Window;
use crate::replica::Replica;
use crate::replica::apply::{apply_batch, decode_images};
use crate::replica::load::load_snapshot;

/// The replica the engine applies to. Cheap to clone: the engine's handle holds one too.
pub trait Applier: Clone + Send + Sync + 'static {
    /// The persisted cursor, `None` before the first snapshot.
    fn state(&self) -> impl Future<Output = Result<Option<ReplicaState>, SyncError>> + Send;

    /// Columns this binary added that a resync has not filled yet (`table.column`).
    fn pending_backfill(&self) -> impl Future<Output = Result<Vec<String>, SyncError>> + Send;

    /// The applied history's windows opened at or after `since_us` (all with `None`).
    fn history(
        &self,
        since_us: Option<i64>,
    ) -> impl Future<Output = Result<Vec<Window>, SyncError>> + Send;

    /// Applies `batch` with the new cursor in one transaction; refuses a batch pulled from
    /// another cursor than the replica's.
    fn apply(&self, batch: ApplyBatch) -> impl Future<Output = Result<Applied, SyncError>> + Send;

    /// Prepares a prefetched batch's changes for a faster apply, off the writer (decoding
    /// their row images). An error here is left for the apply to report.
    fn prepare(
        &self,
        changes: Vec<RawChange>,
    ) -> impl Future<Output = Result<Vec<RawChange>, SyncError>> + Send;

    /// Consumes a snapshot stream and commits it in one transaction; returns the new cursor.
    /// `forked`: the replica's rows came from a history the upstream no longer has.
    fn load(
        &self,
        items: mpsc::Receiver<SnapshotItem>,
        forked: bool,
    ) -> impl Future<Output = Result<ReplicaState, SyncError>> + Send;
}

impl Applier for Replica {
    async fn state(&self) -> Result<Option<ReplicaState>, SyncError> {
        Replica::state(self).await
    }

    async fn pending_backfill(&self) -> Result<Vec<String>, SyncError> {
        Replica::pending_backfill(self).await
    }

    async fn history(&self, since_us: Option<i64>) -> Result<Vec<Window>, SyncError> {
        Replica::history(self, since_us).await
    }

    async fn apply(&self, batch: ApplyBatch) -> Result<Applied, SyncError> {
        self.with_writer(move |conn| apply_batch(conn, &batch))
            .await
    }

    async fn prepare(&self, mut changes: Vec<RawChange>) -> Result<Vec<RawChange>, SyncError> {
        // Not on the writer: this runs while the writer applies the previous batch.
        tokio::task::spawn_blocking(move || decode_images(&mut changes).map(|()| changes))
            .await
            .map_err(|e| SyncError::Transient(format!("decoding task failed: {e}")))?
    }

    async fn load(
        &self,
        items: mpsc::Receiver<SnapshotItem>,
        forked: bool,
    ) -> Result<ReplicaState, SyncError> {
        self.with_writer(move |conn| load_snapshot(conn, items, forked))
            .await
    }
}
