//! Token verification: the order of checks, and the cache of successful verifications.
//!
//! 1. Size cap ([`MAX_TOKEN_BYTES`]), three dot-separated parts, a JSON header.
//! 2. `alg` must be exactly `RS256`, decided from the header before any key is looked at
//!    (`none`, HS*, ES*, PS* are refused); `crit` extensions are refused; `kid` is required
//!    and must look like a key id (bounded length, a conservative character set).
//! 3. Cache hit (SHA-256 of the token) → done, if not past `exp` and no key was withdrawn
//!    since.
//! 4. Key by `kid`; unknown → one throttled JWKS refetch.
//! 5. Signature (aws-lc-rs via `jsonwebtoken`), then `iss`, `aud` (string or array), `exp`,
//!    `sub` required, `nbf` honoured, with a small leeway.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::error::AuthError;
use super::extract::AuthUser;
use super::jwks::Jwks;
use super::refresh;

/// Longest accepted token (bytes). Auth0 access tokens are ~1 KiB even with many permissions.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
const MAX_HEADER_SEGMENT_BYTES: usize = 1024;
const MAX_KID_LEN: usize = 128;

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// `sub` and `exp` are optional here so that their absence is reported by the validation
/// as a missing claim rather than as a malformed token.
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<u64>,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Clone)]
struct Cached {
    user: AuthUser,
    exp: u64,
    epoch: u64,
}

/// Expires each cached verification at the token's own `exp`.
struct UntilExp;

impl moka::Expiry<[u8; 32], Cached> for UntilExp {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        value: &Cached,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(value.exp.saturating_sub(unix_now())))
    }
}

pub(crate) struct Verifier {
    validation: Validation,
    cache: Option<moka::sync::Cache<[u8; 32], Cached>>,
    unknown_kid_refetch_interval: Duration,
}

impl Verifier {
    pub(crate) fn new(settings: &super::AuthSettings) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        let trimmed = settings.issuer.trim_end_matches('/');
        validation.set_issuer(&[format!("{trimmed}/"), trimmed.to_owned()]);
        validation.set_audience(&[settings.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = settings.leeway.as_secs();
        let cache = (settings.verify_cache_capacity > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(settings.verify_cache_capacity)
                .expire_after(UntilExp)
                .build()
        });
        Self {
            validation,
            cache,
            unknown_kid_refetch_interval: settings.unknown_kid_refetch_interval,
        }
    }

    pub(crate) fn cached_entries(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.entry_count()
        })
    }

    /// The cached verification of `token`, if there is a current one: no await, no key
    /// lookup, no signature check. `None` means "verify it" (a miss), never "invalid".
    pub(crate) fn verify_cached(&self, jwks: &Jwks, token: &str) -> Option<AuthUser> {
        if self.cache.is_none() || token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        self.cached_by_key(jwks, &sha256(token))
    }

    /// A cached token is the same bytes as one that passed every check of [`Self::verify`],
    /// header included, so a hit skips even the header decode. A hit from before a key was
    /// withdrawn, or past its `exp`, is dropped.
    fn cached_by_key(&self, jwks: &Jwks, key: &[u8; 32]) -> Option<AuthUser> {
        let cache = self.cache.as_ref()?;
        let hit = cache.get(key)?;
        if hit.epoch == jwks.epoch() && hit.exp > unix_now() {
            return Some(hit.user);
        }
        cache.invalidate(key);
        None
    }

    pub(crate) async fn verify(&self, jwks: &Jwks, token: &str) -> Result<AuthUser, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::InvalidToken("token too large"));
        }
        let cache_key = self.cache.as_ref().map(|_| sha256(token));
        if let Some(key) = &cache_key
            && let Some(user) = self.cached_by_key(jwks, key)
        {
            return Ok(user);
        }

        let kid = check_header(token)?;
        let epoch = jwks.epoch();
        let mut keys = jwks.snapshot();
        if !keys.keys.contains_key(&kid) {
            let found =
                refresh::refetch_for_unknown_kid(jwks, &kid, self.unknown_kid_refetch_interval)
                    .await;
            keys = jwks.snapshot();
            if keys.keys.is_empty() {
                return Err(AuthError::Unavailable);
            }
            if !found {
                return Err(AuthError::InvalidToken("unknown signing key"));
            }
        }
        let key = keys
            .keys
            .get(&kid)
            .ok_or(AuthError::InvalidToken("unknown signing key"))?;

        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(reason)?;
        let claims = data.claims;
        let (Some(sub), Some(exp)) = (claims.sub.filter(|s| !s.is_empty()), claims.exp) else {
            return Err(AuthError::InvalidToken("missing required claim"));
        };
        let user = AuthUser {
            sub,
            permissions: claims.permissions,
            scopes: claims
                .scope
                .as_deref()
                .unwrap_or_default()
                .split_ascii_whitespace()
                .map(str::to_owned)
                .collect(),
        };
        if let (Some(cache), Some(key)) = (&self.cache, cache_key) {
            let cached = Cached {
                user: user.clone(),
                exp,
                epoch,
            };
            cache.insert(key, cached);
        }
        Ok(user)
    }
}

/// Checks the JOSE header and returns the `kid`, before any key is touched.
fn check_header(token: &str) -> Result<String, AuthError> {
    const MALFORMED: AuthError = AuthError::InvalidToken("malformed token");
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MALFORMED);
    };
    if header.len() > MAX_HEADER_SEGMENT_BYTES {
        return Err(MALFORMED);
    }
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| MALFORMED)?;
    let header: JoseHeader = serde_json::from_slice(&bytes).map_err(|_| MALFORMED)?;
    if header.alg != "RS256" {
        return Err(AuthError::InvalidToken("unsupported algorithm"));
    }
    if header.crit.is_some() {
        return Err(AuthError::InvalidToken("unsupported critical header"));
    }
    let kid = header
        .kid
        .ok_or(AuthError::InvalidToken("missing key id"))?;
    let plausible = !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~+/=:".contains(&b));
    if !plausible {
        return Err(AuthError::InvalidToken("invalid key id"));
    }
    Ok(kid)
}

fn reason(e: jsonwebtoken::errors::Error) -> AuthError {
    AuthError::InvalidToken(match e.kind() {
        ErrorKind::InvalidSignature => "invalid signature",
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::MissingRequiredClaim(_) => "missing required claim",
        ErrorKind::InvalidAlgorithm => "unsupported algorithm",
        _ => "malformed token",
    })
}

fn sha256(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
