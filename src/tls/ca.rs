//! The built-in certificate authority: generated on first start, it signs
//! the server certificate, device certificates and CSRs, and the CRL.
//!
//! Signing never copies what a request asks for: every issued certificate
//! is built from fresh parameters (leaf, digitalSignature, clientAuth, our
//! serial and validity) with only the request's public key. The CSR is read
//! here rather than by rcgen's import, which refuses requests carrying
//! extensions it does not model and takes the key's algorithm from the
//! request's signature algorithm (so a P-384 key signed with SHA-256, the
//! openssl default, came out labelled as a P-256 key).

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SanType, SerialNumber, SubjectPublicKeyInfo,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use super::files::write_new;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("the certificate signing request is invalid: {0}")]
    Csr(&'static str),
    #[error("the certificate signing request's signature does not verify: {0}")]
    CsrSignature(x509_parser::error::X509Error),
    #[error("the certificate signing request's public key is not supported: {0}")]
    CsrKey(rcgen::Error),
    #[error("the certificate signing request has no common name (CN)")]
    NoCommonName,
    #[error(
        "the certificate signing request has several common names (CN); name the user with --cn"
    )]
    SeveralCommonNames,
    #[error("a validity of {0} days is out of range (1 day up to the year 9999)")]
    Validity(u32),
    #[error("{0} exists but {1} is missing; restore it or move both away")]
    HalfPair(PathBuf, PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the CA records about a certificate it issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Hex, as shown by `openssl x509 -serial`.
    pub serial: String,
    pub common_name: String,
    /// SHA-256 of the DER, hex.
    pub fingerprint: String,
    pub not_before: u64,
    pub not_after: u64,
    pub pem: String,
}

pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

pub fn ca_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.crt"), dir.join("ca.key"))
}

fn unix(t: OffsetDateTime) -> u64 {
    t.unix_timestamp().max(0) as u64
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte
    SerialNumber::from_slice(&bytes)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn issued(cert: &rcgen::Certificate, params: &CertificateParams, cn: &str) -> Issued {
    Issued {
        serial: params
            .serial_number
            .as_ref()
            .map(|s| hex(s.as_ref()))
            .unwrap_or_default(),
        common_name: cn.to_owned(),
        fingerprint: hex(&Sha256::digest(cert.der())),
        not_before: unix(params.not_before),
        not_after: unix(params.not_after),
        pem: cert.pem(),
    }
}

/// Parameters every leaf we sign starts from. `days` comes from the
/// command line or the configuration: out of range is an error, not a panic.
fn leaf_params(cn: &str, days: u32, client: bool) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    params.distinguished_name = name;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = Some(days)
        .filter(|&d| d > 0)
        .and_then(|d| now.checked_add(Duration::days(i64::from(d))))
        .ok_or(CaError::Validity(days))?;
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

impl CertificateAuthority {
    /// Loads `ca.crt`/`ca.key` from `dir`, or creates them when both are absent.
    pub fn load_or_create(dir: &Path) -> Result<CertificateAuthority, CaError> {
        let (cert_path, key_path) = ca_paths(dir);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let cert_pem = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
                let key_pem = std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
                let key = KeyPair::from_pem(&key_pem)?;
                let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
                Ok(CertificateAuthority { issuer, cert_pem })
            }
            (false, false) => {
                let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
                let mut params = CertificateParams::default();
                let mut name = DistinguishedName::new();
                name.push(DnType::CommonName, "Gatehouse CA");
                params.distinguished_name = name;
                let now = OffsetDateTime::now_utc();
                params.not_before = now - Duration::minutes(5);
                params.not_after = now + Duration::days(3650);
                params.serial_number = Some(random_serial());
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                let cert = params.self_signed(&key)?;
                write_new(&key_path, key.serialize_pem().as_bytes(), true)
                    .map_err(io_err(&key_path))?;
                write_new(&cert_path, cert.pem().as_bytes(), false).map_err(io_err(&cert_path))?;
                tracing::info!(path = %cert_path.display(), "generated certificate authority");
                Ok(CertificateAuthority {
                    cert_pem: cert.pem(),
                    issuer: Issuer::new(params, key),
                })
            }
            (true, false) => Err(CaError::HalfPair(cert_path, key_path)),
            (false, true) => Err(CaError::HalfPair(key_path, cert_path)),
        }
    }

    /// Creates `server.crt`/`server.key` when both are absent. SANs:
    /// localhost, 127.0.0.1, ::1, the host name and `names`.
    pub fn ensure_server_cert(
        &self,
        cert_path: &Path,
        key_path: &Path,
        names: &[String],
    ) -> Result<Option<Issued>, CaError> {
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => return Ok(None),
            (false, false) => {}
            (true, false) => return Err(CaError::HalfPair(cert_path.into(), key_path.into())),
            (false, true) => return Err(CaError::HalfPair(key_path.into(), cert_path.into())),
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let mut params = leaf_params("gatehouse", 825, false)?;
        let mut sans = vec![
            SanType::DnsName("localhost".try_into()?),
            SanType::IpAddress([127, 0, 0, 1].into()),
            SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
        ];
        for name in std::iter::once(&host)
            .chain(names)
            .filter(|n| !n.is_empty())
        {
            match name.parse::<std::net::IpAddr>() {
                Ok(ip) => sans.push(SanType::IpAddress(ip)),
                Err(_) => sans.push(SanType::DnsName(name.clone().try_into()?)),
            }
        }
        params.subject_alt_names = sans;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        write_new(key_path, key.serialize_pem().as_bytes(), true).map_err(io_err(key_path))?;
        write_new(cert_path, cert.pem().as_bytes(), false).map_err(io_err(cert_path))?;
        tracing::info!(path = %cert_path.display(), "generated server certificate");
        Ok(Some(issued(&cert, &params, "gatehouse")))
    }

    /// A new key and client certificate for `cn`. Returns (record, key PEM).
    pub fn issue(&self, cn: &str, days: u32) -> Result<(Issued, String), CaError> {
        if cn.trim().is_empty() {
            return Err(CaError::NoCommonName);
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let params = leaf_params(cn, days, true)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((issued(&cert, &params, cn), key.serialize_pem()))
    }

    /// Signs a CSR as a client certificate. Only the request's public key
    /// and (unless `cn` is given) its CN are used; everything else it asks
    /// for (CA flag, usages, SANs, other extensions and name parts) is ignored.
    pub fn sign_csr(&self, csr_pem: &str, cn: Option<&str>, days: u32) -> Result<Issued, CaError> {
        let request = verify_csr(csr_pem)?;
        let cn = match cn {
            Some(cn) => cn.to_owned(),
            None => request.common_name?,
        };
        if cn.trim().is_empty() {
            return Err(CaError::NoCommonName);
        }
        let params = leaf_params(&cn, days, true)?;
        let cert = params.signed_by(&request.public_key, &self.issuer)?;
        Ok(issued(&cert, &params, &cn))
    }

    /// A CRL listing `revoked` serials (hex), valid for a day.
    pub fn crl(&self, revoked: &[String]) -> Result<Vec<u8>, CaError> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(1),
            crl_number: SerialNumber::from(now.unix_timestamp().max(1) as u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .filter_map(|serial| parse_hex(serial))
                .map(|bytes| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&bytes),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.der().to_vec())
    }
}

/// A certification request whose signature verified.
struct VerifiedCsr {
    public_key: SubjectPublicKeyInfo,
    /// SubjectPublicKeyInfo, DER, as the request carries it.
    public_key_der: Vec<u8>,
    /// Its one CN, or why there is none to use.
    common_name: Result<String, CaError>,
}

/// Parses a PEM CSR and checks its signature (proof of possession: the
/// requester holds the private key) and that its key is one we can sign.
fn verify_csr(csr_pem: &str) -> Result<VerifiedCsr, CaError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())
        .map_err(|_| CaError::Csr("not PEM"))?;
    if !pem.label.ends_with("CERTIFICATE REQUEST") {
        return Err(CaError::Csr("the PEM block is not a CERTIFICATE REQUEST"));
    }
    let request = match X509CertificationRequest::from_der(&pem.contents) {
        Ok(([], request)) => request,
        Ok(_) => return Err(CaError::Csr("trailing bytes after the request")),
        Err(_) => return Err(CaError::Csr("not a PKCS#10 certification request")),
    };
    request.verify_signature().map_err(CaError::CsrSignature)?;
    let info = &request.certification_request_info;
    // The key's algorithm comes from the key itself, never from the
    // request's signature algorithm.
    let public_key =
        SubjectPublicKeyInfo::from_der(info.subject_pki.raw).map_err(CaError::CsrKey)?;
    let mut names = info.subject.iter_common_name();
    let common_name = match (names.next(), names.next()) {
        // A CN that is not a plain string type counts as none.
        (Some(name), None) => name
            .as_str()
            .map(str::to_owned)
            .map_err(|_| CaError::NoCommonName),
        (None, _) => Err(CaError::NoCommonName),
        (Some(_), Some(_)) => Err(CaError::SeveralCommonNames),
    };
    Ok(VerifiedCsr {
        public_key,
        public_key_der: info.subject_pki.raw.to_vec(),
        common_name,
    })
}

/// What [`inspect_csr`] found in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrSummary {
    /// The request's public key (SubjectPublicKeyInfo, DER).
    pub public_key_der: Vec<u8>,
    /// Its one common name (may be empty or blank).
    pub common_name: String,
}

/// Checks a CSR the way [`CertificateAuthority::sign_csr`] will, without
/// signing it: the client registry refuses a bad request before an
/// administrator sees it, and knows the key it will be signed for.
pub fn inspect_csr(csr_pem: &str) -> Result<CsrSummary, CaError> {
    let request = verify_csr(csr_pem)?;
    Ok(CsrSummary {
        common_name: request.common_name?,
        public_key_der: request.public_key_der,
    })
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl From<&Issued> for crate::identity::CertificateRecord {
    fn from(issued: &Issued) -> Self {
        crate::identity::CertificateRecord {
            serial: issued.serial.clone(),
            common_name: issued.common_name.clone(),
            fingerprint: issued.fingerprint.clone(),
            not_before: issued.not_before,
            not_after: issued.not_after,
            revoked: false,
            created_at: crate::router::now_millis(),
        }
    }
}
