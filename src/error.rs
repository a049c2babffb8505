//! One error type for every handler, and the one JSON error body clients see:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`.
//!
//! 5xx responses carry a generic message; the internal cause is logged once, here, and never
//! sent to the client.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is well-formed JSON but a value is wrong (422), naming the field.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The request cannot be read at all: malformed JSON, wrong content type, bad query (400).
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    /// The path exists, the method does not (405; axum adds `Allow`).
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large")]
    PayloadTooLarge,
    /// The caller (an IP or a user) sent more requests than the rate limit allows (429).
    #[error("too many requests; retry later")]
    TooManyRequests { retry_after: Duration },
    #[error("{message}")]
    Unavailable {
        message: &'static str,
        retry_after: Duration,
    },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    /// Machine-readable: `invalid_field`, `bad_request`, `not_found`, `method_not_allowed`, `conflict`,
    /// `payload_too_large`, `rate_limited`, `unavailable`, `invalid_token`, `insufficient_scope`, `internal`.
    pub code: &'a str,
    /// A short human-readable reason.
    pub message: String,
    /// The offending field, for `invalid_field`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The replica has not finished its first sync: data routes cannot answer yet.
    pub fn replica_not_ready() -> Self {
        ApiError::Unavailable {
            message: "this edge is loading its replica; retry shortly",
            retry_after: Duration::from_secs(2),
        }
    }

    /// The primary cannot take writes right now.
    pub fn primary_unavailable() -> Self {
        ApiError::Unavailable {
            message: "the primary database is unreachable; retry shortly",
            retry_after: Duration::from_secs(5),
        }
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Auth(e) => e.status_code(),
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid { .. } => "invalid_field",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Auth(e) => e.code(),
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Auth(e) => e.into_response(),
            ApiError::Internal(ref cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed");
                body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".into(),
                    None,
                )
            }
            ApiError::Unavailable {
                message,
                retry_after,
            } => {
                let response = body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    message.into(),
                    None,
                );
                with_retry_after(response, retry_after)
            }
            ApiError::TooManyRequests { retry_after } => {
                let response = body(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests; retry later".into(),
                    None,
                );
                with_retry_after(response, retry_after)
            }
            ref other => {
                let field = match other {
                    ApiError::Invalid { field, .. } => Some(field.as_str()),
                    _ => None,
                };
                let message = match other {
                    ApiError::Invalid { message, .. } => message.clone(),
                    e => e.to_string(),
                };
                body(other.status_code(), other.code(), message, field)
            }
        }
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
fn with_retry_after(mut response: Response, retry_after: Duration) -> Response {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    response
}

fn body(status: StatusCode, code: &str, message: String, field: Option<&str>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message,
            field,
        },
    };
    (status, Json(body)).into_response()
}

/// The error answers routes share, for their OpenAPI `responses(...)`: each route lists the
/// ones it can give, with the same wording everywhere. Never constructed: only their OpenAPI
/// descriptions are used.
#[allow(dead_code)]
pub mod responses {
    use super::ErrorBody;

    #[derive(utoipa::IntoResponses)]
    #[response(status = 400, description = "The id is not a UUID")]
    pub struct BadId(ErrorBody<'static>);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 401, description = "No or invalid token")]
    pub struct Unauthorized(ErrorBody<'static>);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 413, description = "Body too large")]
    pub struct TooLarge(ErrorBody<'static>);

    /// A read before the first sync.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 503, description = "Replica not loaded yet (Retry-After)")]
    pub struct ReplicaNotReady(ErrorBody<'static>);

    /// A write (or a read the primary must answer) while the primary is away.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 503, description = "Primary unreachable (Retry-After)")]
    pub struct PrimaryUnavailable(ErrorBody<'static>);
}
