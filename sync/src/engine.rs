//! The sync state machine: one [`Engine::step`] is one unit of work, [`Engine::run`] loops
//! it until shutdown, backing off on errors.
//!
//! ```text
//!            connect + schema check            pull + apply (until caught up)
//! Connecting ──────────────────────▶ Streaming ◀──────────────────────────────┐
//!     ▲         │ no replica yet        │ pruned / primary changed / requested │
//!     │         ▼                       ▼                                      │
//!     │       Resync(reason) ─── snapshot COPY ─▶ load in one SQLite txn ──────┘
//!     └──────── any error (transient: backoff ≤ max; fatal: logged once, slow retry)
//! ```
//! An error drops the Postgres connection; the open SQLite transaction, if any, was rolled
//! back by the failing call, so the replica is always at a whole-batch boundary.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio_postgres::Client;

use crate::error::SyncError;
use crate::handle::{ChangeEvent, Phase, ResyncInfo, ResyncReason, Shared, SyncHandle};
use crate::pg::pull::{self, PullFrom, PullOutcome, PullStatements};
use crate::pg::schema::check_primary_schema;
use crate::pg::snapshot::copy_snapshot;
use crate::pg::{PgConnector, PrimaryView};
use crate::replica::Replica;
use crate::replica::apply::{ApplyBatch, apply_batch, decode_images};
use crate::replica::load::load_snapshot;
use crate::replica::state::ReplicaState;

/// The longest pause between looks while an open transaction holds the horizon, whatever the
/// fallback poll: when it ends (perhaps without a NOTIFY) the held-back changes should follow
/// within a second, and a look is one round trip.
pub const HELD_BACK_MAX_PAUSE: Duration = Duration::from_secs(1);

/// The status counts the backlog up to this many changes (the count is an index scan).
const BACKLOG_CAP: i64 = 10_000_000;

/// Tuning of the engine; the defaults suit production.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Changes read per pull and applied per SQLite transaction (a larger primary
    /// transaction is still read whole). A catch-up writes each page a batch dirties to the
    /// WAL once per batch, so larger batches write less per change; they also hold more in
    /// memory (this batch and the prefetched next one). `sync-bench`, a million changes:
    /// 34.5k changes/s at 10,000 (128–133 MiB peak heap), 39.1–39.5k at 25,000 (150–155
    /// MiB), 46.9–50.6k at 40,000 (187–191 MiB). Streaming batches are a few changes each,
    /// so the lag does not depend on it.
    pub batch_size: usize,
    /// Fallback poll when no NOTIFY arrives (a rolled-back or long transaction moves the
    /// horizon without notifying).
    pub poll_interval: Duration,
    /// First and largest pause after a transient error.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Pause after a fatal error before trying again.
    pub fatal_retry: Duration,
    /// A pull that takes longer is abandoned (a black-holed primary).
    pub pull_timeout: Duration,
    /// First pause before looking again when an open transaction holds the horizon (it may
    /// end without a NOTIFY); doubled while the horizon does not move, up to
    /// `poll_interval` and at most [`HELD_BACK_MAX_PAUSE`]. A NOTIFY still wakes the engine
    /// at once.
    pub held_back_retry: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            batch_size: 40_000,
            poll_interval: Duration::from_millis(500),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            fatal_retry: Duration::from_secs(30),
            pull_timeout: Duration::from_secs(30),
            held_back_retry: Duration::from_millis(2),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Connected,
    Applied { changes: usize, caught_up: bool },
    Resynced { reason: ResyncReason, rows: u64 },
}

enum State {
    Connecting,
    Streaming,
    Resync(ResyncReason),
}

pub struct Engine {
    connector: PgConnector,
    config: EngineConfig,
    shared: Arc<Shared>,
    client: Option<Client>,
    /// The pull's prepared statements, on `client`.
    statements: Option<PullStatements>,
    state: State,
    /// The last pull was caught up with an open transaction holding the horizon:
    /// `Some(whether that pull moved the watermark)`.
    held_back: Option<bool>,
    last_backlog_count: Option<Instant>,
    /// The next batch, pulled while the previous one was being applied:
    /// `(from watermark, snapshot filter, batch)`.
    prefetched: Option<(u64, Option<String>, pull::Pulled)>,
    /// The replica's cursor as this engine last committed or read it, so that a pull does
    /// not first wait on the writer thread to read it back. Taken for the length of a step:
    /// a step that fails leaves it empty, and the next one reads the replica again. (A
    /// cursor moved behind the engine's back, by `auto-order resync` say, makes the apply
    /// refuse the batch, which is such a failure.)
    cursor: Option<ReplicaState>,
}

impl Engine {
    /// Builds an engine over an opened replica; nothing runs until [`Engine::run`] or
    /// [`Engine::step`].
    pub async fn new(
        connector: PgConnector,
        replica: Replica,
        config: EngineConfig,
    ) -> Result<(Engine, SyncHandle), SyncError> {
        let persisted = replica.state().await?;
        let watermark = persisted.as_ref().map_or(0, |s| s.watermark);
        let shared = Arc::new(Shared {
            status: Default::default(),
            watermark: watch::Sender::new(watermark),
            resync_requested: Default::default(),
            wake: Arc::new(Notify::new()),
            events: broadcast::channel(1024).0,
            replica,
        });
        shared.update(|s| {
            s.ready = persisted.is_some();
            s.watermark = watermark;
            s.last_change_at = persisted.as_ref().and_then(|p| micros(p.last_change_at_us));
        });
        let handle = SyncHandle {
            shared: shared.clone(),
        };
        let engine = Engine {
            connector,
            config,
            shared,
            client: None,
            statements: None,
            state: State::Connecting,
            held_back: None,
            last_backlog_count: None,
            prefetched: None,
            cursor: None,
        };
        Ok((engine, handle))
    }

    /// Does one unit of work: connect, pull and apply one batch, or resync.
    pub async fn step(&mut self) -> Result<Step, SyncError> {
        if !matches!(self.state, State::Connecting)
            && self.shared.resync_requested.swap(false, Ordering::SeqCst)
        {
            self.state = State::Resync(ResyncReason::Requested);
        }
        match self.state {
            State::Connecting => self.connect().await,
            State::Streaming => self.pull_and_apply().await,
            State::Resync(reason) => self.resync(reason).await,
        }
    }

    /// Runs until `shutdown` completes. Never returns early: errors are retried.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = self.config.min_backoff;
        let mut held_back_pause = self.config.held_back_retry;
        let mut last_error: Option<String> = None;
        loop {
            let result = tokio::select! {
                _ = &mut shutdown => break,
                result = self.step() => result,
            };
            let pause = match result {
                Ok(Step::Applied {
                    caught_up: true, ..
                }) => {
                    backoff = self.config.min_backoff;
                    if last_error.take().is_some() {
                        tracing::info!("sync recovered");
                    }
                    if let Some(progressed) = self.held_back {
                        // The transaction holding the horizon may end without a NOTIFY:
                        // look again soon, backing off while the horizon does not move.
                        if progressed {
                            held_back_pause = self.config.held_back_retry;
                        }
                        let longest = self.config.poll_interval.min(HELD_BACK_MAX_PAUSE);
                        let pause = held_back_pause.min(longest);
                        held_back_pause = (held_back_pause * 2).min(longest);
                        pause
                    } else {
                        held_back_pause = self.config.held_back_retry;
                        self.config.poll_interval
                    }
                }
                Ok(_) => continue,
                Err(err) => {
                    let pause = if err.is_fatal() {
                        self.config.fatal_retry
                    } else {
                        backoff
                    };
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    self.fail(&err, &mut last_error);
                    pause
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        self.shared.update(|s| s.phase = Phase::Stopped);
        tracing::info!("sync engine stopped");
    }

    /// Connects (if needed) and rebuilds the replica from a snapshot right now. For the
    /// `resync` command; the running engine uses [`SyncHandle::request_resync`].
    pub async fn resync_now(&mut self) -> Result<Step, SyncError> {
        if self.client.is_none() {
            self.connect().await?;
        }
        self.resync(ResyncReason::Requested).await
    }

    async fn connect(&mut self) -> Result<Step, SyncError> {
        self.shared.update(|s| s.phase = Phase::Connecting);
        let client = self
            .connector
            .connect(Some(self.shared.wake.clone()))
            .await?;
        check_primary_schema(&client).await?;
        self.statements = Some(PullStatements::prepare(&client).await?);
        self.client = Some(client);
        self.cursor = self.shared.replica.state().await?;
        self.state = match self.cursor {
            None => State::Resync(ResyncReason::EmptyReplica),
            Some(_) => State::Streaming,
        };
        self.shared.update(|s| s.primary_reachable = true);
        tracing::info!("connected to the primary");
        Ok(Step::Connected)
    }

    async fn pull_and_apply(&mut self) -> Result<Step, SyncError> {
        let local = match self.cursor.take() {
            Some(cursor) => cursor,
            None => match self.shared.replica.state().await? {
                Some(persisted) => persisted,
                None => {
                    self.state = State::Resync(ResyncReason::EmptyReplica);
                    return Ok(Step::Connected);
                }
            },
        };
        let client = self.client.as_mut().expect("streaming implies connected");
        let statements = self.statements.as_ref().expect("prepared when connected");
        // A prefetched batch is valid only for exactly the state it was pulled against (a
        // resync in between, even to the same watermark, changes the snapshot filter).
        let prefetched = self
            .prefetched
            .take()
            .filter(|(from, snapshot, _)| *from == local.watermark && *snapshot == local.snapshot);
        let pulled = match prefetched {
            Some((_, _, pulled)) => pulled,
            None => {
                match pull_batch(client, statements, &local, local.watermark, &self.config).await? {
                    PullOutcome::NeedsResync(reason) => {
                        tracing::warn!(
                            ?reason,
                            "the change log cannot bring this replica up to date"
                        );
                        self.state = State::Resync(reason);
                        return Ok(Step::Connected);
                    }
                    PullOutcome::Pulled(p) => p,
                }
            }
        };

        let (changes, caught_up, horizon) =
            (pulled.changes.len(), pulled.caught_up, pulled.view.xmin);
        self.held_back = pulled
            .held_back
            .then_some(pulled.next_watermark != local.watermark);
        let count_backlog = !caught_up && self.backlog_count_due();
        let mut backlog = caught_up.then_some(0);
        if pulled.next_watermark != local.watermark {
            let next_watermark = pulled.next_watermark;
            let batch = ApplyBatch {
                from_watermark: local.watermark,
                from_snapshot: local.snapshot.clone(),
                next_watermark,
                pulled_xmax: pulled.view.xmax,
                changes: pulled.changes,
            };
            let replica = self.shared.replica.clone();
            let apply = replica.with_writer(move |conn| apply_batch(conn, &batch));
            let applied = if caught_up {
                apply.await?
            } else {
                // Catching up: pull the next batch while this one is applied. The prefetch is
                // used only if the replica's watermark is where it expects; any error in it is
                // dropped here and the pull simply happens again in the next step.
                let client = self.client.as_mut().expect("streaming implies connected");
                let statements = self.statements.as_ref().expect("prepared when connected");
                let config = &self.config;
                let (applied, (next, counted)) = tokio::join!(apply, async {
                    let next = match pull_batch(client, statements, &local, next_watermark, config)
                        .await
                    {
                        Ok(PullOutcome::Pulled(next)) => decode_ahead(next).await,
                        _ => None,
                    };
                    // The status's backlog is counted here too, while the writer applies:
                    // counting a million changes took a tenth of a second, every two.
                    let counted = if count_backlog {
                        count_backlog_bounded(client, next_watermark, config).await
                    } else {
                        None
                    };
                    (next, counted)
                });
                backlog = counted;
                if let Some(next) = next {
                    self.prefetched = Some((next_watermark, local.snapshot.clone(), next));
                }
                applied?
            };
            // The status first: whoever the watermark wakes sees this batch counted in it.
            let watermark = applied.state.watermark;
            self.shared.update(|s| {
                s.watermark = watermark;
                s.last_change_at = micros(applied.state.last_change_at_us);
                s.applied_batches += 1;
                s.applied_changes += applied.applied as u64;
            });
            self.shared.watermark.send_replace(watermark);
            if !applied.touched.is_empty() {
                let _ = self
                    .shared
                    .events
                    .send(Arc::new(ChangeEvent::Rows(applied.touched)));
            }
            self.cursor = Some(applied.state);
        } else {
            if count_backlog && let Some(client) = self.client.as_ref() {
                backlog = count_backlog_bounded(client, local.watermark, &self.config).await;
            }
            self.cursor = Some(local);
        }
        self.shared.update(|s| {
            s.phase = if caught_up {
                Phase::Streaming
            } else {
                Phase::CatchingUp
            };
            s.primary_reachable = true;
            s.primary_horizon = Some(horizon);
            s.last_pull_at = Some(Utc::now());
            s.last_error = None;
            s.last_error_fatal = false;
            if backlog.is_some() {
                s.backlog = backlog;
            }
        });
        Ok(Step::Applied { changes, caught_up })
    }

    /// Whether to count the backlog for the status: at most every two seconds while
    /// catching up.
    fn backlog_count_due(&mut self) -> bool {
        if self
            .last_backlog_count
            .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
        {
            return false;
        }
        self.last_backlog_count = Some(Instant::now());
        true
    }

    async fn resync(&mut self, reason: ResyncReason) -> Result<Step, SyncError> {
        tracing::info!(?reason, "resync started");
        self.prefetched = None;
        self.cursor = None;
        self.shared.update(|s| s.phase = Phase::Resyncing);
        let started = Instant::now();
        let client = self.client.as_mut().expect("resync implies connected");
        let (sink, items) = mpsc::channel(8);
        let load = self
            .shared
            .replica
            .with_writer(move |conn| load_snapshot(conn, items));
        // An empty replica is loaded in bulk, which takes rows in any order (see
        // `copy_snapshot`); any other is merged, range by range in key order.
        let key_order = reason != ResyncReason::EmptyReplica;
        let (copied, loaded) = tokio::join!(copy_snapshot(client, sink, key_order), load);
        let rows = copied?;
        let state = loaded?;

        self.state = State::Streaming;
        self.cursor = Some(state.clone());
        self.publish_resync(&state, reason, rows, started.elapsed());
        tracing::info!(
            ?reason,
            rows,
            duration_ms = started.elapsed().as_millis() as u64,
            "resync finished"
        );
        Ok(Step::Resynced { reason, rows })
    }

    fn publish_resync(
        &self,
        state: &ReplicaState,
        reason: ResyncReason,
        rows: u64,
        took: Duration,
    ) {
        self.shared.watermark.send_replace(state.watermark);
        let _ = self.shared.events.send(Arc::new(ChangeEvent::Everything));
        self.shared.update(|s| {
            s.ready = true;
            s.watermark = state.watermark;
            s.resyncs += 1;
            s.last_pull_at = Some(Utc::now());
            s.last_resync = Some(ResyncInfo {
                reason,
                at: Utc::now(),
                rows,
                duration_ms: took.as_millis() as u64,
            });
        });
    }

    /// Records a failed step: drops the connection, logs once per distinct error.
    fn fail(&mut self, err: &SyncError, last_error: &mut Option<String>) {
        if matches!(self.state, State::Resync(ResyncReason::Requested)) {
            // The operator's request still stands: run it once the primary is back.
            self.shared.resync_requested.store(true, Ordering::SeqCst);
        }
        self.client = None;
        self.statements = None;
        self.prefetched = None;
        self.held_back = None;
        self.cursor = None;
        self.state = State::Connecting;
        let message = err.to_string();
        if last_error.as_deref() != Some(message.as_str()) {
            if err.is_fatal() {
                tracing::error!(error = %message, "sync stopped: fatal error, retrying slowly");
            } else {
                tracing::warn!(error = %message, "sync failed, retrying with backoff");
            }
        }
        *last_error = Some(message.clone());
        let fatal = err.is_fatal();
        self.shared.update(|s| {
            s.phase = Phase::Retrying;
            s.primary_reachable = fatal;
            s.last_error = Some(message);
            s.last_error_fatal = fatal;
        });
    }
}

/// The backlog for the status, bounded like a pull (a black-holed primary must not hold
/// the step); `None` if it could not be counted.
async fn count_backlog_bounded(
    client: &Client,
    watermark: u64,
    config: &EngineConfig,
) -> Option<u64> {
    let count = pull::count_backlog(client, watermark, BACKLOG_CAP);
    tokio::time::timeout(config.pull_timeout, count)
        .await
        .ok()?
        .ok()
}

/// Decodes a prefetched batch's row images on a blocking thread (see
/// [`crate::replica::apply::decode_images`]). `None` drops the prefetch: the next step pulls
/// the batch again, and an image that cannot be decoded then fails its apply.
async fn decode_ahead(mut pulled: pull::Pulled) -> Option<pull::Pulled> {
    let mut changes = std::mem::take(&mut pulled.changes);
    let decoded =
        tokio::task::spawn_blocking(move || decode_images(&mut changes).map(|()| changes));
    pulled.changes = decoded.await.ok()?.ok()?;
    Some(pulled)
}

/// Pulls one batch from `watermark`, checking first that the log can still serve `local`.
async fn pull_batch(
    client: &mut Client,
    statements: &PullStatements,
    local: &ReplicaState,
    watermark: u64,
    config: &EngineConfig,
) -> Result<PullOutcome, SyncError> {
    let from = PullFrom {
        watermark,
        snapshot: local.snapshot.as_deref(),
        max_changes: config.batch_size,
    };
    tokio::time::timeout(
        config.pull_timeout,
        pull::pull(client, statements, from, |view| needs_resync(local, view)),
    )
    .await
    .map_err(|_| SyncError::Transient("pull timed out".into()))?
}

/// Decides, from what the primary says, whether the log can still bring `local` up to date.
fn needs_resync(local: &ReplicaState, view: &PrimaryView) -> Option<ResyncReason> {
    if !local.same_primary(view) {
        return Some(ResyncReason::PrimaryChanged);
    }
    if view.pruned_below > local.watermark {
        return Some(ResyncReason::Pruned);
    }
    None
}

fn micros(us: Option<i64>) -> Option<chrono::DateTime<Utc>> {
    us.and_then(|us| Utc.timestamp_micros(us).single())
}
