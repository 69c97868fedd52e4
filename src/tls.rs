//! TLS for the REST API, WKProto over TCP and WebSocket (wss), from PEM certificate and key files.
//!
//! rustls with the `ring` provider: no OpenSSL and no C toolchain beyond what `ring` needs. Each
//! listener turns TLS on separately (`tls_api`, `tls_tcp`, `tls_ws`), all with the same certificate.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

/// A socket accepted by a listener: plain TCP, or TLS over TCP.
pub type Socket = tokio_util::either::Either<TcpStream, Box<tokio_rustls::server::TlsStream<TcpStream>>>;

/// The acceptor for `tls_cert_file` and `tls_key_file`, when any listener has TLS on.
///
/// # Errors
/// Unreadable or malformed PEM files, a key that does not match the certificate.
pub fn acceptor(config: &Config) -> anyhow::Result<Option<TlsAcceptor>> {
    if !(config.tls_api || config.tls_tcp || config.tls_ws) {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) else {
        anyhow::bail!("TLS is on for a listener but tls_cert_file and tls_key_file are not both set");
    };
    Ok(Some(TlsAcceptor::from(Arc::new(server_config(cert, key)?))))
}

fn server_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing TLS certificate {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in {}", cert.display());
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading TLS private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS key does not match the certificate")
}

/// Wraps an accepted stream in TLS when `acceptor` is given, within `timeout`.
///
/// # Errors
/// A failed or timed-out handshake.
pub async fn accept(acceptor: Option<&TlsAcceptor>, stream: TcpStream, timeout: std::time::Duration) -> std::io::Result<Socket> {
    match acceptor {
        None => Ok(Socket::Left(stream)),
        Some(a) => match tokio::time::timeout(timeout, a.accept(stream)).await {
            Ok(Ok(tls)) => Ok(Socket::Right(Box::new(tls))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")),
        },
    }
}
