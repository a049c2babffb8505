//! Auth0 JWT verification against a cached JWKS, permissions, and the local dev issuer.
