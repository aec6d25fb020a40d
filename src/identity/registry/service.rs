//! The client registry's flows (`docs/onboarding.md`): a device's
//! `register` (explicit flow), and the administrator's unlock, lock,
//! confirm and reject. Confirming creates the user through the same
//! services as the admin API (validation, password policy, audit), and
//! signs a CSR with the built-in CA's one signing function. Passwords are
//! hashed at once and compared by argon2 (constant-time), on the blocking
//! pool.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::request::*;
use super::*;
use crate::identity::audit::Actor;
use crate::identity::directory::IdentityError;
use crate::identity::model::{CertificateRecord, GrantMethod, GrantType, Permission, User};
use crate::identity::password;
use crate::identity::services::{CreateUser, IdentityServices};

impl IdentityServices {
    /// Runs `f` on the blocking pool (argon2, CSR signatures, audit writes).
    async fn off_thread<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&IdentityServices) -> T + Send + 'static,
    ) -> Result<T, RegistryError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|_| RegistryError::Interrupted)
    }

    /// Whether `offered` is the credential `stored` was made from:
    /// argon2 verification for a password, the key digest for a CSR.
    async fn same_credential(
        self: &Arc<Self>,
        stored: &Credential,
        offered: &Offered,
    ) -> Result<bool, RegistryError> {
        match (stored, offered) {
            (Credential::Password { hash }, Offered::Password(password)) => {
                let _permit = self.hashing.acquire().await;
                let (hash, password) = (hash.clone(), password.clone());
                self.off_thread(move |_| password::verify_password(password.as_bytes(), &hash))
                    .await
            }
            (
                Credential::Csr { key_digest, .. },
                Offered::Csr {
                    key_digest: new, ..
                },
            ) => Ok(same_digest(key_digest, new)),
            _ => Ok(false),
        }
    }

    /// A device's request (explicit flow): 423 while locked (except the
    /// one answer to a granted request), 400 for a bad request, 409 for an
    /// existing user or a different pending request, else pending (202) or,
    /// once confirmed, granted (201).
    #[tracing::instrument(name = "register", skip_all)]
    pub async fn register(
        self: &Arc<Self>,
        request: Registration,
        peer: IpAddr,
    ) -> Result<Registered, RegistryError> {
        let registry = &self.registry;
        registry
            .per_address
            .take(&format!("register:{peer}"))
            .map_err(RegistryError::RateLimited)?;
        let existing = registry.get(&request.username);
        if !registry.is_open() && existing.as_ref().is_none_or(|e| e.granted.is_none()) {
            return Err(RegistryError::Locked);
        }
        check_request(&request, self)?;
        let username = request.username.clone();
        let offered = match (request.password, request.csr) {
            (Some(password), _) => Offered::Password(password),
            (None, Some(csr)) => {
                let name = username.clone();
                self.off_thread(move |_| check_csr(&csr, &name)).await??
            }
            (None, None) => return Err(RegistryError::NoCredential),
        };
        let mut credential: Option<Credential> = None;
        // A few rounds at most: a request added or removed meanwhile (by
        // an identical request racing this one) is looked at again.
        for _ in 0..3 {
            let answer = match registry.get(&username) {
                Some(entry) => {
                    self.register_again(entry, &offered, &request.wishes, peer)
                        .await?
                }
                None => {
                    self.register_new(&username, &offered, &mut credential, &request.wishes, peer)
                        .await?
                }
            };
            if let Some(answer) = answer {
                return Ok(answer);
            }
        }
        Err(RegistryError::Conflict(username))
    }

    /// `register` for a name with a request: the same one polls (or gets
    /// its granted answer, once); another one is a conflict. `None`: the
    /// request went meanwhile.
    async fn register_again(
        self: &Arc<Self>,
        entry: PendingRequest,
        offered: &Offered,
        wishes: &Wishes,
        peer: IpAddr,
    ) -> Result<Option<Registered>, RegistryError> {
        let username = entry.username.clone();
        if !self.same_credential(&entry.credential, offered).await? {
            tracing::warn!(%peer, username, "registration refused: a different request for this user name is pending");
            self.registry.note_conflict(&entry.id, &username);
            let detail = serde_json::json!({"username": username, "reason": "conflict"});
            self.audit_off_thread(peer, "registry.conflict", &username, detail)
                .await?;
            return Err(RegistryError::Conflict(username));
        }
        if entry.granted.is_none() && !self.registry.is_open() {
            return Err(RegistryError::Locked);
        }
        match self
            .registry
            .repeat(&entry.id, &username, peer, wishes.clone())
        {
            Repeat::Pending(pairing_code) => Ok(Some(Registered::Pending { pairing_code })),
            Repeat::Granted(grant) => {
                self.audit_off_thread(peer, "registry.deliver", &username, describe(&entry))
                    .await?;
                Ok(Some(Registered::Granted { username, grant }))
            }
            Repeat::Gone => Ok(None),
        }
    }

    /// `register` for a name without a request: a new one (the password
    /// hashed once, into `credential`). `None`: one appeared meanwhile.
    async fn register_new(
        self: &Arc<Self>,
        username: &str,
        offered: &Offered,
        credential: &mut Option<Credential>,
        wishes: &Wishes,
        peer: IpAddr,
    ) -> Result<Option<Registered>, RegistryError> {
        if !self.registry.is_open() {
            return Err(RegistryError::Locked);
        }
        if self.directory.user(username).is_some() {
            return Err(RegistryError::UserExists(username.into()));
        }
        let stored = match (credential.as_ref(), offered) {
            (Some(stored), _) => stored.clone(),
            (None, Offered::Password(password)) => {
                let _permit = self.hashing.acquire().await;
                let password = password.clone();
                let hash = self
                    .off_thread(move |_| password::try_hash_password(&password))
                    .await?
                    .map_err(|e| {
                        tracing::error!("registration: {e}");
                        RegistryError::Interrupted
                    })?;
                Credential::Password { hash }
            }
            (None, Offered::Csr { pem, key_digest }) => Credential::Csr {
                pem: pem.clone(),
                key_digest: *key_digest,
            },
        };
        *credential = Some(stored.clone());
        let new = NewRequest {
            username: username.into(),
            credential: stored,
            wishes: wishes.clone(),
            flow: Flow::Explicit,
            address: peer,
        };
        match self.registry.insert(new) {
            Ok(added) => {
                tracing::info!(%peer, username, method = added.credential.method(), pairing_code = added.pairing_code, "registration pending");
                self.audit_off_thread(peer, "registry.request", username, describe(&added))
                    .await?;
                Ok(Some(Registered::Pending {
                    pairing_code: added.pairing_code,
                }))
            }
            Err(InsertRefused::Taken) => Ok(None),
            Err(InsertRefused::Full(wait)) => Err(RegistryError::Full(wait)),
            Err(InsertRefused::Locked) => Err(RegistryError::Locked),
        }
    }

    /// An audit entry for a device's request (the store write fsyncs).
    async fn audit_off_thread(
        self: &Arc<Self>,
        peer: IpAddr,
        action: &'static str,
        username: &str,
        detail: serde_json::Value,
    ) -> Result<(), RegistryError> {
        let target = username.to_owned();
        self.off_thread(move |s| s.audit.record(&device(peer), action, &target, detail))
            .await??;
        Ok(())
    }

    pub fn registry_status(&self) -> RegistryStatus {
        self.registry.status()
    }

    /// Opens the registry for `duration_ms` (default and cap configured).
    pub fn registry_unlock(
        &self,
        actor: &Actor,
        duration_ms: Option<u64>,
    ) -> Result<RegistryStatus, RegistryError> {
        if duration_ms == Some(0) {
            return Err(RegistryError::Duration);
        }
        let open_for = self.registry.unlock(duration_ms.map(Duration::from_millis));
        self.audit.record(
            actor,
            "registry.unlock",
            "client-registry",
            serde_json::json!({"duration": open_for.as_millis() as u64}),
        )?;
        Ok(self.registry.status())
    }

    pub fn registry_lock(&self, actor: &Actor) -> Result<RegistryStatus, RegistryError> {
        self.registry.lock();
        self.audit.record(
            actor,
            "registry.lock",
            "client-registry",
            serde_json::json!({}),
        )?;
        Ok(self.registry.status())
    }

    /// Role ids from ids or names.
    fn role_ids(&self, roles: &[String]) -> Result<Vec<String>, RegistryError> {
        roles
            .iter()
            .map(|r| {
                self.directory
                    .role_by_id(r)
                    .or_else(|| self.directory.role(r))
                    .map(|role| role.id)
                    .ok_or_else(|| RegistryError::from(IdentityError::NotFound("role", r.clone())))
            })
            .collect()
    }

    /// Grants the pending request of `username`: the user is created with
    /// exactly `roles` (ids or names) and `permissions` (none when absent;
    /// the request's wishes are only shown), with the requested password's
    /// hash or, for a CSR, the `certificate` grant and a certificate signed
    /// now. The device fetches it with its next identical request.
    /// `pairing_code`, when given, must be the pending request's: the
    /// administrator grants the request they compared with the device, not
    /// whichever holds the name by now.
    pub fn registry_confirm(
        &self,
        actor: &Actor,
        username: &str,
        pairing_code: Option<&str>,
        roles: Option<Vec<String>>,
        permissions: Option<Vec<Permission>>,
    ) -> Result<User, RegistryError> {
        let _decision = self.registry.decisions.lock();
        let entry = self
            .registry
            .get(username)
            .ok_or_else(|| RegistryError::NotPending(username.into()))?;
        if entry.granted.is_some() {
            return Err(RegistryError::AlreadyConfirmed(username.into()));
        }
        if let Some(expected) = pairing_code
            && !expected.trim().eq_ignore_ascii_case(&entry.pairing_code)
        {
            return Err(RegistryError::PairingCode {
                username: username.into(),
                pending: entry.pairing_code.clone(),
                expected: expected.trim().into(),
            });
        }
        let role_ids = self.role_ids(roles.as_deref().unwrap_or_default())?;
        let method = match entry.credential {
            Credential::Password { .. } => GrantMethod::Password,
            Credential::Csr { .. } => GrantMethod::Certificate,
        };
        let user = self.create_user(
            actor,
            CreateUser {
                username: username.into(),
                grant_types: vec![GrantType {
                    method,
                    is_required: false,
                }],
                permissions: permissions.unwrap_or_default(),
                role_ids,
                ..CreateUser::default()
            },
        )?;
        let (grant, serial) = match self.credential_for(&user, &entry.credential) {
            Ok(done) => done,
            Err(e) => {
                // No half-made identity: the user goes again.
                if let Err(undo) = self.delete_user(actor, &user.id) {
                    tracing::error!(username, "registry: cannot undo the user: {undo}");
                }
                return Err(e);
            }
        };
        // Nobody fetches an answer in the implicit flow: the client connects.
        let answer = match entry.flow {
            Flow::Explicit => Some(grant),
            Flow::Implicit => None,
        };
        self.registry.settle(&entry.id, username, answer);
        let mut detail = describe(&entry);
        detail["serial"] = serde_json::json!(serial);
        self.audit
            .record(actor, "registry.confirm", &user.id, detail)?;
        tracing::info!(
            username,
            pairing_code = entry.pairing_code,
            "registration confirmed"
        );
        self.directory
            .user(username)
            .ok_or_else(|| IdentityError::NotFound("user", username.into()).into())
    }

    /// Sets the confirmed user's credential: the stored hash, or a
    /// certificate signed for the CSR (recorded on the user). Returns the
    /// answer for the device and the certificate's serial.
    fn credential_for(
        &self,
        user: &User,
        credential: &Credential,
    ) -> Result<(Grant, Option<String>), RegistryError> {
        match credential {
            Credential::Password { hash } => {
                let hash = hash.clone();
                self.directory.update_user(&user.username, |u| {
                    u.password_hash = Some(hash);
                    Ok(())
                })?;
                let grant = Grant {
                    certificate: None,
                    ca_certificate: None,
                };
                Ok((grant, None))
            }
            Credential::Csr { pem, .. } => {
                let ca = self.registry.ca().map_err(RegistryError::Ca)?;
                let issued = ca
                    .sign_csr(pem, Some(&user.username), self.registry.device_cert_days)
                    .map_err(RegistryError::Ca)?;
                self.directory
                    .record_certificate(CertificateRecord::from(&issued))?;
                let grant = Grant {
                    certificate: Some(issued.pem),
                    ca_certificate: Some(ca.cert_pem.clone()),
                };
                Ok((grant, Some(issued.serial)))
            }
        }
    }

    /// Drops the pending request of `username`.
    pub fn registry_reject(&self, actor: &Actor, username: &str) -> Result<(), RegistryError> {
        let _decision = self.registry.decisions.lock();
        match self.registry.get(username) {
            None => return Err(RegistryError::NotPending(username.into())),
            Some(entry) if entry.granted.is_some() => {
                return Err(RegistryError::AlreadyConfirmed(username.into()));
            }
            Some(_) => {}
        }
        let Some(entry) = self.registry.remove(username) else {
            return Err(RegistryError::NotPending(username.into()));
        };
        self.audit
            .record(actor, "registry.reject", username, describe(&entry))?;
        tracing::info!(
            username,
            pairing_code = entry.pairing_code,
            "registration rejected"
        );
        Ok(())
    }
}
