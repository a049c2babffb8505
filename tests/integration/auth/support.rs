//! Test helpers: real RSA keys, a JWKS issuer on loopback that counts its fetches, token
//! minting (including deliberately bad tokens), and a small API on port 0 whose handlers
//! take the real `AuthUser` extractor.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auto_order::auth::{ADMIN_SYNC, AuthError, AuthSettings, AuthUser, Authenticator};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub const ISSUER: &str = "https://issuer.test/";
pub const AUDIENCE: &str = "https://api.auto-order.test";

/// An RSA-2048 signing key with its public JWK.
pub struct TestKey {
    pub kid: String,
    key: KeyPair,
}

impl TestKey {
    fn generate(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            key: KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"),
        }
    }

    pub fn jwk(&self) -> Value {
        let public = self.key.public_key();
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        })
    }

    /// The public key's DER bytes (what an HS256 key-confusion attack uses as the secret).
    pub fn public_der(&self) -> Vec<u8> {
        self.key.public_key().as_der().unwrap().as_ref().to_vec()
    }

    /// An RS256 token with this key's kid.
    pub fn token(&self, claims: &Value) -> String {
        self.sign(
            &json!({ "alg": "RS256", "typ": "JWT", "kid": self.kid }),
            claims,
        )
    }

    /// An RS256 signature over any header and claims.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header), b64(claims));
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// Keys are generated once per test binary: RSA key generation is slow in debug builds.
/// `[0]` and `[1]` are published at start; `[2]` is the "rotated in later" key; `[3]` is
/// never published.
pub static KEYS: LazyLock<Vec<TestKey>> = LazyLock::new(|| {
    ["key-one", "key-two", "key-three", "stranger"]
        .iter()
        .map(|kid| TestKey::generate(kid))
        .collect()
});

pub fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Valid claims for `alice` with two permissions and two scopes.
pub fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "auth0|alice",
        "iat": now(), "exp": now() + 600,
        "permissions": ["read:products", ADMIN_SYNC],
        "scope": "openid read:orders",
    })
}

struct IssuerState {
    keys: Mutex<Vec<Value>>,
    up: AtomicBool,
    fetches: AtomicUsize,
}

/// A JWKS issuer on 127.0.0.1:0 publishing `KEYS[0]` and `KEYS[1]`.
pub struct TestIssuer {
    pub jwks_url: String,
    state: Arc<IssuerState>,
}

impl TestIssuer {
    pub async fn start() -> Self {
        let state = Arc::new(IssuerState {
            keys: Mutex::new(vec![KEYS[0].jwk(), KEYS[1].jwk()]),
            up: AtomicBool::new(true),
            fetches: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/.well-known/jwks.json", get(serve_jwks))
            .with_state(Arc::clone(&state));
        let addr = serve(app).await;
        Self {
            jwks_url: format!("http://{addr}/.well-known/jwks.json"),
            state,
        }
    }

    /// Adds a key to the published set (key rotation).
    pub fn publish(&self, key: &TestKey) {
        self.state.keys.lock().unwrap().push(key.jwk());
    }

    /// Removes a key from the published set (a revoked key).
    pub fn withdraw(&self, key: &TestKey) {
        self.state
            .keys
            .lock()
            .unwrap()
            .retain(|jwk| jwk["kid"] != key.kid.as_str());
    }

    /// Down: every fetch gets a 503.
    pub fn set_down(&self, down: bool) {
        self.state.up.store(!down, Ordering::SeqCst);
    }

    /// JWKS requests received so far.
    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    pub fn settings(&self, data_dir: &std::path::Path) -> AuthSettings {
        AuthSettings::for_issuer(ISSUER, AUDIENCE, &self.jwks_url, data_dir)
    }
}

async fn serve_jwks(State(state): State<Arc<IssuerState>>) -> Result<Json<Value>, StatusCode> {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    if !state.up.load(Ordering::SeqCst) {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    Ok(Json(json!({ "keys": *state.keys.lock().unwrap() })))
}

/// Serves `app` on 127.0.0.1:0 and returns its address.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A URL on which nothing listens (an issuer that is down for good).
pub async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/.well-known/jwks.json")
}

/// A test API: `GET /me` echoes the caller; `POST /admin/resync` needs `admin:sync`.
pub async fn spawn_api(auth: Authenticator) -> Api {
    async fn me(user: AuthUser) -> Json<AuthUser> {
        Json(user)
    }
    async fn resync(user: AuthUser) -> Result<&'static str, AuthError> {
        user.require(ADMIN_SYNC)?;
        Ok("resync started")
    }
    let app = Router::new()
        .route("/me", get(me))
        .route("/admin/resync", post(resync))
        .with_state(auth);
    let addr = serve(app).await;
    // reqwest is built without a default TLS provider (the app picks aws-lc-rs explicitly).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    Api {
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    }
}

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub async fn get_me(&self, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(format!("{}/me", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn resync(&self, token: &str) -> reqwest::Response {
        let url = format!("{}/admin/resync", self.base);
        self.client
            .post(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

/// The `WWW-Authenticate` header of a response, or "".
pub fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}
