//! `GET /api/health`: liveness plus the replica's status.
//!
//! `status` is `ok` only while the engine streams, the primary answers and the replica is
//! fresh; otherwise `degraded`, with `problem` saying why (stopped, failing, forked and
//! converging, resyncing, stale, primary unreachable). The HTTP code is what Fly's check
//! acts on: 200 while the replica can serve reads (even with the primary down: guarantee 5),
//! 503 before the first snapshot, and 503 when the replica is more than `HEALTH_MAX_LAG_MS`
//! behind *by its own fault* while the primary answers (like LiteFS's max-lag: that edge
//! leaves rotation and the proxy sends its users to a fresher one). A horizon held on the
//! primary makes every edge equally stale and takes none out.
//!
//! Public, so the engine's last error is shown as a short class only; the full text is on
//! the admin status route. `GET /api/health/db` runs a query on each database: it needs the
//! admin permission, and its primary round trip uses a connection of its own, never one of
//! the write pool.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::AppState;
use crate::auth::{ADMIN_SYNC, AuthUser};
use crate::error::ApiError;

/// A replica staler than this is reported as degraded (still 200).
const STALE_AFTER: Duration = Duration::from_secs(10);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_health))
        .routes(routes!(get_health_db))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthView {
    pub status: &'static str,
    /// Why `status` is not `ok` (absent when it is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<&'static str>,
    pub version: &'static str,
    pub region: Option<String>,
    pub primary_region: Option<String>,
    pub replica: ReplicaView,
    #[schema(value_type = Object)]
    pub auth: crate::auth::JwksStatus,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplicaView {
    pub ready: bool,
    /// starting, connecting, resyncing, catching_up, streaming, retrying, stopped
    #[schema(value_type = String)]
    pub phase: auto_order_sync::handle::Phase,
    pub watermark: u64,
    pub primary_horizon: Option<u64>,
    pub primary_reachable: bool,
    /// Milliseconds since the last successful pull from the primary.
    pub last_pull_age_ms: Option<u64>,
    /// Milliseconds since the newest applied change was made on the primary.
    pub last_change_age_ms: Option<u64>,
    pub backlog: Option<u64>,
    /// Milliseconds since the replica last held every transaction the primary had begun.
    pub staleness_ms: Option<u64>,
    /// An open transaction on the primary holds the horizon (every edge waits for it; who
    /// holds it: `horizon_holder` of `GET /api/admin/sync`).
    pub horizon_held: bool,
    /// The class of the engine's last error: `fatal`, `primary_unreachable` or `transient`
    /// (the error itself: `GET /api/admin/sync`).
    pub last_error: Option<&'static str>,
    pub resyncs: u64,
    /// Resyncs failed in a row (each waits longer before the next).
    pub resync_failures: u32,
    /// Times the primary's history forked from the replica's (a failover lost commits);
    /// the edge converged to the new primary, so reads may have gone back in time (which
    /// txids: `last_fork` of `GET /api/admin/sync`).
    pub forks: u64,
    /// The primary has columns or tables this binary does not replicate: its schema is
    /// newer (which: `primary_schema_newer` of `GET /api/admin/sync`).
    pub primary_schema_newer: bool,
}

/// Liveness and replica status.
#[utoipa::path(get, path = "/health", tag = "health", security(()),
    responses(
        (status = 200, description = "Reads are served (status ok or degraded)", body = HealthView),
        (status = 503, description = "No replica yet (first sync running), or lagging beyond HEALTH_MAX_LAG_MS while the primary answers", body = HealthView),
    ))]
async fn get_health(State(state): State<AppState>) -> (StatusCode, Json<HealthView>) {
    let s = state.sync.status();
    let pull_age = s.since_last_pull();
    let problem = s.problem(STALE_AFTER);
    let status = if problem.is_none() { "ok" } else { "degraded" };
    let code = if s.ready && !s.lagging(state.config.health_max_lag) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let view = HealthView {
        status,
        problem,
        version: env!("CARGO_PKG_VERSION"),
        region: state.config.region.clone(),
        primary_region: state.config.primary_region.clone(),
        auth: state.auth.status(),
        replica: ReplicaView {
            ready: s.ready,
            phase: s.phase,
            watermark: s.watermark,
            primary_horizon: s.primary_horizon,
            primary_reachable: s.primary_reachable,
            last_pull_age_ms: pull_age.map(|d| d.as_millis() as u64),
            last_change_age_ms: s.last_change_age().map(|d| d.as_millis() as u64),
            backlog: s.backlog,
            staleness_ms: s.staleness().map(|d| d.as_millis() as u64),
            horizon_held: s.horizon_held,
            last_error: error_class(&s),
            resyncs: s.resyncs,
            resync_failures: s.resync_failures,
            forks: s.forks,
            primary_schema_newer: !s.primary_schema_newer.is_empty(),
        },
    };
    (code, Json(view))
}

/// A short, public word for the engine's last error (its text can name hosts, roles or
/// SQL).
fn error_class(s: &auto_order_sync::SyncStatus) -> Option<&'static str> {
    s.last_error.as_ref()?;
    Some(if s.last_error_fatal {
        "fatal"
    } else if !s.primary_reachable {
        "primary_unreachable"
    } else {
        "transient"
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DbHealthView {
    pub status: &'static str,
    pub replica: CheckView,
    pub primary: CheckView,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckView {
    pub ok: bool,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

/// A query against the replica and the primary (permission `admin:sync`). 200 while the
/// replica answers.
#[utoipa::path(get, path = "/health/db", tag = "health",
    responses(
        (status = 200, description = "The replica answers", body = DbHealthView),
        crate::error::responses::Unauthorized,
        (status = 403, description = "Missing permission admin:sync", body = crate::error::ErrorBody),
        (status = 503, description = "The replica does not answer", body = DbHealthView),
    ))]
async fn get_health_db(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<(StatusCode, Json<DbHealthView>), ApiError> {
    user.require(ADMIN_SYNC)?;
    let started = std::time::Instant::now();
    let readers = state.sync.replica().readers().clone();
    let replica_ok = tokio::task::spawn_blocking(move || {
        readers
            .get()
            .ok()
            .and_then(|c| c.query_row("select 1", [], |r| r.get::<_, i64>(0)).ok())
            .is_some()
    })
    .await
    .unwrap_or(false);
    let replica = CheckView {
        ok: replica_ok,
        latency_ms: started.elapsed().as_millis() as u64,
        error: (!replica_ok).then_some("replica query failed"),
    };

    let started = std::time::Instant::now();
    let primary_ok = state.store.primary().probe().await;
    let primary = CheckView {
        ok: primary_ok,
        latency_ms: started.elapsed().as_millis() as u64,
        error: (!primary_ok).then_some("primary unreachable"),
    };
    let status = if replica_ok && primary_ok {
        "ok"
    } else {
        "degraded"
    };
    let code = if replica_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((
        code,
        Json(DbHealthView {
            status,
            replica,
            primary,
        }),
    ))
}
