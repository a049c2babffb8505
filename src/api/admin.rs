//! Operator endpoints, behind the `admin:sync` permission.
//!
//! `POST /api/admin/resync` starts a resync in the background and answers 202 at once;
//! reads go on from the current replica until the new one commits.

use auto_order_sync::SyncStatus;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;
use crate::auth::{ADMIN_SYNC, AuthUser};
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/resync", post(start_resync))
        .route("/admin/sync", get(get_sync_status))
}

#[derive(Debug, Serialize)]
pub struct ResyncAccepted {
    /// False when a resync was already pending (this request joined it).
    pub started: bool,
    pub status_url: &'static str,
}

async fn start_resync(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<(StatusCode, Json<ResyncAccepted>), ApiError> {
    user.require(ADMIN_SYNC)?;
    let started = state.sync.request_resync();
    tracing::info!(user = %user.sub, started, "resync requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(ResyncAccepted {
            started,
            status_url: "/api/admin/sync",
        }),
    ))
}

async fn get_sync_status(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<SyncStatus>, ApiError> {
    user.require(ADMIN_SYNC)?;
    Ok(Json(state.sync.status()))
}
