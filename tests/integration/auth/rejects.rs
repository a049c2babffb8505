//! Tokens that must be refused, each through HTTP with a 401 `invalid_token` challenge.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use auto_order::auth::Authenticator;

use super::support::{Api, KEYS, TestIssuer, b64, challenge, claims, now, spawn_api};

/// Starts an issuer and an API, sends `token`, and checks for a 401 `invalid_token` with the
/// given reason. Returns the issuer's fetch count after the request.
async fn assert_rejected(token: &str, reason: &str) -> usize {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let api: Api = spawn_api(
        Authenticator::start(issuer.settings(dir.path()))
            .await
            .unwrap(),
    )
    .await;

    let response = api.get_me(Some(token)).await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{reason}");
    assert_eq!(
        challenge(&response),
        format!(r#"Bearer error="invalid_token", error_description="{reason}""#)
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_token");
    assert_eq!(body["error"]["message"], format!("invalid token: {reason}"));
    issuer.fetches()
}

fn with_claim(name: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[name] = value;
    claims
}

fn without_claim(name: &str) -> Value {
    let mut claims = claims();
    claims.as_object_mut().unwrap().remove(name);
    claims
}

#[tokio::test]
async fn alg_none_is_refused() {
    let header = json!({ "alg": "none", "typ": "JWT", "kid": KEYS[0].kid });
    let token = format!("{}.{}.", b64(&header), b64(&claims()));
    assert_rejected(&token, "unsupported algorithm").await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_bytes_is_refused() {
    let header = json!({ "alg": "HS256", "typ": "JWT", "kid": KEYS[0].kid });
    let input = format!("{}.{}", b64(&header), b64(&claims()));
    let key = hmac::Key::new(hmac::HMAC_SHA256, &KEYS[0].public_der());
    let tag = hmac::sign(&key, input.as_bytes());
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert_rejected(&token, "unsupported algorithm").await;
}

#[tokio::test]
async fn other_asymmetric_algorithms_are_refused() {
    for alg in ["ES256", "PS256", "RS512"] {
        let header = json!({ "alg": alg, "typ": "JWT", "kid": KEYS[0].kid });
        let token = KEYS[0].sign(&header, &claims());
        assert_rejected(&token, "unsupported algorithm").await;
    }
}

#[tokio::test]
async fn rs256_by_a_key_not_in_the_jwks_is_refused() {
    let unknown_kid = KEYS[3].token(&claims());
    assert_rejected(&unknown_kid, "unknown signing key").await;

    let borrowed_kid = KEYS[3].sign(&json!({ "alg": "RS256", "kid": KEYS[0].kid }), &claims());
    assert_rejected(&borrowed_kid, "invalid signature").await;
}

#[tokio::test]
async fn a_wrong_issuer_is_refused() {
    let token = KEYS[0].token(&with_claim("iss", json!("https://evil.auth0.com/")));
    assert_rejected(&token, "wrong issuer").await;
}

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    let token = KEYS[0].token(&with_claim("aud", json!(["https://other-api.test"])));
    assert_rejected(&token, "wrong audience").await;
}

#[tokio::test]
async fn a_missing_audience_issuer_subject_or_expiry_is_refused() {
    for claim in ["aud", "iss", "sub", "exp"] {
        let token = KEYS[0].token(&without_claim(claim));
        assert_rejected(&token, "missing required claim").await;
    }
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let token = KEYS[0].token(&with_claim("exp", json!(now() - 3600)));
    assert_rejected(&token, "token expired").await;
}

#[tokio::test]
async fn a_token_whose_nbf_is_in_the_future_is_refused() {
    let token = KEYS[0].token(&with_claim("nbf", json!(now() + 3600)));
    assert_rejected(&token, "token not yet valid").await;
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let token = KEYS[0].token(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged = b64(&with_claim("sub", json!("auth0|mallory")));
    let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
    assert_rejected(&tampered, "invalid signature").await;
}

#[tokio::test]
async fn a_tampered_signature_is_refused() {
    let token = KEYS[0].token(&claims());
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
    sig[10] ^= 0x01;
    let tampered = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_rejected(&tampered, "invalid signature").await;
}

#[tokio::test]
async fn malformed_tokens_are_refused() {
    let good = KEYS[0].token(&claims());
    let (_, rest) = good.split_once('.').unwrap();
    let not_json = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(b"{not json"));
    let cases = [
        "not-a-jwt".to_owned(),
        "a.b".to_owned(),
        format!("{good}.extra"),
        format!("!!!.{rest}"),
        not_json,
        format!("{}.{rest}", b64(&json!({ "kid": KEYS[0].kid }))),
    ];
    for token in cases {
        assert_rejected(&token, "malformed token").await;
    }
}

#[tokio::test]
async fn an_oversized_token_is_refused_without_a_fetch() {
    let padding = "x".repeat(9 * 1024);
    let token = KEYS[0].token(&with_claim("padding", json!(padding)));
    let fetches = assert_rejected(&token, "token too large").await;
    assert_eq!(fetches, 1);
}

#[tokio::test]
async fn a_kid_full_of_sql_characters_is_refused_without_a_fetch() {
    let header = json!({ "alg": "RS256", "kid": "1' OR '1'='1; DROP TABLE keys; --" });
    let token = KEYS[0].sign(&header, &claims());
    let fetches = assert_rejected(&token, "invalid key id").await;
    assert_eq!(fetches, 1);
}

#[tokio::test]
async fn a_kid_full_of_path_characters_is_refused() {
    for kid in [
        "../../../../etc/passwd",
        "..\\..\\windows\\system32",
        "%2e%2e%2fjwks.json",
    ] {
        let header = json!({ "alg": "RS256", "kid": kid });
        let token = KEYS[0].sign(&header, &claims());
        let reason = if kid.contains(['\\', '%']) {
            "invalid key id"
        } else {
            "unknown signing key"
        };
        assert_rejected(&token, reason).await;
    }
}
