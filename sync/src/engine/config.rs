//! The engine's tuning ([`EngineConfig`]) and the constants behind it.

use std::time::Duration;

/// The longest pause between looks while an open transaction holds the horizon, whatever the
/// fallback poll: when it ends (perhaps without a NOTIFY) the held-back changes should follow
/// within a second, and a look is one round trip.
pub const HELD_BACK_MAX_PAUSE: Duration = Duration::from_secs(1);

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
