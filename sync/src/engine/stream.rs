//! The streaming step, cut in three: **pull** a batch of whole transactions below the
//! horizon (or take the one prefetched), **apply** it to the replica with the new cursor in
//! one transaction (while catching up, the next batch is pulled meanwhile), and **publish**
//! what happened (status, watermark, change events, the horizon's holder).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tracing::Instrument;

use super::config::EngineConfig;
use super::state::{Prefetched, State, Stream};
use super::upstream::Session;
use super::{Applier, Engine, Outcome, Step, Upstream};
use crate::change::{
    Applied, ApplyBatch, PrimaryView, PullFrom, PullOutcome, Pulled, ReplicaState,
};
use crate::error::SyncError;
use crate::handle::{ChangeEvent, Phase, ResyncReason, Timing};
use crate::source::Upstream as Server;

/// The status counts the backlog up to this many changes (the count is an index scan).
const BACKLOG_CAP: i64 = 10_000_000;

/// What a pull brought and its apply did, for the status.
struct Progress {
    changes: usize,
    caught_up: bool,
    /// The upstream's horizon (xmin) and xmax at the pull, and when it was sent.
    horizon: u64,
    xmax: u64,
    pulled_at: chrono::DateTime<Utc>,
    /// Caught up, with an open transaction holding the horizon.
    held_back: bool,
    /// The pull moved the watermark.
    progressed: bool,
    /// The backlog, when counted this time.
    backlog: Option<u64>,
}

impl<U: Upstream, A: Applier> Engine<U, A> {
    /// Pulls, applies and publishes one batch.
    pub(super) async fn stream(
        &mut self,
        mut stream: Box<Stream<U::Session>>,
    ) -> Outcome<U::Session> {
        let pulled = match self.pull(&mut stream).await? {
            PullOutcome::Pulled(pulled) => pulled,
            PullOutcome::NeedsResync(reason) => {
                return Ok(self.cannot_follow(stream.session, reason));
            }
        };
        let progress = self.apply(&mut stream, pulled).await?;
        self.publish(&mut stream, &progress).await;
        let step = Step::Applied {
            changes: progress.changes,
            caught_up: progress.caught_up,
            held_back: progress.held_back.then_some(progress.progressed),
        };
        if self.upstream.lags(stream.cursor.watermark).await {
            let note = self.upstream.note().map(str::to_owned);
            self.shared.update(|s| s.upstream_note = note);
            return Ok((State::Connecting, step));
        }
        Ok((State::Streaming(stream), step))
    }

    /// The batch prefetched for exactly this cursor, or a fresh pull.
    async fn pull(&mut self, stream: &mut Stream<U::Session>) -> Result<PullOutcome, SyncError> {
        let cursor = &stream.cursor;
        let prefetched = stream
            .prefetched
            .take()
            .filter(|p| p.from == cursor.watermark && p.snapshot == cursor.snapshot);
        if let Some(prefetched) = prefetched {
            return Ok(PullOutcome::Pulled(prefetched.pulled));
        }
        let on_standby = self.upstream.connected_to() == Server::Standby;
        let started = Instant::now();
        let pulled = pull_batch(
            &mut stream.session,
            cursor,
            cursor.watermark,
            &self.config,
            on_standby,
        )
        .await;
        self.shared.timed(Timing::Pull(started.elapsed()));
        pulled
    }

    /// The log cannot bring the replica up to date: resync (a fork is recorded as such).
    fn cannot_follow(
        &mut self,
        session: U::Session,
        reason: ResyncReason,
    ) -> (State<U::Session>, Step) {
        if reason == ResyncReason::Forked {
            return self.forked(session, None);
        }
        tracing::warn!(
            ?reason,
            "the change log cannot bring this replica up to date"
        );
        (State::Resync { session, reason }, Step::Connected)
    }

    /// Applies `pulled` (if it moves the watermark) and moves the cursor. While catching up,
    /// the next batch is pulled and the backlog counted while the writer applies this one.
    async fn apply(
        &mut self,
        stream: &mut Stream<U::Session>,
        pulled: Pulled,
    ) -> Result<Progress, SyncError> {
        let from = stream.cursor.watermark;
        let caught_up = pulled.caught_up;
        let mut progress = Progress {
            changes: pulled.changes.len(),
            caught_up,
            horizon: pulled.view.xmin,
            xmax: pulled.view.xmax,
            pulled_at: pulled.pulled_at,
            held_back: pulled.held_back,
            progressed: pulled.next_watermark != from,
            backlog: caught_up.then_some(0),
        };
        let count_backlog = !caught_up && self.backlog_count_due();
        if !progress.progressed {
            if count_backlog {
                progress.backlog =
                    count_backlog_bounded(&mut stream.session, from, &self.config).await;
            }
            return Ok(progress);
        }
        let next_watermark = pulled.next_watermark;
        let batch = ApplyBatch {
            from_watermark: from,
            from_snapshot: stream.cursor.snapshot.clone(),
            next_watermark,
            pulled_xmax: pulled.view.xmax,
            changes: pulled.changes,
        };
        // A trace of its own per batch with changes. A batch that only moves the watermark
        // (other databases' transactions pass the horizon on every poll of a busy cluster)
        // makes none.
        let span = if batch.changes.is_empty() {
            tracing::Span::none()
        } else {
            tracing::debug_span!(
                "sync.apply",
                changes = batch.changes.len(),
                from = from,
                to = next_watermark,
            )
        };
        let shared = &self.shared;
        let apply = async {
            let started = Instant::now();
            let applied = self.applier.apply(batch).await;
            shared.timed(Timing::Apply(started.elapsed()));
            applied
        }
        .instrument(span);
        let applied = if caught_up {
            apply.await?
        } else {
            // Catching up: pull the next batch while this one is applied. The prefetch is
            // used only if the replica's watermark is where it expects; any error in it is
            // dropped here and the pull simply happens again in the next step.
            let on_standby = self.upstream.connected_to() == Server::Standby;
            let (config, applier) = (&self.config, &self.applier);
            let (session, cursor) = (&mut stream.session, &stream.cursor);
            let (applied, (next, counted)) = tokio::join!(apply, async {
                let next =
                    match pull_batch(session, cursor, next_watermark, config, on_standby).await {
                        Ok(PullOutcome::Pulled(next)) => prepare_ahead(applier, next).await,
                        _ => None,
                    };
                // The status's backlog is counted here too, while the writer applies.
                let counted = if count_backlog {
                    count_backlog_bounded(session, next_watermark, config).await
                } else {
                    None
                };
                (next, counted)
            });
            progress.backlog = counted;
            if let Some(next) = next {
                stream.prefetched = Some(Prefetched {
                    from: next_watermark,
                    snapshot: stream.cursor.snapshot.clone(),
                    pulled: next,
                });
            }
            applied?
        };
        stream.cursor = self.publish_applied(applied);
        Ok(progress)
    }

    /// Publishes an applied batch (status, watermark, change events); returns the cursor.
    fn publish_applied(&self, applied: Applied) -> ReplicaState {
        // The status first: whoever the watermark wakes sees this batch counted in it.
        let watermark = applied.state.watermark;
        self.shared.update(|s| {
            s.watermark = watermark;
            s.last_change_at = super::status::micros(applied.state.last_change_at_us);
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
        applied.state
    }

    /// Publishes what the pull found: phase, staleness, the horizon and who holds it.
    async fn publish(&mut self, stream: &mut Stream<U::Session>, progress: &Progress) {
        let fresh_as_of = self.observe(progress.xmax, progress.pulled_at, stream.cursor.watermark);
        let held_back = progress.held_back;
        let holder = if held_back {
            self.look_up_holder(&mut stream.session, progress.horizon, fresh_as_of)
                .await
        } else {
            None
        };
        let (caught_up, horizon, backlog) =
            (progress.caught_up, progress.horizon, progress.backlog);
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
}

/// A prefetched batch with its changes prepared off the writer (see [`Applier::prepare`]).
/// `None` drops the prefetch: the next step pulls the batch again, and a change that cannot
/// be prepared then fails its apply.
async fn prepare_ahead(applier: &impl Applier, mut pulled: Pulled) -> Option<Pulled> {
    let changes = std::mem::take(&mut pulled.changes);
    pulled.changes = applier.prepare(changes).await.ok()?;
    Some(pulled)
}

/// The backlog for the status, bounded like a pull (a black-holed primary must not hold
/// the step); `None` if it could not be counted.
async fn count_backlog_bounded(
    session: &mut impl Session,
    watermark: u64,
    config: &EngineConfig,
) -> Option<u64> {
    let count = session.count_backlog(watermark, BACKLOG_CAP);
    tokio::time::timeout(config.pull_timeout, count)
        .await
        .ok()?
        .ok()
}

/// Pulls one batch from `watermark`, checking first that the log can still serve `local`.
async fn pull_batch(
    session: &mut impl Session,
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
        session.pull(from, |view| needs_resync(local, view, on_standby)),
    )
    .await
    .map_err(|_| SyncError::Transient("pull timed out".into()))?
}

/// Decides, from what the upstream says, whether the log can still bring `local` up to date.
/// A standby behind the watermark has not replayed as far as the replica (which followed the
/// primary meanwhile): it is waited for, and the history check says whether it forked.
pub(super) fn needs_resync(
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
