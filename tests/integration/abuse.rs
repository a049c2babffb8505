//! An anonymous (or merely authenticated) client on the open internet, against a real edge:
//! made-up methods and paths, connections that never finish, a half-sent request at
//! SIGTERM, forged sync tokens, admin attempts through `scope`, resyncs back to back. Each
//! test is one finding of issue 14, and fails on the code that had it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{ChildGuard, TestApp, TestDb};

/// Opens a raw connection to `app` and sends `bytes` (a request, or the start of one).
async fn connect_and_send(app: &TestApp, bytes: &[u8]) -> TcpStream {
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Reads until the server closes `stream`; returns how long that took, or `None` if it was
/// still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_all)
        .await
        .ok()
        .map(|()| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_do_not_grow_the_metrics() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let token = app.token("mallory", &[]);

    // Act: 2,000 requests, each with its own method and path, half with a valid token.
    let mut answered = 0;
    for i in 0..2000 {
        let method = Method::from_bytes(format!("X{i:04}MADEUP").as_bytes()).unwrap();
        let mut request = app
            .http
            .request(method, app.url(&format!("/api/nothing-{i}/{}", i * 7)));
        if i % 2 == 0 {
            request = request.bearer_auth(&token);
        }
        answered += u32::from(request.send().await.is_ok());
    }
    let metrics = app.metrics_text().await;

    // Assert: the requests are counted, under bounded labels only.
    assert_eq!(answered, 2000);
    assert!(
        metrics.len() < 64 * 1024,
        "/metrics is {} bytes after 2,000 made-up requests",
        metrics.len()
    );
    assert!(!metrics.contains("MADEUP"), "a raw method became a label");
    assert!(!metrics.contains("nothing-"), "a raw path became a label");
    assert!(
        metrics.contains(r#"method="other""#) && metrics.contains(r#"route="unmatched""#),
        "made-up requests are counted as other/unmatched"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_live_on_their_own_port_only() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(&db.url, &[("METRICS_PORT", "0")]).await;
    let metrics_port = app.metrics_port.expect("a metrics listener");

    // Act
    let public = app.http.get(app.url("/metrics")).send().await.unwrap();
    let internal = app
        .http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    let health_on_internal = app
        .http
        .get(format!("http://127.0.0.1:{metrics_port}/api/health"))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    assert_eq!(internal.status(), StatusCode::OK);
    assert!(
        internal
            .text()
            .await
            .unwrap()
            .contains("auto_order_replica_ready")
    );
    assert_eq!(health_on_internal.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_their_headers_are_closed() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(&db.url, &[("HTTP_HEADER_TIMEOUT_MS", "500")]).await;

    // Act: 50 connections each send half a request head and stop; one sends nothing.
    let mut slow = Vec::new();
    for _ in 0..50 {
        slow.push(connect_and_send(&app, b"GET /api/health HTTP/1.1\r\nHost: x\r\n").await);
    }
    let mut silent = connect_and_send(&app, b"").await;

    // Assert: every one is closed by the server within the timeout (plus slack).
    for stream in &mut slow {
        let closed = closed_within(stream, Duration::from_secs(5)).await;
        assert!(
            closed.is_some(),
            "a connection with half a head is still open"
        );
    }
    assert!(
        closed_within(&mut silent, Duration::from_secs(5))
            .await
            .is_some()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_timeout() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(&db.url, &[("HTTP_HEADER_TIMEOUT_MS", "500")]).await;

    // Act: one complete request, then nothing on the kept-alive connection.
    let mut stream = connect_and_send(
        &app,
        b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    )
    .await;
    let closed = closed_within(&mut stream, Duration::from_secs(5)).await;

    // Assert
    let closed = closed.expect("the idle connection is closed");
    assert!(
        closed >= Duration::from_millis(400),
        "closed after {closed:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_until_one_closes() {
    // Arrange: a cap of 2, both taken by connections that send nothing.
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(&db.url, &[("HTTP_MAX_CONNECTIONS", "2")]).await;
    let first = connect_and_send(&app, b"GET /api/health HTTP/1.1\r\n").await;
    let second = connect_and_send(&app, b"GET /api/health HTTP/1.1\r\n").await;

    // Act: a third, complete request; then the first connection goes away.
    let mut third = connect_and_send(
        &app,
        b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let mut head = [0u8; 12];
    let while_full = tokio::time::timeout(Duration::from_millis(700), third.read(&mut head)).await;
    drop(first);
    let after = tokio::time::timeout(Duration::from_secs(10), third.read_exact(&mut head)).await;

    // Assert
    assert!(while_full.is_err(), "answered past the connection cap");
    assert!(after.is_ok(), "not answered once a connection closed");
    assert_eq!(&head, b"HTTP/1.1 200");
    drop(second);
    app.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_half_sent_request_exits_within_the_drain_deadline() {
    // Arrange: the binary, a header timeout far past the drain deadline.
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_auto-order"))
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("DATA_DIR", dir.path())
            .env("PORT", port.to_string())
            .env("LOG_LEVEL", "warn")
            .env("HTTP_HEADER_TIMEOUT_MS", "60000")
            .env("SHUTDOWN_TIMEOUT_MS", "1000")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = crate::support::http_client();
    let health = format!("http://127.0.0.1:{port}/api/health");
    crate::support::wait_until("the edge answers", Duration::from_secs(30), || {
        let request = http.get(&health).send();
        async move { request.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    let mut half = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    half.write_all(b"POST /api/products HTTP/1.1\r\nHost: x\r\nContent-Le")
        .await
        .unwrap();

    // Act
    let signalled = Instant::now();
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut exit = None;
    while signalled.elapsed() < Duration::from_secs(15) {
        if let Some(status) = child.0.try_wait().unwrap() {
            exit = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Assert: out within the 1 s deadline (plus the engine's stop), and cleanly.
    let exit = exit.expect("still running 15 s after SIGTERM");
    assert!(exit.success(), "{exit:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(8),
        "took {:?}",
        signalled.elapsed()
    );
    drop(half);
}

/// The value of an unlabelled gauge or counter in a Prometheus exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_sync_tokens_are_refused_at_once_without_touching_the_primary() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let token = app.token("mallory", &[]);

    // Act
    let mut answers = Vec::new();
    for forged in [
        "9223372036854775808",
        "18446744073709551615",
        "9223372036854775807",
    ] {
        let started = Instant::now();
        let response = app
            .http
            .get(app.url("/api/products"))
            .bearer_auth(&token)
            .header("x-sync-token", forged)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        answers.push((status, body, started.elapsed()));
    }
    let metrics = app.metrics_text().await;

    // Assert: 400 with the JSON error, well before the read-your-writes bound (1 s), and
    // no connection to the primary was ever opened for a read.
    for (status, body, took) in answers {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
        assert!(took < Duration::from_millis(500), "took {took:?}");
    }
    assert_eq!(metric(&metrics, "auto_order_primary_pool_size"), 0.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_fallback_reads_have_their_own_budget_and_writes_go_on() {
    // Arrange: one primary read at a time, no waiting for the replica; the orders table is
    // locked on the primary, so a primary read of orders hangs while it holds its permit.
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(
        &db.url,
        &[
            ("PRIMARY_READ_CONCURRENCY", "1"),
            ("READ_YOUR_WRITES_TIMEOUT_MS", "0"),
        ],
    )
    .await;
    let token = app.token("alice", &[]);
    let ahead = (app.sync.watermark() + 5_000_000).to_string();
    let mut locker = db.connect().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("lock table orders in access exclusive mode")
        .await
        .unwrap();
    let read = || {
        app.http
            .get(app.url("/api/orders"))
            .bearer_auth(&token)
            .header("x-sync-token", &ahead)
            .send()
    };

    // Act: the first read takes the only permit and hangs on the lock; the next two
    // wait for the permit; a write meanwhile.
    let first = tokio::spawn(read());
    crate::support::wait_until(
        "the first read waits on the lock",
        Duration::from_secs(10),
        || {
            let client = &db.client;
            async move {
                client
                    .query_one(
                        "select count(*) from pg_stat_activity \
                     where wait_event_type = 'Lock' and query like '%orders%'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
                    > 0
            }
        },
    )
    .await;
    let (second, third) = tokio::join!(read(), read());
    let write = app
        .http
        .post(app.url("/api/products"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "name": "milk" }))
        .send()
        .await
        .unwrap();
    lock.rollback().await.unwrap();
    let first = first.await.unwrap().unwrap();

    // Assert
    for waited in [second.unwrap(), third.unwrap()] {
        assert_eq!(waited.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(waited.headers().contains_key("retry-after"));
    }
    assert_eq!(
        write.status(),
        StatusCode::CREATED,
        "writes keep their pool"
    );
    assert_eq!(first.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_history_is_read_bounded_and_the_same_from_replica_and_primary() {
    // Arrange: 150 purchases of one product, a day apart.
    let db = TestDb::new().await;
    let id: uuid::Uuid = db
        .client
        .query_one(
            "insert into products (owner_id, name) values ('alice', 'milk') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    db.client
        .execute(
            "insert into orders (owner_id, product_id, quantity, ordered_at) \
             select 'alice', $1, 1, now() - make_interval(days => n) \
               from generate_series(1, 150) n",
            &[&id],
        )
        .await
        .unwrap();
    let app = TestApp::spawn(&db).await;
    app.catch_up(&db).await;
    let token = app.token("alice", &[]);
    let ahead = (app.sync.watermark() + 5_000_000).to_string();
    let get = |path: String, sync_token: Option<String>| {
        let mut request = app.http.get(app.url(&path)).bearer_auth(&token);
        if let Some(t) = sync_token {
            request = request.header("x-sync-token", t);
        }
        async move {
            let body: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
            body
        }
    };

    // Act
    let replica = get(format!("/api/predictions/{id}"), None).await;
    let primary = get(format!("/api/predictions/{id}"), Some(ahead.clone())).await;
    let reorders_replica = get("/api/reorders?within_days=365".into(), None).await;
    let reorders_primary = get("/api/reorders?within_days=365".into(), Some(ahead)).await;

    // Assert
    assert_eq!(replica["purchases_used"], 100, "{replica}");
    assert_eq!(replica, primary);
    assert_eq!(reorders_replica["items"][0]["purchases_used"], 100);
    assert_eq!(reorders_replica, reorders_primary);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_check_needs_the_admin_permission_and_no_write_connection() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let url = app.url("/api/health/db");

    // Act
    let anonymous = app.http.get(&url).send().await.unwrap();
    let user = app
        .http
        .get(&url)
        .bearer_auth(app.token("mallory", &[]))
        .send()
        .await
        .unwrap();
    let admin = app
        .http
        .get(&url)
        .bearer_auth(app.token("ops", &["admin:sync"]))
        .send()
        .await
        .unwrap();
    let admin_status = admin.status();
    let checks: serde_json::Value = admin.json().await.unwrap();
    let metrics = app.metrics_text().await;

    // Assert
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(user.status(), StatusCode::FORBIDDEN);
    assert_eq!(admin_status, StatusCode::OK);
    assert_eq!(checks["primary"]["ok"], true, "{checks}");
    assert_eq!(
        metric(&metrics, "auto_order_primary_pool_size"),
        0.0,
        "the check opened no connection of the write pool"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_health_names_the_class_of_the_last_error_not_its_text() {
    // Arrange: an edge whose primary goes away.
    let db = TestDb::new().await;
    let mut relay = crate::support::Relay::start("127.0.0.1:5432".parse().unwrap()).await;
    let app = TestApp::spawn_with(&relay.url_for(&db.url), &[]).await;

    // Act
    relay.cut();
    let sync = app.sync.clone();
    crate::support::wait_until(
        "the engine reports an error",
        Duration::from_secs(30),
        || {
            let s = sync.clone();
            async move { s.status().last_error.is_some() }
        },
    )
    .await;
    let health: serde_json::Value = app
        .http
        .get(app.url("/api/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin: serde_json::Value = app
        .http
        .get(app.url("/api/admin/sync"))
        .bearer_auth(app.token("ops", &["admin:sync"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Assert
    let class = health["replica"]["last_error"].as_str().expect("a class");
    assert!(
        ["fatal", "primary_unreachable", "transient"].contains(&class),
        "{health}"
    );
    let full = admin["last_error"].as_str().expect("the full error");
    assert_ne!(full, class, "the admin route keeps the engine's own text");
    relay.restore().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_give_their_connection_back_before_waiting_for_a_stalled_replica() {
    // Arrange: a transaction holds the primary's horizon, so the replica applies nothing
    // new and every write waits the whole read-your-writes bound.
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(&db.url, &[("READ_YOUR_WRITES_TIMEOUT_MS", "1500")]).await;
    let token = app.token("alice", &[]);
    let holder = db.connect().await;
    holder
        .batch_execute("begin; select pg_current_xact_id();")
        .await
        .unwrap();

    // Act: three times the write pool's 16 connections at once.
    let writes = (0..48).map(|i| {
        app.http
            .post(app.url("/api/products"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "name": format!("item {i}") }))
            .send()
    });
    let answers = futures_util::future::join_all(writes).await;
    holder.batch_execute("commit").await.unwrap();

    // Assert: held through the wait, the pool ran dry and writes past it answered 503.
    let statuses: Vec<StatusCode> = answers.into_iter().map(|r| r.unwrap().status()).collect();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::CREATED),
        "{statuses:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_sync_in_the_scope_claim_does_not_make_an_admin() {
    // Arrange: a real token of the dev issuer with admin:sync as a scope only.
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let issuer = auto_order::auth::DevIssuer::load_or_create(&app.data_dir).unwrap();
    let scoped = issuer
        .mint_with(
            "mallory",
            Duration::from_secs(600),
            serde_json::json!({ "scope": "openid admin:sync" }),
        )
        .unwrap();

    // Act
    let resync = app
        .http
        .post(app.url("/api/admin/resync"))
        .bearer_auth(&scoped)
        .send()
        .await
        .unwrap();
    let status = app
        .http
        .get(app.url("/api/admin/sync"))
        .bearer_auth(&scoped)
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(resync.status(), StatusCode::FORBIDDEN);
    assert_eq!(status.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.sync.status().resyncs, 1, "no resync was started");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_resyncs_back_to_back_are_joined_then_refused_until_the_cooldown() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(&db.url, &[("RESYNC_COOLDOWN", "10m")]).await;
    let admin = app.token("ops", &["admin:sync"]);
    let resync = || {
        app.http
            .post(app.url("/api/admin/resync"))
            .bearer_auth(&admin)
            .send()
    };

    // Act: one, another at once, and one more after the first has finished.
    let first = resync().await.unwrap();
    let joined = resync().await.unwrap();
    let sync = app.sync.clone();
    crate::support::wait_until("the forced resync ran", Duration::from_secs(30), || {
        let s = sync.clone();
        async move { s.status().resyncs >= 2 }
    })
    .await;
    let too_soon = resync().await.unwrap();

    // Assert
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: serde_json::Value = first.json().await.unwrap();
    assert_eq!(first["started"], true, "{first}");
    assert_eq!(joined.status(), StatusCode::ACCEPTED);
    let joined: serde_json::Value = joined.json().await.unwrap();
    assert_eq!(joined["started"], false, "{joined}");
    assert!(joined["status"]["phase"].is_string(), "{joined}");
    assert_eq!(too_soon.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = too_soon.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((500..=600).contains(&retry_after), "{retry_after}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_past_32_kib_gets_431_and_the_connection_closes() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let huge = format!(
        "GET /api/health HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );

    // Act: write what the server reads, then see its answer.
    let mut stream = connect_and_send(&app, b"").await;
    let _ = stream.write_all(huge.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;

    // Assert
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.80}");
    app.stop().await;
}
