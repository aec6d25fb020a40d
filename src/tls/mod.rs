//! TLS for the `mqtts` and `wss` listeners (rustls, aws-lc-rs backend),
//! the built-in certificate authority, and client certificates.

pub mod ca;
mod files;

pub use ca::{CaError, CertificateAuthority, CsrSummary, Issued, inspect_csr};
pub use files::write_new;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

use crate::config::Tls as TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The client certificate a connection presented (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    pub common_name: String,
    /// Hex serial, as recorded by the CA.
    pub serial: String,
}

impl PeerCertificate {
    /// Reads CN and serial from the end-entity certificate.
    pub fn from_der(der: &[u8]) -> Option<PeerCertificate> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())?
            .to_owned();
        Some(PeerCertificate {
            common_name,
            serial: ca::hex(cert.raw_serial()),
        })
    }
}

/// Paths of the server certificate and key.
pub fn server_paths(config: &TlsConfig) -> (PathBuf, PathBuf) {
    let cert = config
        .cert
        .clone()
        .unwrap_or_else(|| config.dir.join("server.crt"));
    let key = config
        .key
        .clone()
        .unwrap_or_else(|| config.dir.join("server.key"));
    (cert, key)
}

/// The current server configuration; swapped on SIGHUP (renewed
/// certificate) and when a certificate is revoked (new CRL), without
/// touching established connections.
pub struct TlsContext {
    config: TlsConfig,
    mutual: bool,
    ca: CertificateAuthority,
    current: ArcSwap<ServerConfig>,
    /// The admin HTTPS listener's: same certificate, no client
    /// certificates asked, ALPN `http/1.1`.
    http: ArcSwap<ServerConfig>,
}

fn pem_err(path: &std::path::Path, reason: impl ToString) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

impl TlsContext {
    /// Creates the CA and server certificate when absent, then builds the
    /// server configuration. `mutual` requires client certificates.
    pub fn prepare(
        config: &TlsConfig,
        mutual: bool,
        revoked: &[String],
    ) -> Result<Arc<TlsContext>, TlsError> {
        let ca = CertificateAuthority::load_or_create(&config.dir)?;
        let (cert, key) = server_paths(config);
        if config.cert.is_none() && config.key.is_none() {
            ca.ensure_server_cert(&cert, &key, &config.server_names)?;
        }
        let server = build(config, mutual, &ca, revoked)?;
        let http = build_http(config, &ca)?;
        Ok(Arc::new(TlsContext {
            config: config.clone(),
            mutual,
            ca,
            current: ArcSwap::from_pointee(server),
            http: ArcSwap::from_pointee(http),
        }))
    }

    pub fn is_mutual(&self) -> bool {
        self.mutual
    }

    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// Rebuilds from the files on disk and the revoked serials.
    pub fn reload(&self, revoked: &[String]) -> Result<(), TlsError> {
        let server = build(&self.config, self.mutual, &self.ca, revoked)?;
        let http = build_http(&self.config, &self.ca)?;
        self.current.store(Arc::new(server));
        self.http.store(Arc::new(http));
        Ok(())
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// For the admin HTTPS listener.
    pub fn http_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.http.load_full())
    }
}

fn build_http(config: &TlsConfig, ca: &CertificateAuthority) -> Result<ServerConfig, TlsError> {
    let mut server = build(config, false, ca, &[])?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(server)
}

fn build(
    config: &TlsConfig,
    mutual: bool,
    ca: &CertificateAuthority,
    revoked: &[String],
) -> Result<ServerConfig, TlsError> {
    let (cert_path, key_path) = server_paths(config);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| pem_err(&cert_path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(&cert_path, e))?;
    if chain.is_empty() {
        return Err(pem_err(&cert_path, "no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| pem_err(&key_path, e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = if mutual {
        let mut roots = RootCertStore::empty();
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
            .map_err(|e| pem_err(&config.dir.join("ca.crt"), e))?;
        roots.add(ca_der)?;
        if let Some(bundle) = &config.client_ca_bundle {
            for cert in CertificateDer::pem_file_iter(bundle).map_err(|e| pem_err(bundle, e))? {
                roots.add(cert.map_err(|e| pem_err(bundle, e))?)?;
            }
        }
        let crl = CertificateRevocationListDer::from(ca.crl(revoked)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .with_crls(vec![crl])
            .only_check_end_entity_revocation()
            // Certificates from an extra bundle have no CRL of ours.
            .allow_unknown_revocation_status()
            .build()?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    Ok(builder.with_single_cert(chain, key)?)
}
