//! `GET /api/health`: liveness plus the replica's status.
//!
//! 200 while the replica can serve reads (even if the primary is down: `status` says
//! `degraded` and how stale), 503 before the first snapshot has been loaded. Public, so
//! the engine's last error is shown as a short class only; the full text is on the admin
//! status route.
//!
//! `GET /api/health/db` runs a query on each database: it needs the admin permission, and
//! its primary round trip uses a connection of its own, never one of the write pool.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::auth::{ADMIN_SYNC, AuthUser};
use crate::error::ApiError;

/// A replica whose last successful pull is older than this is reported as degraded.
const STALE_AFTER: Duration = Duration::from_secs(10);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_health))
        .routes(routes!(get_health_db))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthView {
    pub status: &'static str,
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
    /// The class of the engine's last error: `fatal`, `primary_unreachable` or `transient`
    /// (the error itself: `GET /api/admin/sync`).
    pub last_error: Option<&'static str>,
    pub resyncs: u64,
}

/// Liveness and replica status.
#[utoipa::path(get, path = "/health", tag = "health", security(()),
    responses(
        (status = 200, description = "Reads are served (status ok or degraded)", body = HealthView),
        (status = 503, description = "No replica yet (first sync running)", body = HealthView),
    ))]
async fn get_health(State(state): State<AppState>) -> (StatusCode, Json<HealthView>) {
    let s = state.sync.status();
    let pull_age = s.since_last_pull();
    let fresh = pull_age.is_some_and(|age| age < STALE_AFTER);
    let status = if s.ready && s.primary_reachable && fresh {
        "ok"
    } else {
        "degraded"
    };
    let code = if s.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let view = HealthView {
        status,
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
            last_error: error_class(&s),
            resyncs: s.resyncs,
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
        (status = 401, description = "No or invalid token", body = crate::error::ErrorBody),
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
    let primary_ok = state.primary.probe().await;
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
