//! The built-in certificate authority: generated on first start, it signs
//! the server certificate, device certificates and CSRs, and the CRL.
//!
//! Signing never copies what a request asks for: rcgen's CSR import would
//! carry over a CA flag, key usages and extensions, so every issued
//! certificate is built from fresh parameters (leaf, digitalSignature,
//! clientAuth, our serial and validity) with only the request's public key.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

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
    Csr(rcgen::Error),
    #[error("the certificate signing request has no common name (CN)")]
    NoCommonName,
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

/// Parameters every leaf we sign starts from.
fn leaf_params(cn: &str, days: u32, client: bool) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    params.distinguished_name = name;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(days));
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    params.use_authority_key_identifier_extension = true;
    params
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
        let mut params = leaf_params("gatehouse", 825, false);
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
        let params = leaf_params(cn, days, true);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((issued(&cert, &params, cn), key.serialize_pem()))
    }

    /// Signs a CSR as a client certificate. Only the request's public key
    /// and (unless `cn` is given) its CN are used.
    pub fn sign_csr(&self, csr_pem: &str, cn: Option<&str>, days: u32) -> Result<Issued, CaError> {
        let request = CertificateSigningRequestParams::from_pem(csr_pem).map_err(CaError::Csr)?;
        let requested_cn = request
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .and_then(|v| match v {
                DnValue::Utf8String(s) => Some(s.clone()),
                DnValue::PrintableString(s) => Some(s.as_str().to_owned()),
                DnValue::Ia5String(s) => Some(s.as_str().to_owned()),
                _ => None,
            });
        let cn = match cn {
            Some(cn) => cn.to_owned(),
            None => requested_cn.ok_or(CaError::NoCommonName)?,
        };
        if cn.trim().is_empty() {
            return Err(CaError::NoCommonName);
        }
        let params = leaf_params(&cn, days, true);
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
