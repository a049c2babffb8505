//! The sync state machine: one [`Engine::step`] is one unit of work, [`Engine::run`] loops
//! it until shutdown, backing off on errors.
//!
//! ```text
//!            connect + schema check            pull + apply (until caught up)
//! Connecting ──────────────────────▶ Streaming ◀──────────────────────────────┐
//!     ▲         │ no replica yet        │ pruned / primary changed / forked /  │
//!     │         │ columns to fill       │ requested                            │
//!     │         ▼                       ▼                                      │
//!     │       Resync(reason) ─── snapshot COPY ─▶ load in one SQLite txn ──────┘
//!     └──────── any error (transient: backoff ≤ max; fatal: logged once, slow retry;
//!               a failing resync: backoff up to minutes)
//! ```
//!
//! # Forks
//! Before its first pull on a connection, and every `verify_interval` (for the recent
//! windows), the engine asks the primary whether it holds the history the replica applied
//! ([`crate::history`]). A primary that does not (a failover to a standby that lacked
//! commits, a point-in-time restore) is a fork: the engine converges to the new history
//! with a merge resync that trusts none of the old versions. Monotonic reads cannot hold
//! there (the lost commits disappear from the replica): convergence wins, and the status,
//! the log and the `forks` count say so. A clean switchover is not a fork: the history
//! matches and the edge keeps its cursor.
//!
//! # Staleness
//! Each pull records the primary's `xmax` and when it was read. Once the watermark passes
//! such an `xmax`, every transaction the primary had begun by that time is applied: the time
//! since the latest such pull is how stale the replica may be ([`crate::SyncStatus::staleness`]).
//! An error drops the Postgres connection; the open SQLite transaction, if any, was rolled
//! back by the failing call, so the replica is always at a whole-batch boundary.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio_postgres::Client;

use crate::error::SyncError;
use crate::handle::{ChangeEvent, ForkInfo, Phase, ResyncInfo, ResyncReason, Shared, SyncHandle};
use crate::pg::horizon::horizon_holder;
use crate::pg::pull::{self, PullFrom, PullOutcome, PullStatements};
use crate::pg::schema::check_primary_schema;
use crate::pg::snapshot::copy_snapshot;
use crate::pg::verify::{ForkEvidence, HistoryCheck, check_history};
use crate::pg::{PgConnector, PrimaryView};
use crate::replica::Replica;
use crate::replica::apply::{ApplyBatch, apply_batch, decode_images};
use crate::replica::load::load_snapshot;
use crate::replica::state::ReplicaState;
use crate::source::{Source, StandbySettings, Upstream};

/// The longest pause between looks while an open transaction holds the horizon, whatever the
/// fallback poll: when it ends (perhaps without a NOTIFY) the held-back changes should follow
/// within a second, and a look is one round trip.
pub const HELD_BACK_MAX_PAUSE: Duration = Duration::from_secs(1);

/// The status counts the backlog up to this many changes (the count is an index scan).
const BACKLOG_CAP: i64 = 10_000_000;

/// Pulls remembered for the staleness (see the module doc); older ones are thinned out.
const OBSERVATIONS: usize = 256;

/// Tuning of the engine; the defaults suit production.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Changes read per pull and applied per SQLite transaction (a larger primary
    /// transaction is still read whole). A catch-up writes each page a batch dirties to the
    /// WAL once per batch, so larger batches write less per change; they also hold more in
    /// memory (this batch and the prefetched next one): the rate and the peak heap at each
    /// size are in `docs/PERF.md`. Streaming batches are a few changes each, so the lag does
    /// not depend on it.
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
    /// How often the recent applied history is checked against the primary's log (it is
    /// checked in full at every connect).
    pub verify_interval: Duration,
    /// First and largest pause after a failed resync (a resync copies the whole primary:
    /// one that keeps failing, on a full disk say, must not do so every few seconds).
    pub resync_backoff: Duration,
    pub max_resync_backoff: Duration,
    /// A horizon held this long gets its holder looked up (and looked up again at most this
    /// often): one query on the primary, and a warning in the log.
    pub holder_lookup_after: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            batch_size: 40_000,
            poll_interval: Duration::from_millis(500),
            min_backoff: Duration::from_millis(100),
            // A failover or a switchover is a few seconds of refused connections: the edge
            // should be back within seconds of the new primary taking writes.
            max_backoff: Duration::from_secs(5),
            fatal_retry: Duration::from_secs(30),
            pull_timeout: Duration::from_secs(30),
            held_back_retry: Duration::from_millis(2),
            verify_interval: Duration::from_secs(30),
            resync_backoff: Duration::from_secs(1),
            max_resync_backoff: Duration::from_secs(300),
            holder_lookup_after: Duration::from_secs(5),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Connected,
    Applied {
        changes: usize,
        caught_up: bool,
    },
    Resynced {
        reason: ResyncReason,
        rows: u64,
    },
    /// The applied history was checked against the primary's: `windows` matched.
    Verified {
        windows: usize,
    },
    /// The primary's history forked from the applied one: a resync follows.
    Forked,
}

/// How much of the applied history the next check covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    /// Every retained window: at connect, or when the timeline changed.
    All,
    /// The windows opened since the last check: the periodic check.
    Recent,
}

enum State {
    Connecting,
    Streaming,
    Resync(ResyncReason),
}

pub struct Engine {
    /// Where pulls and snapshots come from: the primary, or a standby in the region.
    source: Source,
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
    /// A history check to run before the next pull.
    verify: Option<Verify>,
    last_verified: Instant,
    /// The primary's timeline at the last check.
    timeline: Option<i32>,
    /// `(xmax, when read)` of recent pulls whose xmax the watermark has not passed, plus the
    /// latest one it has (the staleness's base).
    observations: VecDeque<(u64, chrono::DateTime<Utc>)>,
    last_holder_lookup: Option<Instant>,
    /// Resyncs failed in a row.
    resync_failures: u32,
    /// A full history check is still owed (a standby was behind the replica).
    full_check_pending: bool,
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
            source: Source::primary(connector),
            config,
            shared,
            client: None,
            statements: None,
            state: State::Connecting,
            held_back: None,
            last_backlog_count: None,
            prefetched: None,
            cursor: None,
            verify: None,
            last_verified: Instant::now(),
            timeline: None,
            observations: VecDeque::new(),
            last_holder_lookup: None,
            resync_failures: 0,
            full_check_pending: false,
        };
        Ok((engine, handle))
    }

    /// Pulls and snapshots from the standby this engine was built with (`SYNC_DATABASE_URL`,
    /// a hot standby in the edge's region), falling back to `primary` (see [`crate::source`]).
    pub fn pull_from_standby(mut self, primary: PgConnector, settings: StandbySettings) -> Engine {
        self.source = self.source.into_standby(primary, settings);
        self
    }

    /// Does one unit of work: connect, pull and apply one batch, or resync.
    pub async fn step(&mut self) -> Result<Step, SyncError> {
        if matches!(self.state, State::Streaming) && self.source.standby_due() {
            // Back to the standby after a spell on the primary.
            self.disconnect();
        }
        if !matches!(self.state, State::Connecting)
            && self.shared.resync_requested.swap(false, Ordering::SeqCst)
        {
            self.state = State::Resync(ResyncReason::Requested);
        }
        if self.verify.is_none() && self.last_verified.elapsed() >= self.config.verify_interval {
            self.verify = Some(if self.full_check_pending {
                Verify::All
            } else {
                Verify::Recent
            });
        }
        match self.state {
            State::Connecting => self.connect().await,
            State::Streaming if self.verify.is_some() => self.check_history().await,
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
                        self.source.poll_interval(self.config.poll_interval)
                    }
                }
                Ok(_) => continue,
                Err(err) => {
                    let mut pause = if err.is_fatal() {
                        self.config.fatal_retry
                    } else {
                        backoff
                    };
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    if matches!(self.state, State::Resync(_)) {
                        pause = pause.max(self.resync_failed());
                    }
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
        let client = self.source.connect(self.shared.wake.clone()).await?;
        let (upstream, note) = (
            self.source.connected_to(),
            self.source.note().map(str::to_owned),
        );
        self.shared.update(|s| {
            s.upstream = upstream;
            s.upstream_note = note;
        });
        let newer = check_primary_schema(&client).await?;
        self.note_schema(newer);
        self.statements = Some(PullStatements::prepare(&client).await?);
        self.client = Some(client);
        self.cursor = self.shared.replica.state().await?;
        let backfill = self.shared.replica.pending_backfill().await?;
        self.state = match self.cursor {
            None => State::Resync(ResyncReason::EmptyReplica),
            Some(_) if !backfill.is_empty() => {
                tracing::info!(columns = ?backfill, "replica columns to fill from the primary");
                State::Resync(ResyncReason::SchemaUpgrade)
            }
            Some(_) => {
                // Whatever happened while disconnected (a failover, a restore), the history
                // is checked before the cursor is trusted again.
                self.verify = Some(Verify::All);
                State::Streaming
            }
        };
        self.shared.update(|s| s.primary_reachable = true);
        tracing::info!(?upstream, "connected");
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
                let on_standby = self.source.connected_to() == Upstream::Standby;
                match pull_batch(
                    client,
                    statements,
                    &local,
                    local.watermark,
                    &self.config,
                    on_standby,
                )
                .await?
                {
                    PullOutcome::NeedsResync(ResyncReason::Forked) => {
                        self.forked(None);
                        return Ok(Step::Forked);
                    }
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
        let (observed_xmax, observed_at) = (pulled.view.xmax, pulled.pulled_at);
        let held_back = pulled.held_back;
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
                let on_standby = self.source.connected_to() == Upstream::Standby;
                let (applied, (next, counted)) = tokio::join!(apply, async {
                    let next = match pull_batch(
                        client,
                        statements,
                        &local,
                        next_watermark,
                        config,
                        on_standby,
                    )
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
                s.ignored_changes += applied.ignored as u64;
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
        let watermark = self.cursor.as_ref().map_or(0, |c| c.watermark);
        let fresh_as_of = self.observe(observed_xmax, observed_at, watermark);
        let holder = if held_back {
            self.look_up_holder(horizon, fresh_as_of).await
        } else {
            None
        };
        self.shared.update(|s| {
            s.phase = if caught_up {
                Phase::Streaming
            } else {
                Phase::CatchingUp
            };
            s.fresh_as_of = fresh_as_of.or(s.fresh_as_of);
            s.horizon_held = caught_up && held_back;
            match holder {
                Some(found) => s.horizon_holder = found,
                None if !held_back => s.horizon_holder = None,
                None => {}
            }
            s.primary_reachable = true;
            s.primary_horizon = Some(horizon);
            s.last_pull_at = Some(Utc::now());
            s.last_error = None;
            s.last_error_fatal = false;
            if backlog.is_some() {
                s.backlog = backlog;
            }
        });
        if self.source.standby_lags(watermark).await {
            let note = self.source.note().map(str::to_owned);
            self.shared.update(|s| s.upstream_note = note);
            self.disconnect();
        }
        Ok(Step::Applied { changes, caught_up })
    }

    /// Drops the connection; the next step connects again (to whichever upstream is due).
    fn disconnect(&mut self) {
        self.client = None;
        self.statements = None;
        self.prefetched = None;
        self.state = State::Connecting;
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
        let Some(client) = self.client.as_mut() else {
            return Err(SyncError::Transient("resync without a connection".into()));
        };
        let (sink, items) = mpsc::channel(8);
        let forked = reason == ResyncReason::Forked;
        let load = self
            .shared
            .replica
            .with_writer(move |conn| load_snapshot(conn, items, forked));
        // An empty replica is loaded in bulk, which takes rows in any order (see
        // `copy_snapshot`); any other is merged, range by range in key order.
        let key_order = reason != ResyncReason::EmptyReplica;
        let (copied, loaded) = tokio::join!(copy_snapshot(client, sink, key_order), load);
        let rows = copied?;
        let state = loaded?;

        self.state = State::Streaming;
        self.cursor = Some(state.clone());
        // The history starts at the snapshot, which this connection just read.
        self.verify = None;
        self.last_verified = Instant::now();
        self.resync_failures = 0;
        self.observations.clear();
        self.publish_resync(&state, reason, rows, started.elapsed());
        tracing::info!(
            ?reason,
            rows,
            duration_ms = started.elapsed().as_millis() as u64,
            "resync finished"
        );
        Ok(Step::Resynced { reason, rows })
    }

    /// Checks the applied history against the primary's log (see the module doc).
    async fn check_history(&mut self) -> Result<Step, SyncError> {
        let scope = self.verify.take().unwrap_or(Verify::Recent);
        let since = match scope {
            Verify::All => None,
            Verify::Recent => {
                // The windows opened since the last check (and a second before): each is
                // checked once more, so a periodic check costs the primary about one digest
                // of what was written meanwhile.
                let span = self.last_verified.elapsed() + Duration::from_secs(1);
                Some(Utc::now().timestamp_micros() - span.as_micros() as i64)
            }
        };
        let windows = self.shared.replica.history(since).await?;
        let Some(client) = self.client.as_mut() else {
            return Err(SyncError::Transient(
                "history check without a connection".into(),
            ));
        };
        let checked =
            tokio::time::timeout(self.config.pull_timeout, check_history(client, &windows))
                .await
                .map_err(|_| SyncError::Transient("history check timed out".into()))?;
        let (verdict, view, timeline) = checked?;
        self.last_verified = Instant::now();
        let timeline_changed = self.timeline.is_some() && timeline != self.timeline;
        self.timeline = timeline;
        self.shared.update(|s| {
            s.history_checked_at = Some(Utc::now());
            s.primary_timeline = timeline;
        });
        // Another primary altogether, or a pruned cursor: the pull says so and resyncs.
        let Some(local) = self.cursor.as_ref() else {
            return Ok(Step::Verified { windows: 0 });
        };
        if let Some(reason) = needs_resync(local, &view, true) {
            tracing::warn!(
                ?reason,
                "the change log cannot bring this replica up to date"
            );
            self.state = State::Resync(reason);
            return Ok(Step::Connected);
        }
        let went_back = local.history_went_back(&view);
        if went_back && self.source.connected_to() == Upstream::Standby {
            // A standby that has not replayed as far as the replica: look again in a
            // second, in full, once it may have.
            self.full_check_pending = true;
            self.last_verified = Instant::now()
                .checked_sub(self.config.verify_interval)
                .unwrap_or_else(Instant::now)
                + Duration::from_secs(1);
            return Ok(Step::Verified { windows: 0 });
        }
        if scope == Verify::All {
            self.full_check_pending = false;
        }
        match verdict {
            HistoryCheck::Forked(evidence) => {
                self.forked(Some(evidence));
                Ok(Step::Forked)
            }
            HistoryCheck::Same { .. } if went_back => {
                self.forked(None);
                Ok(Step::Forked)
            }
            HistoryCheck::Same { checked } => {
                if timeline_changed && scope == Verify::Recent {
                    // A promotion under a live connection (a proxy that kept it): check all.
                    tracing::info!(?timeline, "the primary's timeline changed");
                    self.verify = Some(Verify::All);
                }
                tracing::debug!(
                    windows = checked,
                    ?scope,
                    "applied history matches the primary"
                );
                Ok(Step::Verified { windows: checked })
            }
        }
    }

    /// Records a fork and turns to converging on the new history.
    fn forked(&mut self, evidence: Option<ForkEvidence>) {
        let info = ForkInfo {
            at: Utc::now(),
            txids: evidence.as_ref().map_or((0, 0), |e| (e.lo, e.hi)),
            replica_changes: evidence.as_ref().map_or(0, |e| e.replica.changes),
            primary_changes: evidence.as_ref().map_or(0, |e| e.primary.changes),
        };
        tracing::error!(
            txids = ?info.txids,
            replica_changes = info.replica_changes,
            primary_changes = info.primary_changes,
            "the primary's history forked from this replica's (a failover or restore lost \
             commits it had applied): converging to the new primary; reads may go back in time"
        );
        self.shared.update(|s| {
            s.forks += 1;
            s.last_fork = Some(info);
        });
        self.prefetched = None;
        self.state = State::Resync(ResyncReason::Forked);
    }

    /// Notes, once per change, what the primary has that this binary does not replicate.
    fn note_schema(&self, newer: Vec<String>) {
        let changed = {
            let status = self.shared.status.lock().unwrap_or_else(|p| p.into_inner());
            status.primary_schema_newer != newer
        };
        if changed && !newer.is_empty() {
            tracing::warn!(
                newer = ?newer,
                "the primary's schema is newer than this binary's replica: going on with what \
                 it knows (deploy the new release to replicate the rest)"
            );
        }
        self.shared.update(|s| s.primary_schema_newer = newer);
    }

    /// Records a pull's `(xmax, when)` and returns when the replica was last known to hold
    /// every transaction the primary had begun (the watermark passed that pull's xmax).
    fn observe(
        &mut self,
        xmax: u64,
        at: chrono::DateTime<Utc>,
        watermark: u64,
    ) -> Option<chrono::DateTime<Utc>> {
        self.observations.push_back((xmax, at));
        // Keep the latest observation the watermark has passed, and the ones after it.
        while self
            .observations
            .get(1)
            .is_some_and(|&(xmax, _)| xmax <= watermark)
        {
            self.observations.pop_front();
        }
        if self.observations.len() > OBSERVATIONS {
            self.observations.remove(1);
        }
        self.observations
            .front()
            .filter(|&&(xmax, _)| xmax <= watermark)
            .map(|&(_, at)| at)
    }

    /// Who holds the horizon, once it has been held for `holder_lookup_after` (looked up at
    /// most that often; `None`: not looked up this time).
    async fn look_up_holder(
        &mut self,
        horizon: u64,
        fresh_as_of: Option<chrono::DateTime<Utc>>,
    ) -> Option<Option<crate::handle::HorizonHolder>> {
        let held_for = fresh_as_of.map_or(Duration::MAX, |t| {
            (Utc::now() - t).to_std().unwrap_or_default()
        });
        let after = self.config.holder_lookup_after;
        if held_for < after || self.last_holder_lookup.is_some_and(|t| t.elapsed() < after) {
            return None;
        }
        self.last_holder_lookup = Some(Instant::now());
        let client = self.client.as_ref()?;
        let lookup = horizon_holder(client, horizon);
        match tokio::time::timeout(self.config.pull_timeout, lookup).await {
            Ok(Ok(holder)) => {
                if let Some(h) = &holder {
                    tracing::warn!(
                        pid = h.pid,
                        application_name = h.application_name.as_deref(),
                        database = h.database.as_deref(),
                        transaction_age_s = h.transaction_age_s,
                        "an open transaction on the primary holds the horizon: changes \
                         committed after it began wait on every edge"
                    );
                }
                Some(holder)
            }
            _ => None,
        }
    }

    /// Counts a failed resync and returns the pause before the next try.
    fn resync_failed(&mut self) -> Duration {
        self.resync_failures += 1;
        let failures = self.resync_failures;
        self.shared.update(|s| s.resync_failures = failures);
        resync_pause(&self.config, failures)
    }

    fn publish_resync(
        &self,
        state: &ReplicaState,
        reason: ResyncReason,
        rows: u64,
        took: Duration,
    ) {
        // The status first: whoever the watermark wakes sees this resync counted in it.
        self.shared.update(|s| {
            s.ready = true;
            s.watermark = state.watermark;
            s.resyncs += 1;
            s.resync_failures = 0;
            s.last_pull_at = Some(Utc::now());
            s.last_resync = Some(ResyncInfo {
                reason,
                at: Utc::now(),
                rows,
                duration_ms: took.as_millis() as u64,
            });
        });
        self.shared.watermark.send_replace(state.watermark);
        let _ = self.shared.events.send(Arc::new(ChangeEvent::Everything));
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
    on_standby: bool,
) -> Result<PullOutcome, SyncError> {
    let from = PullFrom {
        watermark,
        snapshot: local.snapshot.as_deref(),
        max_changes: config.batch_size,
    };
    tokio::time::timeout(
        config.pull_timeout,
        pull::pull(client, statements, from, |view| {
            needs_resync(local, view, on_standby)
        }),
    )
    .await
    .map_err(|_| SyncError::Transient("pull timed out".into()))?
}

/// Decides, from what the upstream says, whether the log can still bring `local` up to date.
/// A standby behind the watermark has not replayed as far as the replica (which followed the
/// primary meanwhile): it is waited for, and the history check says whether it forked.
fn needs_resync(
    local: &ReplicaState,
    view: &PrimaryView,
    on_standby: bool,
) -> Option<ResyncReason> {
    if !local.same_primary(view) {
        return Some(ResyncReason::PrimaryChanged);
    }
    if local.history_went_back(view) && !on_standby {
        return Some(ResyncReason::Forked);
    }
    if view.pruned_below > local.watermark {
        return Some(ResyncReason::Pruned);
    }
    None
}

/// The pause after `failures` resyncs failed in a row: doubling from `resync_backoff` up to
/// `max_resync_backoff`.
fn resync_pause(config: &EngineConfig, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (config.resync_backoff * 2u32.pow(doublings)).min(config.max_resync_backoff)
}

fn micros(us: Option<i64>) -> Option<chrono::DateTime<Utc>> {
    us.and_then(|us| Utc.timestamp_micros(us).single())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resync_that_keeps_failing_waits_longer_each_time_up_to_minutes() {
        let config = EngineConfig::default();
        let pauses: Vec<u64> = (1..=12)
            .map(|n| resync_pause(&config, n).as_secs())
            .collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }
}
