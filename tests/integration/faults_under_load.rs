//! Faults under load, through the real HTTP API (issue 6), with a TCP relay between the
//! edge and Postgres: the primary cut off for 10 s while readers and writers keep going
//! (cut while a write transaction is open); a primary that stalls (answers nothing, refuses
//! nothing); an edge process SIGKILLed while writers write, restarted on its volume; a slow
//! primary; a long transaction holding the primary's horizon. Across all of them: reads are
//! served from the replica, writes answer 201 or a prompt JSON 503, no acknowledged write is
//! lost, no unacknowledged write is half applied (a create and its Idempotency-Key row are
//! one transaction: both or neither), a retry with the key creates exactly once, and the
//! replica ends equal to the primary.
//!
//! Connection cuts in the middle of a pull or a resync are in `sync_faults.rs`; a SIGKILL in
//! the middle of an apply in `sync_crash.rs`; the token fallback on a lagging edge in
//! `api_consistency.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auto_order::api::middleware::primary_bound::PRIMARY_TIMEOUT;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::edge::assert_replica_file_same_as_primary;
use crate::support::{Api, ChildGuard, Relay, TestApp, TestDb, send, wait_until};

/// `READ_YOUR_WRITES_TIMEOUT_MS` of these tests' edges (a committed write waits this long
/// for the replica at most).
const RYW_MS: u64 = 500;
/// Slack for a loaded test machine.
const MARGIN: Duration = Duration::from_secs(2);
/// The client gives up on a request after this: a request that needs it has hung.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of every edge here: no rate limit in the way of the load, and a short wait
/// for the replica after a write (`RYW_MS`).
const EDGE_VARS: &[(&str, &str)] = &[
    ("RATE_LIMIT_MAX", "1000000"),
    ("READ_YOUR_WRITES_TIMEOUT_MS", "500"),
];

/// One request made by the load, and how it went.
#[derive(Debug, Clone)]
struct Call {
    started: Instant,
    took: Duration,
    /// `None`: no HTTP answer at all (connection refused or reset, or the client timeout).
    status: Option<StatusCode>,
    body: Value,
    retry_after: bool,
    /// For creates: the Idempotency-Key and the (unique) product name sent.
    key: String,
    name: String,
}

impl Call {
    fn ended(&self) -> Instant {
        self.started + self.took
    }

    fn acknowledged(&self) -> bool {
        self.status.is_some_and(|s| s.is_success())
    }
}

/// Sends `request`, recording the outcome instead of panicking on a transport error.
async fn call(request: reqwest::RequestBuilder, key: &str, name: &str) -> Call {
    let started = Instant::now();
    let (status, body, retry_after) = match request.timeout(CLIENT_TIMEOUT).send().await {
        Ok(response) => {
            let status = response.status();
            let retry_after = response.headers().contains_key("retry-after");
            let bytes = response.bytes().await.unwrap_or_default();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (Some(status), body, retry_after)
        }
        Err(_) => (None, Value::Null, false),
    };
    Call {
        started,
        took: started.elapsed(),
        status,
        body,
        retry_after,
        key: key.to_owned(),
        name: name.to_owned(),
    }
}

/// One user's load on an edge at `base_url`: writers creating products (with an
/// Idempotency-Key: the product and its key are two rows of one transaction) and readers
/// listing them and reading one, without a sync token (so only the replica is asked).
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    writes: Arc<Mutex<Vec<Call>>>,
    reads: Arc<Mutex<Vec<Call>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(base_url: &str, token: &str, read_id: &str, writers: usize, readers: usize) -> Load {
        let http = crate::support::http_client();
        let mut load = Load {
            stop: Default::default(),
            acked: Default::default(),
            writes: Default::default(),
            reads: Default::default(),
            tasks: Vec::new(),
        };
        for w in 0..writers {
            let (http, token, base) = (http.clone(), token.to_owned(), base_url.to_owned());
            let (stop, acked, writes) =
                (load.stop.clone(), load.acked.clone(), load.writes.clone());
            load.tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (key, name) = (format!("key-{w}-{n}"), format!("w{w}-{n}"));
                    let url = format!("{base}/api/products");
                    let request = http
                        .post(url)
                        .bearer_auth(&token)
                        .header("idempotency-key", &key)
                        .json(&json!({ "name": name, "notes": "load" }));
                    let done = call(request, &key, &name).await;
                    // Pacing, so that the writers do not turn into a busy loop on two
                    // cores; longer after a failure, like a client backing off.
                    let pause = if done.acknowledged() {
                        acked.fetch_add(1, Ordering::Relaxed);
                        Duration::from_millis(100)
                    } else {
                        Duration::from_millis(250)
                    };
                    writes.lock().unwrap().push(done);
                    tokio::time::sleep(pause).await;
                }
            }));
        }
        for r in 0..readers {
            let (http, token, base) = (http.clone(), token.to_owned(), base_url.to_owned());
            let (stop, reads) = (load.stop.clone(), load.reads.clone());
            let one = format!("/api/products/{read_id}");
            load.tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let path = if (n + r) % 2 == 0 {
                        "/api/products?limit=20"
                    } else {
                        one.as_str()
                    };
                    let url = format!("{base}{path}");
                    let done = call(http.get(url).bearer_auth(&token), "", "").await;
                    reads.lock().unwrap().push(done);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        load
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` further writes have been acknowledged.
    async fn wait_for_acks(&self, more: usize, what: &str) {
        let target = self.acked() + more;
        let acked = self.acked.clone();
        wait_until(what, Duration::from_secs(30), || {
            let acked = acked.clone();
            async move { acked.load(Ordering::Relaxed) >= target }
        })
        .await;
    }

    /// Stops the load and returns (writes, reads).
    async fn finish(self) -> (Vec<Call>, Vec<Call>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        let writes = std::mem::take(&mut *self.writes.lock().unwrap());
        let reads = std::mem::take(&mut *self.reads.lock().unwrap());
        (writes, reads)
    }
}

/// The owner's products on the primary: name → id.
async fn primary_products(db: &TestDb, owner: &str) -> BTreeMap<String, String> {
    db.client
        .query(
            "select name, id::text from products where owner_id = $1",
            &[&owner],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The owner's recorded Idempotency-Keys on the primary: key → the product id it created.
async fn primary_keys(db: &TestDb, owner: &str) -> BTreeMap<String, Option<String>> {
    db.client
        .query(
            "select key, resource_id::text from idempotency_keys where owner_id = $1",
            &[&owner],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Asserts that every acknowledged create is on the primary as it was answered, and that
/// every other create is all or nothing: its product and its Idempotency-Key row are both
/// there (and point at each other) or both absent.
async fn assert_no_lost_or_half_applied_creates(db: &TestDb, owner: &str, writes: &[Call]) {
    let products = primary_products(db, owner).await;
    let keys = primary_keys(db, owner).await;
    for w in writes {
        let product = products.get(&w.name);
        let key = keys.get(&w.key);
        if w.acknowledged() {
            assert_eq!(
                product.map(String::as_str),
                w.body["id"].as_str(),
                "acknowledged create {} is on the primary",
                w.name
            );
        }
        match (product, key) {
            (None, None) => {}
            (Some(id), Some(created)) => assert_eq!(
                created.as_ref(),
                Some(id),
                "{}: the key records the product it created",
                w.name
            ),
            (p, k) => panic!(
                "{} ({:?}) is half applied: product {p:?}, key {k:?}",
                w.name, w.status
            ),
        }
    }
}

/// Retries, with its Idempotency-Key (as a client would), every unacknowledged create that
/// `may_have_applied` (it could have reached the primary) and asserts each now answers 201;
/// the other unacknowledged creates must have left nothing. Then every product on the
/// primary is one of the creates acknowledged or retried, exactly once.
async fn assert_retries_create_exactly_once(
    db: &TestDb,
    api: &Api<'_>,
    owner: &str,
    writes: &[Call],
    may_have_applied: impl Fn(&Call) -> bool,
) {
    let (retries, refused): (Vec<&Call>, Vec<&Call>) = writes
        .iter()
        .filter(|w| !w.acknowledged())
        .partition(|w| may_have_applied(w));
    let before = primary_products(db, owner).await;
    for w in &refused {
        assert!(
            !before.contains_key(&w.name),
            "a refused create left a row: {w:?}"
        );
    }
    let mut sent: BTreeSet<String> = writes
        .iter()
        .filter(|w| w.acknowledged())
        .map(|w| w.name.clone())
        .collect();
    sent.extend(retries.iter().map(|w| w.name.clone()));
    let answers: Vec<(String, StatusCode)> = futures_util::stream::iter(retries)
        .map(|w| async move {
            let request = api
                .request(reqwest::Method::POST, "/api/products")
                .header("idempotency-key", &w.key)
                .json(&json!({ "name": w.name, "notes": "load" }));
            (w.name.clone(), send(request).await.status)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (name, status) in &answers {
        assert_eq!(*status, StatusCode::CREATED, "retry of {name}");
    }
    let on_primary: BTreeSet<String> = primary_products(db, owner)
        .await
        .into_keys()
        .filter(|n| n.starts_with('w'))
        .collect();
    assert_eq!(on_primary, sent, "one product per create, none twice");
    let count: i64 = db
        .client
        .query_one(
            "select count(*) from products where owner_id = $1 and name like 'w%'",
            &[&owner],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count as usize, sent.len(), "no create applied twice");
}

/// Whether a transaction that took a txid (a write: the edge's sync token takes one) is
/// open on `db`, other than the test's own connection.
async fn write_in_flight(db: &TestDb) -> bool {
    let open: i64 = db
        .client
        .query_one(
            "select count(*) from pg_stat_activity
              where datname = current_database() and backend_xid is not null
                and pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    open > 0
}

async fn health(http: &reqwest::Client, base_url: &str) -> Value {
    let reply = send(http.get(format!("{base_url}/api/health"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_a_primary_cut_for_10s_under_load_keeps_reads_fails_writes_fast_and_loses_nothing() {
    // Arrange: an edge reaching the primary through a relay; three writers and three readers
    // on it, as one user with a real token.
    const CUT: Duration = Duration::from_secs(10);
    let write_bound = PRIMARY_TIMEOUT + Duration::from_millis(RYW_MS) + MARGIN;
    let db = TestDb::new().await;
    let mut relay = Relay::start("127.0.0.1:5432".parse().unwrap()).await;
    let app = TestApp::spawn_with(&relay.url_for(&db.url), EDGE_VARS).await;
    let alice = Api::new(&app, "alice");
    let seed = alice.product("seed").await;
    app.catch_up(&db).await;
    let load = Load::start(&app.base_url, &alice.token, &seed, 3, 3);
    load.wait_for_acks(15, "writes acknowledged before the cut")
        .await;

    // Act: slow the primary down so that writes spend a while in their transactions, cut
    // it off while one is open (it has a txid), and bring it back after CUT.
    relay.set_latency(Duration::from_millis(50));
    wait_until(
        "a write transaction open on the primary",
        Duration::from_secs(30),
        || write_in_flight(&db),
    )
    .await;
    relay.cut();
    let cut_at = Instant::now();
    relay.set_latency(Duration::ZERO);
    let http = crate::support::http_client();
    let mut seen_degraded = false;
    while cut_at.elapsed() < CUT {
        seen_degraded |= health(&http, &app.base_url).await["status"] == "degraded";
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    relay.restore().await;
    let restored_at = Instant::now();
    load.wait_for_acks(15, "writes acknowledged after the cut")
        .await;
    let (writes, reads) = load.finish().await;
    app.catch_up(&db).await;

    // Assert: reads, all through the cut.
    let during = |c: &&Call| c.started >= cut_at && c.ended() <= restored_at;
    assert!(
        reads.iter().filter(during).count() >= 30,
        "reads kept coming during the cut"
    );
    for r in &reads {
        assert_eq!(
            r.status,
            Some(StatusCode::OK),
            "every read is served: {r:?}"
        );
    }
    assert!(
        seen_degraded,
        "health says degraded while the primary is away"
    );
    // Writes: each one 201 or a fast, clean 503.
    for w in &writes {
        match w.status {
            Some(StatusCode::CREATED) => {}
            Some(StatusCode::SERVICE_UNAVAILABLE) => {
                assert_eq!(w.body["error"]["code"], "unavailable", "{w:?}");
                assert!(w.retry_after, "503 carries Retry-After: {w:?}");
            }
            _ => panic!("a write answered neither 201 nor 503: {w:?}"),
        }
        assert!(
            w.took <= write_bound,
            "no write hangs past {write_bound:?}: {w:?}"
        );
    }
    assert!(
        writes
            .iter()
            .any(|w| w.started < cut_at && !w.acknowledged() && w.ended() > cut_at),
        "the cut caught a write in flight"
    );
    let cut_writes: Vec<&Call> = writes.iter().filter(during).collect();
    assert!(cut_writes.len() >= 10, "writes kept coming during the cut");
    for w in &cut_writes {
        assert_eq!(
            w.status,
            Some(StatusCode::SERVICE_UNAVAILABLE),
            "a write during the cut: {w:?}"
        );
    }
    // Nothing lost, nothing half applied, and the replica converged.
    assert_no_lost_or_half_applied_creates(&db, "alice", &writes).await;
    // Only a create in flight as the primary went or came back could have reached it.
    let in_flight = |w: &Call| !during(&w);
    assert_retries_create_exactly_once(&db, &alice, "alice", &writes, in_flight).await;
    app.catch_up(&db).await;
    assert_replica_file_same_as_primary(&db, &app.data_dir.join("replica.db"), &app.sync.status())
        .await;
}

/// `auto-order serve` as a child process on `dir` and `port` (0: any), with its bound port.
fn spawn_serve(db: &TestDb, dir: &Path, port: u16) -> (ChildGuard, u16) {
    use std::io::BufRead;
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_auto-order"))
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("DATA_DIR", dir)
            .env("PORT", port.to_string())
            // The server's start-up line says which port it bound.
            .env("LOG_LEVEL", "warn,auto_order::server=info")
            .env("SYNC_POLL_INTERVAL_MS", "50")
            .env("RATE_LIMIT_MAX", "1000000")
            .env("READ_YOUR_WRITES_TIMEOUT_MS", RYW_MS.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the edge process"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line: Value = serde_json::from_str(&line.unwrap()).unwrap_or_default();
        if line["fields"]["message"] == "serving" {
            let port = line["fields"]["port"].as_u64().expect("a port") as u16;
            std::thread::spawn(move || lines.for_each(drop));
            return (child, port);
        }
    }
    panic!("the edge process exited before serving");
}

fn resynced_at(dir: &Path) -> String {
    crate::support::edge::open_reader(&dir.join("replica.db"))
        .query_row("select resynced_at from sync_state", [], |r| r.get(0))
        .unwrap()
}

/// Commits transactions of two inserts and an update on the primary until `stop`, counting
/// them into `committed`.
async fn write_directly(db_url: String, stop: Arc<AtomicBool>, committed: Arc<AtomicUsize>) {
    let client = crate::support::db::connect(&db_url).await;
    while !stop.load(Ordering::Relaxed) {
        client
            .batch_execute(
                "begin;
                 insert into products (owner_id, name) values ('bob', 'direct'), ('bob', 'direct');
                 update products set reorder_quantity = reorder_quantity % 5 + 1
                  where id = (select id from products where owner_id = 'bob' limit 1);
                 commit;",
            )
            .await
            .unwrap();
        committed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_an_edge_killed_under_write_load_restarts_from_its_cursor_without_a_resync() {
    // Arrange: an edge process with its first sync done; writers on the primary directly
    // and through the edge's API.
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = spawn_serve(&db, dir.path(), 0);
    let base_url = format!("http://127.0.0.1:{port}");
    let http = crate::support::http_client();
    wait_until("the edge's first sync", Duration::from_secs(60), || async {
        let r = http.get(format!("{base_url}/api/health")).send().await;
        r.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    let token =
        auto_order::auth::mint_dev_token(dir.path(), "alice", &[], Duration::from_secs(600))
            .unwrap();
    let first_resync = resynced_at(dir.path());
    let (stop, committed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let direct = tokio::spawn(write_directly(
        db.url.clone(),
        stop.clone(),
        committed.clone(),
    ));
    let load = Load::start(&base_url, &token, "", 2, 0);
    load.wait_for_acks(10, "writes through the edge before the kill")
        .await;
    let at_kill = health(&http, &base_url).await["replica"]["watermark"]
        .as_u64()
        .unwrap();

    // Act: SIGKILL the edge under the load; the primary goes on taking writes; restart the
    // edge on the same volume and port.
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    let before_restart = committed.load(Ordering::Relaxed);
    wait_until(
        "writes commit while the edge is down",
        Duration::from_secs(30),
        || {
            let committed = committed.clone();
            async move { committed.load(Ordering::Relaxed) >= before_restart + 20 }
        },
    )
    .await;
    let (_child, _) = spawn_serve(&db, dir.path(), port);
    load.wait_for_acks(10, "writes through the restarted edge")
        .await;
    stop.store(true, Ordering::Relaxed);
    direct.await.unwrap();
    let (writes, _) = load.finish().await;
    let fence = db.fence().await;
    wait_until(
        "the restarted edge catches up",
        Duration::from_secs(60),
        || async {
            health(&http, &base_url).await["replica"]["watermark"]
                .as_u64()
                .unwrap()
                > fence
        },
    )
    .await;
    let after = health(&http, &base_url).await;

    // Assert
    assert!(at_kill < fence, "the edge was killed with work ahead of it");
    assert_eq!(after["replica"]["resyncs"], 0, "no full resync: {after}");
    assert_eq!(resynced_at(dir.path()), first_resync, "no full resync");
    assert!(
        writes.iter().any(|w| !w.acknowledged()),
        "some writes met the dead edge"
    );
    assert_no_lost_or_half_applied_creates(&db, "alice", &writes).await;
    assert_replica_file_same_as_primary(&db, &dir.path().join("replica.db"), &after).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_a_slow_primary_slows_writes_but_not_reads() {
    // Arrange
    const LATENCY: Duration = Duration::from_millis(200);
    let db = TestDb::new().await;
    let relay = Relay::start("127.0.0.1:5432".parse().unwrap()).await;
    let app = TestApp::spawn_with(&relay.url_for(&db.url), EDGE_VARS).await;
    let alice = Api::new(&app, "alice");
    let seed = alice.product("seed").await;
    app.catch_up(&db).await;

    // Act: every chunk to and from the primary now waits LATENCY; readers run while a
    // writer makes three creates.
    relay.set_latency(LATENCY);
    let readers = Load::start(&app.base_url, &alice.token, &seed, 0, 2);
    let mut writes = Vec::new();
    for n in 0..3 {
        let started = Instant::now();
        let reply = alice
            .post("/api/products", json!({ "name": format!("slow-{n}") }))
            .await;
        writes.push((reply, started.elapsed()));
    }
    let (_, reads) = readers.finish().await;
    app.catch_up(&db).await;

    // Assert: writes succeed, slower than a round trip through the relay; reads do not
    // wait for the primary at all (one round trip to it would take 2 x LATENCY; a replica
    // read takes milliseconds, so LATENCY leaves a wide margin for a loaded machine).
    for (reply, took) in &writes {
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        assert!(
            *took >= 2 * LATENCY,
            "a write waits on the primary: {took:?}"
        );
    }
    assert!(reads.len() >= 10, "reads ran alongside the writes");
    for r in &reads {
        assert_eq!(r.status, Some(StatusCode::OK), "{r:?}");
        assert!(
            r.took < LATENCY,
            "a read is not slowed by the primary: {r:?}"
        );
    }
    assert_replica_file_same_as_primary(&db, &app.data_dir.join("replica.db"), &app.sync.status())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_a_long_transaction_holding_the_horizon_shows_growing_lag_and_token_reads_use_the_primary()
 {
    // Arrange: an edge with a product; then a transaction on the primary that stays open,
    // holding the horizon (nothing committed after it began can be pulled).
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(&db.url, &[("RATE_LIMIT_MAX", "1000000")]).await;
    let alice = Api::new(&app, "alice");
    let id = alice.product("Cheese").await;
    let path = format!("/api/products/{id}");
    app.catch_up(&db).await;
    let mut blocker = db.connect().await;
    let blocking = blocker.transaction().await.unwrap();
    let held: i64 = blocking
        .query_one("select pg_current_xact_id()::text::bigint", &[])
        .await
        .unwrap()
        .get(0);

    // Act: writes keep coming through the edge; health is sampled after each.
    let http = crate::support::http_client();
    let mut samples = Vec::new();
    let mut n = 0;
    let token = loop {
        n += 1;
        let patched = alice
            .patch(&path, json!({ "name": format!("Brie {n}") }))
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
        let token = patched.header("x-sync-token").unwrap();
        let h = health(&http, &app.base_url).await;
        let first = samples.first().map_or(0, |(_, first): &(u64, Value)| {
            first["replica"]["last_change_age_ms"].as_u64().unwrap()
        });
        let grown = h["replica"]["last_change_age_ms"]
            .as_u64()
            .unwrap()
            .saturating_sub(first);
        samples.push((token.parse::<u64>().unwrap(), h));
        if (samples.len() > 1 && grown > 2000) || n == 20 {
            break token;
        }
    };
    let started = Instant::now();
    let with_token = send(
        alice
            .request(reqwest::Method::GET, &path)
            .header("x-sync-token", &token),
    )
    .await;
    let took = started.elapsed();
    let without_token = send(alice.request(reqwest::Method::GET, &path)).await;
    blocking.rollback().await.unwrap();
    let fresh = alice.patch(&path, json!({ "name": "Gouda" })).await;
    app.catch_up(&db).await;
    let released_lag = health(&http, &app.base_url).await["replica"]["last_change_age_ms"]
        .as_u64()
        .unwrap();

    // Assert: while held, each sample is older than the last, the watermark and horizon
    // stay at the held transaction, and the write is past them.
    let lags: Vec<u64> = samples
        .iter()
        .map(|(_, h)| h["replica"]["last_change_age_ms"].as_u64().unwrap())
        .collect();
    assert!(
        lags.len() >= 2 && lags.windows(2).all(|w| w[1] > w[0]),
        "{lags:?}"
    );
    assert!(
        lags.last().unwrap() - lags[0] > 2000,
        "the lag grows while writes are acknowledged: {lags:?}"
    );
    for (token, h) in &samples {
        let watermark = h["replica"]["watermark"].as_u64().unwrap();
        let horizon = h["replica"]["primary_horizon"].as_u64().unwrap();
        assert!(watermark <= held as u64 && horizon <= held as u64, "{h}");
        assert!(*token > horizon, "the write is past the horizon: {h}");
    }
    // The read with the token waited its bound, then asked the primary.
    assert_eq!(with_token.status, StatusCode::OK, "{with_token:?}");
    assert_eq!(with_token.body["name"], format!("Brie {n}"));
    assert!(
        took < Duration::from_millis(1000) + MARGIN,
        "bounded: {took:?}"
    );
    assert_eq!(without_token.body["name"], "Cheese", "the replica lags");
    // Released: the replica caught up, a new write shows no lag, and it converged.
    assert_eq!(fresh.status, StatusCode::OK, "{fresh:?}");
    assert!(released_lag < 2000, "{released_lag} ms");
    assert_replica_file_same_as_primary(&db, &app.data_dir.join("replica.db"), &app.sync.status())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_a_stalled_primary_fails_writes_within_the_bound_with_a_clean_503() {
    // Arrange: an edge with open pooled connections to the primary.
    let write_bound = PRIMARY_TIMEOUT + Duration::from_millis(RYW_MS) + MARGIN;
    let db = TestDb::new().await;
    let mut relay = Relay::start("127.0.0.1:5432".parse().unwrap()).await;
    let app = TestApp::spawn_with(&relay.url_for(&db.url), EDGE_VARS).await;
    let alice = Api::new(&app, "alice");
    let seed = alice.product("seed").await;
    app.catch_up(&db).await;

    // Act: the primary stops answering (nothing comes back, nothing is refused) while three
    // creates are made and readers read; then the stalled connections break and it is back.
    relay.set_latency(Duration::from_secs(3600));
    let readers = Load::start(&app.base_url, &alice.token, &seed, 0, 2);
    let stalled: Vec<Call> = futures_util::future::join_all((0..3).map(|n| {
        let (key, name) = (format!("stall-key-{n}"), format!("w-stalled-{n}"));
        let request = alice
            .request(reqwest::Method::POST, "/api/products")
            .header("idempotency-key", &key)
            .json(&json!({ "name": name, "notes": "load" }));
        async move { call(request, &key, &name).await }
    }))
    .await;
    let (_, reads) = readers.finish().await;
    relay.set_latency(Duration::ZERO);
    relay.cut();
    relay.restore().await;

    // Assert: each stalled write answered a clean 503 within the bound; reads went on.
    for w in &stalled {
        assert_eq!(w.status, Some(StatusCode::SERVICE_UNAVAILABLE), "{w:?}");
        assert_eq!(w.body["error"]["code"], "unavailable", "{w:?}");
        assert!(w.retry_after, "503 carries Retry-After: {w:?}");
        assert!(w.took <= write_bound, "bounded by {write_bound:?}: {w:?}");
    }
    assert!(!reads.is_empty());
    for r in &reads {
        assert_eq!(r.status, Some(StatusCode::OK), "{r:?}");
    }
    // Once back: nothing half applied, each retry creates exactly once, and convergence.
    assert_no_lost_or_half_applied_creates(&db, "alice", &stalled).await;
    assert_retries_create_exactly_once(&db, &alice, "alice", &stalled, |_| true).await;
    app.catch_up(&db).await;
    assert_replica_file_same_as_primary(&db, &app.data_dir.join("replica.db"), &app.sync.status())
        .await;
}
