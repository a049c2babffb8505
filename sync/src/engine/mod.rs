//! The sync state machine: one [`Engine::step`] is one unit of work, [`Engine::run`] loops
//! it until shutdown, backing off on errors. The engine is generic over what it pulls from
//! ([`Upstream`], Postgres in production) and what it applies to ([`Applier`], the SQLite
//! replica), so its transitions are tested against fakes.
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
//! # Layout
//! - `state`: the state enum; each state carries what its step needs (the session lives
//!   in `Streaming` and `Resync`).
//! - this module: the engine, [`Engine::step`] and the one place a step's outcome becomes
//!   the next state (errors included), and [`Engine::run`].
//! - `connect`, `stream` (pull, apply, publish), `verify` (history checks, forks),
//!   `resync`: one step each; `status`: what steps publish; `pacing`: pauses and error logs.
//! - [`upstream`] and [`applier`]: the two traits; [`config`]: the tuning.
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

pub mod applier;
pub mod config;
mod connect;
mod pacing;
mod resync;
pub(crate) mod state;
mod status;
mod stream;
pub mod upstream;
mod verify;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{Notify, broadcast, watch};

pub use self::applier::Applier;
pub use self::config::{EngineConfig, HELD_BACK_MAX_PAUSE};
use self::pacing::Pacing;
pub use self::state::StateKind;
use self::state::{State, Verify};
pub use self::upstream::{Session, Upstream};
use crate::error::SyncError;
use crate::handle::{Phase, ResyncReason, Shared, SyncHandle};
use crate::pg::PgConnector;
use crate::replica::Replica;
use crate::source::{Source, StandbySettings};

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Connected,
    Applied {
        changes: usize,
        caught_up: bool,
        /// Caught up with an open transaction holding the horizon: `Some(whether this pull
        /// moved the watermark)`.
        held_back: Option<bool>,
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

/// A step's outcome: the state to go on in, and what the step did.
type Outcome<S> = Result<(State<S>, Step), SyncError>;

/// The sync engine over an upstream `U` and a replica `A`; by default Postgres (a primary,
/// or a standby with the primary as fallback) into the SQLite replica.
pub struct Engine<U: Upstream = Source, A: Applier = Replica> {
    /// Where pulls and snapshots come from.
    upstream: U,
    /// The replica the changes go to.
    applier: A,
    config: EngineConfig,
    shared: Arc<Shared>,
    state: State<U::Session>,
    pacing: Pacing,
    /// The pause the last step asks for before the next one (`None`: at once).
    pause: Option<Duration>,
    last_backlog_count: Option<Instant>,
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
    /// Builds an engine pulling from the primary `connector` into `replica`; nothing runs
    /// until [`Engine::run`] or [`Engine::step`].
    pub async fn new(
        connector: PgConnector,
        replica: Replica,
        config: EngineConfig,
    ) -> Result<(Engine, SyncHandle), SyncError> {
        Engine::from_parts(Source::primary(connector), replica, config).await
    }

    /// Pulls and snapshots from the standby this engine was built with (`SYNC_DATABASE_URL`,
    /// a hot standby in the edge's region), falling back to `primary` (see [`crate::source`]).
    pub fn pull_from_standby(self, primary: PgConnector, settings: StandbySettings) -> Engine {
        Engine {
            upstream: self.upstream.into_standby(primary, settings),
            ..self
        }
    }
}

impl<U: Upstream, A: Applier> Engine<U, A> {
    /// Builds an engine over any upstream and replica; nothing runs until [`Engine::run`] or
    /// [`Engine::step`].
    pub async fn from_parts(
        upstream: U,
        applier: A,
        config: EngineConfig,
    ) -> Result<(Engine<U, A>, SyncHandle<A>), SyncError> {
        let persisted = applier.state().await?;
        let watermark = persisted.as_ref().map_or(0, |s| s.watermark);
        let shared = Arc::new(Shared {
            status: Default::default(),
            watermark: watch::Sender::new(watermark),
            resync_requested: Default::default(),
            wake: Arc::new(Notify::new()),
            events: broadcast::channel(1024).0,
            timings: broadcast::channel(1024).0,
        });
        shared.update(|s| {
            s.ready = persisted.is_some();
            s.watermark = watermark;
            s.last_change_at = persisted
                .as_ref()
                .and_then(|p| status::micros(p.last_change_at_us));
        });
        let handle = SyncHandle {
            shared: shared.clone(),
            replica: applier.clone(),
        };
        let engine = Engine {
            upstream,
            applier,
            pacing: Pacing::new(&config),
            config,
            shared,
            state: State::Connecting,
            pause: None,
            last_backlog_count: None,
            last_verified: Instant::now(),
            timeline: None,
            observations: VecDeque::new(),
            last_holder_lookup: None,
            resync_failures: 0,
            full_check_pending: false,
        };
        Ok((engine, handle))
    }

    /// What the engine will do next.
    pub fn state(&self) -> StateKind {
        self.state.kind()
    }

    /// Does one unit of work: connect, check the history, pull and apply one batch, or
    /// resync. On an error the engine goes back to connecting (the error is returned, and
    /// recorded in the status).
    pub async fn step(&mut self) -> Result<Step, SyncError> {
        self.state = match std::mem::replace(&mut self.state, State::Connecting) {
            // Back to the preferred server (a standby) after a spell on the fallback.
            State::Streaming(_) if self.upstream.reconnect_due() => State::Connecting,
            State::Connecting => State::Connecting,
            connected if self.shared.resync_requested.swap(false, Ordering::SeqCst) => {
                match connected.into_session() {
                    Some(session) => State::Resync {
                        session,
                        reason: ResyncReason::Requested,
                    },
                    None => State::Connecting,
                }
            }
            other => other,
        };
        if let State::Streaming(stream) = &mut self.state
            && stream.verify.is_none()
            && self.last_verified.elapsed() >= self.config.verify_interval
        {
            stream.verify = Some(if self.full_check_pending {
                Verify::All
            } else {
                Verify::Recent
            });
        }
        self.step_in_state().await
    }

    /// Connects (if needed) and rebuilds the replica from a snapshot right now. For the
    /// `resync` command; the running engine uses [`SyncHandle::request_resync`].
    pub async fn resync_now(&mut self) -> Result<Step, SyncError> {
        if matches!(self.state, State::Connecting) {
            self.step_in_state().await?;
        }
        self.state = match std::mem::replace(&mut self.state, State::Connecting).into_session() {
            Some(session) => State::Resync {
                session,
                reason: ResyncReason::Requested,
            },
            None => {
                return Err(SyncError::Transient("resync without a connection".into()));
            }
        };
        self.step_in_state().await
    }

    /// Runs the current state's step and settles its outcome.
    async fn step_in_state(&mut self) -> Result<Step, SyncError> {
        let was = self.state.kind();
        let outcome = match std::mem::replace(&mut self.state, State::Connecting) {
            State::Connecting => self.connect().await,
            State::Streaming(stream) if stream.verify.is_some() => self.check_history(stream).await,
            State::Streaming(stream) => self.stream(stream).await,
            State::Resync { session, reason } => self.resync(session, reason).await,
        };
        self.settle(was, outcome)
    }

    /// The one place a step's outcome becomes the next state. An error drops the session
    /// (and with it any prefetched batch and the cursor: the replica's open transaction, if
    /// any, was rolled back by the failing call) and goes back to connecting after a pause;
    /// a failed resync pauses longer each time, and an operator's request survives it.
    fn settle(&mut self, was: StateKind, outcome: Outcome<U::Session>) -> Result<Step, SyncError> {
        match outcome {
            Ok((next, step)) => {
                self.state = next;
                let poll = self.upstream.poll_interval(self.config.poll_interval);
                self.pause = self.pacing.after(&step, &self.config, poll);
                Ok(step)
            }
            Err(err) => {
                self.state = State::Connecting;
                let mut pause = self.pacing.after_error(&err, &self.config);
                if let StateKind::Resync(reason) = was {
                    pause = pause.max(self.resync_failed());
                    if reason == ResyncReason::Requested {
                        // The operator's request still stands: run it once the primary is back.
                        self.shared.resync_requested.store(true, Ordering::SeqCst);
                    }
                }
                self.pause = Some(pause);
                let (message, fatal) = (err.to_string(), err.is_fatal());
                self.shared.update(|s| {
                    s.phase = Phase::Retrying;
                    s.primary_reachable = fatal;
                    s.last_error = Some(message);
                    s.last_error_fatal = fatal;
                });
                Err(err)
            }
        }
    }

    /// Runs until `shutdown` completes. Never returns early: errors are retried.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.step() => {}
            }
            let Some(pause) = self.pause else {
                continue;
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
}
