//! The layers around every request: rate limits, CORS, gzip, request ids, region header,
//! metrics, and the 503 of data routes before the first sync.

use std::time::Duration;

use auto_order::config::Config;
use auto_order::server::Application;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_ENCODING, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, CONTENT_ENCODING, ORIGIN,
    RETRY_AFTER,
};
use serde_json::Value;

use reqwest::Method;

use crate::support::{Api, TestApp, TestDb, count, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ip_limit_answers_429_with_retry_after_and_health_is_exempt() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(&db.url, &[("RATE_LIMIT_MAX", "5")]).await;
    let docs = app.url("/api/openapi.json");

    // Act
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(app.http.get(&docs).send().await.unwrap().status());
    }
    let refused = app.http.get(&docs).send().await.unwrap();
    let health = app.http.get(app.url("/api/health")).send().await.unwrap();
    let health_db = app
        .http
        .get(app.url("/api/v1/health/db"))
        .send()
        .await
        .unwrap();
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();

    // Assert
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(
        health_db.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the database check is limited like any route"
    );
    assert_eq!(metrics.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_fly_the_client_ip_header_and_the_verified_user_are_limited_separately() {
    // Arrange: behind Fly's proxy (TRUST_FLY_CLIENT_IP) Fly-Client-IP is the client's address.
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(
        &db.url,
        &[
            ("RATE_LIMIT_MAX", "3"),
            ("FLY_REGION", "lhr"),
            ("TRUST_FLY_CLIENT_IP", "true"),
        ],
    )
    .await;
    let url = app.url("/api/reorders");
    let (alice, bob) = (app.token("alice", &[]), app.token("bob", &[]));
    let get = |token: &str, ip: &str| {
        app.http
            .get(&url)
            .bearer_auth(token)
            .header("fly-client-ip", ip)
            .send()
    };

    // Act: alice from three addresses, then a fourth; bob from a fresh address.
    let mut alice_statuses = Vec::new();
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"] {
        alice_statuses.push(get(&alice, ip).await.unwrap().status());
    }
    let bob_response = get(&bob, "10.0.0.5").await.unwrap();

    // Assert
    assert_eq!(
        alice_statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert_eq!(bob_response.status(), StatusCode::OK);
    assert_eq!(bob_response.headers()["fly-region"], "lhr");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_is_allowed_for_a_configured_origin_only() {
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(
        &db.url,
        &[(
            "CORS_ORIGIN",
            "https://app.example.com, https://other.example.com",
        )],
    )
    .await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/api/reorders"))
            .header(ORIGIN, origin)
            .header(ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(ACCESS_CONTROL_REQUEST_HEADERS, "authorization,x-sync-token")
            .send()
    };

    let allowed = preflight("https://app.example.com").await.unwrap();
    let refused = preflight("https://evil.example.net").await.unwrap();
    let simple = app
        .http
        .get(app.url("/api/health"))
        .header(ORIGIN, "https://app.example.com")
        .send()
        .await
        .unwrap();

    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()[ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    let allow_headers = allowed.headers()[ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allow_headers.contains("authorization"), "{allow_headers}");
    assert!(allow_headers.contains("x-sync-token"), "{allow_headers}");
    assert!(allowed.headers().contains_key("access-control-max-age"));
    assert!(
        !refused.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN),
        "{:?}",
        refused.headers()
    );
    let exposed = simple.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("x-sync-token")
            && exposed.contains("retry-after")
            && exposed.contains("location"),
        "{exposed}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_response_is_gzipped_when_the_client_accepts_it() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;

    let gzipped = app
        .http
        .get(app.url("/api/openapi.json"))
        .header(ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    let plain = app
        .http
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();

    assert_eq!(gzipped.status(), StatusCode::OK);
    assert_eq!(gzipped.headers()[CONTENT_ENCODING], "gzip");
    let compressed = gzipped.bytes().await.unwrap();
    assert_eq!(&compressed[..2], &[0x1f, 0x8b], "gzip magic");
    assert!(!plain.headers().contains_key(CONTENT_ENCODING));
    let plain = plain.bytes().await.unwrap();
    assert!(
        compressed.len() < plain.len(),
        "{} vs {}",
        compressed.len(),
        plain.len()
    );
    // A small body (one health document) is not worth compressing.
    let small = app
        .http
        .get(app.url("/api/health"))
        .header(ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert!(!small.headers().contains_key(CONTENT_ENCODING));
    assert!(small.bytes().await.unwrap().len() < 1024);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_id_is_echoed_or_generated() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;

    let given = app
        .http
        .get(app.url("/api/health"))
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    let generated = app.http.get(app.url("/api/health")).send().await.unwrap();
    let unknown = app.http.get(app.url("/nowhere")).send().await.unwrap();

    assert_eq!(given.headers()["x-request-id"], "req-123");
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(unknown.headers().contains_key("x-request-id"));
    assert!(
        !given.headers().contains_key("fly-region"),
        "no region, no header"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_requests_latency_replication_auth_and_pool() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    // A change applied from the stream (not the snapshot) gives the lag gauge a value.
    db.client
        .execute(
            "insert into products (owner_id, name) values ('u', 'milk')",
            &[],
        )
        .await
        .unwrap();
    app.catch_up(&db).await;
    app.http.get(app.url("/api/health")).send().await.unwrap();
    app.http
        .get(app.url("/api/reorders"))
        .bearer_auth(app.token("u", &[]))
        .send()
        .await
        .unwrap();

    // Act
    let resp = app.http.get(app.url("/metrics")).send().await.unwrap();

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    for expected in [
        r#"http_requests_total{method="GET",route="/api/health",status="200"} 1"#,
        r#"http_requests_total{method="GET",route="/api/reorders",status="200"} 1"#,
        r#"http_request_duration_seconds_bucket{method="GET",route="/api/health",le="0.005"}"#,
        "http_request_duration_seconds_count",
        "auto_order_replica_ready 1",
        "auto_order_replica_lag_seconds ",
        "auto_order_replica_last_pull_age_seconds ",
        "auto_order_replica_watermark ",
        "auto_order_sync_applied_batches_total ",
        "auto_order_sync_applied_changes_total ",
        "auto_order_sync_resyncs_total ",
        "auto_order_sync_forks_total 0",
        "auto_order_sync_fatal_error 0",
        "auto_order_sync_resync_failures 0",
        "auto_order_replica_staleness_seconds ",
        "auto_order_sync_horizon_held ",
        "auto_order_sync_primary_schema_newer 0",
        "auto_order_sync_upstream_standby 0",
        "auto_order_sync_backlog ",
        "auto_order_primary_reachable 1",
        "auto_order_primary_pool_size ",
        "auto_order_primary_pool_available ",
        "auto_order_jwks_age_seconds ",
        "auto_order_jwks_refreshes_total ",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("Bearer"), "no tokens in metrics");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_routes_answer_503_with_retry_after_before_the_first_sync() {
    // Arrange: an edge whose primary does not exist never completes its first sync.
    let dir = tempfile::tempdir().unwrap();
    let missing = crate::support::db::url_for("ao_test_does_not_exist");
    let data_dir = dir.path().display().to_string();
    let config = Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(missing.clone()),
        "DATA_DIR" => Some(data_dir.clone()),
        "PORT" => Some("0".into()),
        _ => None,
    })
    .unwrap();
    let app = Application::build(config).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let http = crate::support::http_client();
    let token = auto_order::auth::mint_dev_token(dir.path(), "alice", &[], Duration::from_secs(60))
        .unwrap();

    // Act
    let reorders = http
        .get(format!("{base}/api/reorders"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let prediction = http
        .get(format!("{base}/api/predictions/{}", uuid::Uuid::new_v4()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let health = http.get(format!("{base}/api/health")).send().await.unwrap();

    // Assert
    for resp in [&reorders, &prediction] {
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().contains_key(RETRY_AFTER));
    }
    let body: Value = reorders.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_a_route_does_not_have_gets_405_with_the_json_error_and_allow() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let alice = Api::new(&app, "alice");

    let put = send(alice.request(Method::PUT, "/api/products")).await;

    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED, "{put:?}");
    assert_eq!(put.error().0, "method_not_allowed");
    let allow = put.header("allow").expect("an Allow header");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_eq!(count(&db, "products").await, 0);
    app.stop().await;
}
