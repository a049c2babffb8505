//! Property tests (fuzzing) of the API's request parsing, without a server: the body, query
//! and header extractors and the validation behind them never panic, refuse bad input with a
//! 4xx [`ApiError`] (naming the field where there is one), and accept valid input unchanged.
//! The same over real HTTP, against Postgres: `tests/integration/api_fuzz.rs`.
//!
//! 256 cases per property by default; `PROPTEST_CASES=20000 cargo nextest run -E
//! 'test(/proptests/)'` for a longer run.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{HeaderValue, Request, StatusCode};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};

use super::request::extract::{ApiJson, IdempotencyKey, IfNoneMatch};
use super::request::paging::{MAX_LIMIT, decode_cursor, encode_cursor, limit};
use super::request::validate;
use super::resource::idempotency::HEADER as IDEMPOTENCY_KEY_HEADER;
use super::routes::orders::{NewOrder, OrderPatch, query_time};
use super::routes::products::{NewProduct, ProductPatch, ProductView};
use super::routes::reorders::{MAX_WITHIN_DAYS, within_days};
use crate::consistency::{SYNC_TOKEN_HEADER, SyncToken};
use crate::error::ApiError;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Runs an extractor's future; none of them waits on anything but an in-memory body.
fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

/// A time the replica can hold: years 1 to 9999, microseconds.
fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
    let min = Utc.with_ymd_and_hms(1, 1, 2, 0, 0, 0).unwrap();
    let max = Utc.with_ymd_and_hms(9999, 12, 30, 0, 0, 0).unwrap();
    (min.timestamp_micros()..max.timestamp_micros())
        .prop_map(|us| DateTime::from_timestamp_micros(us).unwrap())
}

/// Strings near the edges of what the parsers accept.
fn odd_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".*",
        "\\PC{0,40}",
        Just(String::new()),
        Just("\u{0}".to_owned()),
        Just("a\u{0}b".to_owned()),
        Just(" \t\n".to_owned()),
        Just("\u{feff}\u{202e}\u{fffd}".to_owned()),
        Just("0000-01-01T00:00:00Z".to_owned()),
        Just("0001-01-01T00:30:00+01:00".to_owned()),
        Just("9999-12-31T23:59:59-01:00".to_owned()),
        Just("2026-02-30T00:00:00Z".to_owned()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})",
        "[0-9a-fA-F-]{30,40}",
        "[A-Za-z]{2,4}",
        Just("x".repeat(201)),
        Just("é".repeat(2001)),
    ]
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>().prop_map(Json::from),
        Just(json!(1e300)),
        odd_text().prop_map(Json::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Json::from),
            prop::collection::btree_map(".{0,8}", inner, 0..5)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object over the request types' field names (and a few others), with any values:
/// most bodies get past the syntax and reach the field checks.
fn body_object() -> impl Strategy<Value = Json> {
    let field = prop::sample::select(vec![
        "name",
        "unit",
        "reorder_quantity",
        "price_cents",
        "notes",
        "product_id",
        "quantity",
        "unit_price_cents",
        "currency",
        "ordered_at",
        "id",
        "owner_id",
        "version",
        "",
    ]);
    let value = prop_oneof![
        3 => any_json(),
        1 => any::<u128>().prop_map(|n| json!(uuid::Uuid::from_u128(n))),
        1 => (-5i64..2_000_000).prop_map(Json::from),
        1 => "[A-Z]{3}".prop_map(Json::from),
        1 => any_time().prop_map(|t| json!(t.to_rfc3339())),
    ];
    prop::collection::btree_map(field, value, 0..7)
        .prop_map(|m| Json::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

/// A request body: arbitrary bytes, arbitrary JSON, or an object of the API's fields.
fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        any_json().prop_map(|j| j.to_string().into_bytes()),
        body_object().prop_map(|j| j.to_string().into_bytes()),
        body_object().prop_map(|j| {
            // Truncated JSON.
            let text = j.to_string();
            text.as_bytes()[..text.len() / 2].to_vec()
        }),
    ]
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(Some("application/json".to_owned())),
        1 => Just(Some("application/json; charset=utf-8".to_owned())),
        1 => Just(Some("application/merge-patch+json".to_owned())),
        1 => Just(Some("text/plain".to_owned())),
        1 => Just(Some("application/x-www-form-urlencoded".to_owned())),
        1 => Just(None),
        1 => "[ -~]{0,30}".prop_map(Some),
    ]
}

/// Parses `body` as `T` the way a handler does. Every refusal must be a 400, 413 or 422.
fn parse_body<T: DeserializeOwned>(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Option<T>, TestCaseError> {
    let mut request = Request::builder().method("POST").uri("/api/x");
    if let Some(value) = content_type.and_then(|ct| HeaderValue::from_str(ct).ok()) {
        request = request.header("content-type", value);
    }
    let request = request.body(Body::from(body.to_vec())).unwrap();
    match run(ApiJson::<T>::from_request(request, &())) {
        Ok(parsed) => Ok(Some(parsed.value)),
        Err(e) => {
            let status = e.status_code();
            prop_assert!(
                [
                    StatusCode::BAD_REQUEST,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    StatusCode::UNPROCESSABLE_ENTITY
                ]
                .contains(&status),
                "{status} for a bad body: {e}"
            );
            Ok(None)
        }
    }
}

/// A 422 naming one of `fields`.
fn assert_invalid_field(err: &ApiError, fields: &[&str]) -> Result<(), TestCaseError> {
    match err {
        ApiError::Invalid { field, .. } => {
            prop_assert!(fields.contains(&field.as_str()), "unexpected field {field}");
            Ok(())
        }
        other => Err(TestCaseError::fail(format!("not a 422: {other:?}"))),
    }
}

fn current_product() -> ProductView {
    ProductView {
        id: "0b9f3c1e-8d3a-4f4e-9a53-3c0f2f1f0a11".into(),
        name: "milk".into(),
        unit: None,
        reorder_quantity: 1,
        price_cents: None,
        notes: None,
        created_at: "2026-01-01T00:00:00.000000Z".into(),
        updated_at: "2026-01-01T00:00:00.000000Z".into(),
        version: 1,
    }
}

const PRODUCT_FIELDS: &[&str] = &["name", "unit", "reorder_quantity", "price_cents", "notes"];
const ORDER_FIELDS: &[&str] = &[
    "product_id",
    "quantity",
    "unit_price_cents",
    "currency",
    "ordered_at",
];

/// Text Postgres would refuse to store, or a time it cannot hold as the replica does.
fn storable_text(s: &str) -> bool {
    !s.contains('\0')
}

proptest! {
    #![proptest_config(config())]

    /// A product body: any bytes and content type give a product or a 400/413/422; a
    /// product that passes validation is exactly what was sent.
    #[test]
    fn product_bodies_parse_or_fail_with_a_4xx(ct in content_type(), body in body_bytes()) {
        let Some(product) = parse_body::<NewProduct>(ct.as_deref(), &body)? else { return Ok(()) };
        let sent = (product.name.clone(), product.unit.clone(), product.notes.clone());
        match product.validate() {
            Ok(fields) => {
                prop_assert_eq!((fields.name.clone(), fields.unit.clone(), fields.notes.clone()), sent);
                prop_assert!(fields.reorder_quantity >= 1);
                prop_assert!(fields.price_cents.is_none_or(|p| p >= 0));
                for text in [Some(&fields.name), fields.unit.as_ref(), fields.notes.as_ref()].into_iter().flatten() {
                    prop_assert!(storable_text(text), "{:?} passed validation", text);
                }
                prop_assert!(!fields.name.trim().is_empty());
            }
            Err(e) => assert_invalid_field(&e, PRODUCT_FIELDS)?,
        }
    }

    /// A product patch: parsed or 4xx; applied to a row, valid or a 422 on its field.
    #[test]
    fn product_patches_parse_or_fail_with_a_4xx(ct in content_type(), body in body_bytes()) {
        let Some(patch) = parse_body::<ProductPatch>(ct.as_deref(), &body)? else { return Ok(()) };
        match patch.apply(&current_product()) {
            Ok(fields) => {
                prop_assert!(fields.reorder_quantity >= 1);
                for text in [Some(&fields.name), fields.unit.as_ref(), fields.notes.as_ref()].into_iter().flatten() {
                    prop_assert!(storable_text(text), "{:?} passed validation", text);
                }
            }
            Err(e) => assert_invalid_field(&e, PRODUCT_FIELDS)?,
        }
    }

    /// An order body: parsed or 4xx; validated, or a 422 on its field; a valid order's
    /// values are in range and its time is one the replica can hold.
    #[test]
    fn order_bodies_parse_or_fail_with_a_4xx(ct in content_type(), body in body_bytes()) {
        let Some(order) = parse_body::<NewOrder>(ct.as_deref(), &body)? else { return Ok(()) };
        match order.validate() {
            Ok(fields) => {
                prop_assert!((1..=1_000_000).contains(&fields.quantity));
                prop_assert!(fields.unit_price_cents.is_none_or(|p| p >= 0));
                if let Some(c) = &fields.currency {
                    prop_assert!(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
                }
                if let Some(t) = fields.ordered_at {
                    prop_assert!((1..=9999).contains(&chrono::Datelike::year(&t)), "{}", t);
                }
            }
            Err(e) => assert_invalid_field(&e, ORDER_FIELDS)?,
        }
    }

    /// An order patch: parsed or 4xx; checked, or a 422 on its field.
    #[test]
    fn order_patches_parse_or_fail_with_a_4xx(ct in content_type(), body in body_bytes()) {
        let Some(patch) = parse_body::<OrderPatch>(ct.as_deref(), &body)? else { return Ok(()) };
        if let Err(e) = patch.check() {
            assert_invalid_field(&e, ORDER_FIELDS)?;
        } else if let Some(Some(t)) = &patch.ordered_at {
            let t = DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
            prop_assert!((1..=9999).contains(&chrono::Datelike::year(&t)), "{}", t);
        }
    }

    /// A cursor this API made decodes to the row it was made from (in canonical form,
    /// whatever offset or case the time and id were written in).
    #[test]
    fn cursors_round_trip(t in any_time(), id in any::<u128>(), upper in any::<bool>(), offset_minutes in -900..=900i32) {
        let canonical = auto_order_sync::decode::format_timestamp(t);
        let id = uuid::Uuid::from_u128(id).hyphenated().to_string();
        let written_id = if upper { id.to_uppercase() } else { id.clone() };
        let decoded = decode_cursor(Some(&encode_cursor(&canonical, &written_id))).unwrap();
        prop_assert_eq!(decoded, Some((canonical.clone(), id.clone())));
        let zone = chrono::FixedOffset::east_opt(offset_minutes * 60).unwrap();
        let local = t.with_timezone(&zone);
        if (1..=9999).contains(&chrono::Datelike::year(&local)) {
            let written = local.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false);
            let decoded = decode_cursor(Some(&encode_cursor(&written, &id))).unwrap();
            prop_assert_eq!(decoded, Some((canonical, id)));
        }
    }

    /// Any cursor text: decoded to a canonical (time, id) or a 422 on `cursor`.
    #[test]
    fn any_cursor_decodes_or_is_a_422_on_cursor(
        raw in prop_oneof![
            ".*",
            "[A-Za-z0-9_-]{0,80}",
            (odd_text(), odd_text()).prop_map(|(t, id)| encode_cursor(&t, &id)),
            prop::collection::vec(any::<u8>(), 0..60).prop_map(|b| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
            }),
        ],
    ) {
        match decode_cursor(Some(&raw)) {
            Ok(Some((time, id))) => {
                prop_assert_eq!(time.len(), 27, "{}", time);
                prop_assert!(DateTime::parse_from_rfc3339(&time).is_ok());
                prop_assert_eq!(uuid::Uuid::parse_str(&id).unwrap().hyphenated().to_string(), id);
            }
            Ok(None) => prop_assert!(false, "a cursor was given"),
            Err(e) => assert_invalid_field(&e, &["cursor"])?,
        }
    }

    /// Page sizes: 1..=100 or a 422 on `limit`.
    #[test]
    fn limits_are_checked(n in prop_oneof![any::<i64>(), -3i64..110]) {
        match limit(Some(n)) {
            Ok(got) => prop_assert!(got == n && (1..=MAX_LIMIT).contains(&n)),
            Err(e) => {
                prop_assert!(!(1..=MAX_LIMIT).contains(&n));
                assert_invalid_field(&e, &["limit"])?;
            }
        }
    }

    /// `within_days` from any query string: 0..=365 or a 422 on it; `within_days=N` means N.
    #[test]
    fn within_days_from_any_query(query in prop_oneof![".*", "[a-z_=&%0-9+-]{0,40}"], n in any::<u32>()) {
        match within_days(Some(&query)) {
            Ok(days) => prop_assert!(days <= MAX_WITHIN_DAYS),
            Err(e) => assert_invalid_field(&e, &["within_days"])?,
        }
        let got = within_days(Some(&format!("a=1&within_days={n}")));
        if n <= MAX_WITHIN_DAYS {
            prop_assert_eq!(got.unwrap(), n);
        } else {
            assert_invalid_field(&got.unwrap_err(), &["within_days"])?;
        }
    }

    /// Query times (`from`, `to`): canonical, in the replica's range, or a 422 on the field.
    #[test]
    fn query_times_are_canonical_or_a_422(raw in odd_text(), t in any_time()) {
        match query_time("from", &raw) {
            Ok(canonical) => {
                prop_assert_eq!(canonical.len(), 27, "{}", canonical);
            }
            Err(e) => assert_invalid_field(&e, &["from"])?,
        }
        let canonical = auto_order_sync::decode::format_timestamp(t);
        prop_assert_eq!(query_time("to", &t.to_rfc3339()).unwrap(), canonical);
    }

    /// The field checks: accept exactly what they document.
    #[test]
    fn field_checks_accept_what_they_document(s in odd_text(), n in any::<i64>(), lo in -5i64..5, span in 0i64..1000) {
        let chars = s.chars().count();
        prop_assert_eq!(
            validate::text("f", &s, 1, 50).is_ok(),
            (1..=50).contains(&chars) && storable_text(&s)
        );
        prop_assert_eq!(
            validate::name("f", &s, 200).is_ok(),
            (1..=200).contains(&chars) && !s.trim().is_empty() && storable_text(&s)
        );
        prop_assert_eq!(
            validate::currency("f", &s).is_ok(),
            s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
        );
        let hi = lo + span;
        match validate::int("f", n, lo, hi) {
            Ok(v) => prop_assert!(i64::from(v) == n && (lo..=hi).contains(&n)),
            Err(e) => {
                prop_assert!(!(lo..=hi).contains(&n));
                assert_invalid_field(&e, &["f"])?;
            }
        }
    }

    /// The headers: `X-Sync-Token` is a u64 or a 400; `Idempotency-Key` is 1..=255
    /// characters or a 400; `If-None-Match` never fails.
    #[test]
    fn headers_parse_or_fail_with_a_400(
        value in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            "[ -~]{0,300}".prop_map(String::into_bytes),
            any::<u64>().prop_map(|n| n.to_string().into_bytes()),
            Just(b" 42 ".to_vec()),
            Just(b"18446744073709551616".to_vec()),
            Just(b"-1".to_vec()),
        ],
    ) {
        let Ok(header) = HeaderValue::from_bytes(&value) else { return Ok(()) };
        let request = Request::builder()
            .header(SYNC_TOKEN_HEADER, header.clone())
            .header(IDEMPOTENCY_KEY_HEADER, header.clone())
            .header("if-none-match", header.clone())
            .body(())
            .unwrap();
        let (mut parts, ()) = request.into_parts();
        let expected_token = header.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok());
        match run(SyncToken::from_request_parts(&mut parts, &())) {
            Ok(SyncToken(t)) => prop_assert_eq!(t, expected_token),
            Err(e) => {
                prop_assert!(expected_token.is_none());
                prop_assert_eq!(e.status_code(), StatusCode::BAD_REQUEST);
            }
        }
        match run(IdempotencyKey::from_request_parts(&mut parts, &())) {
            Ok(IdempotencyKey(key)) => {
                let key = key.unwrap();
                prop_assert!((1..=255).contains(&key.len()));
                prop_assert_eq!(key.as_bytes(), header.as_bytes());
            }
            Err(e) => prop_assert_eq!(e.status_code(), StatusCode::BAD_REQUEST),
        }
        let tags = run(IfNoneMatch::from_request_parts(&mut parts, &())).unwrap();
        let _ = tags.matches("\"abc\"");
    }
}
