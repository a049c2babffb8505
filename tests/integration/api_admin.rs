//! The admin endpoints: permission checks, and a resync that keeps reads up.

use reqwest::StatusCode;

use crate::support::{TestApp, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_needs_the_admin_permission_and_runs_in_the_background() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let url = app.url("/api/admin/resync");

    let anonymous = app.http.post(&url).send().await.unwrap();
    let user = app
        .http
        .post(&url)
        .bearer_auth(app.token("alice", &[]))
        .send()
        .await
        .unwrap();
    let admin = app
        .http
        .post(app.url("/api/v1/admin/resync"))
        .bearer_auth(app.token("ops", &["admin:sync"]))
        .send()
        .await
        .unwrap();

    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(user.status(), StatusCode::FORBIDDEN);
    let challenge = user.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    assert_eq!(admin.status(), StatusCode::ACCEPTED);
    let sync = app.sync.clone();
    crate::support::wait_until(
        "the requested resync ran",
        std::time::Duration::from_secs(30),
        || {
            let s = sync.clone();
            async move { s.status().resyncs >= 2 }
        },
    )
    .await;
    let status: serde_json::Value = app
        .http
        .get(app.url("/api/admin/sync"))
        .bearer_auth(app.token("ops", &["admin:sync"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["last_resync"]["reason"], "requested", "{status}");
    app.stop().await;
}
