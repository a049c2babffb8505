//! Test harness: a fresh Postgres database per test, edges on temp dirs, a TCP relay for
//! cutting the primary off, and the row-for-row convergence check.

pub mod api;
pub mod app;
pub mod cluster;
pub mod db;
pub mod edge;
pub mod otlp;
pub mod relay;

pub use api::{Api, count, send};
pub use app::TestApp;
pub use db::TestDb;
pub use edge::TestEdge;
pub use relay::Relay;

use std::time::Duration;

/// Polls `check` until it holds or `timeout` passes; panics with `what` on timeout.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process that is killed if the test ends (or panics) before it exits.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// An HTTP client for talking to the app under test (rustls with the aws-lc-rs provider).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::new()
}
