//! A fresh, migrated Postgres database per test, dropped afterwards.

use auto_order_sync::PgConnector;
use auto_order_sync::pg::migrate::run_migrations;
use tokio_postgres::Client;

/// The server the tests use; `TEST_DATABASE_URL` points at its maintenance database.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct TestDb {
    pub name: String,
    pub url: String,
    /// A connection for the test's own writes and checks.
    pub client: Client,
}

impl TestDb {
    /// Creates a database named after a fresh uuid and runs the migrations in it.
    pub async fn new() -> TestDb {
        let db = Self::empty().await;
        let mut client = db.connect().await;
        run_migrations(&mut client).await.expect("migrations apply");
        db
    }

    /// Creates a database without running the migrations.
    pub async fn empty() -> TestDb {
        let name = format!("ao_test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&server_url()).await;
        admin
            .batch_execute(&format!("create database {name}"))
            .await
            .expect("create test database");
        let url = url_for(&name);
        let client = connect(&url).await;
        TestDb { name, url, client }
    }

    pub async fn connect(&self) -> Client {
        connect(&self.url).await
    }

    /// The txid of a new, empty transaction. Every transaction that committed before this
    /// call took its txid earlier, so once the replica's watermark passes the fence, every
    /// write finished before this call is applied.
    pub async fn fence(&self) -> u64 {
        let row = self
            .client
            .query_one("select pg_current_xact_id()::text::bigint", &[])
            .await
            .expect("fence txid");
        row.get::<_, i64>(0) as u64
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async; use a thread with its own small runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let admin = connect(&server_url()).await;
                let _ = admin
                    .batch_execute(&format!("drop database if exists {name} with (force)"))
                    .await;
            });
        })
        .join();
    }
}

pub fn url_for(db: &str) -> String {
    let base = server_url();
    match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{db}"),
        None => format!("{base}/{db}"),
    }
}

pub async fn connect(url: &str) -> Client {
    PgConnector::from_url(url)
        .expect("valid url")
        .connect(None)
        .await
        .expect("connect to the test Postgres")
}
