//! Keyset pagination shared by the list routes: the page size, the opaque cursor (base64url
//! of the last row's `(time, id)`), and the `{items, next_cursor}` envelope.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use uuid::Uuid;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// One page of a list, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The page size asked for, checked against 1..=100.
pub fn limit(requested: Option<i64>) -> Result<i64, ApiError> {
    match requested.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        _ => Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

/// The cursor that continues after a row at `(time, id)`.
pub fn encode_cursor(time: &str, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{time}|{id}"))
}

/// The `(time, id)` a cursor continues after, in the replica's canonical text form.
pub fn decode_cursor(cursor: Option<&str>) -> Result<Option<(String, String)>, ApiError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let invalid = || ApiError::invalid("cursor", "not a cursor returned by this list");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (time, id) = text.split_once('|').ok_or_else(invalid)?;
    let time = crate::api::request::validate::timestamp("cursor", time).map_err(|_| invalid())?;
    let id = Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok(Some((
        auto_order_sync::decode::format_timestamp(time),
        id.hyphenated().to_string(),
    )))
}

/// A page from `limit + 1` fetched items: the extra one only says there is a next page.
pub fn page<T>(mut items: Vec<T>, limit: i64, key: impl Fn(&T) -> (&str, &str)) -> Page<T> {
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = more
        .then(|| {
            items.last().map(|last| {
                let (time, id) = key(last);
                encode_cursor(time, id)
            })
        })
        .flatten();
    Page { items, next_cursor }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_a_422_on_cursor() {
        let id = "0b9f3c1e-8d3a-4f4e-9a53-3c0f2f1f0a11";
        let cursor = encode_cursor("2026-11-24T19:50:46.100000Z", id);
        let decoded = decode_cursor(Some(&cursor)).unwrap().unwrap();
        assert_eq!(decoded, ("2026-11-24T19:50:46.100000Z".into(), id.into()));
        let err = decode_cursor(Some("bm9wZQ")).unwrap_err();
        assert!(matches!(err, ApiError::Invalid { ref field, .. } if field == "cursor"));
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_rows_exist() {
        let rows = vec![("t1", "a"), ("t2", "b"), ("t3", "c")];
        assert!(page(rows.clone(), 3, |r| (r.0, r.1)).next_cursor.is_none());
        let first = page(rows, 2, |r| (r.0, r.1));
        assert_eq!(first.items.len(), 2);
        assert_eq!(first.next_cursor, Some(encode_cursor("t2", "b")));
    }
}
