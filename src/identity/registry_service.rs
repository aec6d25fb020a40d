//! The client registry's flows (`docs/onboarding.md`): a device asks for
//! an identity over HTTP (`register`, explicit flow) or by connecting with
//! an unknown user name (implicit flow); an administrator confirms or
//! rejects. Confirming creates the user through the same services as the
//! admin API (validation, password policy, audit), and signs a CSR with the
//! built-in CA's one signing function. Passwords are hashed at once and
//! compared by argon2 (constant-time), on the blocking pool.

use base64::Engine;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::audit::Actor;
use super::directory::IdentityError;
use super::model::{
    CertificateRecord, GrantMethod, GrantType, Permission, User, validate_permission,
};
use super::password;
use super::policy::PolicyViolation;
use super::registry::*;
use super::services::{AdminError, CreateUser, IdentityServices};
use super::{ValidationError, validate_username};
use crate::store::StoreError;
use crate::tls::{CaError, inspect_csr};

/// Longest `context` text, in characters.
pub const MAX_CONTEXT_CHARS: usize = 1024;
/// Most roles, and most permissions, a request may ask for.
pub const MAX_WISHES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("the client registry is locked")]
    Locked,
    #[error("too many registration attempts; retry in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    #[error("the client registry holds as many requests as it may; retry in {} s", .0.as_secs().max(1))]
    Full(Duration),
    #[error("{0}")]
    Username(ValidationError),
    #[error("password rejected: {0}")]
    Policy(PolicyViolation),
    #[error("give either a password or a csr, not both")]
    BothCredentials,
    #[error("a password or a csr is required")]
    NoCredential,
    #[error("csr: neither PEM nor base64 of PEM text")]
    CsrEncoding,
    #[error("csr: {0}")]
    InvalidCsr(CaError),
    #[error("csr: the common name (CN) is empty")]
    EmptyCommonName,
    #[error("csr: the common name (CN) `{cn}` is not the user name `{username}`")]
    CommonName { cn: String, username: String },
    #[error("{0}")]
    Wishes(String),
    #[error("user `{0}` already exists")]
    UserExists(String),
    #[error("a different request (password or CSR) for user `{0}` is pending")]
    Conflict(String),
    #[error("no pending request for user `{0}`")]
    NotPending(String),
    #[error("the request of `{0}` is already confirmed")]
    AlreadyConfirmed(String),
    #[error("duration must be at least 1 millisecond")]
    Duration,
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("certificate authority: {0}")]
    Ca(CaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the registration was interrupted")]
    Interrupted,
}

impl From<IdentityError> for RegistryError {
    fn from(e: IdentityError) -> RegistryError {
        RegistryError::Admin(e.into())
    }
}

/// A device's `register` request.
#[derive(Clone, Default)]
pub struct Registration {
    pub username: String,
    pub password: Option<String>,
    /// PEM text, or base64 of it.
    pub csr: Option<String>,
    pub wishes: Wishes,
}

impl std::fmt::Debug for Registration {
    /// Without the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("csr", &self.csr.is_some())
            .field("wishes", &self.wishes)
            .finish()
    }
}

/// What `register` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// 202: waiting for an administrator.
    Pending { pairing_code: String },
    /// 201: confirmed; this answer is given once.
    Granted { username: String, grant: Grant },
}

/// The credential of a request being checked (the password only until it
/// is hashed or compared).
enum Offered {
    Password(String),
    Csr { pem: String, key_digest: [u8; 32] },
}

/// Who made a device's request: no user yet, so the registry and the
/// device's address.
fn device(address: IpAddr) -> Actor {
    Actor {
        username: "registry".into(),
        user_id: None,
        address: Some(address),
    }
}

fn describe(request: &PendingRequest) -> serde_json::Value {
    serde_json::json!({
        "username": request.username,
        "method": request.credential.method(),
        "flow": request.flow.name(),
        "pairingCode": request.pairing_code,
        "context": request.wishes.context,
        "roles": request.wishes.roles,
    })
}

/// `csr` as PEM text: given as such, or base64 of it (Connectware's form).
fn csr_pem(text: &str) -> Result<String, RegistryError> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return Ok(text.to_owned());
    }
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| RegistryError::CsrEncoding)?;
    match String::from_utf8(bytes) {
        Ok(pem) if pem.trim_start().starts_with("-----BEGIN") => Ok(pem),
        _ => Err(RegistryError::CsrEncoding),
    }
}

/// The checks that need no state: name, one credential, wishes, policy.
fn check_request(request: &Registration, services: &IdentityServices) -> Result<(), RegistryError> {
    validate_username(&request.username).map_err(RegistryError::Username)?;
    match (&request.password, &request.csr) {
        (Some(_), Some(_)) => return Err(RegistryError::BothCredentials),
        (None, None) => return Err(RegistryError::NoCredential),
        (Some(password), None) => services
            .directory
            .policy()
            .check(password)
            .map_err(RegistryError::Policy)?,
        (None, Some(_)) => {}
    }
    let wishes = &request.wishes;
    if wishes
        .context
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_CONTEXT_CHARS)
    {
        return Err(RegistryError::Wishes(format!(
            "context: at most {MAX_CONTEXT_CHARS} characters"
        )));
    }
    if wishes.roles.len() > MAX_WISHES || wishes.permissions.len() > MAX_WISHES {
        return Err(RegistryError::Wishes(format!(
            "at most {MAX_WISHES} roles and {MAX_WISHES} permissions"
        )));
    }
    if let Some(role) = wishes
        .roles
        .iter()
        .find(|r| r.is_empty() || r.chars().count() > 128)
    {
        return Err(RegistryError::Wishes(format!(
            "roles: `{role}` is not a role name (1 to 128 characters)"
        )));
    }
    for p in &wishes.permissions {
        validate_permission(p).map_err(|e| RegistryError::Wishes(format!("permissions: {e}")))?;
    }
    Ok(())
}

/// A CSR's proof: signature verified, key supported, CN = the user name.
fn check_csr(text: &str, username: &str) -> Result<Offered, RegistryError> {
    let pem = csr_pem(text)?;
    let summary = inspect_csr(&pem).map_err(|e| match e {
        CaError::NoCommonName => RegistryError::EmptyCommonName,
        e => RegistryError::InvalidCsr(e),
    })?;
    let cn = summary.common_name;
    if cn.trim().is_empty() {
        return Err(RegistryError::EmptyCommonName);
    }
    if cn != username {
        return Err(RegistryError::CommonName {
            cn,
            username: username.into(),
        });
    }
    let key_digest: [u8; 32] = Sha256::digest(&summary.public_key_der).into();
    Ok(Offered::Csr { pem, key_digest })
}

fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

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
            (Credential::Csr { key_digest, .. }, Offered::Csr { key_digest: new, .. }) => {
                Ok(same_digest(key_digest, new))
            }
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
        let mut hashed: Option<Credential> = None;
        // A few rounds at most: a request added or removed meanwhile (by
        // an identical request racing this one) is looked at again.
        for _ in 0..3 {
            if let Some(entry) = registry.get(&username) {
                if !self.same_credential(&entry.credential, &offered).await? {
                    tracing::warn!(%peer, username, "registration refused: a different request for this user name is pending");
                    let detail = serde_json::json!({"username": username, "reason": "conflict"});
                    let target = username.clone();
                    self.off_thread(move |s| {
                        s.audit
                            .record(&device(peer), "registry.conflict", &target, detail)
                    })
                    .await??;
                    return Err(RegistryError::Conflict(username));
                }
                if entry.granted.is_none() && !registry.is_open() {
                    return Err(RegistryError::Locked);
                }
                match registry.repeat(&entry.id, &username, peer, request.wishes.clone()) {
                    Repeat::Pending(pairing_code) => return Ok(Registered::Pending { pairing_code }),
                    Repeat::Granted(grant) => {
                        let detail = describe(&entry);
                        let target = username.clone();
                        self.off_thread(move |s| {
                            s.audit
                                .record(&device(peer), "registry.deliver", &target, detail)
                        })
                        .await??;
                        return Ok(Registered::Granted { username, grant });
                    }
                    Repeat::Gone => continue,
                }
            }
            if !registry.is_open() {
                return Err(RegistryError::Locked);
            }
            if self.directory.user(&username).is_some() {
                return Err(RegistryError::UserExists(username));
            }
            let credential = match (&hashed, &offered) {
                (Some(credential), _) => credential.clone(),
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
            hashed = Some(credential.clone());
            let new = NewRequest {
                username: username.clone(),
                credential,
                wishes: request.wishes.clone(),
                flow: Flow::Explicit,
                address: peer,
            };
            match registry.insert(new) {
                Ok(added) => {
                    tracing::info!(%peer, username, method = added.credential.method(), pairing_code = added.pairing_code, "registration pending");
                    let detail = describe(&added);
                    self.off_thread(move |s| {
                        s.audit
                            .record(&device(peer), "registry.request", &username, detail)
                    })
                    .await??;
                    return Ok(Registered::Pending {
                        pairing_code: added.pairing_code,
                    });
                }
                Err(InsertRefused::Taken) => continue,
                Err(InsertRefused::Full(wait)) => return Err(RegistryError::Full(wait)),
                Err(InsertRefused::Locked) => return Err(RegistryError::Locked),
            }
        }
        Err(RegistryError::Conflict(username))
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
    pub fn registry_confirm(
        &self,
        actor: &Actor,
        username: &str,
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
        let grant = match self.credential_for(&user, &entry.credential) {
            Ok(grant) => grant,
            Err(e) => {
                // No half-made identity: the user goes again.
                if let Err(undo) = self.directory.delete_user(&user.username) {
                    tracing::error!(username, "registry: cannot undo the user: {undo}");
                }
                return Err(e);
            }
        };
        let serial = grant.as_ref().and_then(|(_, serial)| serial.clone());
        let answer = match entry.flow {
            Flow::Explicit => grant.map(|(grant, _)| grant),
            Flow::Implicit => None,
        };
        self.registry.settle(&entry.id, username, answer);
        let mut detail = describe(&entry);
        detail["serial"] = serde_json::json!(serial);
        self.audit
            .record(actor, "registry.confirm", &user.id, detail)?;
        tracing::info!(username, pairing_code = entry.pairing_code, "registration confirmed");
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
    ) -> Result<Option<(Grant, Option<String>)>, RegistryError> {
        match credential {
            Credential::Password { hash } => {
                let hash = hash.clone();
                self.directory.update_user(&user.username, |u| {
                    u.password_hash = Some(hash);
                    Ok(())
                })?;
                Ok(Some((
                    Grant {
                        certificate: None,
                        ca_certificate: None,
                    },
                    None,
                )))
            }
            Credential::Csr { pem, .. } => {
                let ca = self.registry.ca().map_err(RegistryError::Ca)?;
                let issued = ca
                    .sign_csr(pem, Some(&user.username), self.registry.device_cert_days)
                    .map_err(RegistryError::Ca)?;
                self.directory
                    .record_certificate(CertificateRecord::from(&issued))?;
                Ok(Some((
                    Grant {
                        certificate: Some(issued.pem),
                        ca_certificate: Some(ca.cert_pem.clone()),
                    },
                    Some(issued.serial),
                )))
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
        tracing::info!(username, pairing_code = entry.pairing_code, "registration rejected");
        Ok(())
    }

    /// The handle the MQTT authenticator records refused unknown users with.
    pub fn implicit_registrations(self: &Arc<Self>) -> ImplicitRegistrations {
        ImplicitRegistrations(self.clone())
    }

    /// A refused CONNECT of an unknown user, on the blocking pool: a new
    /// request, or the same one again; a different password is ignored.
    fn record_implicit(
        &self,
        username: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<(), RegistryError> {
        if let Some(entry) = self.registry.get(username) {
            if entry.granted.is_some() {
                return Ok(());
            }
            let same = match &entry.credential {
                Credential::Password { hash } => {
                    password::verify_password(password.as_bytes(), hash)
                }
                Credential::Csr { .. } => false,
            };
            if same {
                self.registry
                    .repeat(&entry.id, username, peer, entry.wishes.clone());
            } else {
                tracing::warn!(%peer, username, "implicit registration ignored: a different request for this user name is pending");
            }
            return Ok(());
        }
        if self.directory.user(username).is_some() {
            return Ok(());
        }
        let hash = password::try_hash_password(password).map_err(|e| {
            tracing::error!("implicit registration: {e}");
            RegistryError::Interrupted
        })?;
        let new = NewRequest {
            username: username.into(),
            credential: Credential::Password { hash },
            wishes: Wishes::default(),
            flow: Flow::Implicit,
            address: peer,
        };
        if let Ok(added) = self.registry.insert(new) {
            tracing::info!(%peer, username, pairing_code = added.pairing_code, "implicit registration pending");
            self.audit.record(
                &device(peer),
                "registry.request",
                username,
                describe(&added),
            )?;
        }
        Ok(())
    }
}

/// What the MQTT authenticator holds for the implicit flow: one call on
/// its unknown-user path.
#[derive(Clone)]
pub struct ImplicitRegistrations(Arc<IdentityServices>);

impl ImplicitRegistrations {
    /// A CONNECT was refused because `username` is unknown. While the
    /// registry is open (and within the per-address rate), records it as a
    /// pending request: hashing runs on the blocking pool, at most one per
    /// core, and this returns at once. While locked it costs one atomic read.
    pub fn record_refused_unknown_user(
        &self,
        username: &str,
        password: Option<&[u8]>,
        peer: IpAddr,
    ) {
        let services = &self.0;
        let registry = &services.registry;
        if !registry.implicit_flow() || !registry.is_open() {
            return;
        }
        if registry.per_address.take(&format!("mqtt:{peer}")).is_err() {
            tracing::debug!(%peer, "implicit registration not recorded: rate limited");
            return;
        }
        let Some(password) = password.and_then(|p| std::str::from_utf8(p).ok()) else {
            tracing::debug!(%peer, username, "implicit registration not recorded: no UTF-8 password");
            return;
        };
        if validate_username(username).is_err() || services.directory.policy().check(password).is_err()
        {
            tracing::debug!(%peer, username, "implicit registration not recorded: invalid user name, or the password fails the policy");
            return;
        }
        let Ok(permit) = registry.implicit_hashing.clone().try_acquire_owned() else {
            tracing::debug!(%peer, username, "implicit registration not recorded: busy");
            return;
        };
        let (services, username, password) =
            (services.clone(), username.to_owned(), password.to_owned());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            if let Err(e) = services.record_implicit(&username, &password, peer) {
                tracing::warn!(username, "implicit registration: {e}");
            }
        });
    }
}
