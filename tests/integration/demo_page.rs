//! The demo page (`DEMO_PAGE=true`): served at `/` with its embedded assets, its dev sign-in
//! mints tokens the API accepts, bad sign-in input is a 422, and without the setting none of
//! it exists. The page itself is driven in a real browser by
//! `clients/typescript/test/browser.test.mjs`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, TestDb, http_client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_and_its_sign_in_are_served_when_configured() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(&db.url, &[("DEMO_PAGE", "true")]).await;
    let http = http_client();

    // Act
    let page = http.get(app.url("/")).send().await.unwrap();
    let page_type = page.headers()["content-type"].to_str().unwrap().to_owned();
    let page_csp = page.headers().contains_key("content-security-policy");
    let html = page.text().await.unwrap();
    let client_js = http
        .get(app.url("/demo/auto-order-client.js"))
        .send()
        .await
        .unwrap();
    let client_type = client_js.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let signed_in: Value = http
        .post(app.url("/demo/sign-in"))
        .json(&json!({ "user": "page-user" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signed_in["access_token"].as_str().expect("a token");
    let created = http
        .post(app.url("/api/products"))
        .bearer_auth(token)
        .json(&json!({ "name": "Tea" }))
        .send()
        .await
        .unwrap();
    let bad = http
        .post(app.url("/demo/sign-in"))
        .json(&json!({ "user": "not a user name" }))
        .send()
        .await
        .unwrap();
    let bad_status = bad.status();
    let bad_body: Value = bad.json().await.unwrap();

    // Assert
    assert!(page_type.starts_with("text/html"), "{page_type}");
    assert!(page_csp);
    assert!(html.contains("/demo/app.js"), "{html}");
    assert!(client_type.starts_with("text/javascript"), "{client_type}");
    assert!(
        client_js
            .text()
            .await
            .unwrap()
            .contains("var AutoOrderClient = class"),
        "the bundled client is embedded"
    );
    assert_eq!(signed_in["token_type"], "Bearer");
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "the sign-in token works on the API"
    );
    assert_eq!(bad_status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_body["error"]["field"], "user");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_demo_page_there_is_no_page_and_no_sign_in() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let http = http_client();

    let page = http.get(app.url("/")).send().await.unwrap();
    let sign_in = http
        .post(app.url("/demo/sign-in"))
        .json(&json!({ "user": "page-user" }))
        .send()
        .await
        .unwrap();

    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert_eq!(sign_in.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}
