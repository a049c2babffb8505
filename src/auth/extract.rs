//! `AuthUser`: the authenticated caller, as an axum extractor, and its permission check.
//!
//! Handlers take `user: AuthUser` (any state `S` with `Authenticator: FromRef<S>`); a request
//! without a valid bearer token never reaches them. Admin handlers add
//! `user.require(ADMIN_SYNC)?`. Ownership (a user sees only rows whose owner is their `sub`)
//! is the API's job, not this module's.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Serialize;

use super::Authenticator;
use super::error::AuthError;

/// Permission needed to force a replica resync (`POST /api/admin/resync`).
pub const ADMIN_SYNC: &str = "admin:sync";

/// The caller of a request, from a verified access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthUser {
    /// The token's `sub`: the owner of the caller's rows.
    pub sub: String,
    /// Auth0 RBAC `permissions` claim ("Add Permissions in the Access Token").
    pub permissions: Vec<String>,
    /// The space-separated `scope` claim, split.
    pub scopes: Vec<String>,
}

impl AuthUser {
    /// Whether the caller holds `permission` as an RBAC permission (the `permissions`
    /// claim). The `scope` claim does not count: what it holds depends on the tenant's
    /// settings and on what the client asked for (without RBAC enforcement Auth0 grants a
    /// requested scope as asked), so it cannot stand for an operator's grant.
    pub fn has(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }

    /// `Ok` if the caller holds `permission`, else the 403 `insufficient_scope` error.
    pub fn require(&self, permission: &str) -> Result<(), AuthError> {
        if self.has(permission) {
            Ok(())
        } else {
            tracing::info!(user.sub = %self.sub, permission, "permission denied");
            Err(AuthError::InsufficientScope(permission.to_owned()))
        }
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    Authenticator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A second extractor in the same request reuses the first verification.
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(user.clone());
        }
        let auth = Authenticator::from_ref(state);
        let token = bearer_token(&parts.headers).map_err(|e| match e {
            AuthError::MissingToken { .. } => AuthError::MissingToken {
                dev_issuer: auth.dev_issuer().is_some(),
            },
            other => other,
        })?;
        match auth.verify(token).await {
            Ok(user) => {
                parts.extensions.insert(user.clone());
                Ok(user)
            }
            Err(e) => {
                // The reason only: the token itself is never logged.
                tracing::debug!(error = %e, "request not authenticated");
                Err(e)
            }
        }
    }
}

/// The token of `Authorization: Bearer <token>`. A missing header, or another scheme, is
/// "no token" (RFC 6750 §3.1); a present but unreadable one is an invalid token.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::MissingToken { dev_issuer: false });
    };
    if values.next().is_some() {
        return Err(AuthError::InvalidToken("several authorization headers"));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::InvalidToken("malformed token"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken { dev_issuer: false });
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::MissingToken { dev_issuer: false });
    }
    Ok(token)
}
