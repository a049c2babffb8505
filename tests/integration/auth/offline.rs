//! Auth while the issuer is unreachable (design guarantee 6), and the refetch throttle.

use std::time::Duration;

use auto_order::auth::{AuthError, AuthSettings, Authenticator, JWKS_FILE};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::support::{AUDIENCE, ISSUER, KEYS, TestIssuer, claims, dead_url, spawn_api};

#[tokio::test]
async fn tokens_still_verify_when_the_issuer_goes_down_after_the_first_fetch() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let auth = Authenticator::start(issuer.settings(dir.path()))
        .await
        .unwrap();

    issuer.set_down(true);
    let refreshed = auth.refresh_now().await;
    let user = auth.verify(&KEYS[1].token(&claims())).await;

    assert!(!refreshed);
    assert_eq!(user.unwrap().sub, "auth0|alice");
    let status = auth.status();
    assert_eq!(status.key_count, 2);
    assert_eq!(
        status.last_fetch_error.as_deref(),
        Some("issuer answered HTTP 503")
    );
    assert_eq!(status.fetch_failures, 1);
}

#[tokio::test]
async fn a_restart_with_the_issuer_down_verifies_from_the_persisted_jwks() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    drop(
        Authenticator::start(issuer.settings(dir.path()))
            .await
            .unwrap(),
    );
    assert!(dir.path().join(JWKS_FILE).exists());

    issuer.set_down(true);
    let restarted = Authenticator::start(issuer.settings(dir.path()))
        .await
        .unwrap();
    let user = restarted.verify(&KEYS[0].token(&claims())).await;

    assert_eq!(user.unwrap().sub, "auth0|alice");
    let status = restarted.status();
    assert!(status.loaded_from_disk);
    assert_eq!(status.key_count, 2);
    assert!(status.jwks_age_seconds.is_some());
    // The start-up refresh runs in the background; it fails and keeps the persisted keys.
    for _ in 0..100 {
        if restarted.status().fetches > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = restarted.status();
    assert!(status.last_fetch_error.is_some());
    assert_eq!(status.key_count, 2);
}

#[tokio::test]
async fn a_jwks_persisted_from_another_issuer_url_is_not_trusted() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    drop(
        Authenticator::start(issuer.settings(dir.path()))
            .await
            .unwrap(),
    );

    let settings = AuthSettings::for_issuer(ISSUER, AUDIENCE, dead_url().await, dir.path());
    let other = Authenticator::start(settings).await.unwrap();

    assert_eq!(other.status().key_count, 0);
    assert!(!other.status().loaded_from_disk);
}

#[tokio::test]
async fn a_restart_with_the_issuer_down_and_nothing_persisted_answers_503_without_crashing() {
    let dir = tempfile::tempdir().unwrap();
    let settings = AuthSettings::for_issuer(ISSUER, AUDIENCE, dead_url().await, dir.path());

    let auth = Authenticator::start(settings)
        .await
        .expect("starts with the issuer down");
    let direct = auth.verify(&KEYS[0].token(&claims())).await;
    let api = spawn_api(auth.clone()).await;
    let response = api.get_me(Some(&KEYS[0].token(&claims()))).await;

    assert_eq!(direct, Err(AuthError::Unavailable));
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "auth_unavailable");
    let status = auth.status();
    assert_eq!((status.key_count, status.jwks_age_seconds), (0, None));
    assert!(
        status
            .last_fetch_error
            .unwrap()
            .starts_with("request failed")
    );
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_no_more_than_the_throttle_allows() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = issuer.settings(dir.path());
    settings.unknown_kid_refetch_interval = Duration::from_secs(60);
    let auth = Authenticator::start(settings).await.unwrap();
    let api = spawn_api(auth).await;

    let mut requests = tokio::task::JoinSet::new();
    for i in 0..100 {
        let header = json!({ "alg": "RS256", "typ": "JWT", "kid": format!("made-up-{i}") });
        let token = KEYS[3].sign(&header, &claims());
        let api = api.clone();
        requests.spawn(async move { api.get_me(Some(&token)).await.status() });
    }
    let statuses = requests.join_all().await;

    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(
        issuer.fetches(),
        2,
        "start-up fetch plus one throttled refetch"
    );
}
