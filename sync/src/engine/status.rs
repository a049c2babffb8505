//! What the steps tell the rest of the process besides the watermark: the staleness's base
//! (see "Staleness" in the engine's doc), who holds the horizon, what the primary's schema
//! has that this binary does not replicate.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};

use super::upstream::Session;
use super::{Applier, Engine, Upstream};
use crate::change::HorizonHolder;

/// Pulls remembered for the staleness; older ones are thinned out.
const OBSERVATIONS: usize = 256;

impl<U: Upstream, A: Applier> Engine<U, A> {
    /// Notes, once per change, what the primary has that this binary does not replicate.
    pub(super) fn note_schema(&self, newer: Vec<String>) {
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
    pub(super) fn observe(
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
    pub(super) async fn look_up_holder(
        &mut self,
        session: &mut U::Session,
        horizon: u64,
        fresh_as_of: Option<chrono::DateTime<Utc>>,
    ) -> Option<Option<HorizonHolder>> {
        let held_for = fresh_as_of.map_or(Duration::MAX, |t| {
            (Utc::now() - t).to_std().unwrap_or_default()
        });
        let after = self.config.holder_lookup_after;
        if held_for < after || self.last_holder_lookup.is_some_and(|t| t.elapsed() < after) {
            return None;
        }
        self.last_holder_lookup = Some(Instant::now());
        let lookup = session.horizon_holder(horizon);
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
}

pub(super) fn micros(us: Option<i64>) -> Option<chrono::DateTime<Utc>> {
    us.and_then(|us| Utc.timestamp_micros(us).single())
}
