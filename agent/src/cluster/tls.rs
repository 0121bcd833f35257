//! Node reports over mutual TLS (`[cluster.tls]`, feature `tls`; rustls with ring).
//!
//! The leader serves `POST /v1/reports` on a listener of its own, `cluster.tls.listen`,
//! and only there: a client must present a certificate that `ca_file` signed, a report
//! is taken only as a node that certificate names
//! ([`crate::cluster::identity::certificate_nodes`]), and the bearer token still applies. Every agent presents `cert_file` when it reports, and
//! checks the leader's certificate against the same CA and the host of the leader's
//! `advertise_url` (so each agent's certificate names its advertised host or IP).
//! `/metrics`, the health endpoints and `/v1/status` stay on `agent.listen`, in plain
//! HTTP, for Prometheus and the kubelet.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use capstan_config::Tls;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read cluster.tls.{key} {}", path.display()))
}

fn certs(path: &Path, key: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read(path, key)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cluster.tls.{key} {}: not PEM certificates", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "cluster.tls.{key} {}: no certificate in it",
        path.display()
    );
    Ok(certs)
}

fn private_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read(path, "key_file")?;
    PrivateKeyDer::from_pem_slice(&pem).with_context(|| {
        format!(
            "cluster.tls.key_file {}: no PEM private key in it",
            path.display()
        )
    })
}

fn roots(tls: &Tls) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in certs(&tls.ca_file, "ca_file")? {
        roots.add(cert).with_context(|| {
            format!(
                "cluster.tls.ca_file {}: not a usable CA certificate",
                tls.ca_file.display()
            )
        })?;
    }
    Ok(Arc::new(roots))
}

/// The leader's side: this agent's certificate, and client certificates required.
pub fn server_config(tls: &Tls) -> anyhow::Result<rustls::ServerConfig> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(tls)?, provider.clone())
        .build()
        .context("cluster.tls.ca_file: cannot verify clients with it")?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(&tls.cert_file, "cert_file")?,
            private_key(&tls.key_file)?,
        )
        .context("cluster.tls.cert_file and key_file do not make a usable pair")?;
    Ok(config)
}

/// The reporting side: the CA to trust, and this agent's certificate to present.
pub fn client_config(tls: &Tls) -> anyhow::Result<rustls::ClientConfig> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(tls)?)
        .with_client_auth_cert(
            certs(&tls.cert_file, "cert_file")?,
            private_key(&tls.key_file)?,
        )
        .context("cluster.tls.cert_file and key_file do not make a usable pair")?;
    Ok(config)
}

/// The nodes a connection's client certificate names
/// ([`crate::cluster::identity::certificate_nodes`]), read once per connection and
/// handed to each of its requests.
#[derive(Debug, Clone)]
pub struct CertifiedNodes(pub Arc<Vec<String>>);

/// Wraps the reports listener's TLS acceptor: once a connection's handshake is done, its
/// client certificate is read for the nodes it names, and every request on the
/// connection carries them ([`CertifiedNodes`]), so a report costs no certificate
/// parsing.
#[derive(Debug, Clone)]
pub struct Certified<A>(pub A);

type Certifying<St, Sv> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = std::io::Result<(St, axum::middleware::AddExtension<Sv, CertifiedNodes>)>,
            > + Send,
    >,
>;

impl<A, I, S, X> axum_server::accept::Accept<I, S> for Certified<A>
where
    A: axum_server::accept::Accept<I, S, Stream = tokio_rustls::server::TlsStream<X>>,
    A::Future: Send + 'static,
    A::Service: Send + 'static,
    X: Send + 'static,
{
    type Stream = A::Stream;
    type Service = axum::middleware::AddExtension<A::Service, CertifiedNodes>;
    type Future = Certifying<Self::Stream, A::Service>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        use tower_layer::Layer;
        let accepted = self.0.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            let nodes = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|der| crate::cluster::identity::certificate_nodes(der))
                .unwrap_or_default();
            let service = axum::Extension(CertifiedNodes(Arc::new(nodes))).layer(service);
            Ok((stream, service))
        })
    }
}
