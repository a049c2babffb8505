//! A scripted upstream (a change log, an identity, a prune point, errors to return) and an
//! applier that records what it is asked around the real SQLite replica on a temp dir.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::change::{
    Applied, ApplyBatch, ForkEvidence, HistoryCheck, Op, PrimaryView, PullFrom, PullOutcome,
    Pulled, RawChange, ReplicaState, RowImage, SnapshotItem, SnapshotMeta,
};
use crate::engine::upstream::{Connected, Session, Upstream};
use crate::engine::{Applier, Engine, EngineConfig};
use crate::error::SyncError;
use crate::handle::{HorizonHolder, ResyncReason, SyncHandle};
use crate::history::{Digest64, Window};
use crate::replica::Replica;
use crate::source::Upstream as Server;

/// The upstream's state, shared between the test and every session it opened.
#[derive(Default)]
pub struct Primary {
    pub system_id: Option<i64>,
    pub epoch: String,
    pub pruned_below: u64,
    /// Every transaction below this has finished.
    pub xmin: u64,
    /// No transaction at or above this had started.
    pub xmax: u64,
    /// The change log, in `(txid, id)` order.
    pub log: Vec<RawChange>,
    /// The server the fake says it is (a standby is waited for when behind).
    pub server: Server,
    /// The server lags (the engine must leave it after a pull), or the preferred one is due
    /// again (the engine must reconnect).
    pub lags: bool,
    pub reconnect_due: bool,
    /// The verdict of the next history checks: `None` is "same history".
    pub fork: Option<ForkEvidence>,
    /// Errors the next calls return, in order.
    pub connect_errors: VecDeque<SyncError>,
    pub pull_errors: VecDeque<SyncError>,
    pub snapshot_errors: VecDeque<SyncError>,
    /// What the engine asked.
    pub connects: usize,
    pub pulls: usize,
    pub snapshots: Vec<bool>,
    pub history_checks: usize,
}

impl Primary {
    fn view(&self) -> PrimaryView {
        PrimaryView {
            system_id: self.system_id,
            epoch: self.epoch.clone(),
            pruned_below: self.pruned_below,
            xmin: self.xmin,
            xmax: self.xmax,
        }
    }

    /// Commits one transaction `txid` inserting the products numbered `products`, and
    /// moves the horizon past it.
    pub fn commit(&mut self, txid: u64, products: &[u32]) {
        for &n in products {
            let id = self.log.len() as i64 + 1;
            self.log.push(product_insert(id, txid, n));
        }
        self.xmin = self.xmin.max(txid + 1);
        self.xmax = self.xmax.max(self.xmin);
    }

    /// The whole transactions of the log from `from.watermark` below the horizon, at most
    /// `max_changes` unless one transaction is larger (as the Postgres pull cuts them).
    fn pull(&self, from: &PullFrom<'_>) -> Pulled {
        let pending: Vec<&RawChange> = self
            .log
            .iter()
            .filter(|c| c.txid >= from.watermark && c.txid < self.xmin)
            .collect();
        let view = self.view();
        let pulled_at = chrono::Utc::now();
        if pending.len() <= from.max_changes {
            return Pulled {
                next_watermark: self.xmin.max(from.watermark),
                caught_up: true,
                held_back: self.xmin < self.xmax,
                changes: pending.into_iter().cloned().collect(),
                view,
                pulled_at,
            };
        }
        let mut changes: Vec<RawChange> = Vec::new();
        for change in pending {
            let next_transaction = changes.last().is_some_and(|c| c.txid != change.txid);
            if next_transaction && changes.len() >= from.max_changes {
                return Pulled {
                    next_watermark: change.txid,
                    caught_up: false,
                    held_back: false,
                    changes,
                    view,
                    pulled_at,
                };
            }
            changes.push(change.clone());
        }
        unreachable!("more changes than the batch were pending")
    }
}

/// A product insert with a valid row image, as the Postgres trigger writes it.
pub fn product_insert(id: i64, txid: u64, n: u32) -> RawChange {
    let row_id = format!("00000000-0000-0000-0000-{n:012}");
    let json = format!(
        r#"{{"id": "{row_id}", "owner_id": "alice", "name": "product {n}", "unit": null,
            "reorder_quantity": 1, "price_cents": 100, "notes": null,
            "created_at": "2026-12-01T10:00:00+00:00",
            "updated_at": "2026-12-01T10:00:00+00:00", "version": {id}}}"#
    );
    RawChange {
        id,
        txid,
        table: "products".into(),
        row_id,
        op: Op::Insert,
        version: id,
        data: Some(RowImage::Json(json)),
        changed_at_us: 1_764_583_200_000_000 + id,
    }
}

#[derive(Clone, Default)]
pub struct FakeUpstream {
    pub primary: Arc<Mutex<Primary>>,
}

impl FakeUpstream {
    pub fn lock(&self) -> MutexGuard<'_, Primary> {
        self.primary.lock().unwrap()
    }
}

pub struct FakeSession {
    primary: Arc<Mutex<Primary>>,
}

impl FakeSession {
    fn lock(&self) -> MutexGuard<'_, Primary> {
        self.primary.lock().unwrap()
    }
}

impl Upstream for FakeUpstream {
    type Session = FakeSession;

    async fn connect(&mut self, _wake: Arc<Notify>) -> Result<Connected<FakeSession>, SyncError> {
        let mut primary = self.lock();
        if let Some(err) = primary.connect_errors.pop_front() {
            return Err(err);
        }
        primary.connects += 1;
        Ok(Connected {
            session: FakeSession {
                primary: self.primary.clone(),
            },
            schema_newer: Vec::new(),
        })
    }

    fn connected_to(&self) -> Server {
        self.lock().server
    }

    fn note(&self) -> Option<&str> {
        // The fake bypasses nothing; the engine publishes whatever this says.
        None
    }

    fn poll_interval(&self, usual: Duration) -> Duration {
        usual
    }

    fn reconnect_due(&self) -> bool {
        self.lock().reconnect_due
    }

    async fn lags(&mut self, _watermark: u64) -> bool {
        self.lock().lags
    }
}

impl Session for FakeSession {
    async fn pull(
        &mut self,
        from: PullFrom<'_>,
        check: impl Fn(&PrimaryView) -> Option<ResyncReason> + Send + Sync,
    ) -> Result<PullOutcome, SyncError> {
        let mut primary = self.lock();
        primary.pulls += 1;
        if let Some(err) = primary.pull_errors.pop_front() {
            return Err(err);
        }
        if let Some(reason) = check(&primary.view()) {
            return Ok(PullOutcome::NeedsResync(reason));
        }
        Ok(PullOutcome::Pulled(primary.pull(&from)))
    }

    async fn count_backlog(&mut self, watermark: u64, _cap: i64) -> Result<u64, SyncError> {
        let primary = self.lock();
        let waiting = primary.log.iter().filter(|c| c.txid >= watermark);
        Ok(waiting.filter(|c| c.txid < primary.xmin).count() as u64)
    }

    async fn snapshot(
        &mut self,
        sink: mpsc::Sender<SnapshotItem>,
        key_order: bool,
    ) -> Result<u64, SyncError> {
        let meta = {
            let mut primary = self.lock();
            primary.snapshots.push(key_order);
            if let Some(err) = primary.snapshot_errors.pop_front() {
                // The loader sees the stream end without `End` and rolls back.
                return Err(err);
            }
            let view = primary.view();
            let snapshot = format!("{}:{}:", view.xmin, view.xmax);
            SnapshotMeta {
                recent: Window {
                    lo: view.xmax,
                    hi: view.xmax,
                    snapshot: Some(snapshot.clone()),
                    visible: true,
                    digest: Digest64::default(),
                },
                view,
                snapshot,
                key_order,
            }
        };
        for item in [SnapshotItem::Begin(meta), SnapshotItem::End] {
            sink.send(item)
                .await
                .map_err(|_| SyncError::Transient("replica loader stopped".into()))?;
        }
        Ok(0)
    }

    async fn check_history(
        &mut self,
        windows: &[Window],
    ) -> Result<(HistoryCheck, PrimaryView, Option<i32>), SyncError> {
        let mut primary = self.lock();
        primary.history_checks += 1;
        let verdict = match &primary.fork {
            Some(evidence) => HistoryCheck::Forked(evidence.clone()),
            None => HistoryCheck::Same {
                checked: windows.len(),
            },
        };
        Ok((verdict, primary.view(), Some(1)))
    }

    async fn horizon_holder(&mut self, _xmin: u64) -> Result<Option<HorizonHolder>, SyncError> {
        Ok(None)
    }
}

/// The SQLite replica, recording the `forked` flag of every load.
#[derive(Clone)]
pub struct Recording {
    pub replica: Replica,
    pub loads: Arc<Mutex<Vec<bool>>>,
}

impl Applier for Recording {
    async fn state(&self) -> Result<Option<ReplicaState>, SyncError> {
        Applier::state(&self.replica).await
    }

    async fn pending_backfill(&self) -> Result<Vec<String>, SyncError> {
        Applier::pending_backfill(&self.replica).await
    }

    async fn history(&self, since_us: Option<i64>) -> Result<Vec<Window>, SyncError> {
        Applier::history(&self.replica, since_us).await
    }

    async fn apply(&self, batch: ApplyBatch) -> Result<Applied, SyncError> {
        self.replica.apply(batch).await
    }

    async fn prepare(&self, changes: Vec<RawChange>) -> Result<Vec<RawChange>, SyncError> {
        self.replica.prepare(changes).await
    }

    async fn load(
        &self,
        items: mpsc::Receiver<SnapshotItem>,
        forked: bool,
    ) -> Result<ReplicaState, SyncError> {
        self.loads.lock().unwrap().push(forked);
        self.replica.load(items, forked).await
    }
}

/// An engine over a fake primary (identity 7/"epoch-1", horizon at 100) and a fresh
/// replica in `dir`.
pub async fn engine(
    dir: &tempfile::TempDir,
    config: EngineConfig,
) -> (
    Engine<FakeUpstream, Recording>,
    SyncHandle<Recording>,
    FakeUpstream,
) {
    let upstream = FakeUpstream::default();
    {
        let mut primary = upstream.lock();
        primary.system_id = Some(7);
        primary.epoch = "epoch-1".into();
        primary.xmin = 100;
        primary.xmax = 100;
    }
    let applier = Recording {
        replica: Replica::open(&dir.path().join("replica.db"), 1).unwrap(),
        loads: Default::default(),
    };
    let (engine, handle) = Engine::from_parts(upstream.clone(), applier, config)
        .await
        .unwrap();
    (engine, handle, upstream)
}

/// Evidence of a fork in the window `lo..hi` (the digests differ).
pub fn evidence(lo: u64, hi: u64) -> ForkEvidence {
    ForkEvidence {
        lo,
        hi,
        replica: Digest64 { changes: 3, sum: 1 },
        primary: Digest64 { changes: 2, sum: 9 },
    }
}
