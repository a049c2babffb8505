//! Operator endpoints, behind the `admin:sync` permission.
//!
//! `POST /api/admin/resync` starts a resync in the background and answers 202 at once;
//! reads go on from the current replica until the new one commits.
//!
//! # Cooldown
//! A resync reads the whole primary. One can be forced at most once per `RESYNC_COOLDOWN`
//! on an edge ([`crate::resync_gate::ResyncGate`]): while the forced one is pending or running, another
//! request joins it (202 with its status); once it is done, a request before the cooldown
//! has passed gets 429 with `Retry-After`. Back to back, they used to restart the copy each
//! time.

use std::time::Instant;

use auto_order_sync::SyncStatus;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::AppState;
use crate::auth::{ADMIN_SYNC, AuthUser};
use crate::error::ApiError;
use crate::resync_gate::Decision;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_resync))
        .routes(routes!(get_sync_status))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResyncAccepted {
    /// False when a resync was already pending or running (this request joined it).
    pub started: bool,
    pub status_url: &'static str,
    /// The engine's status when the request was answered.
    #[schema(value_type = Object)]
    pub status: SyncStatus,
}

/// Rebuild this edge's replica from a snapshot, in the background.
#[utoipa::path(post, path = "/admin/resync", tag = "admin",
    responses(
        (status = 202, description = "Resync started (or already pending or running)", body = ResyncAccepted),
        crate::error::responses::Unauthorized,
        (status = 403, description = "Missing permission admin:sync", body = crate::error::ErrorBody),
        (status = 429, description = "The last forced resync was less than RESYNC_COOLDOWN ago (Retry-After)", body = crate::error::ErrorBody),
    ))]
async fn start_resync(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<(StatusCode, Json<ResyncAccepted>), ApiError> {
    user.require(ADMIN_SYNC)?;
    let status = state.sync.status();
    let started =
        match state
            .resync_gate
            .decide(&status, state.config.resync_cooldown, Instant::now())
        {
            Decision::Start => state.sync.request_resync(),
            Decision::Join => false,
            Decision::TooSoon(retry_after) => {
                tracing::info!(user = %user.sub, "resync refused: cooldown");
                return Err(ApiError::TooManyRequests { retry_after });
            }
        };
    tracing::info!(user = %user.sub, started, "resync requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(ResyncAccepted {
            started,
            status_url: "/api/admin/sync",
            status: state.sync.status(),
        }),
    ))
}

/// The sync engine's status on this edge.
#[utoipa::path(get, path = "/admin/sync", tag = "admin",
    responses(
        (status = 200, description = "Sync status", body = Object),
        (status = 403, description = "Missing permission admin:sync", body = crate::error::ErrorBody),
    ))]
async fn get_sync_status(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<SyncStatus>, ApiError> {
    user.require(ADMIN_SYNC)?;
    Ok(Json(state.sync.status()))
}
