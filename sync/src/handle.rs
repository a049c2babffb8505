//! What the rest of the process holds of the sync engine: its status, the applied
//! watermark to wait on (read-your-writes), change events for caches, and resync requests.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Notify, broadcast, watch};

pub use crate::change::{HorizonHolder, ResyncReason};
use crate::replica::Replica;

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
    /// Resyncs that failed in a row (each waits longer before the next try).
    pub resync_failures: u32,
    /// When the replica was last known to hold every transaction the primary had begun by
    /// then (see [`SyncStatus::staleness`]).
    pub fresh_as_of: Option<DateTime<Utc>>,
    /// The engine is caught up, but an open transaction on the primary holds the horizon.
    pub horizon_held: bool,
    /// Who holds the horizon, once it has been held for a while (as far as the role sees).
    pub horizon_holder: Option<HorizonHolder>,
    /// Times the primary's history was found to have forked from the applied one.
    pub forks: u64,
    pub last_fork: Option<ForkInfo>,
    /// When the applied history was last checked against the primary's log.
    pub history_checked_at: Option<DateTime<Utc>>,
    /// The primary's timeline (changes at every promotion), where readable.
    pub primary_timeline: Option<i32>,
    /// What the primary has that this binary does not replicate (`table.column`, `table`):
    /// its schema is newer; the edge goes on with what it knows.
    pub primary_schema_newer: Vec<String>,
    /// Changes of tables this binary does not replicate, ignored.
    pub ignored_changes: u64,
    /// What the engine pulls from: the primary, or the standby of `SYNC_DATABASE_URL`.
    pub upstream: crate::source::Upstream,
    /// Why the standby is bypassed (unreachable, lagging), while it is.
    pub upstream_note: Option<String>,
}

/// A detected fork, for the status.
#[derive(Debug, Clone, Serialize)]
pub struct ForkInfo {
    pub at: DateTime<Utc>,
    /// The first window of applied txids the primary no longer holds as applied.
    pub txids: (u64, u64),
    pub replica_changes: u64,
    pub primary_changes: u64,
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

    /// How far behind the primary the replica may be: the time since it last held every
    /// transaction the primary had begun (`None` before the first pull of this process).
    /// It grows while the engine cannot pull, falls behind, or a long transaction on the
    /// primary holds the horizon.
    pub fn staleness(&self) -> Option<Duration> {
        self.fresh_as_of.map(age)
    }

    /// Why this edge is not fully healthy, or `None` when it is: the engine streams, the
    /// primary answers, and the replica is less than `max_staleness` behind.
    pub fn problem(&self, max_staleness: Duration) -> Option<&'static str> {
        if !self.ready {
            return Some("no replica yet");
        }
        match self.phase {
            Phase::Stopped => return Some("sync stopped"),
            Phase::Resyncing if self.last_fork_recent() => return Some("forked: converging"),
            Phase::Resyncing => return Some("resyncing"),
            Phase::Starting | Phase::Connecting => return Some("connecting"),
            Phase::Retrying if self.last_error_fatal => return Some("sync failing (fatal)"),
            Phase::Retrying if !self.primary_reachable => return Some("primary unreachable"),
            Phase::Retrying => return Some("sync failing"),
            Phase::CatchingUp | Phase::Streaming => {}
        }
        if self.staleness().is_none_or(|s| s > max_staleness) {
            return Some(if self.horizon_held {
                "stale: a primary transaction holds the horizon"
            } else {
                "stale"
            });
        }
        None
    }

    /// Whether this edge should be taken out of rotation: it is behind by more than
    /// `max_lag` *by its own fault* while the primary answers. A primary that is down
    /// (guarantee 5: reads go on) or a horizon held on the primary (every edge is equally
    /// behind; taking them all out helps nobody) does not count.
    pub fn lagging(&self, max_lag: Duration) -> bool {
        self.ready
            && self.primary_reachable
            && !(self.horizon_held && self.phase == Phase::Streaming)
            && self.staleness().is_some_and(|s| s > max_lag)
    }

    fn last_fork_recent(&self) -> bool {
        match (&self.last_fork, &self.last_resync) {
            (Some(fork), Some(resync)) => fork.at > resync.at,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

fn age(t: DateTime<Utc>) -> Duration {
    (Utc::now() - t).to_std().unwrap_or_default()
}

/// How long one piece of the engine's work took, for duration histograms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timing {
    /// A pull from the upstream (one round trip or a few), with or without changes.
    Pull(Duration),
    /// Applying one batch that moved the watermark to the replica.
    Apply(Duration),
    /// A whole resync: the snapshot copied and loaded.
    Resync(Duration),
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
    pub timings: broadcast::Sender<Timing>,
}

impl Shared {
    /// Reports how long a piece of work took; nobody listening is fine.
    pub fn timed(&self, timing: Timing) {
        let _ = self.timings.send(timing);
    }
}

impl Shared {
    pub fn update(&self, f: impl FnOnce(&mut SyncStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut status);
    }
}

/// A cheap, cloneable handle on a running engine, and on the replica `R` it keeps (the
/// SQLite [`Replica`] but in the engine's tests).
#[derive(Clone)]
pub struct SyncHandle<R = Replica> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) replica: R,
}

impl<R> SyncHandle<R> {
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

    /// The durations of pulls, applies and resyncs as they happen, for metrics. A receiver
    /// that lags loses the oldest (`RecvError::Lagged`).
    pub fn timings(&self) -> broadcast::Receiver<Timing> {
        self.shared.timings.subscribe()
    }

    pub fn replica(&self) -> &R {
        &self.replica
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streaming(staleness: Duration) -> SyncStatus {
        SyncStatus {
            ready: true,
            phase: Phase::Streaming,
            primary_reachable: true,
            fresh_as_of: Some(Utc::now() - chrono::Duration::from_std(staleness).unwrap()),
            ..SyncStatus::default()
        }
    }

    #[test]
    fn health_is_ok_only_while_streaming_fresh_from_a_reachable_primary() {
        let bound = Duration::from_secs(10);
        assert_eq!(streaming(Duration::from_secs(1)).problem(bound), None);
        assert_eq!(
            streaming(Duration::from_secs(11)).problem(bound),
            Some("stale")
        );
        let stopped = SyncStatus {
            phase: Phase::Stopped,
            ..streaming(Duration::ZERO)
        };
        assert_eq!(stopped.problem(bound), Some("sync stopped"));
        let fatal = SyncStatus {
            phase: Phase::Retrying,
            last_error_fatal: true,
            ..streaming(Duration::ZERO)
        };
        assert_eq!(fatal.problem(bound), Some("sync failing (fatal)"));
        let forked = SyncStatus {
            phase: Phase::Resyncing,
            last_fork: Some(ForkInfo {
                at: Utc::now(),
                txids: (1, 2),
                replica_changes: 1,
                primary_changes: 0,
            }),
            ..streaming(Duration::ZERO)
        };
        assert_eq!(forked.problem(bound), Some("forked: converging"));
    }

    #[test]
    fn only_an_edge_behind_by_its_own_fault_leaves_rotation() {
        let max_lag = Duration::from_secs(30);
        let behind = SyncStatus {
            phase: Phase::CatchingUp,
            ..streaming(Duration::from_secs(60))
        };
        assert!(behind.lagging(max_lag));
        let held = SyncStatus {
            horizon_held: true,
            ..streaming(Duration::from_secs(60))
        };
        assert!(
            !held.lagging(max_lag),
            "a held horizon stalls every edge alike"
        );
        let primary_down = SyncStatus {
            phase: Phase::Retrying,
            primary_reachable: false,
            ..streaming(Duration::from_secs(600))
        };
        assert!(
            !primary_down.lagging(max_lag),
            "reads go on without a primary"
        );
        assert!(!streaming(Duration::from_secs(1)).lagging(max_lag));
    }
}
