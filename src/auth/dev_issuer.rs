//! The local dev issuer: an RSA-2048 key created once in `$DATA_DIR` (mode 0600), whose JWKS
//! the instance serves at `GET /.well-known/jwks.json` and seeds straight into its verifier
//! (no HTTP self-fetch), and which mints tokens for `auto-order token`.
//!
//! Only used with no Auth0 settings and outside production ([`super::AuthSettings::from_env`]
//! refuses production without Auth0). Tokens carry `iss` = [`DEV_ISSUER`] and
//! `aud` = [`DEV_AUDIENCE`].

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::config::{DEV_AUDIENCE, DEV_ISSUER};

/// The dev issuer's private key (PKCS#8 DER) inside `$DATA_DIR`.
pub const DEV_KEY_FILE: &str = "dev-issuer-key.pk8";

/// The dev issuer's key pair and its public JWK.
pub struct DevIssuer {
    key: KeyPair,
    kid: String,
    jwk: Value,
}

impl DevIssuer {
    /// Loads the key from `data_dir`, creating it (mode 0600) on first use. Safe against a
    /// concurrent first use: the key file appears whole, once (hard link of a complete file).
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(DEV_KEY_FILE);
        match std::fs::read(&path) {
            Ok(der) => {
                let mode = std::fs::metadata(&path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "dev issuer key was readable by others; setting mode 0600");
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                }
                let key = KeyPair::from_pkcs8(&der).map_err(|e| {
                    anyhow::anyhow!(
                        "{} is not a valid RSA key ({e}); delete it to create a new one",
                        path.display()
                    )
                })?;
                Ok(Self::from_key(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(data_dir, &path),
            Err(e) => Err(e).with_context(|| format!("Failed to read {}", path.display())),
        }
    }

    fn create(data_dir: &Path, path: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("Failed to create {}", data_dir.display()))?;
        let key = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| anyhow::anyhow!("Failed to generate the dev issuer's RSA key"))?;
        let der = key
            .as_der()
            .map_err(|_| anyhow::anyhow!("Failed to encode the dev issuer's RSA key"))?;
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("Failed to create {}", tmp.display()))?;
        file.write_all(der.as_ref())?;
        file.sync_all()?;
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created the dev issuer's signing key");
                Ok(Self::from_key(key))
            }
            // Another process created it first: use theirs, so all tokens verify.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::load_or_create(data_dir)
            }
            Err(e) => Err(e).with_context(|| format!("Failed to write {}", path.display())),
        }
    }

    fn from_key(key: KeyPair) -> Self {
        let public = key.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        // A stable kid derived from the public key.
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, format!("{n}.{e}").as_bytes());
        let kid = format!("dev-{}", URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]));
        let jwk = json!({ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e });
        Self { key, kid, jwk }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key set, as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk.clone()] })
    }

    /// Mints an RS256 access token for `sub` with the given RBAC permissions.
    pub fn mint(&self, sub: &str, permissions: &[String], ttl: Duration) -> anyhow::Result<String> {
        self.mint_with(sub, ttl, json!({ "permissions": permissions }))
    }

    /// Mints an RS256 access token for `sub` with `extra` claims (an object) besides the
    /// issuer, audience and times: tests of what a token's other claims may and may not
    /// grant.
    pub fn mint_with(&self, sub: &str, ttl: Duration, extra: Value) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let mut claims = json!({
            "iss": DEV_ISSUER,
            "aud": DEV_AUDIENCE,
            "sub": sub,
            "iat": now,
            "exp": now + ttl.as_secs().max(1),
        });
        if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
            claims.extend(extra);
        }
        let header = json!({ "alg": "RS256", "typ": "JWT", "kid": self.kid });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| anyhow::anyhow!("Failed to sign the dev token"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// Mints a token from the dev issuer whose key lives in `data_dir` (creating the key if
/// needed). Used by the `token` subcommand:
///
/// ```text
/// $ auto-order token --sub alice --permissions admin:sync
/// eyJhbGciOiJSUzI1NiIs…
/// $ curl -H "Authorization: Bearer $(auto-order token --sub alice)" localhost:8080/api/products
/// ```
pub fn mint_dev_token(
    data_dir: &Path,
    sub: &str,
    permissions: &[String],
    ttl: Duration,
) -> anyhow::Result<String> {
    DevIssuer::load_or_create(data_dir)?.mint(sub, permissions, ttl)
}
