//! What the rest of the process holds of the sync engine: its status, the applied
//! watermark to wait on (read-your-writes), change events for caches, and resync requests.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Notify, broadcast, watch};

use crate::replica::Replica;

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
}

/// What the engine is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Starting,
    Connecting,
    Resyncing,
    CatchingUp,
    Streaming,
    /// The last step failed; the engine is backing off.
    Retrying,
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResyncInfo {
    pub reason: ResyncReason,
    pub at: DateTime<Utc>,
    pub rows: u64,
    pub duration_ms: u64,
}

/// A point-in-time view of the engine, for health, metrics and the admin API.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SyncStatus {
    /// The replica holds a complete snapshot (possibly from an earlier run) and serves reads.
    pub ready: bool,
    pub phase: Phase,
    /// Every primary transaction with a txid below this is applied.
    pub watermark: u64,
    /// The primary's horizon at the last successful pull.
    pub primary_horizon: Option<u64>,
    pub primary_reachable: bool,
    pub last_pull_at: Option<DateTime<Utc>>,
    /// When the newest applied change was made on the primary.
    pub last_change_at: Option<DateTime<Utc>>,
    /// Changes waiting below the horizon (counted up to a cap; 0 when caught up).
    pub backlog: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_fatal: bool,
    pub applied_batches: u64,
    pub applied_changes: u64,
    pub resyncs: u64,
    pub last_resync: Option<ResyncInfo>,
}

impl SyncStatus {
    /// Time since the last successful pull.
    pub fn since_last_pull(&self) -> Option<Duration> {
        self.last_pull_at.map(age)
    }

    /// Age of the newest applied change.
    pub fn last_change_age(&self) -> Option<Duration> {
        self.last_change_at.map(age)
    }
}

fn age(t: DateTime<Utc>) -> Duration {
    (Utc::now() - t).to_std().unwrap_or_default()
}

/// Rows that changed in the replica, for cache invalidation.
#[derive(Debug, Clone)]
pub enum ChangeEvent {
    /// `(table, owner_id)` pairs whose rows changed in one applied batch.
    Rows(BTreeSet<(&'static str, String)>),
    /// The whole replica was replaced (a resync): forget everything.
    Everything,
}

pub(crate) struct Shared {
    pub status: Mutex<SyncStatus>,
    pub watermark: watch::Sender<u64>,
    pub resync_requested: AtomicBool,
    /// Wakes the engine: a NOTIFY from the primary, a dropped connection, a resync request.
    pub wake: Arc<Notify>,
    pub events: broadcast::Sender<Arc<ChangeEvent>>,
    pub replica: Replica,
}

impl Shared {
    pub fn update(&self, f: impl FnOnce(&mut SyncStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut status);
    }
}

/// A cheap, cloneable handle on a running engine.
#[derive(Clone)]
pub struct SyncHandle {
    pub(crate) shared: Arc<Shared>,
}

impl SyncHandle {
    pub fn status(&self) -> SyncStatus {
        self.shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the replica holds a complete snapshot and serves reads (cheap: no status
    /// copy; it is checked on every data request).
    pub fn is_ready(&self) -> bool {
        self.shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ready
    }

    /// Every primary transaction with a txid below this is applied.
    pub fn watermark(&self) -> u64 {
        *self.shared.watermark.borrow()
    }

    /// Waits until the replica has applied transaction `txid` (the watermark is past it).
    /// Returns false if that did not happen within `timeout`.
    pub async fn wait_applied(&self, txid: u64, timeout: Duration) -> bool {
        let mut rx = self.shared.watermark.subscribe();
        if *rx.borrow() > txid {
            return true;
        }
        if timeout.is_zero() {
            // Nobody waits for the answer (`READ_YOUR_WRITES_TIMEOUT_MS=0`: such reads go
            // to the primary at once), so the engine is not woken for it.
            return false;
        }
        // The engine may be idle-waiting: a write just committed, so look now.
        self.shared.wake.notify_one();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|w| *w > txid)).await,
            Ok(Ok(_))
        )
    }

    /// Asks for a resync; it runs in the background while reads go on. Returns false if one
    /// was already pending.
    pub fn request_resync(&self) -> bool {
        let fresh = !self.shared.resync_requested.swap(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        fresh
    }

    /// Change events, for caches. A receiver that lags (`RecvError::Lagged`) must assume
    /// everything changed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeEvent>> {
        self.shared.events.subscribe()
    }

    pub fn replica(&self) -> &Replica {
        &self.shared.replica
    }
}
