//! Where the engine pulls from: the primary, or a hot standby in the edge's own region
//! (`SYNC_DATABASE_URL`) with the primary as the fallback.
//!
//! # Why a standby
//! Streaming replication is Postgres's own fan-out: pulling from a standby in its region
//! costs the primary nothing per edge, and a far edge's lag is the standby's (about half a
//! round trip to the primary) plus a local poll. The protocol holds unchanged on a standby:
//! its snapshots give the horizon, and a change is pulled once the standby has replayed its
//! transaction's end. A standby cannot `LISTEN` (notifications are not replicated), so the
//! engine polls it every `standby_poll_interval`: a round trip inside the region.
//!
//! # Falling back
//! - The standby does not answer: the engine connects to the primary at once, and tries the
//!   standby again after [`FALLBACK_HOLD`].
//! - The standby lags: every `standby_lag_check` the engine reads the primary's horizon `P`
//!   (one query on a connection of its own); if the replica has not passed `P` within
//!   `max_standby_lag`, the standby is behind and the engine pulls from the primary for
//!   [`FALLBACK_HOLD`]. A horizon held on the primary holds `P` back too, so it never counts
//!   as a lagging standby.
//!
//! Either is said in the status (`upstream`, `upstream_note`). Both servers have one history,
//! so switching keeps the cursor (the history check at connect passes); a standby behind the
//! replica's watermark is simply waited for.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_postgres::Client;

pub use crate::change::Upstream;
use crate::engine::upstream::{self, Connected};
use crate::error::SyncError;
use crate::pg::PgConnector;
use crate::pg::session::PgSession;

/// How long the engine stays on the primary after the standby failed it.
pub const FALLBACK_HOLD: Duration = Duration::from_secs(60);

/// The settings of a standby source.
#[derive(Debug, Clone)]
pub struct StandbySettings {
    /// Pulls without a notification, on a standby: how often to look.
    pub poll_interval: Duration,
    /// How often the primary's horizon is read to measure the standby's lag.
    pub lag_check: Duration,
    /// A standby whose replay stays behind the primary's horizon this long is bypassed.
    pub max_lag: Duration,
}

impl Default for StandbySettings {
    fn default() -> Self {
        StandbySettings {
            poll_interval: Duration::from_millis(20),
            lag_check: Duration::from_secs(5),
            max_lag: Duration::from_secs(10),
        }
    }
}

pub struct Source {
    /// Pulls and snapshots come from here (the primary, or the standby).
    upstream: PgConnector,
    /// The primary, when `upstream` is a standby.
    primary: Option<PgConnector>,
    settings: StandbySettings,
    /// Pulling from the primary instead of the standby until then.
    fallback_until: Option<Instant>,
    /// Why the standby is bypassed, while it is.
    note: Option<String>,
    /// What the current connection goes to.
    connected_to: Upstream,
    /// The lag probe in flight, on a task of its own (a slow or unreachable primary must
    /// not hold the pulls from the standby), and its connection to the primary, kept.
    probe: Option<tokio::task::JoinHandle<Result<(u64, Instant), SyncError>>>,
    probe_client: Arc<tokio::sync::Mutex<Option<Client>>>,
    /// The primary's horizon, and when it was read, while the replica has not passed it.
    probed: Option<(u64, Instant)>,
    last_probe: Option<Instant>,
}

impl Source {
    /// Pulls from `primary` alone.
    pub fn primary(primary: PgConnector) -> Source {
        Source {
            upstream: primary,
            primary: None,
            settings: StandbySettings::default(),
            fallback_until: None,
            note: None,
            connected_to: Upstream::Primary,
            probe: None,
            probe_client: Default::default(),
            probed: None,
            last_probe: None,
        }
    }

    /// Pulls from `standby`, falling back to `primary`.
    pub fn standby(
        standby: PgConnector,
        primary: PgConnector,
        settings: StandbySettings,
    ) -> Source {
        Source {
            primary: Some(primary),
            settings,
            ..Source::primary(standby)
        }
    }

    /// This source's upstream as a standby of `primary`.
    pub fn into_standby(self, primary: PgConnector, settings: StandbySettings) -> Source {
        Source::standby(self.upstream, primary, settings)
    }

    pub fn connected_to(&self) -> Upstream {
        self.connected_to
    }

    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// The poll interval for the current connection (a standby gets no notifications).
    pub fn poll_interval(&self, usual: Duration) -> Duration {
        match self.connected_to {
            Upstream::Standby => self.settings.poll_interval.min(usual),
            Upstream::Primary => usual,
        }
    }

    /// Connects to the standby (unless bypassed) or the primary. `wake` is notified on a
    /// primary's `NOTIFY` and when the connection closes.
    pub async fn connect(&mut self, wake: Arc<Notify>) -> Result<Client, SyncError> {
        let Some(primary) = self.primary.clone() else {
            self.connected_to = Upstream::Primary;
            return self.upstream.connect(Some(wake)).await;
        };
        if self.fallback_until.is_some_and(|t| Instant::now() >= t) {
            self.fallback_until = None;
            self.note = None;
        }
        if self.fallback_until.is_none() {
            // No LISTEN on a standby: it is polled; `wake` still hears the connection close.
            match self.upstream.connect_watching(wake.clone()).await {
                Ok(client) => {
                    self.connected_to = Upstream::Standby;
                    self.probed = None;
                    return Ok(client);
                }
                Err(e) => self.bypass(format!("standby unreachable: {e}")),
            }
        }
        self.connected_to = Upstream::Primary;
        primary.connect(Some(wake)).await
    }

    /// Whether the standby is due to be tried again (the engine reconnects).
    pub fn standby_due(&self) -> bool {
        self.connected_to == Upstream::Primary
            && self.fallback_until.is_some_and(|t| Instant::now() >= t)
    }

    /// Measures the standby's lag against the primary's horizon (read at most every
    /// `lag_check`, in the background); returns true when the standby must be bypassed now.
    pub async fn standby_lags(&mut self, watermark: u64) -> bool {
        if self.connected_to != Upstream::Standby {
            return false;
        }
        if self.probe.as_ref().is_some_and(|p| p.is_finished())
            && let Some(done) = self.probe.take()
        {
            match done.await {
                Ok(Ok((horizon, at))) if horizon > watermark && self.probed.is_none() => {
                    self.probed = Some((horizon, at));
                }
                // Caught up with it, or the primary is away: the standby is all there is,
                // and it cannot lag it.
                _ => {}
            }
        }
        if let Some((horizon, at)) = self.probed {
            if watermark >= horizon {
                self.probed = None;
            } else if at.elapsed() > self.settings.max_lag {
                let lag = at.elapsed();
                self.bypass(format!(
                    "standby lags: the primary's horizon {horizon} not replayed after {} ms",
                    lag.as_millis()
                ));
                return true;
            }
        }
        let due = self
            .last_probe
            .is_none_or(|t| t.elapsed() >= self.settings.lag_check);
        if self.probed.is_none()
            && self.probe.is_none()
            && due
            && let Some(primary) = self.primary.clone()
        {
            self.last_probe = Some(Instant::now());
            let client = self.probe_client.clone();
            self.probe = Some(tokio::spawn(primary_horizon(primary, client)));
        }
        false
    }

    fn bypass(&mut self, why: String) {
        tracing::warn!(reason = %why, "pulling from the primary instead of the standby for a while");
        self.fallback_until = Some(Instant::now() + FALLBACK_HOLD);
        self.note = Some(why);
        self.probed = None;
    }
}

/// The engine's view of a source: connecting opens a [`PgSession`] on whichever server is
/// due.
impl upstream::Upstream for Source {
    type Session = PgSession;

    async fn connect(&mut self, wake: Arc<Notify>) -> Result<Connected<PgSession>, SyncError> {
        let client = Source::connect(self, wake).await?;
        PgSession::start(client).await
    }

    fn connected_to(&self) -> Upstream {
        Source::connected_to(self)
    }

    fn note(&self) -> Option<&str> {
        Source::note(self)
    }

    fn poll_interval(&self, usual: Duration) -> Duration {
        Source::poll_interval(self, usual)
    }

    fn reconnect_due(&self) -> bool {
        self.standby_due()
    }

    async fn lags(&mut self, watermark: u64) -> bool {
        self.standby_lags(watermark).await
    }
}

/// The primary's horizon now, and when it was read, on the probe's kept connection.
async fn primary_horizon(
    primary: PgConnector,
    kept: Arc<tokio::sync::Mutex<Option<Client>>>,
) -> Result<(u64, Instant), SyncError> {
    let mut kept = kept.lock().await;
    let client = match kept.take() {
        Some(client) if !client.is_closed() => kept.insert(client),
        _ => {
            let client = tokio::time::timeout(Duration::from_secs(5), primary.connect(None))
                .await
                .map_err(|_| SyncError::Transient("primary connect timed out".into()))??;
            kept.insert(client)
        }
    };
    let row = tokio::time::timeout(
        Duration::from_secs(5),
        client.query_one(
            "select pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
            &[],
        ),
    )
    .await
    .map_err(|_| SyncError::Transient("primary horizon timed out".into()))??;
    Ok((row.get::<_, i64>(0) as u64, Instant::now()))
}
