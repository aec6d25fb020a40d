//! Certificates issued by the built-in CA, as the directory records them:
//! listed on the user of their common name, and revocable.

use super::directory::{Directory, IdentityError};
use super::model::{CertificateRecord, UserCertificate};
use crate::store::IdentityTable;

impl Directory {
    fn put_certificate(&self, cert: &CertificateRecord) -> Result<(), IdentityError> {
        let json = serde_json::to_vec(cert).expect("certificate serialises");
        self.store
            .put_identity(IdentityTable::Certificates, &cert.serial, Some(&json))?;
        self.state
            .write()
            .certificates
            .insert(cert.serial.clone(), cert.clone());
        Ok(())
    }

    /// Records a certificate the CA issued and lists it on the user of
    /// that common name (if one exists).
    pub fn record_certificate(&self, cert: CertificateRecord) -> Result<(), IdentityError> {
        let _writing = self.writing.lock();
        self.put_certificate(&cert)?;
        if self.user(&cert.common_name).is_some() {
            self.update_user(&cert.common_name, |u| {
                u.certificates.push(UserCertificate {
                    fingerprint: cert.fingerprint.clone(),
                    created_at: cert.created_at,
                    expires_at: cert.not_after,
                });
                Ok(())
            })?;
        }
        self.changed();
        Ok(())
    }

    /// Marks a certificate revoked: refused at the TLS handshake from now
    /// on, and live sessions that used it are closed.
    pub fn revoke_certificate(&self, serial: &str) -> Result<CertificateRecord, IdentityError> {
        let _writing = self.writing.lock();
        let serial = serial
            .trim()
            .trim_start_matches("0x")
            .to_ascii_lowercase()
            .replace(':', "");
        let mut cert = self
            .state
            .read()
            .certificates
            .get(&serial)
            .cloned()
            .ok_or_else(|| IdentityError::NotFound("certificate", serial.clone()))?;
        cert.revoked = true;
        self.put_certificate(&cert)?;
        if self.user(&cert.common_name).is_some() {
            self.update_user(&cert.common_name, |u| {
                u.certificates.retain(|c| c.fingerprint != cert.fingerprint);
                Ok(())
            })?;
        }
        self.changed();
        Ok(cert)
    }

    /// Revokes every certificate issued for `common_name` (its user is
    /// being deleted).
    pub(super) fn revoke_certificates_of(&self, common_name: &str) -> Result<(), IdentityError> {
        let issued: Vec<CertificateRecord> = self
            .state
            .read()
            .certificates
            .values()
            .filter(|c| c.common_name == common_name && !c.revoked)
            .cloned()
            .collect();
        for mut cert in issued {
            cert.revoked = true;
            self.put_certificate(&cert)?;
            tracing::info!(
                serial = cert.serial,
                common_name,
                "certificate revoked with its user"
            );
        }
        Ok(())
    }

    pub fn certificates(&self) -> Vec<CertificateRecord> {
        self.state.read().certificates.values().cloned().collect()
    }

    pub fn revoked_serials(&self) -> Vec<String> {
        let state = self.state.read();
        state
            .certificates
            .values()
            .filter(|c| c.revoked)
            .map(|c| c.serial.clone())
            .collect()
    }

    pub fn is_revoked(&self, serial: &str) -> bool {
        self.state
            .read()
            .certificates
            .get(serial)
            .is_some_and(|c| c.revoked)
    }
}
