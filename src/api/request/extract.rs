//! Request extractors whose every rejection is an [`ApiError`] with the JSON error body:
//! [`ApiJson`] (body), [`ApiQuery`] (query string), [`RowId`] (the `{id}` path segment),
//! plus the [`IdempotencyKey`] and [`IfNoneMatch`] headers.
//!
//! axum's own extractors answer with plain text; clients of this API always get
//! `{"error": {...}}`, naming the offending field where one can be named.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{CONTENT_TYPE, IF_NONE_MATCH};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;

/// A JSON body of type `T`. Malformed JSON or a wrong content type is 400; well-formed JSON
/// with a wrong, missing or unknown field is 422 naming the field; an oversized body is 413.
/// The raw JSON value is kept for the idempotency hash.
pub struct ApiJson<T> {
    pub value: T,
    pub raw: serde_json::Value,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::BadRequest(
                "expected a JSON body with Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("the request body could not be read".into())
            }
        })?;
        let raw: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
        let value = serde_path_to_error::deserialize::<_, T>(&raw).map_err(field_error)?;
        Ok(ApiJson { value, raw })
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = content_type.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// A value of the wrong type, a missing or an unknown field: 422 with the field's path.
fn field_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let message = err.inner().to_string();
    let field = if path == "." {
        // `missing field `x`` and `unknown field `x`, expected …` are raised at the root.
        message
            .split('`')
            .nth(1)
            .map_or_else(|| "body".to_owned(), str::to_owned)
    } else {
        path
    };
    // serde's message is about the value, never about this program's internals.
    let message = message
        .split(", expected one of")
        .next()
        .unwrap_or(&message)
        .to_owned();
    ApiError::invalid(field, message)
}

/// A query string of type `T`; anything it cannot hold is 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// The `{id}` path segment as a UUID; anything else is 400.
pub struct RowId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for RowId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        Uuid::parse_str(&raw)
            .map(RowId)
            .map_err(|_| ApiError::BadRequest("the id in the path is not a UUID".into()))
    }
}

/// The optional `Idempotency-Key` header of a create: 1 to 255 visible ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(crate::api::resource::idempotency::HEADER) else {
            return Ok(IdempotencyKey(None));
        };
        match value.to_str() {
            Ok(key) if (1..=255).contains(&key.len()) => Ok(IdempotencyKey(Some(key.to_owned()))),
            _ => Err(ApiError::BadRequest(
                "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
            )),
        }
    }
}

/// The `If-None-Match` header, as the list of entity tags it names (or `*`).
#[derive(Debug, Default)]
pub struct IfNoneMatch(Vec<String>);

impl IfNoneMatch {
    /// Whether a representation with `etag` matches (weak comparison, RFC 9110 §13.1.2).
    pub fn matches(&self, etag: &str) -> bool {
        let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        self.0.iter().any(|t| t == "*" || bare(t) == bare(etag))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let tags = parts
            .headers
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        Ok(IfNoneMatch(tags))
    }
}
