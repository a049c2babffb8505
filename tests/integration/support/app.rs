//! The real application, in-process on `127.0.0.1:0`, with the local dev issuer for tokens.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use auto_order::cache::ReadCache;
use auto_order::config::Config;
use auto_order::server::Application;
use auto_order_sync::SyncHandle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::TestDb;

pub struct TestApp {
    pub base_url: String,
    /// The port of `/metrics` when the edge has one for it (`METRICS_PORT`).
    pub metrics_port: Option<u16>,
    pub http: reqwest::Client,
    pub sync: SyncHandle,
    pub cache: Arc<ReadCache>,
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts an edge on `db` with a fresh data dir and default settings.
    pub async fn spawn(db: &TestDb) -> TestApp {
        Self::spawn_with(&db.url, &[]).await
    }

    /// Starts an edge against `database_url` with extra environment-style settings.
    pub async fn spawn_with(database_url: &str, vars: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut app = Self::spawn_in(database_url, dir.path().to_owned(), vars).await;
        app._dir = Some(dir);
        app
    }

    /// Starts an edge whose data lives in `data_dir` (kept by the caller, for restarts).
    pub async fn spawn_in(database_url: &str, data_dir: PathBuf, vars: &[(&str, &str)]) -> TestApp {
        let mut env: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".into(), database_url.into()),
            ("DATA_DIR".into(), data_dir.display().to_string()),
            ("PORT".into(), "0".into()),
            ("SYNC_POLL_INTERVAL_MS".into(), "50".into()),
        ]);
        for (k, v) in vars {
            env.insert(k.to_string(), v.to_string());
        }
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = auto_order::telemetry::init("info");
        }
        let config = Config::from_lookup(|k| env.get(k).cloned()).expect("test config");
        let app = Application::build(config).await.expect("build app");
        let base_url = format!("http://127.0.0.1:{}", app.port());
        let metrics_port = app.metrics_port();
        let sync = app.sync();
        let cache = app.cache();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let app = TestApp {
            base_url,
            metrics_port,
            http: super::http_client(),
            sync,
            cache,
            data_dir,
            _dir: None,
            stop: Some(stop),
            task: Some(task),
        };
        app.wait_ready().await;
        app
    }

    /// Waits until the first sync has completed (data routes answer).
    pub async fn wait_ready(&self) {
        let sync = self.sync.clone();
        super::wait_until("the edge's first sync", Duration::from_secs(60), || {
            let s = sync.clone();
            async move { s.status().ready }
        })
        .await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A token from the dev issuer for `sub` with `permissions`.
    pub fn token(&self, sub: &str, permissions: &[&str]) -> String {
        let permissions: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
        auto_order::auth::mint_dev_token(
            &self.data_dir,
            sub,
            &permissions,
            Duration::from_secs(3600),
        )
        .expect("mint dev token")
    }

    /// Waits until everything committed on `db` so far is applied by this edge.
    #[allow(dead_code)] // not every test binary configuration uses it
    pub async fn catch_up(&self, db: &TestDb) {
        let fence = db.fence().await;
        assert!(
            self.sync.wait_applied(fence, Duration::from_secs(60)).await,
            "edge did not catch up"
        );
    }

    /// The text of `GET /metrics` on the public port.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("the metrics' text")
    }

    /// Waits until the edge has applied everything committed on the database at `url`.
    pub async fn catch_up_url(&self, url: &str) {
        let client = super::db::connect(url).await;
        let fence: i64 = client
            .query_one("select pg_current_xact_id()::text::bigint", &[])
            .await
            .unwrap()
            .get(0);
        assert!(
            self.sync
                .wait_applied(fence as u64, Duration::from_secs(60))
                .await,
            "edge did not catch up"
        );
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
