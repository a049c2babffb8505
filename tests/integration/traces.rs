//! Traces over OTLP, end to end: `auto-order serve` as a process exporting to a real OTLP
//! receiver. One request is one trace, a child of the caller's `traceparent`, with its auth,
//! read, primary and read-your-writes spans beneath the request's; a write handed to the
//! primary region with `fly-replay` continues the trace there; the sync engine's applies are
//! traces of their own; the logs carry the trace id;
//! and a collector that never answers costs nothing but the spans.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::support::otlp::{OtlpReceiver, ReceivedSpan, StalledCollector};
use crate::support::{ChildGuard, TestDb, wait_until};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const READ_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

struct Edge {
    child: ChildGuard,
    url: String,
    token: String,
    logs: Arc<Mutex<Vec<String>>>,
}

/// `auto-order serve` in region `lhr` (the primary's is `iad`) in fly-replay mode, exporting
/// to `endpoint`, with a dev-issuer token for user `u1`.
async fn start_edge(db: &TestDb, dir: &std::path::Path, endpoint: &str) -> Edge {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("DATA_DIR", dir.to_str().unwrap()),
        ("LOG_LEVEL", "info"),
        ("FLY_REGION", "lhr"),
        ("PRIMARY_REGION", "iad"),
        ("FLY_MACHINE_ID", "machine-1"),
        ("WRITE_MODE", "fly-replay"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
        ("RATE_LIMIT_MAX", "10000"),
    ];
    let token = Command::new(env!("CARGO_BIN_EXE_auto-order"))
        .args(["token", "--sub", "u1"])
        .envs(env)
        .output()
        .unwrap();
    assert!(token.status.success(), "{token:?}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_auto-order"))
        .arg("serve")
        .envs(env)
        .env("PORT", port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(line);
        }
    });
    let edge = Edge {
        child: ChildGuard(child),
        url: format!("http://127.0.0.1:{port}"),
        // The token is the last line (log lines may come first).
        token: String::from_utf8(token.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_owned(),
        logs,
    };
    let http = crate::support::http_client();
    let health = format!("{}/api/health", edge.url);
    wait_until("the edge is healthy", Duration::from_secs(30), || {
        let request = http.get(&health).send();
        async move {
            match request.await {
                Ok(r) => r.json::<serde_json::Value>().await.unwrap_or_default()["status"] == "ok",
                Err(_) => false,
            }
        }
    })
    .await;
    edge
}

/// Whether `span` descends from the span `ancestor` within `trace`.
fn beneath(trace: &[ReceivedSpan], span: &ReceivedSpan, ancestor: &str) -> bool {
    let mut parent = span.parent_span_id.as_str();
    while !parent.is_empty() {
        if parent == ancestor {
            return true;
        }
        parent = trace
            .iter()
            .find(|s| s.span_id == parent)
            .map_or("", |s| s.parent_span_id.as_str());
    }
    false
}

fn named<'a>(trace: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    trace
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {trace:#?}"))
}

#[tokio::test]
async fn a_write_and_a_read_are_traces_from_the_callers_span_to_the_primary_and_the_replica() {
    // Arrange
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let receiver = OtlpReceiver::start().await;
    let edge = start_edge(&db, dir.path(), &receiver.endpoint).await;
    let http = crate::support::http_client();
    let caller = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let post = |replay_src: Option<String>| {
        let mut request = http
            .post(format!("{}/api/products", edge.url))
            .bearer_auth(&edge.token)
            .header("traceparent", &caller)
            .json(&json!({"name": "Oat milk"}));
        if let Some(src) = replay_src {
            request = request.header("fly-replay-src", src);
        }
        request.send()
    };

    // Act: the write reaches this edge outside the primary region, which hands it on; Fly
    // replays it (same headers, plus fly-replay-src with the state) in the primary region.
    let handed_on = post(None).await.unwrap();
    let replay = handed_on.headers()["fly-replay"]
        .to_str()
        .unwrap()
        .to_owned();
    let state = replay
        .split(';')
        .find_map(|p| p.strip_prefix("state="))
        .map(str::to_owned);
    let replayed = post(Some(format!(
        "instance=machine-1;region=lhr;t=1;state={}",
        state.clone().unwrap_or_default()
    )))
    .await
    .unwrap();
    let sync_token = replayed.headers()["x-sync-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let read = http
        .get(format!("{}/api/products", edge.url))
        .bearer_auth(&edge.token)
        .header("traceparent", format!("00-{READ_TRACE}-{CALLER_SPAN}-01"))
        .header("x-sync-token", &sync_token)
        .send()
        .await
        .unwrap();

    // Assert: the hand-over
    assert_eq!(handed_on.status(), 409);
    assert_eq!(replayed.status(), 201);
    assert_eq!(read.status(), 200);
    let state = state.expect("the replay carries the trace in its state");
    assert!(state.starts_with(&format!("00-{TRACE}-")), "{replay}");
    let handing_span = state.split('-').nth(2).unwrap().to_owned();

    // Assert: the write's trace
    // A parent ends after its children, and spans leave in the order they end: once the
    // executed request's span is in, the spans beneath it are too.
    let write = receiver
        .wait_for(TRACE, "the executed request", |s| {
            s.name == "POST /api/products" && s.parent_span_id == handing_span
        })
        .await;
    let first = write
        .iter()
        .find(|s| s.span_id == handing_span)
        .expect("the handing-over edge's request span is exported");
    assert_eq!(first.name, "POST /api/products");
    assert_eq!(
        first.parent_span_id, CALLER_SPAN,
        "a child of the caller's span"
    );
    assert_eq!(first.attributes["http.response.status_code"], "409");
    let executed = write
        .iter()
        .find(|s| s.name == "POST /api/products" && s.parent_span_id == handing_span)
        .unwrap_or_else(|| panic!("the replayed request is a child of the hand-over: {write:#?}"));
    assert_eq!(executed.attributes["http.response.status_code"], "201");
    assert_eq!(executed.attributes["http.route"], "/api/products");
    for inner in ["auth.verify", "primary.create", "sync.wait_write"] {
        assert!(
            write
                .iter()
                .any(|s| s.name == inner && beneath(&write, s, &executed.span_id)),
            "{inner} beneath the executed request: {write:#?}"
        );
    }
    assert_eq!(
        named(&write, "primary.create").attributes["db.system.name"],
        "postgresql"
    );
    assert_eq!(executed.resource["service.name"], "auto-order-edge");
    assert_eq!(executed.resource["cloud.region"], "lhr");
    assert_eq!(executed.resource["service.instance.id"], "machine-1");

    // Assert: the read's trace (the write invalidated the cache: a replica read)
    let reading = receiver
        .wait_for(READ_TRACE, "the read's request", |s| {
            s.name == "GET /api/products"
        })
        .await;
    let request = named(&reading, "GET /api/products");
    let read_span = named(&reading, "read");
    assert_eq!(request.parent_span_id, CALLER_SPAN);
    assert_eq!(read_span.parent_span_id, request.span_id);
    assert_eq!(read_span.attributes["source"], "replica");
    assert_eq!(
        named(&reading, "replica.query").parent_span_id,
        read_span.span_id
    );

    // Assert: the engine's apply of the write is a trace of its own
    let apply = receiver
        .wait_for_any("sync.apply with changes", |s| {
            s.name == "sync.apply" && s.attributes["changes"] != "0"
        })
        .await;
    assert!(apply.parent_span_id.is_empty(), "a root span: {apply:?}");
    assert!(
        apply.attributes["changes"].parse::<u64>().unwrap() >= 1,
        "{apply:?}"
    );
    assert_eq!(apply.resource["cloud.region"], "lhr");

    // Assert: the logs carry the trace id
    let logs = edge.logs.lock().unwrap().clone();
    assert!(
        logs.iter()
            .any(|l| l.contains("request handled") && l.contains(TRACE)),
        "a request's log line names its trace: {logs:#?}"
    );
    drop(edge.child);
}

#[tokio::test]
async fn a_collector_that_never_answers_costs_requests_nothing_and_exit_stays_bounded() {
    // Arrange
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let collector = StalledCollector::start().await;
    let mut edge = start_edge(&db, dir.path(), &collector.endpoint).await;
    let http = crate::support::http_client();

    // Act: far more spans than the queue holds, while every export hangs
    let mut statuses = Vec::new();
    for i in 0..300 {
        let response = http
            .get(format!("{}/api/products", edge.url))
            .bearer_auth(&edge.token)
            .header("traceparent", format!("00-{TRACE}-{:016x}-01", i + 1))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    let pid = edge.child.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let logs = edge.logs.clone();
    let exited = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(25);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = edge.child.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })
    .await
    .unwrap();

    // Assert
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let logs = logs.lock().unwrap().clone();
    assert!(
        logs.iter()
            .any(|l| l.contains("opentelemetry") && l.contains("ERROR")),
        "the failing exports are logged: {logs:#?}"
    );
    let exited = exited.expect("exits within Fly's kill_timeout with the collector hanging");
    assert!(exited.success(), "{exited:?}");
}
