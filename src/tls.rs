//! The one TLS client configuration of the root crate's HTTP clients (the JWKS fetch, the
//! OTLP trace exporter): rustls with the aws-lc-rs provider given explicitly (no process-wide
//! default to forget to install) and the Mozilla roots of `webpki-roots` (no system store
//! needed in the container).

use std::sync::Arc;

/// A client configuration trusting the public web roots.
pub fn client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
