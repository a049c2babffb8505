//! Auth: RS256 tokens against a real JWKS issuer on loopback, real RSA signatures, and the
//! real `AuthUser` extractor behind a test router. No mocks of the verifier.

mod accepts;
mod dev;
mod offline;
mod rejects;
mod support;
