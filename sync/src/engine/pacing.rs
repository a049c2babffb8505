//! How long the engine waits after a step: at once while catching up, the poll interval
//! when caught up, a short doubling pause while an open transaction holds the horizon, and a
//! doubling back-off after errors (fatal ones slower). Errors are logged here, once per
//! distinct message, and "recovered" once after them.

use std::time::Duration;

use super::Step;
use super::config::{EngineConfig, HELD_BACK_MAX_PAUSE};
use crate::error::SyncError;

pub(crate) struct Pacing {
    /// The next pause after a transient error.
    backoff: Duration,
    /// The next pause while the horizon is held.
    held_back_pause: Duration,
    /// The last error logged, so that a repeated one is not logged again.
    last_error: Option<String>,
}

impl Pacing {
    pub fn new(config: &EngineConfig) -> Pacing {
        Pacing {
            backoff: config.min_backoff,
            held_back_pause: config.held_back_retry,
            last_error: None,
        }
    }

    /// The pause after a step that did its work (`None`: go on at once). `poll` is the
    /// upstream's poll interval for the current connection.
    pub fn after(
        &mut self,
        step: &Step,
        config: &EngineConfig,
        poll: Duration,
    ) -> Option<Duration> {
        let Step::Applied {
            caught_up: true,
            held_back,
            ..
        } = step
        else {
            return None;
        };
        self.backoff = config.min_backoff;
        if self.last_error.take().is_some() {
            tracing::info!("sync recovered");
        }
        let Some(progressed) = held_back else {
            self.held_back_pause = config.held_back_retry;
            return Some(poll);
        };
        // The transaction holding the horizon may end without a NOTIFY: look again soon,
        // backing off while the horizon does not move.
        if *progressed {
            self.held_back_pause = config.held_back_retry;
        }
        let longest = config.poll_interval.min(HELD_BACK_MAX_PAUSE);
        let pause = self.held_back_pause.min(longest);
        self.held_back_pause = (self.held_back_pause * 2).min(longest);
        Some(pause)
    }

    /// The back-off after a failed step; logs the error unless it is the one logged last.
    pub fn after_error(&mut self, err: &SyncError, config: &EngineConfig) -> Duration {
        let pause = if err.is_fatal() {
            config.fatal_retry
        } else {
            self.backoff
        };
        self.backoff = (self.backoff * 2).min(config.max_backoff);
        let message = err.to_string();
        if self.last_error.as_deref() != Some(message.as_str()) {
            if err.is_fatal() {
                tracing::error!(error = %message, "sync stopped: fatal error, retrying slowly");
            } else {
                tracing::warn!(error = %message, "sync failed, retrying with backoff");
            }
        }
        self.last_error = Some(message);
        pause
    }
}
