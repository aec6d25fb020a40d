//! The identity services of a running broker, and the administrative
//! changes built on them: the admin API's handlers call these (as a CLI
//! talking to a running broker would), so every rule lives here, every
//! change is audited, and every change reaches connected MQTT clients
//! through the directory's change notification.

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

use super::audit::{Actor, AuditLog};
use super::directory::{ANONYMOUS_USER, Directory, IdentityError, NewUser};
use super::mfa::{MfaError, MfaService};
use super::model::*;
use super::oauth::{OAuthOpenError, OAuthState};
use super::rate::RateLimiter;
use super::registry::ClientRegistry;
use super::tokens::{TokenService, TokenServiceError};
use crate::config::{Http as HttpConfig, OAuth as OAuthConfig};
use crate::store::{Store, StoreError};

/// The password the built-in `admin` user starts with: while it is still
/// set, `admin` may log in only from loopback addresses.
pub const INITIAL_ADMIN_PASSWORD: &str = "admin";

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Mfa(#[from] MfaError),
    #[error(transparent)]
    Tokens(#[from] TokenServiceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    OAuth(#[from] OAuthOpenError),
    #[error("permission already declared")]
    PermissionDeclared,
    #[error("permission `{0}` not found")]
    PermissionNotFound(String),
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("oldPassword: required to change your own password")]
    OldPasswordRequired,
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Conflict(String),
}

/// The fields of Connectware's create-user body, decoded.
#[derive(Debug, Clone, Default)]
pub struct CreateUser {
    pub username: String,
    pub password: Option<String>,
    pub auto_generated: bool,
    pub mqtt_publish_prefix: Option<String>,
    pub grant_types: Vec<GrantType>,
    pub permissions: Vec<Permission>,
    pub role_ids: Vec<String>,
    pub enforce_mfa_enrollment: bool,
    /// Connectware's `identityProvider`: only `local` until SSO exists.
    pub identity_provider: Option<String>,
    /// Connectware's `certificates`: issued by the built-in CA, not
    /// uploaded, so only an empty list is accepted.
    pub certificates: usize,
}

/// A partial update: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UpdateUser {
    /// `Some(None)` or `Some(Some(""))` removes the prefix.
    pub mqtt_publish_prefix: Option<Option<String>>,
    pub role_ids: Option<Vec<String>>,
    pub permissions: Option<Vec<Permission>>,
    pub grant_types: Option<Vec<GrantType>>,
    pub enabled: Option<bool>,
    pub enforce_mfa_enrollment: Option<bool>,
    /// Connectware's flag that turns the user's MFA off.
    pub disable_mfa: bool,
}

pub struct IdentityServices {
    pub directory: Arc<Directory>,
    pub tokens: Arc<TokenService>,
    pub mfa: MfaService,
    pub audit: AuditLog,
    /// The OAuth 2.0 authorization server (`identity::oauth`).
    pub oauth: OAuthState,
    pub config: HttpConfig,
    /// Login and MFA attempts per user name.
    pub per_user: RateLimiter,
    /// Login and MFA attempts and failed token checks per address.
    pub per_address: RateLimiter,
    /// At most one argon2 run per core for HTTP logins.
    pub(super) hashing: Semaphore,
    /// Serialises compound changes (check, then write, then audit).
    writes: Mutex<()>,
    /// Devices asking for an identity (`registry/`).
    pub registry: ClientRegistry,
}

/// A stable id for a permission: its content hashed, so that it needs no
/// storage and a duplicate has the same id.
pub fn permission_id(p: &Permission) -> String {
    let text = format!(
        "{:?}|{:?}|{:?}|{}",
        p.context, p.operation, p.effect, p.resource
    );
    Sha256::digest(text.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

impl IdentityServices {
    /// Opens the token, MFA and audit services beside `directory`; keys
    /// live in `data_dir` (created 0600 on first start).
    pub fn open(
        directory: Arc<Directory>,
        store: Arc<Store>,
        data_dir: &Path,
        config: &HttpConfig,
        oauth: &OAuthConfig,
        registry: ClientRegistry,
    ) -> Result<Arc<IdentityServices>, AdminError> {
        let exists = |id: &str| directory.user_by_id(id).is_some();
        let tokens = Arc::new(TokenService::open(
            data_dir,
            oauth.issuer(&config.issuer),
            store.clone(),
            exists,
        )?);
        let mfa = MfaService::open(
            data_dir,
            store.clone(),
            config.mfa_max_failures,
            Duration::from_secs(config.mfa_lockout_minutes * 60),
            exists,
        )?;
        let oauth = OAuthState::open(data_dir, store.clone(), oauth, exists)?;
        let audit = AuditLog::open(store, config.audit_max_entries)?;
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        let services = Arc::new(IdentityServices {
            directory,
            tokens,
            mfa,
            audit,
            oauth,
            config: config.clone(),
            per_user: RateLimiter::new(config.rate_per_user_per_minute),
            per_address: RateLimiter::new(config.rate_per_address_per_minute),
            hashing: Semaphore::new(parallel),
            writes: Mutex::new(()),
            registry,
        });
        let policy: std::sync::Weak<dyn super::token_sessions::RenewPolicy> =
            Arc::downgrade(&services) as _;
        services.tokens.set_policy(policy);
        Ok(services)
    }

    fn user(&self, id: &str) -> Result<User, AdminError> {
        self.directory
            .user_by_id(id)
            .ok_or_else(|| IdentityError::NotFound("user", id.into()).into())
    }

    fn role(&self, id: &str) -> Result<Role, AdminError> {
        self.directory
            .role_by_id(id)
            .ok_or_else(|| IdentityError::NotFound("role", id.into()).into())
    }

    fn role_names(&self, ids: &[String]) -> Result<Vec<String>, AdminError> {
        ids.iter().map(|id| Ok(self.role(id)?.name)).collect()
    }

    pub fn create_user(&self, actor: &Actor, new: CreateUser) -> Result<User, AdminError> {
        check_provider(new.identity_provider.as_deref())?;
        if new.certificates > 0 {
            return Err(AdminError::Unsupported(
                "certificates: issue certificates with the built-in CA (`gatehouse cert issue`), not in the create body".into(),
            ));
        }
        let _serial = self.writes.lock();
        let roles = self.role_names(&new.role_ids)?;
        let grants: Vec<GrantMethod> = new.grant_types.iter().map(|g| g.method).collect();
        let mut user = self.directory.add_user(NewUser {
            username: new.username,
            password: new.password,
            roles,
            permissions: new.permissions,
            mqtt_publish_prefix: new.mqtt_publish_prefix,
            grants,
        })?;
        if new.grant_types.iter().any(|g| g.is_required) {
            user = self
                .directory
                .set_grants(&user.username, new.grant_types.clone())?;
        }
        if new.enforce_mfa_enrollment || new.auto_generated {
            self.mfa.set_flags(
                &user.id,
                Some(new.enforce_mfa_enrollment),
                Some(new.auto_generated),
            )?;
        }
        self.audit.record(
            actor,
            "user.create",
            &user.id,
            serde_json::json!({"username": user.username, "roles": user.roles,
                "permissions": json(&user.permissions), "mqttPublishPrefix": user.mqtt_publish_prefix}),
        )?;
        Ok(user)
    }

    pub fn update_user(
        &self,
        actor: &Actor,
        id: &str,
        update: UpdateUser,
    ) -> Result<User, AdminError> {
        let _serial = self.writes.lock();
        let user = self.user(id)?;
        let name = user.username.as_str();
        if update.enabled == Some(false) && actor.user_id.as_deref() == Some(id) {
            return Err(AdminError::Conflict("you cannot disable yourself".into()));
        }
        if let Some(role_ids) = &update.role_ids {
            self.directory.set_user_roles(name, role_ids.clone())?;
        }
        if let Some(permissions) = &update.permissions {
            self.directory
                .set_user_permissions(name, permissions.clone())?;
        }
        if let Some(prefix) = &update.mqtt_publish_prefix {
            self.directory.set_prefix(name, prefix.clone())?;
        }
        if let Some(grants) = &update.grant_types {
            self.directory.set_grants(name, grants.clone())?;
        }
        if let Some(enabled) = update.enabled {
            self.directory.set_enabled(name, enabled)?;
            if !enabled {
                self.end_user_grants(id, "disabled")?;
            }
        }
        if update.enforce_mfa_enrollment.is_some() {
            self.mfa
                .set_flags(&user.id, update.enforce_mfa_enrollment, None)?;
        }
        if update.disable_mfa {
            match self.mfa.admin_disable(&user.id) {
                Ok(()) | Err(MfaError::NotEnrolled) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.audit.record(
            actor,
            "user.update",
            id,
            serde_json::json!({"username": name, "roles": update.role_ids,
                "permissions": update.permissions.as_ref().map(json),
                "mqttPublishPrefix": update.mqtt_publish_prefix, "enabled": update.enabled,
                "grantTypes": update.grant_types.as_ref().map(json),
                "enforceMFAEnrollment": update.enforce_mfa_enrollment, "disableMFA": update.disable_mfa}),
        )?;
        self.user(id)
    }

    /// Deletes a user, their tokens, OAuth grants and MFA state; their
    /// MQTT sessions close.
    pub fn delete_user(&self, actor: &Actor, id: &str) -> Result<(), AdminError> {
        if actor.user_id.as_deref() == Some(id) {
            return Err(AdminError::Conflict("you cannot delete yourself".into()));
        }
        self.remove_account(actor, id)
    }

    /// [`delete_user`](Self::delete_user) without the caller check (an
    /// OAuth client's account goes with its client).
    pub(crate) fn remove_account(&self, actor: &Actor, id: &str) -> Result<(), AdminError> {
        let _serial = self.writes.lock();
        let user = self.user(id)?;
        if user.username == ANONYMOUS_USER {
            return Err(AdminError::Conflict(
                "the built-in user `anonymous` cannot be deleted (disable it instead)".into(),
            ));
        }
        self.directory.delete_user(&user.username)?;
        self.end_user_grants(&user.id, "deleted")?;
        self.tokens.revoke_all(&user.id)?;
        self.mfa.remove(&user.id)?;
        self.audit.record(
            actor,
            "user.delete",
            id,
            serde_json::json!({"username": user.username}),
        )?;
        Ok(())
    }

    /// Sets a password. `old` must be right when given (a user changing
    /// their own); an administrator may omit it.
    pub fn change_password(
        &self,
        actor: &Actor,
        id: &str,
        old: Option<&str>,
        new: &str,
    ) -> Result<(), AdminError> {
        let user = self.user(id)?;
        if actor.user_id.as_deref() == Some(id) && old.is_none() {
            return Err(AdminError::OldPasswordRequired);
        }
        if let Some(old) = old {
            let ok = user
                .password_hash
                .as_deref()
                .is_some_and(|h| super::password::verify_password(old.as_bytes(), h));
            if !ok {
                return Err(AdminError::WrongPassword);
            }
        }
        self.directory.set_password(&user.username, new)?;
        self.end_user_grants(&user.id, "password changed")?;
        self.audit.record(
            actor,
            "user.password",
            id,
            serde_json::json!({"username": user.username}),
        )?;
        Ok(())
    }

    pub fn add_user_permission(
        &self,
        actor: &Actor,
        id: &str,
        p: Permission,
    ) -> Result<User, AdminError> {
        let _serial = self.writes.lock();
        let user = self.user(id)?;
        if user.permissions.contains(&p) {
            return Err(AdminError::PermissionDeclared);
        }
        let user = self.directory.grant_user(&user.username, p.clone())?;
        self.audit
            .record(actor, "user.permission.add", id, json(&p))?;
        Ok(user)
    }

    pub fn remove_user_permission(
        &self,
        actor: &Actor,
        id: &str,
        permission_id: &str,
    ) -> Result<User, AdminError> {
        let _serial = self.writes.lock();
        let user = self.user(id)?;
        let p = user
            .permissions
            .iter()
            .find(|p| self::permission_id(p) == permission_id)
            .cloned()
            .ok_or_else(|| AdminError::PermissionNotFound(permission_id.into()))?;
        let user = self.directory.revoke_user(&user.username, &p)?;
        self.audit
            .record(actor, "user.permission.remove", id, json(&p))?;
        Ok(user)
    }

    pub fn set_user_role(
        &self,
        actor: &Actor,
        id: &str,
        role_id: &str,
        assign: bool,
    ) -> Result<User, AdminError> {
        let _serial = self.writes.lock();
        let user = self.user(id)?;
        let role = self.role(role_id)?;
        if !assign && !user.roles.contains(&role.id) {
            return Err(IdentityError::NotFound("role of this user", role_id.into()).into());
        }
        let user = self
            .directory
            .assign_role(&user.username, &role.name, assign)?;
        let action = if assign {
            "user.role.add"
        } else {
            "user.role.remove"
        };
        self.audit.record(
            actor,
            action,
            id,
            serde_json::json!({"role": role.id, "name": role.name}),
        )?;
        Ok(user)
    }

    /// Creates a role; `copy_from` copies another role's permissions.
    pub fn create_role(
        &self,
        actor: &Actor,
        name: &str,
        permissions: Vec<Permission>,
        copy_from: Option<&str>,
    ) -> Result<Role, AdminError> {
        let _serial = self.writes.lock();
        let mut all = match copy_from {
            Some(source) => self.role(source)?.permissions,
            None => Vec::new(),
        };
        for p in permissions {
            validate_permission(&p).map_err(IdentityError::from)?;
            if !all.contains(&p) {
                all.push(p);
            }
        }
        let role = self.directory.add_role(name)?;
        let role = if all.is_empty() {
            role
        } else {
            self.directory.set_role_permissions(&role.name, all)?
        };
        self.audit.record(
            actor,
            "role.create",
            &role.id,
            serde_json::json!({"name": role.name, "copyFrom": copy_from, "permissions": json(&role.permissions)}),
        )?;
        Ok(role)
    }

    pub fn update_role(
        &self,
        actor: &Actor,
        id: &str,
        name: Option<&str>,
        permissions: Option<Vec<Permission>>,
    ) -> Result<Role, AdminError> {
        let _serial = self.writes.lock();
        let mut role = self.role(id)?;
        if let Some(permissions) = &permissions {
            let mut unique: Vec<Permission> = Vec::new();
            for p in permissions {
                if !unique.contains(p) {
                    unique.push(p.clone());
                }
            }
            role = self.directory.set_role_permissions(&role.name, unique)?;
        }
        if let Some(name) = name {
            role = self.directory.rename_role(&role.name, name)?;
        }
        self.audit.record(
            actor,
            "role.update",
            id,
            serde_json::json!({"name": name, "permissions": permissions.as_ref().map(json)}),
        )?;
        Ok(role)
    }

    pub fn delete_role(&self, actor: &Actor, id: &str) -> Result<(), AdminError> {
        let _serial = self.writes.lock();
        let role = self.role(id)?;
        self.directory.delete_role(&role.name)?;
        self.audit.record(
            actor,
            "role.delete",
            id,
            serde_json::json!({"name": role.name}),
        )?;
        Ok(())
    }

    pub fn add_role_permission(
        &self,
        actor: &Actor,
        id: &str,
        p: Permission,
    ) -> Result<Role, AdminError> {
        let _serial = self.writes.lock();
        let role = self.role(id)?;
        if role.permissions.contains(&p) {
            return Err(AdminError::PermissionDeclared);
        }
        let role = self.directory.grant_role(&role.name, p.clone())?;
        self.audit
            .record(actor, "role.permission.add", id, json(&p))?;
        Ok(role)
    }

    pub fn remove_role_permission(
        &self,
        actor: &Actor,
        id: &str,
        permission_id: &str,
    ) -> Result<Role, AdminError> {
        let _serial = self.writes.lock();
        let role = self.role(id)?;
        let p = role
            .permissions
            .iter()
            .find(|p| self::permission_id(p) == permission_id)
            .cloned()
            .ok_or_else(|| AdminError::PermissionNotFound(permission_id.into()))?;
        let role = self.directory.revoke_role(&role.name, &p)?;
        self.audit
            .record(actor, "role.permission.remove", id, json(&p))?;
        Ok(role)
    }

    /// Revokes one token (`Some(fingerprint)`) or all of a user's tokens.
    pub fn revoke_tokens(
        &self,
        actor: &Actor,
        user_id: &str,
        fingerprint: Option<&str>,
    ) -> Result<usize, AdminError> {
        let user = self.user(user_id)?;
        let count = match fingerprint {
            Some(fp) => {
                self.tokens.revoke(&user.id, fp)?;
                1
            }
            None => {
                let oauth = self.end_user_grants(&user.id, "all tokens revoked")?;
                oauth + self.tokens.revoke_all(&user.id)?.len()
            }
        };
        self.audit.record(
            actor,
            "token.revoke",
            user_id,
            serde_json::json!({"username": user.username, "fingerprint": fingerprint, "count": count}),
        )?;
        Ok(count)
    }

    /// An administrator turns a user's MFA off.
    pub fn admin_disable_mfa(&self, actor: &Actor, user_id: &str) -> Result<(), AdminError> {
        let user = self.user(user_id)?;
        self.mfa.admin_disable(&user.id)?;
        self.audit.record(
            actor,
            "mfa.admin_disable",
            user_id,
            serde_json::json!({"username": user.username}),
        )?;
        Ok(())
    }

    /// Records a change made through the MFA self-service routes.
    pub fn audit_self(&self, actor: &Actor, action: &str) -> Result<(), AdminError> {
        let target = actor.user_id.clone().unwrap_or_default();
        self.audit
            .record(actor, action, &target, serde_json::json!({}))?;
        Ok(())
    }
}

/// Only local users until SSO exists.
pub fn check_provider(provider: Option<&str>) -> Result<(), AdminError> {
    match provider {
        None | Some("local") => Ok(()),
        Some(other) => Err(AdminError::Unsupported(format!(
            "identityProvider `{other}` is not supported (only `local` until SSO exists)"
        ))),
    }
}

/// Whether a login with `password` as `username` must come from loopback:
/// `admin` still has its initial password. Constant-time comparison.
pub fn is_initial_admin(username: &str, password: &[u8]) -> bool {
    username == super::directory::ADMIN_USER
        && aws_lc_rs::constant_time::verify_slices_are_equal(
            password,
            INITIAL_ADMIN_PASSWORD.as_bytes(),
        )
        .is_ok()
}

/// Loopback, also as an IPv4-mapped IPv6 address.
pub fn is_loopback(addr: IpAddr) -> bool {
    addr.to_canonical().is_loopback()
}
