//! The agent's HTTP client defaults, one place for every request Capstan sends.

/// A reqwest client builder for everything Capstan sends over HTTP. With the `tls`
/// feature, reqwest takes its TLS provider from the process default: this installs
/// ring's first (once; later calls are harmless).
pub fn client_builder() -> reqwest::ClientBuilder {
    #[cfg(feature = "tls")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
