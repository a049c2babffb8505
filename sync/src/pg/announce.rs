//! The announcer: one session per primary that wakes every edge when the change log grows.
//!
//! # Why
//! The change-capture trigger used to `NOTIFY` in every writing transaction. Postgres
//! serializes the commits of notifying transactions on one cluster-wide lock held through
//! the WAL flush, which capped the whole service's write rate (docs/SYNC.md, *Waking up*).
//! Now the trigger only appends to `sync.changes`, and one session looks every
//! [`ACTIVE_TICK`] whether the horizon moved past changes (the edges pull only below the
//! horizon, so that is exactly when there is something new to pull) and then notifies
//! `sync_changes`: one notification per tick at most, from one session, whatever the write
//! rate. A look is one snapshot and, when the horizon moved, one probe of the `(txid, id)`
//! index.
//!
//! # Who announces
//! Every edge runs [`run`]; the one that holds a session-level advisory lock announces, the
//! others retry the lock every [`STANDBY_RETRY`]. Edges in the primary's region are
//! preferred: a far one looks a round trip away, so it competes later and hands over. If the announcer's machine dies, its
//! session ends, the lock is free and another edge takes over within seconds; meanwhile
//! edges fall back to their poll (`SYNC_POLL_INTERVAL_MS`). It always runs against the
//! primary (`DATABASE_URL`): notifications are not replicated to standbys.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::PgConnector;
use super::connect::CHANGES_CHANNEL;
use crate::error::SyncError;

/// Arbitrary, fixed key of the announcer's advisory lock ("announce").
const ANNOUNCER_LOCK_KEY: i64 = 0x616e_6e6f_756e_6365;

/// How often the announcer looks while the log is growing: the most it adds to the lag.
pub const ACTIVE_TICK: Duration = Duration::from_millis(2);

/// How often it looks once nothing was written for [`IDLE_AFTER`] (the first change after a
/// quiet spell waits at most this long for its announcement).
pub const IDLE_TICK: Duration = Duration::from_millis(20);
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// How often an edge that is not the announcer tries to become it.
const STANDBY_RETRY: Duration = Duration::from_secs(5);

/// An edge far from the primary announces late (each look is a round trip away): it first
/// competes after [`FAR_FIRST_TRY`], and holding the lock it lets go after [`FAR_HOLD`] and
/// waits [`FAR_RETRY`], so that an edge in the primary's region (trying every
/// [`STANDBY_RETRY`]) takes over; with none there, the far edge takes it back.
const FAR_FIRST_TRY: Duration = Duration::from_secs(30);
const FAR_HOLD: Duration = Duration::from_secs(60);
const FAR_RETRY: Duration = Duration::from_secs(15);

/// Runs until `shutdown`: competes for the announcer's lock and, holding it, announces.
/// `near`: this edge is in the primary's region (or regions are not configured).
pub async fn run(connector: PgConnector, near: bool, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    if !near {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(FAR_FIRST_TRY) => {}
        }
    }
    let hold = (!near).then_some(FAR_HOLD);
    loop {
        let outcome = tokio::select! {
            _ = &mut shutdown => return,
            outcome = announce_while_elected(&connector, hold) => outcome,
        };
        match outcome {
            Ok(()) => {}
            Err(e) => tracing::debug!(error = %e, "announcer: primary unreachable"),
        }
        let retry = if near { STANDBY_RETRY } else { FAR_RETRY };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(retry) => {}
        }
    }
}

/// Connects, and if this edge wins the lock, announces until the connection fails (or for
/// `hold`, then lets go of the lock by closing the session). Returns `Ok` when another edge
/// holds the lock.
async fn announce_while_elected(
    connector: &PgConnector,
    hold: Option<Duration>,
) -> Result<(), SyncError> {
    let elected_at = Instant::now();
    let client = connector.connect(None).await?;
    let elected: bool = client
        .query_one("select pg_try_advisory_lock($1)", &[&ANNOUNCER_LOCK_KEY])
        .await?
        .get(0);
    if !elected {
        return Ok(());
    }
    tracing::info!("this edge announces changes to every edge");
    let look = client
        .prepare(
            "select h::text::bigint,
                    exists (select 1 from sync.changes
                             where txid >= $1::bigint::text::xid8 and txid < h)
               from (select pg_snapshot_xmin(pg_current_snapshot()) h) s",
        )
        .await?;
    let notify = client
        .prepare(&format!("select pg_notify('{CHANGES_CHANNEL}', '')"))
        .await?;
    let mut horizon: i64 = client.query_one(&look, &[&i64::MAX]).await?.get(0);
    let mut last_move = Instant::now();
    loop {
        if hold.is_some_and(|hold| elected_at.elapsed() >= hold) {
            return Ok(());
        }
        let tick = if last_move.elapsed() < IDLE_AFTER {
            ACTIVE_TICK
        } else {
            IDLE_TICK
        };
        tokio::time::sleep(tick).await;
        let row = client.query_one(&look, &[&horizon]).await?;
        let (now, pullable): (i64, bool) = (row.get(0), row.get(1));
        if now != horizon {
            horizon = now;
            last_move = Instant::now();
        }
        if pullable {
            client.query_one(&notify, &[]).await?;
        }
    }
}
