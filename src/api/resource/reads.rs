//! How every data GET is answered: 503 until the replica is ready, the `X-Sync-Token`
//! decision (replica or primary), the read cache, `ETag` and `304 Not Modified`.

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;

use crate::api::AppState;
use crate::api::request::extract::IfNoneMatch;
use crate::cache::CachedRead;
use crate::consistency::{ReadFrom, SyncToken, read_from};
use crate::error::ApiError;

/// What a data read needs to know about its request.
pub struct ReadRequest<'a> {
    pub owner: &'a str,
    pub token: SyncToken,
    pub if_none_match: &'a IfNoneMatch,
}

/// Answers a read of `table` (cache key part `what`) with `load`, which runs the query where
/// it is told and returns the view. Its span says where the answer came from.
#[tracing::instrument(level = "debug", name = "read", skip_all, fields(table, source))]
pub async fn cached_read<V, F, Fut>(
    state: &AppState,
    req: ReadRequest<'_>,
    table: &'static str,
    what: String,
    load: F,
) -> Result<Response, ApiError>
where
    V: Serialize,
    F: FnOnce(ReadFrom) -> Fut,
    Fut: Future<Output = Result<V, ApiError>>,
{
    crate::api::require_ready(state)?;
    let from = read_from(
        &state.sync,
        req.token,
        state.config.read_your_writes_timeout,
    )
    .await?;
    let span = tracing::Span::current();
    if from == ReadFrom::Primary {
        span.record("source", "primary");
        let view = load(from).await?;
        return Ok(respond(&render(&view, 0)?, req.if_none_match));
    }
    // Key (generation) first, then the watermark, then the query: see `crate::cache`.
    let key = state.cache.key(table, req.owner, what);
    if let Some(hit) = state.cache.get(&key, req.token.0) {
        span.record("source", "cache");
        return Ok(respond(&hit, req.if_none_match));
    }
    span.record("source", "replica");
    let watermark = state.sync.watermark();
    let view = load(from).await?;
    let fresh = Arc::new(render(&view, watermark)?);
    state.cache.insert(key, fresh.clone());
    Ok(respond(&fresh, req.if_none_match))
}

fn render<V: Serialize>(view: &V, watermark: u64) -> Result<CachedRead, ApiError> {
    let body = serde_json::to_vec(view)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("serialising a view: {e}")))?;
    let etag = HeaderValue::from_str(&etag(&body)).expect("an etag is ASCII");
    Ok(CachedRead {
        etag,
        body: Bytes::from(body),
        watermark,
    })
}

/// A weak entity tag over the rendered body: it covers the rows' ids and versions (each
/// change of a row moves its version), their order, and a list's `next_cursor`.
pub fn etag(body: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    let hex: String = digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("W/\"{hex}\"")
}

fn respond(read: &CachedRead, if_none_match: &IfNoneMatch) -> Response {
    let etag = read.etag.clone();
    let mut response = if if_none_match.matches(etag.to_str().unwrap_or_default()) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(read.body.clone()));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    };
    let headers = response.headers_mut();
    headers.insert(ETAG, etag);
    // Per-user data: a shared cache must not keep it; the client revalidates with the ETag.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    response
}
