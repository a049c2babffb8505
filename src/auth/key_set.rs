//! A parsed JWKS: the issuer's usable RS256 keys by `kid`, as fetched, persisted or made by
//! the dev issuer. Both the cache ([`super::jwks`]) and the fetcher ([`super::jwks_fetch`])
//! use it; neither owns it.

use std::collections::HashMap;
use std::time::SystemTime;

use jsonwebtoken::DecodingKey;
use serde_json::Value;

/// Immutable snapshot of the usable keys.
pub(crate) struct KeySet {
    pub(crate) keys: HashMap<String, DecodingKey>,
    /// The usable JWKs as received, re-served (dev) or persisted (remote).
    pub(crate) raw: Vec<Value>,
    /// When these keys were fetched from the issuer (or created, for the dev issuer).
    pub(crate) fetched_at: Option<SystemTime>,
}

impl KeySet {
    pub(crate) fn empty() -> Self {
        Self {
            keys: HashMap::new(),
            raw: Vec::new(),
            fetched_at: None,
        }
    }

    /// Keeps only RSA signing keys with a `kid` (and `alg` RS256 if given); others are
    /// skipped, never an error, since a JWKS may legitimately list keys of other kinds.
    pub(crate) fn from_jwks(doc: &Value, fetched_at: Option<SystemTime>) -> Self {
        let mut set = Self::empty();
        set.fetched_at = fetched_at;
        let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
            return set;
        };
        for jwk in keys {
            let field = |name: &str| jwk.get(name).and_then(Value::as_str);
            let usable = field("kty") == Some("RSA")
                && field("use").is_none_or(|u| u == "sig")
                && field("alg").is_none_or(|a| a == "RS256");
            let (Some(kid), Some(n), Some(e)) = (field("kid"), field("n"), field("e")) else {
                continue;
            };
            if !usable || kid.is_empty() || set.keys.contains_key(kid) {
                continue;
            }
            if let Ok(key) = DecodingKey::from_rsa_components(n, e) {
                set.keys.insert(kid.to_owned(), key);
                set.raw.push(jwk.clone());
            }
        }
        set
    }
}
