//! `AuthError`: why a request is not authenticated or not allowed, and its HTTP answer.
//!
//! Answers follow RFC 6750 §3: a missing token gets `WWW-Authenticate: Bearer` with no error
//! code; a bad token `error="invalid_token"` (401); a missing permission
//! `error="insufficient_scope"` (403). The body is the API's JSON error envelope
//! `{"error":{"code":"…","message":"…"}}` with a short, fixed reason: never the token, never
//! anything about keys beyond "unknown signing key".

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Seconds a client is told to wait when no key set is available yet.
const RETRY_AFTER_SECONDS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header (none, another scheme such as Basic, or empty).
    /// `dev_issuer`: this instance runs the local dev issuer, so the answer says how to get
    /// a token from it.
    #[error("missing bearer token")]
    MissingToken { dev_issuer: bool },
    /// The token was present but is not acceptable; the reason is a fixed, short phrase.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// The token is valid but lacks the permission the route needs.
    #[error("missing permission {0}")]
    InsufficientScope(String),
    /// No key set could ever be loaded (issuer down and nothing persisted).
    #[error("authentication temporarily unavailable")]
    Unavailable,
}

impl AuthError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::MissingToken { .. } | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `code` of the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken { .. } => "unauthorized",
            Self::InvalidToken(_) => "invalid_token",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::Unavailable => "auth_unavailable",
        }
    }

    fn www_authenticate(&self) -> Option<String> {
        match self {
            Self::MissingToken { .. } => Some("Bearer".to_owned()),
            // Reasons are fixed ASCII phrases without quotes or backslashes (RFC 6750 §3).
            Self::InvalidToken(reason) => Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{reason}\""
            )),
            Self::InsufficientScope(permission) => Some(format!(
                "Bearer error=\"insufficient_scope\", scope=\"{permission}\""
            )),
            Self::Unavailable => None,
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let message = match &self {
            Self::MissingToken { dev_issuer: false } => {
                "missing bearer token: send the header `Authorization: Bearer <token>` with an \
                 access token from the API's identity provider"
                    .to_owned()
            }
            Self::MissingToken { dev_issuer: true } => {
                "missing bearer token: send the header `Authorization: Bearer <token>`; this \
                 instance runs the local dev issuer: `auto-order token --sub <user>` prints a \
                 token (or sign in on the demo page)"
                    .to_owned()
            }
            Self::InvalidToken(reason) => format!("invalid token: {reason}"),
            Self::InsufficientScope(permission) => format!(
                "missing permission {permission}: the token's `permissions` must include it \
                 (Auth0: grant it to the user or their role on this API; local dev issuer: \
                 `auto-order token --sub <user> --permissions {permission}`)"
            ),
            Self::Unavailable => "authentication is temporarily unavailable".to_owned(),
        };
        let body = json!({ "error": { "code": self.code(), "message": message } });
        let mut response = (self.status_code(), Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(value) = self
            .www_authenticate()
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if matches!(self, Self::Unavailable) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}
