//! A device's request as it arrives: its errors, the checks that need no
//! state (name, one credential, wishes, password policy, the CSR's
//! signature and CN), and what the audit log says about a request.

use base64::Engine;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::Duration;

use super::{Grant, PendingRequest, Wishes};
use crate::identity::audit::Actor;
use crate::identity::directory::IdentityError;
use crate::identity::policy::PolicyViolation;
use crate::identity::services::{AdminError, IdentityServices};
use crate::identity::{ValidationError, validate_permission, validate_username};
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
    #[error("csr: the common name (CN) is missing or empty")]
    EmptyCommonName,
    #[error("csr: several common names (CN); give one, the user name")]
    SeveralCommonNames,
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
    #[error(
        "the pending request of `{username}` has pairing code {pending}, not {expected}: another device's request; list the requests again"
    )]
    PairingCode {
        username: String,
        pending: String,
        expected: String,
    },
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
pub(super) enum Offered {
    Password(String),
    Csr { pem: String, key_digest: [u8; 32] },
}

/// Who made a device's request: no user yet, so the registry and the
/// device's address.
pub(super) fn device(address: IpAddr) -> Actor {
    Actor {
        username: "registry".into(),
        user_id: None,
        address: Some(address),
    }
}

pub(super) fn describe(request: &PendingRequest) -> serde_json::Value {
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
pub(super) fn check_request(
    request: &Registration,
    services: &IdentityServices,
) -> Result<(), RegistryError> {
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
pub(super) fn check_csr(text: &str, username: &str) -> Result<Offered, RegistryError> {
    let pem = csr_pem(text)?;
    let summary = inspect_csr(&pem).map_err(|e| match e {
        CaError::NoCommonName => RegistryError::EmptyCommonName,
        CaError::SeveralCommonNames => RegistryError::SeveralCommonNames,
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

pub(super) fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}
