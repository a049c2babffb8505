//! The resync step: copy a snapshot of the upstream into the replica in one transaction
//! (the copy and the load run side by side, joined by a bounded channel), then stream from
//! the snapshot's cursor. A resync that keeps failing waits longer each time.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use chrono::Utc;
use tokio::sync::mpsc;

use super::config::EngineConfig;
use super::state::Stream;
use super::upstream::Session;
use super::{Applier, Engine, Outcome, Step, Upstream};
use crate::change::ReplicaState;
use crate::handle::{ChangeEvent, Phase, ResyncInfo, ResyncReason, Timing};

impl<U: Upstream, A: Applier> Engine<U, A> {
    pub(super) async fn resync(
        &mut self,
        session: U::Session,
        reason: ResyncReason,
    ) -> Outcome<U::Session> {
        // A trace of its own: the snapshot copied from the upstream and loaded.
        let span =
            tracing::debug_span!("sync.resync", reason = ?reason, rows = tracing::field::Empty);
        self.resync_in(session, reason).instrument(span).await
    }

    async fn resync_in(
        &mut self,
        mut session: U::Session,
        reason: ResyncReason,
    ) -> Outcome<U::Session> {
        tracing::info!(?reason, "resync started");
        self.shared.update(|s| s.phase = Phase::Resyncing);
        let started = Instant::now();
        let (sink, items) = mpsc::channel(8);
        let forked = reason == ResyncReason::Forked;
        let load = self.applier.load(items, forked);
        // An empty replica is loaded in bulk, which takes rows in any order (see
        // `copy_snapshot`); any other is merged, range by range in key order.
        let key_order = reason != ResyncReason::EmptyReplica;
        let (copied, loaded) = tokio::join!(session.snapshot(sink, key_order), load);
        let rows = copied?;
        let state = loaded?;

        self.last_verified = Instant::now();
        self.resync_failures = 0;
        self.observations.clear();
        tracing::Span::current().record("rows", rows);
        self.shared.timed(Timing::Resync(started.elapsed()));
        self.publish_resync(&state, reason, rows, started.elapsed());
        tracing::info!(
            ?reason,
            rows,
            duration_ms = started.elapsed().as_millis() as u64,
            "resync finished"
        );
        // The history starts at the snapshot, which this connection just read: no check.
        let next = Stream::state(session, state, None);
        Ok((next, Step::Resynced { reason, rows }))
    }

    /// Counts a failed resync and returns the pause before the next try.
    pub(super) fn resync_failed(&mut self) -> Duration {
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
}

/// The pause after `failures` resyncs failed in a row: doubling from `resync_backoff` up to
/// `max_resync_backoff`.
pub(super) fn resync_pause(config: &EngineConfig, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (config.resync_backoff * 2u32.pow(doublings)).min(config.max_resync_backoff)
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
