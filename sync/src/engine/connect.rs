//! The connect step: open a session on whichever server is due, note what its schema has
//! that this binary does not replicate, and decide from the replica's cursor whether to
//! stream (after a full history check) or resync first.

use super::state::{State, Stream, Verify};
use super::upstream::Connected;
use super::{Applier, Engine, Outcome, Step, Upstream};
use crate::handle::{Phase, ResyncReason};

impl<U: Upstream, A: Applier> Engine<U, A> {
    pub(super) async fn connect(&mut self) -> Outcome<U::Session> {
        self.shared.update(|s| s.phase = Phase::Connecting);
        let connected = self.upstream.connect(self.shared.wake.clone()).await;
        let (upstream, note) = (
            self.upstream.connected_to(),
            self.upstream.note().map(str::to_owned),
        );
        self.shared.update(|s| {
            s.upstream = upstream;
            s.upstream_note = note;
        });
        let Connected {
            session,
            schema_newer,
        } = connected?;
        self.note_schema(schema_newer);
        let cursor = self.applier.state().await?;
        let backfill = self.applier.pending_backfill().await?;
        let next = match cursor {
            None => State::Resync {
                session,
                reason: ResyncReason::EmptyReplica,
            },
            Some(_) if !backfill.is_empty() => {
                tracing::info!(columns = ?backfill, "replica columns to fill from the primary");
                State::Resync {
                    session,
                    reason: ResyncReason::SchemaUpgrade,
                }
            }
            // Whatever happened while disconnected (a failover, a restore), the history is
            // checked before the cursor is trusted again.
            Some(cursor) => Stream::state(session, cursor, Some(Verify::All)),
        };
        self.shared.update(|s| s.primary_reachable = true);
        tracing::info!(?upstream, "connected");
        Ok((next, Step::Connected))
    }
}
