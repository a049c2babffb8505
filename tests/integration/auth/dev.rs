//! The local dev issuer and the configuration rules around it.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use auto_order::auth::{
    ADMIN_SYNC, AuthConfigError, AuthSettings, Authenticator, DEV_AUDIENCE, DEV_ISSUER,
    DEV_KEY_FILE, DevIssuer, KeySource, mint_dev_token,
};
use reqwest::StatusCode;
use serde_json::Value;

use super::support::{serve, spawn_api};

fn settings_from(vars: &[(&str, &str)]) -> Result<AuthSettings, AuthConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    AuthSettings::from_lookup(std::path::Path::new("/data"), |name| {
        vars.get(name).cloned()
    })
}

#[tokio::test]
async fn a_minted_dev_token_verifies_against_the_dev_authenticator() {
    let dir = tempfile::tempdir().unwrap();
    let token = mint_dev_token(
        dir.path(),
        "alice",
        &[ADMIN_SYNC.to_owned()],
        Duration::from_secs(60),
    )
    .unwrap();

    let auth = Authenticator::start(AuthSettings::dev(dir.path()))
        .await
        .unwrap();
    let api = spawn_api(auth.clone()).await;
    let response = api.resync(&token).await;

    assert_eq!(response.status(), StatusCode::OK);
    let user = auth.verify(&token).await.unwrap();
    assert_eq!(
        (user.sub.as_str(), user.permissions),
        ("alice", vec![ADMIN_SYNC.to_owned()])
    );
    assert!(auth.status().dev_mode);
}

#[tokio::test]
async fn the_dev_key_is_created_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();

    let first = DevIssuer::load_or_create(dir.path()).unwrap();
    let second = DevIssuer::load_or_create(dir.path()).unwrap();

    assert_eq!(first.kid(), second.kid());
    let mode = std::fs::metadata(dir.path().join(DEV_KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn the_dev_instance_serves_its_jwks_and_a_remote_verifier_accepts_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Authenticator::start(AuthSettings::dev(dir.path()))
        .await
        .unwrap();
    let addr = serve(dev.dev_routes()).await;
    let jwks_url = format!("http://{addr}/.well-known/jwks.json");

    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let jwks: Value = reqwest::get(&jwks_url).await.unwrap().json().await.unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let settings = AuthSettings::for_issuer(DEV_ISSUER, DEV_AUDIENCE, jwks_url, other_dir.path());
    let remote = Authenticator::start(settings).await.unwrap();
    let token = dev
        .dev_issuer()
        .unwrap()
        .mint("bob", &[], Duration::from_secs(60))
        .unwrap();

    assert_eq!(jwks["keys"][0]["kid"], dev.dev_issuer().unwrap().kid());
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "no private key material"
    );
    assert_eq!(remote.verify(&token).await.unwrap().sub, "bob");
}

#[test]
fn production_without_auth0_settings_refuses_with_one_clear_message() {
    for env in [("APP_ENV", "production"), ("NODE_ENV", "production")] {
        let error = settings_from(&[env]).unwrap_err();

        assert!(matches!(error, AuthConfigError::ProductionWithoutAuth0));
        let message = error.to_string();
        assert!(!message.contains('\n'));
        assert!(
            message.contains("production") && message.contains("AUTH0_DOMAIN"),
            "{message}"
        );
    }
    let no_audience = [("APP_ENV", "production"), ("AUTH0_DOMAIN", "t.auth0.com")];
    assert!(settings_from(&no_audience).is_err());
}

#[test]
fn no_auth0_settings_outside_production_selects_the_dev_issuer() {
    let settings = settings_from(&[("APP_ENV", "development")]).unwrap();

    assert!(settings.is_dev());
    assert_eq!(settings.issuer, DEV_ISSUER);
}

#[test]
fn the_issuer_is_derived_from_the_domain_with_a_trailing_slash() {
    let settings = settings_from(&[
        ("AUTH0_DOMAIN", "tenant.eu.auth0.com"),
        ("AUTH0_AUDIENCE", "https://api"),
    ])
    .unwrap();

    assert_eq!(settings.issuer, "https://tenant.eu.auth0.com/");
    assert_eq!(settings.audience, "https://api");
    let expected = "https://tenant.eu.auth0.com/.well-known/jwks.json";
    assert_eq!(
        settings.key_source,
        KeySource::Remote {
            jwks_url: expected.to_owned()
        }
    );
}

#[test]
fn the_issuer_base_url_and_jwks_url_override_the_defaults() {
    let settings = settings_from(&[
        ("AUTH0_DOMAIN", "ignored.auth0.com"),
        ("AUTH0_ISSUER_BASE_URL", "https://login.example.com"),
        ("AUTH0_AUDIENCE", "https://api"),
        ("JWKS_URL", "http://127.0.0.1:9999/keys"),
    ])
    .unwrap();

    assert_eq!(settings.issuer, "https://login.example.com/");
    let expected = "http://127.0.0.1:9999/keys";
    assert_eq!(
        settings.key_source,
        KeySource::Remote {
            jwks_url: expected.to_owned()
        }
    );
}

#[test]
fn an_issuer_without_an_audience_is_a_configuration_error() {
    let error = settings_from(&[("AUTH0_DOMAIN", "tenant.auth0.com")]).unwrap_err();

    assert!(matches!(error, AuthConfigError::MissingAudience));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_basic_header_is_told_to_send_a_bearer_token_and_how_to_mint_one_locally() {
    let db = crate::support::TestDb::new().await;
    let app = crate::support::TestApp::spawn(&db).await;

    let response = app
        .http
        .get(app.url("/api/products"))
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Authorization: Bearer <token>")
            && message.contains("auto-order token --sub <user>"),
        "{message}"
    );
    app.stop().await;
}
