//! The cooldown of forced resyncs on this edge: at most one per `RESYNC_COOLDOWN`; while
//! one is pending or running, another request joins it (see `api::admin`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use auto_order_sync::SyncStatus;
use auto_order_sync::handle::Phase;

/// This edge's last forced resync, for the cooldown (see the module docs).
#[derive(Default)]
pub struct ResyncGate {
    last: Mutex<Option<Forced>>,
}

struct Forced {
    at: Instant,
    /// The engine's resync count when it was asked: a larger one means it is done.
    resyncs_before: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Start,
    /// One is pending or running: join it.
    Join,
    TooSoon(Duration),
}

impl ResyncGate {
    pub fn decide(&self, status: &SyncStatus, cooldown: Duration, now: Instant) -> Decision {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        // The count first: the engine counts a resync before it leaves the resyncing phase,
        // and a forced one that is done must not be "joined".
        if let Some(forced) = &*last {
            let since = now.saturating_duration_since(forced.at);
            if since < cooldown {
                return if status.resyncs > forced.resyncs_before {
                    Decision::TooSoon(cooldown - since)
                } else {
                    Decision::Join
                };
            }
        }
        if status.phase == Phase::Resyncing {
            // One the engine started by itself (a pruned history, a fork): join it.
            return Decision::Join;
        }
        *last = Some(Forced {
            at: now,
            resyncs_before: status.resyncs,
        });
        Decision::Start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(300);

    fn status(phase: Phase, resyncs: u64) -> SyncStatus {
        SyncStatus {
            phase,
            resyncs,
            ..Default::default()
        }
    }

    #[test]
    fn a_forced_resync_is_joined_while_it_runs_and_refused_until_the_cooldown_passes() {
        let gate = ResyncGate::default();
        let t0 = Instant::now();

        let first = gate.decide(&status(Phase::Streaming, 1), COOLDOWN, t0);
        let pending = gate.decide(&status(Phase::Streaming, 1), COOLDOWN, t0);
        let running = gate.decide(&status(Phase::Resyncing, 1), COOLDOWN, t0);
        let counted = gate.decide(&status(Phase::Resyncing, 2), COOLDOWN, t0);
        let done = gate.decide(
            &status(Phase::Streaming, 2),
            COOLDOWN,
            t0 + Duration::from_secs(60),
        );
        let later = gate.decide(&status(Phase::Streaming, 2), COOLDOWN, t0 + COOLDOWN);

        assert_eq!(first, Decision::Start);
        assert_eq!(pending, Decision::Join);
        assert_eq!(running, Decision::Join);
        assert_eq!(
            counted,
            Decision::TooSoon(COOLDOWN),
            "counted, still in its phase"
        );
        assert_eq!(done, Decision::TooSoon(Duration::from_secs(240)));
        assert_eq!(later, Decision::Start);
    }

    #[test]
    fn a_resync_the_engine_started_by_itself_is_joined() {
        let gate = ResyncGate::default();
        let decision = gate.decide(&status(Phase::Resyncing, 3), COOLDOWN, Instant::now());
        assert_eq!(decision, Decision::Join);
    }
}
