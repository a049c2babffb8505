//! Valid tokens: both published keys, key rotation, claims mapping, and the HTTP extractor.

use auto_order::auth::{ADMIN_SYNC, AuthError, Authenticator};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::support::{AUDIENCE, KEYS, TestIssuer, challenge, claims, spawn_api};

#[tokio::test]
async fn tokens_signed_by_either_published_key_verify_with_permissions_and_scopes() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let auth = Authenticator::start(issuer.settings(dir.path()))
        .await
        .unwrap();

    for key in &KEYS[..2] {
        let user = auth.verify(&key.token(&claims())).await.unwrap();

        assert_eq!(user.sub, "auth0|alice");
        assert_eq!(user.permissions, ["read:products", ADMIN_SYNC]);
        assert_eq!(user.scopes, ["openid", "read:orders"]);
    }
    assert_eq!(
        issuer.fetches(),
        1,
        "verification needs no fetch beyond start-up"
    );
}

#[tokio::test]
async fn audience_may_be_an_array_containing_ours() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let auth = Authenticator::start(issuer.settings(dir.path()))
        .await
        .unwrap();
    let mut claims = claims();
    claims["aud"] = json!(["https://tenant.auth0.com/userinfo", AUDIENCE]);

    let user = auth.verify(&KEYS[0].token(&claims)).await.unwrap();

    assert_eq!(user.sub, "auth0|alice");
}

#[tokio::test]
async fn a_key_published_after_start_up_is_fetched_once_then_accepted() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let auth = Authenticator::start(issuer.settings(dir.path()))
        .await
        .unwrap();
    assert_eq!(issuer.fetches(), 1);

    issuer.publish(&KEYS[2]);
    let first = auth.verify(&KEYS[2].token(&claims())).await;
    let mut other_claims = claims();
    other_claims["sub"] = json!("auth0|bob");
    let second = auth.verify(&KEYS[2].token(&other_claims)).await;

    assert_eq!(first.unwrap().sub, "auth0|alice");
    assert_eq!(second.unwrap().sub, "auth0|bob");
    assert_eq!(issuer.fetches(), 2, "the new kid is fetched exactly once");
    assert_eq!(auth.status().key_count, 3);
}

#[tokio::test]
async fn the_background_refresh_picks_up_new_keys() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = issuer.settings(dir.path());
    settings.refresh_interval = std::time::Duration::from_millis(100);
    let auth = Authenticator::start(settings).await.unwrap();

    issuer.publish(&KEYS[2]);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;

    assert_eq!(auth.status().key_count, 3);
    assert!(issuer.fetches() >= 3, "fetches: {}", issuer.fetches());
}

#[tokio::test]
async fn a_handler_taking_auth_user_gets_the_caller() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let api = spawn_api(
        Authenticator::start(issuer.settings(dir.path()))
            .await
            .unwrap(),
    )
    .await;

    let response = api.get_me(Some(&KEYS[1].token(&claims()))).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["sub"], "auth0|alice");
    assert_eq!(body["permissions"], json!(["read:products", ADMIN_SYNC]));
    assert_eq!(body["scopes"], json!(["openid", "read:orders"]));
}

#[tokio::test]
async fn a_request_without_a_token_gets_a_bare_bearer_challenge() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let api = spawn_api(
        Authenticator::start(issuer.settings(dir.path()))
            .await
            .unwrap(),
    )
    .await;

    let response = api.get_me(None).await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), "Bearer");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Authorization: Bearer <token>") && !message.contains("auto-order token"),
        "says what to send, and no dev hint with Auth0: {message}"
    );
}

#[tokio::test]
async fn an_admin_route_needs_the_admin_sync_permission() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let api = spawn_api(
        Authenticator::start(issuer.settings(dir.path()))
            .await
            .unwrap(),
    )
    .await;
    let mut without = claims();
    without["permissions"] = json!(["read:products"]);

    let denied = api.resync(&KEYS[0].token(&without)).await;
    let allowed = api.resync(&KEYS[0].token(&claims())).await;

    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&denied),
        r#"Bearer error="insufficient_scope", scope="admin:sync""#
    );
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_scope");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("--permissions admin:sync"),
        "says how to get it: {message}"
    );
    assert_eq!(allowed.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_repeated_token_is_served_from_the_verification_cache() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let auth = Authenticator::start(issuer.settings(dir.path()))
        .await
        .unwrap();
    let token = KEYS[0].token(&claims());

    let first = auth.verify(&token).await.unwrap();
    let second = auth.verify(&token).await.unwrap();

    assert_eq!(first, second);
    assert_eq!(auth.status().verify_cache_entries, 1);
}

#[tokio::test]
async fn a_withdrawn_key_stops_verifying_even_cached_tokens() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let auth = Authenticator::start(issuer.settings(dir.path()))
        .await
        .unwrap();
    let token = KEYS[0].token(&claims());
    auth.verify(&token).await.unwrap();

    issuer.withdraw(&KEYS[0]);
    assert!(auth.refresh_now().await);
    let after = auth.verify(&token).await;

    assert_eq!(after, Err(AuthError::InvalidToken("unknown signing key")));
    assert_eq!(auth.status().key_count, 1);
}
