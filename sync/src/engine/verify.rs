//! The history check step (see "Forks" in the engine's doc): ask the upstream whether it
//! holds the history the replica applied, and turn to a resync when it does not.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::state::{State, Stream, Verify};
use super::stream::needs_resync;
use super::upstream::Session;
use super::{Applier, Engine, Outcome, Step, Upstream};
use crate::change::{ForkEvidence, HistoryCheck};
use crate::error::SyncError;
use crate::handle::{ForkInfo, ResyncReason};
use crate::source::Upstream as Server;

impl<U: Upstream, A: Applier> Engine<U, A> {
    /// Checks the applied history against the upstream's log.
    pub(super) async fn check_history(
        &mut self,
        mut stream: Box<Stream<U::Session>>,
    ) -> Outcome<U::Session> {
        let scope = stream.verify.take().unwrap_or(Verify::Recent);
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
        let windows = self.applier.history(since).await?;
        let checked = tokio::time::timeout(
            self.config.pull_timeout,
            stream.session.check_history(&windows),
        )
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
        if let Some(reason) = needs_resync(&stream.cursor, &view, true) {
            tracing::warn!(
                ?reason,
                "the change log cannot bring this replica up to date"
            );
            let next = State::Resync {
                session: stream.session,
                reason,
            };
            return Ok((next, Step::Connected));
        }
        let went_back = stream.cursor.history_went_back(&view);
        if went_back && self.upstream.connected_to() == Server::Standby {
            // A standby that has not replayed as far as the replica: look again in a
            // second, in full, once it may have.
            self.full_check_pending = true;
            self.last_verified = Instant::now()
                .checked_sub(self.config.verify_interval)
                .unwrap_or_else(Instant::now)
                + Duration::from_secs(1);
            return Ok((State::Streaming(stream), Step::Verified { windows: 0 }));
        }
        if scope == Verify::All {
            self.full_check_pending = false;
        }
        match verdict {
            HistoryCheck::Forked(evidence) => Ok(self.forked(stream.session, Some(evidence))),
            HistoryCheck::Same { .. } if went_back => Ok(self.forked(stream.session, None)),
            HistoryCheck::Same { checked } => {
                if timeline_changed && scope == Verify::Recent {
                    // A promotion under a live connection (a proxy that kept it): check all.
                    tracing::info!(?timeline, "the primary's timeline changed");
                    stream.verify = Some(Verify::All);
                }
                tracing::debug!(
                    windows = checked,
                    ?scope,
                    "applied history matches the primary"
                );
                Ok((
                    State::Streaming(stream),
                    Step::Verified { windows: checked },
                ))
            }
        }
    }

    /// Records a fork and turns to converging on the new history.
    pub(super) fn forked(
        &mut self,
        session: U::Session,
        evidence: Option<ForkEvidence>,
    ) -> (State<U::Session>, Step) {
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
        let next = State::Resync {
            session,
            reason: ResyncReason::Forked,
        };
        (next, Step::Forked)
    }
}
