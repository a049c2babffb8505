//! Fuzzing the HTTP API end to end: a real edge on a real Postgres gets a few hundred
//! proptest-generated requests, mostly malformed (random JSON and bytes as bodies of
//! product and order writes, random ids in paths, random query strings and cursors, wrong
//! content types, odd headers), all with a valid token. Every answer must be a 2xx (or 304)
//! or a 4xx with the JSON error body, within seconds; a write refused with a 4xx must leave
//! the primary exactly as it was; and at the end the replica still equals the primary.
//!
//! The database's default time zone is not UTC (Europe/Paris), so rows the edge reads back
//! from the primary carry offsets, including the local-mean-time ones of old dates.
//!
//! 240 requests by default (a few seconds); `PROPTEST_CASES=5000` for a longer run.

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reqwest::{Method, StatusCode};
use serde_json::{Value as Json, json};

use crate::support::edge::{Rows, open_reader, primary_rows, replica_rows};
use crate::support::{Api, TestApp, TestDb};

/// One generated request.
#[derive(Debug, Clone)]
struct Case {
    method: Method,
    /// Path and query, already percent-encoded.
    target: String,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
    headers: Vec<(&'static str, String)>,
}

impl Case {
    fn is_write(&self) -> bool {
        self.method != Method::GET
    }
}

/// Everything on the primary a request could change.
#[derive(Debug, PartialEq)]
struct PrimaryState {
    products: Rows,
    orders: Rows,
    idempotency_keys: i64,
}

async fn primary_state(db: &TestDb) -> PrimaryState {
    PrimaryState {
        products: primary_rows(&db.client, "products").await,
        orders: primary_rows(&db.client, "orders").await,
        idempotency_keys: db
            .client
            .query_one("select count(*) from idempotency_keys", &[])
            .await
            .unwrap()
            .get(0),
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Strings at the edges of what the API parses.
fn odd_text() -> BoxedStrategy<String> {
    prop_oneof![
        ".{0,12}",
        "\\PC{0,30}",
        Just(String::new()),
        Just(" ".to_owned()),
        Just("\u{0}".to_owned()),
        Just("milk\u{0}".to_owned()),
        Just("\u{feff}\u{202e}\u{fffd}".to_owned()),
        Just("x".repeat(201)),
        Just("é".repeat(2001)),
        Just("Robert'); drop table products;--".to_owned()),
        Just("%_\\".to_owned()),
    ]
    .boxed()
}

/// Times: valid, old (before 1900: local mean time offsets), out of range, malformed.
fn odd_time() -> BoxedStrategy<String> {
    prop_oneof![
        Just("0000-01-01T00:00:00Z".to_owned()),
        Just("0000-12-31T23:59:59+00:00".to_owned()),
        Just("0001-01-01T00:30:00+01:00".to_owned()),
        Just("0001-01-01T00:00:00Z".to_owned()),
        Just("1800-01-01T00:00:00Z".to_owned()),
        Just("1900-06-15T12:00:00.123456789+05:30".to_owned()),
        Just("2026-02-30T00:00:00Z".to_owned()),
        Just("2026-11-24".to_owned()),
        Just("9999-12-31T23:59:59-01:00".to_owned()),
        Just("9999-12-31T23:59:59Z".to_owned()),
        Just("2020-01-01T00:00:00Z".to_owned()),
        Just("infinity".to_owned()),
        (1i64..4_000_000_000)
            .prop_map(|s| chrono::DateTime::from_timestamp(s, 0).unwrap().to_rfc3339()),
        odd_text(),
    ]
    .boxed()
}

fn odd_number() -> BoxedStrategy<Json> {
    prop_oneof![
        (-3i64..3).prop_map(Json::from),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(i32::MAX)),
        Just(json!(i64::from(i32::MAX) + 1)),
        Just(json!(1_000_000)),
        Just(json!(1_000_001)),
        Just(json!(1.5)),
        Just(json!(1e300)),
        any::<i64>().prop_map(Json::from),
    ]
    .boxed()
}

fn any_json() -> BoxedStrategy<Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        odd_number(),
        odd_text().prop_map(Json::from),
        odd_time().prop_map(Json::from),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::from),
            prop::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// An id for a path or a body: one of the caller's, another user's, unknown, or garbage.
fn id(own: Vec<String>, foreign: String) -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(own),
        1 => Just(foreign),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        1 => odd_text(),
        1 => Just("00000000-0000-0000-0000-00000000000G".to_owned()),
    ]
    .boxed()
}

/// A JSON object over `fields` (plus unknown ones) whose values are drawn from `value`.
fn object(fields: Vec<&'static str>, value: BoxedStrategy<Json>) -> BoxedStrategy<Json> {
    let mut names = fields;
    names.extend(["id", "owner_id", "version", "Name"]);
    prop::collection::btree_map(prop::sample::select(names), value, 0..6)
        .prop_map(|m| Json::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
        .boxed()
}

/// A valid `base` object with at most one field replaced by `odd` (or one field added).
fn near_valid(
    base: BoxedStrategy<Json>,
    fields: Vec<&'static str>,
    odd: BoxedStrategy<Json>,
) -> BoxedStrategy<Json> {
    let mut names = fields;
    names.push("owner_id");
    (base, prop::option::of((prop::sample::select(names), odd)))
        .prop_map(|(mut body, change)| {
            if let Some((field, value)) = change {
                body[field] = value;
            }
            body
        })
        .boxed()
}

fn valid_product() -> BoxedStrategy<Json> {
    (
        "[a-zA-Z][a-zA-Z ]{0,19}",
        prop::option::of("[a-z]{1,5}"),
        1i64..10,
        prop::option::of(0i64..100_000),
    )
        .prop_map(|(name, unit, quantity, price)| {
            json!({"name": name, "unit": unit, "reorder_quantity": quantity, "price_cents": price})
        })
        .boxed()
}

fn valid_order(products: Vec<String>) -> BoxedStrategy<Json> {
    (
        prop::sample::select(products),
        1i64..100,
        prop::option::of(0i64..10_000),
        prop::option::of(odd_time()),
    )
        .prop_map(|(product, quantity, price, at)| {
            let mut body = json!({"product_id": product, "quantity": quantity});
            if let Some(price) = price {
                body["unit_price_cents"] = json!(price);
                body["currency"] = json!("EUR");
            }
            if let Some(at) = at {
                body["ordered_at"] = json!(at);
            }
            body
        })
        .boxed()
}

fn product_body() -> BoxedStrategy<Json> {
    let value = prop_oneof![
        2 => any_json(),
        2 => odd_text().prop_map(Json::from),
        1 => odd_number(),
    ]
    .boxed();
    let fields = vec!["name", "unit", "reorder_quantity", "price_cents", "notes"];
    prop_oneof![
        object(fields.clone(), value.clone()),
        near_valid(valid_product(), fields, value),
    ]
    .boxed()
}

fn order_body(products: Vec<String>, foreign: String) -> BoxedStrategy<Json> {
    let value = prop_oneof![
        2 => any_json(),
        1 => id(products.clone(), foreign).prop_map(Json::from),
        1 => odd_time().prop_map(Json::from),
        1 => prop_oneof![Just("EUR"), Just("eur"), Just("EURO"), Just("E\u{0}R")]
            .prop_map(Json::from),
        1 => odd_number(),
    ]
    .boxed();
    let fields = vec![
        "product_id",
        "quantity",
        "unit_price_cents",
        "currency",
        "ordered_at",
    ];
    prop_oneof![
        object(fields.clone(), value.clone()),
        near_valid(valid_order(products), fields, value),
    ]
    .boxed()
}

/// A body: mostly a JSON object of the right shape, else any JSON, bytes, truncated JSON, or
/// more than the 64 KiB limit.
fn body(object: BoxedStrategy<Json>) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => object.clone().prop_map(|j| j.to_string().into_bytes()),
        1 => any_json().prop_map(|j| j.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..40),
        1 => object.prop_map(|j| {
            let text = j.to_string();
            text.as_bytes()[..text.len() / 2].to_vec()
        }),
        1 => Just(format!("{{\"name\": \"{}\"}}", "n".repeat(70 * 1024)).into_bytes()),
    ]
    .boxed()
}

fn content_type() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        8 => Just(Some("application/json".to_owned())),
        1 => Just(Some("application/problem+json; charset=utf-8".to_owned())),
        1 => Just(Some("text/plain".to_owned())),
        1 => Just(Some("multipart/form-data; boundary=x".to_owned())),
        1 => Just(None),
    ]
    .boxed()
}

/// A query string of the list routes' parameters (and others) with odd values.
fn query() -> BoxedStrategy<String> {
    let key = prop::sample::select(vec![
        "limit",
        "cursor",
        "q",
        "product_id",
        "from",
        "to",
        "within_days",
        "x",
    ]);
    let value = prop_oneof![
        odd_text(),
        odd_time(),
        odd_number().prop_map(|n| n.to_string()),
        // A well-formed cursor around an odd time.
        (odd_time(), any::<u128>()).prop_map(|(t, n)| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("{t}|{}", uuid::Uuid::from_u128(n)))
        }),
        "[A-Za-z0-9_-]{0,40}",
    ];
    prop_oneof![
        4 => prop::collection::vec((key, value), 0..4).prop_map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect::<Vec<_>>()
                .join("&")
        }),
        // Raw, not encoded: stray `%`, `=`, `&`, `+`.
        1 => "[a-z_=&%+0-9]{0,30}",
    ]
    .boxed()
}

/// Headers: a sync token (sometimes far ahead: the read goes to the primary), an
/// idempotency key, an entity tag.
fn headers() -> BoxedStrategy<Vec<(&'static str, String)>> {
    let token = prop_oneof![
        Just("99999999999".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("-1".to_owned()),
        Just("1".to_owned()),
        "[ -~]{0,12}",
    ]
    .prop_map(|v| ("x-sync-token", v));
    let key = prop_oneof![
        "[!-~]{1,20}",
        Just(" ".to_owned()),
        Just("k".repeat(256)),
        Just("same-key".to_owned()),
    ]
    .prop_map(|v| ("idempotency-key", v));
    let etag = prop_oneof![Just("*".to_owned()), "[ -~]{0,20}"].prop_map(|v| ("if-none-match", v));
    prop_oneof![
        2 => Just(Vec::new()),
        1 => prop::collection::vec(prop_oneof![token, key, etag], 1..3),
    ]
    .boxed()
}

fn case(products: Vec<String>, orders: Vec<String>, foreign: String) -> BoxedStrategy<Case> {
    let product_id = id(products.clone(), foreign.clone());
    let order_id = id(orders, foreign.clone());
    let route = prop_oneof![
        3 => (body(product_body()), content_type()).prop_map(|(b, ct)| {
            (Method::POST, "/api/products".to_owned(), ct, Some(b))
        }),
        3 => (product_id.clone(), body(product_body()), content_type()).prop_map(|(id, b, ct)| {
            (Method::PATCH, format!("/api/products/{}", encode(&id)), ct, Some(b))
        }),
        3 => (body(order_body(products.clone(), foreign.clone())), content_type())
            .prop_map(|(b, ct)| (Method::POST, "/api/orders".to_owned(), ct, Some(b))),
        3 => (order_id.clone(), body(order_body(products, foreign)), content_type())
            .prop_map(|(id, b, ct)| {
                (Method::PATCH, format!("/api/orders/{}", encode(&id)), ct, Some(b))
            }),
        2 => query().prop_map(|q| (Method::GET, format!("/api/products?{q}"), None, None)),
        2 => query().prop_map(|q| (Method::GET, format!("/api/orders?{q}"), None, None)),
        1 => query().prop_map(|q| (Method::GET, format!("/api/reorders?{q}"), None, None)),
        1 => product_id.clone().prop_map(|id| {
            (Method::GET, format!("/api/products/{}", encode(&id)), None, None)
        }),
        1 => order_id.prop_map(|id| (Method::GET, format!("/api/orders/{}", encode(&id)), None, None)),
        1 => product_id.clone().prop_map(|id| {
            (Method::GET, format!("/api/predictions/{}", encode(&id)), None, None)
        }),
        // Deletes only of ids that are not the caller's: they must change nothing.
        1 => prop_oneof![
            any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
            odd_text(),
        ]
        .prop_map(|id| (Method::DELETE, format!("/api/products/{}", encode(&id)), None, None)),
    ];
    (route, headers())
        .prop_map(|((method, target, content_type, body), headers)| Case {
            method,
            target,
            content_type,
            body,
            headers,
        })
        .boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_4xx_json_error_and_change_nothing() {
    // Arrange: a primary whose sessions are not in UTC, an edge that reads from the primary
    // quickly when a token is ahead, and no rate limit in the way.
    let db = TestDb::new().await;
    db.client
        .batch_execute(&format!(
            "alter database {} set timezone to 'Europe/Paris'",
            db.name
        ))
        .await
        .unwrap();
    let app = TestApp::spawn_with(
        &db.url,
        &[
            ("RATE_LIMIT_MAX", "1000000"),
            ("READ_YOUR_WRITES_TIMEOUT_MS", "20"),
        ],
    )
    .await;
    let (alice, bob) = (Api::new(&app, "alice"), Api::new(&app, "bob"));
    let mut products = Vec::new();
    let mut orders = Vec::new();
    for name in ["milk", "coffee"] {
        let product = alice.product(name).await;
        for days in [30, 15] {
            let at = (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339();
            let reply = alice
                .post(
                    "/api/orders",
                    json!({"product_id": product, "quantity": 2, "ordered_at": at}),
                )
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
            orders.push(reply.id());
        }
        products.push(product);
    }
    let foreign = bob.product("bob's tea").await;
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(240);
    let strategy = case(products, orders, foreign);
    let mut runner = TestRunner::default();
    let cases: Vec<Case> = (0..cases)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut state = primary_state(&db).await;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let started = std::time::Instant::now();

    // Act and assert, request by request.
    for (n, case) in cases.iter().enumerate() {
        let mut request = http
            .request(case.method.clone(), app.url(&case.target))
            .bearer_auth(&alice.token);
        if let Some(ct) = &case.content_type {
            request = request.header("content-type", ct);
        }
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        if let Some(body) = &case.body {
            if body.len() > 64 * 1024 {
                // Answered 413 before the body is read; do not reuse the connection.
                request = request.header("connection", "close");
            }
            request = request.body(body.clone());
        }
        let shown = || {
            let body = case.body.as_deref().map(String::from_utf8_lossy);
            let body: Option<String> = body.map(|b| b.chars().take(300).collect());
            format!(
                "case {n}: {} {} content-type {:?} headers {:?} body {body:?}",
                case.method, case.target, case.content_type, case.headers
            )
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("no answer ({e}) to {}", shown()));
        let status = response.status();
        let bytes = response.bytes().await.expect("body");
        *statuses.entry(status.as_u16()).or_default() += 1;
        assert!(
            status.is_success() || status == StatusCode::NOT_MODIFIED || status.is_client_error(),
            "{status} {} for {}",
            String::from_utf8_lossy(&bytes),
            shown()
        );
        if status.is_client_error() {
            let body: Json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{status}: not a JSON error body: {:?} for {}",
                    String::from_utf8_lossy(&bytes),
                    shown()
                )
            });
            assert!(
                body["error"]["code"].is_string() && body["error"]["message"].is_string(),
                "{status}: {body} for {}",
                shown()
            );
        }
        if case.is_write() {
            let now = primary_state(&db).await;
            if status.is_success() {
                state = now;
            } else {
                assert!(
                    now == state,
                    "a refused write ({status}) changed the primary: {}",
                    shown()
                );
            }
        }
    }
    let elapsed = started.elapsed();

    // The edge still follows the primary: every accepted write replicated, nothing stuck.
    app.catch_up(&db).await;
    let status = app.sync.status();
    assert!(!status.last_error_fatal, "{status:?}");
    let reader = open_reader(&app.data_dir.join("replica.db"));
    for table in ["products", "orders"] {
        assert_eq!(
            replica_rows(&reader, table),
            primary_rows(&db.client, table).await,
            "{table}: the replica differs from the primary"
        );
    }
    println!(
        "api_fuzz: {} requests in {elapsed:.1?}, statuses {statuses:?}",
        cases.len()
    );
}
