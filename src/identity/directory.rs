//! The directory of users and roles: validated changes, persisted in the
//! store as JSON, announced to live connections through a watch channel.

use parking_lot::{ReentrantMutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::watch;

use super::acl_cache::AclCache;
use super::hashing::Hashing;
use super::model::*;
use super::password;
use super::policy::{PasswordPolicy, PolicyViolation};
use crate::router::now_millis;
use crate::store::{IdentityTable, Store, StoreError};

pub const ADMIN_ROLE: &str = "gatehouse-admin";
pub const MINIMUM_ROLE: &str = "minimum-access";
pub const ADMIN_USER: &str = "admin";
pub const ANONYMOUS_USER: &str = "anonymous";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0} `{1}` not found")]
    NotFound(&'static str, String),
    #[error("{0} `{1}` already exists")]
    Exists(&'static str, String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("password rejected: {0}")]
    Policy(#[from] PolicyViolation),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt identity record: {0}")]
    Corrupt(String),
    /// A conditional change found the record changed meanwhile.
    #[error("{0} `{1}` changed meanwhile")]
    Changed(&'static str, String),
}

/// What a new user starts with.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub username: String,
    pub password: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
    pub permissions: Vec<Permission>,
    pub mqtt_publish_prefix: Option<String>,
    /// Defaults to `password` when empty.
    pub grants: Vec<GrantMethod>,
    /// A hash brought from elsewhere (mosquitto), stored as it is when no
    /// `password` is given.
    pub password_hash: Option<String>,
    /// Created disabled (in the same write as everything else).
    pub disabled: bool,
}

#[derive(Default)]
pub(super) struct State {
    /// By username.
    pub(super) users: BTreeMap<String, User>,
    /// User id → username (the admin API addresses users by id).
    pub(super) by_id: HashMap<String, String>,
    /// Usernames in order, so a page of users is a slice (no walk).
    pub(super) order: Vec<String>,
    /// By role id.
    pub(super) roles: BTreeMap<String, Role>,
    /// By serial.
    pub(super) certificates: BTreeMap<String, CertificateRecord>,
}

impl State {
    fn role_id(&self, name: &str) -> Option<String> {
        self.roles
            .values()
            .find(|r| r.name == name)
            .map(|r| r.id.clone())
    }
}

type UserListener = Box<dyn Fn(&str) + Send + Sync>;

pub struct Directory {
    pub(super) store: Arc<Store>,
    /// Held by every change (read, modify, write, announce), so that two
    /// changes to one record never lose each other's update. Reentrant:
    /// a change may be made of smaller ones (deleting a role edits users).
    pub(super) writing: ReentrantMutex<()>,
    user_listeners: RwLock<Vec<UserListener>>,
    pub(super) acl_cache: AclCache,
    policy: PasswordPolicy,
    pub(super) state: RwLock<State>,
    changes: watch::Sender<u64>,
    /// The password hashing limit every login path shares.
    hashing: Arc<Hashing>,
}

fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Directory {
    /// Loads the directory; on first start creates the default roles, the
    /// `admin` user (with `initial_admin_password`, which must satisfy the
    /// policy) and the `anonymous` user.
    pub fn open(
        store: Arc<Store>,
        policy: PasswordPolicy,
        initial_admin_password: &str,
        admin_enabled: bool,
    ) -> Result<Directory, IdentityError> {
        let mut state = State::default();
        for raw in store.load_identity(IdentityTable::Roles)? {
            let role: Role =
                serde_json::from_slice(&raw).map_err(|e| IdentityError::Corrupt(e.to_string()))?;
            state.roles.insert(role.id.clone(), role);
        }
        for raw in store.load_identity(IdentityTable::Certificates)? {
            let cert: CertificateRecord =
                serde_json::from_slice(&raw).map_err(|e| IdentityError::Corrupt(e.to_string()))?;
            state.certificates.insert(cert.serial.clone(), cert);
        }
        for raw in store.load_identity(IdentityTable::Users)? {
            let user: User =
                serde_json::from_slice(&raw).map_err(|e| IdentityError::Corrupt(e.to_string()))?;
            state.by_id.insert(user.id.clone(), user.username.clone());
            state.users.insert(user.username.clone(), user);
        }
        state.order = state.users.keys().cloned().collect();
        let directory = Directory {
            store,
            writing: ReentrantMutex::new(()),
            user_listeners: RwLock::new(Vec::new()),
            acl_cache: AclCache::default(),
            policy,
            state: RwLock::new(state),
            changes: watch::channel(0).0,
            hashing: Arc::new(Hashing::default()),
        };
        directory.seed(initial_admin_password)?;
        let admin = directory.user(ADMIN_USER);
        if admin.is_some_and(|a| a.enabled != admin_enabled) {
            directory.set_enabled(ADMIN_USER, admin_enabled)?;
        }
        Ok(directory)
    }

    fn seed(&self, initial_admin_password: &str) -> Result<(), IdentityError> {
        let mqtt_all = |resource: &str| Permission {
            resource: resource.into(),
            operation: Operation::ReadWrite,
            context: Context::Mqtt,
            effect: Effect::Allow,
        };
        if self.state.read().role_id(ADMIN_ROLE).is_none() {
            self.add_role(ADMIN_ROLE)?;
            self.grant_role(ADMIN_ROLE, mqtt_all("#"))?;
            self.grant_role(
                ADMIN_ROLE,
                Permission {
                    context: Context::Http,
                    ..mqtt_all("/#")
                },
            )?;
        }
        if self.state.read().role_id(MINIMUM_ROLE).is_none() {
            self.add_role(MINIMUM_ROLE)?;
            self.grant_role(
                MINIMUM_ROLE,
                Permission {
                    resource: "/api/users/me".into(),
                    operation: Operation::Read,
                    context: Context::Http,
                    effect: Effect::Allow,
                },
            )?;
        }
        if self.user(ADMIN_USER).is_none() {
            self.policy.check(initial_admin_password).map_err(|e| {
                IdentityError::Policy(PolicyViolation {
                    failed: std::iter::once(
                        "the initial admin password does not satisfy the password policy"
                            .to_string(),
                    )
                    .chain(e.failed)
                    .collect(),
                })
            })?;
            self.add_user(NewUser {
                username: ADMIN_USER.into(),
                password: Some(initial_admin_password.into()),
                roles: vec![ADMIN_ROLE.into()],
                ..NewUser::default()
            })?;
        }
        if self.user(ANONYMOUS_USER).is_none() {
            let now = now_millis();
            self.put_user(User {
                id: new_id(),
                username: ANONYMOUS_USER.into(),
                password_hash: None,
                password_generation: 0,
                grant_types: Vec::new(),
                roles: Vec::new(),
                permissions: Vec::new(),
                mqtt_publish_prefix: None,
                enabled: true,
                created_at: now,
                updated_at: now,
                certificates: Vec::new(),
            })?;
        }
        Ok(())
    }

    pub fn policy(&self) -> &PasswordPolicy {
        &self.policy
    }

    /// Bumped on every change; connections recompile their ACL when it moves.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The password hashing limit shared by every login path.
    pub fn hashing(&self) -> &Arc<Hashing> {
        &self.hashing
    }

    /// Moves on every change (the value `changes()` announces).
    pub fn revision(&self) -> u64 {
        *self.changes.borrow()
    }

    pub(super) fn changed(&self) {
        self.acl_cache.clear();
        self.changes.send_modify(|v| *v += 1);
    }

    /// Calls `f` with the username whenever that user's record changes or
    /// is deleted (the credential cache drops its entries).
    pub fn on_user_change(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        self.user_listeners.write().push(Box::new(f));
    }

    fn user_changed(&self, username: &str) {
        for listener in self.user_listeners.read().iter() {
            listener(username);
        }
    }

    pub fn user(&self, username: &str) -> Option<User> {
        self.state.read().users.get(username).cloned()
    }

    pub fn users(&self) -> Vec<User> {
        self.state.read().users.values().cloned().collect()
    }

    pub fn roles(&self) -> Vec<Role> {
        self.state.read().roles.values().cloned().collect()
    }

    pub fn role(&self, name: &str) -> Option<Role> {
        self.state
            .read()
            .roles
            .values()
            .find(|r| r.name == name)
            .cloned()
    }

    fn put_user(&self, user: User) -> Result<(), IdentityError> {
        let json = serde_json::to_vec(&user).expect("user serialises");
        self.store
            .put_identity(IdentityTable::Users, &user.id, Some(&json))?;
        let username = user.username.clone();
        {
            let mut state = self.state.write();
            state.by_id.insert(user.id.clone(), username.clone());
            if state.users.insert(username.clone(), user).is_none()
                && let Err(at) = state.order.binary_search(&username)
            {
                state.order.insert(at, username.clone());
            }
        }
        self.user_changed(&username);
        self.changed();
        Ok(())
    }

    fn put_role(&self, role: Role) -> Result<(), IdentityError> {
        let json = serde_json::to_vec(&role).expect("role serialises");
        self.store
            .put_identity(IdentityTable::Roles, &role.id, Some(&json))?;
        self.state.write().roles.insert(role.id.clone(), role);
        self.changed();
        Ok(())
    }

    pub(super) fn update_user(
        &self,
        username: &str,
        f: impl FnOnce(&mut User) -> Result<(), IdentityError>,
    ) -> Result<User, IdentityError> {
        self.modify_user(username, f, true)
    }

    /// Reads, modifies and writes a user under the write lock. A changed
    /// password hash moves the password generation when `new_password`
    /// (false for a rehash of the password just verified).
    pub(super) fn modify_user(
        &self,
        username: &str,
        f: impl FnOnce(&mut User) -> Result<(), IdentityError>,
        new_password: bool,
    ) -> Result<User, IdentityError> {
        let _writing = self.writing.lock();
        let mut user = self
            .user(username)
            .ok_or_else(|| IdentityError::NotFound("user", username.into()))?;
        let before = user.password_hash.clone();
        f(&mut user)?;
        if new_password && user.password_hash != before {
            user.password_generation = user.password_generation.wrapping_add(1);
        }
        user.updated_at = now_millis();
        self.put_user(user.clone())?;
        Ok(user)
    }

    fn update_role(&self, name: &str, f: impl FnOnce(&mut Role)) -> Result<Role, IdentityError> {
        let _writing = self.writing.lock();
        let mut role = self
            .role(name)
            .ok_or_else(|| IdentityError::NotFound("role", name.into()))?;
        f(&mut role);
        self.put_role(role.clone())?;
        Ok(role)
    }

    pub fn add_user(&self, new: NewUser) -> Result<User, IdentityError> {
        validate_username(&new.username)?;
        for p in &new.permissions {
            validate_permission(p)?;
        }
        if let Some(prefix) = &new.mqtt_publish_prefix {
            validate_prefix(prefix)?;
        }
        if let Some(password) = &new.password {
            self.policy.check(password)?;
        }
        if self.user(&new.username).is_some() {
            return Err(IdentityError::Exists("user", new.username));
        }
        // Hashed before the write lock: argon2 takes milliseconds.
        let password_hash = match new.password.as_deref() {
            Some(p) => Some(password::hash_password(p)),
            None => new.password_hash,
        };
        let _writing = self.writing.lock();
        if self.user(&new.username).is_some() {
            return Err(IdentityError::Exists("user", new.username));
        }
        let roles = {
            let state = self.state.read();
            new.roles
                .iter()
                .map(|name| {
                    state
                        .role_id(name)
                        .ok_or_else(|| IdentityError::NotFound("role", name.clone()))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let grants = if new.grants.is_empty() {
            vec![GrantMethod::Password]
        } else {
            new.grants
        };
        let now = now_millis();
        let user = User {
            id: new_id(),
            username: new.username,
            password_hash,
            password_generation: 0,
            grant_types: grants
                .into_iter()
                .map(|method| GrantType {
                    method,
                    is_required: false,
                })
                .collect(),
            roles,
            permissions: new.permissions,
            mqtt_publish_prefix: new.mqtt_publish_prefix.filter(|p| !p.is_empty()),
            enabled: !new.disabled,
            created_at: now,
            updated_at: now,
            certificates: Vec::new(),
        };
        self.put_user(user.clone())?;
        Ok(user)
    }

    pub fn set_password(&self, username: &str, password: &str) -> Result<User, IdentityError> {
        self.policy.check(password)?;
        let hash = password::hash_password(password);
        self.update_user(username, |u| {
            u.password_hash = Some(hash);
            Ok(())
        })
    }

    pub fn set_enabled(&self, username: &str, enabled: bool) -> Result<User, IdentityError> {
        self.update_user(username, |u| {
            u.enabled = enabled;
            Ok(())
        })
    }

    pub fn set_prefix(
        &self,
        username: &str,
        prefix: Option<String>,
    ) -> Result<User, IdentityError> {
        if let Some(p) = &prefix {
            validate_prefix(p)?;
        }
        self.update_user(username, |u| {
            u.mqtt_publish_prefix = prefix.filter(|p| !p.is_empty());
            Ok(())
        })
    }

    pub fn set_grants(
        &self,
        username: &str,
        grants: Vec<GrantType>,
    ) -> Result<User, IdentityError> {
        self.update_user(username, |u| {
            u.grant_types = grants;
            Ok(())
        })
    }

    /// Deletes a user. Its certificates are revoked with it: a new user of
    /// the same name does not inherit them.
    pub fn delete_user(&self, username: &str) -> Result<(), IdentityError> {
        let _writing = self.writing.lock();
        let user = self
            .user(username)
            .ok_or_else(|| IdentityError::NotFound("user", username.into()))?;
        self.revoke_certificates_of(username)?;
        self.store
            .put_identity(IdentityTable::Users, &user.id, None)?;
        {
            let mut state = self.state.write();
            state.users.remove(username);
            state.by_id.remove(&user.id);
            if let Ok(at) = state.order.binary_search_by(|n| n.as_str().cmp(username)) {
                state.order.remove(at);
            }
        }
        self.user_changed(username);
        self.changed();
        Ok(())
    }

    pub fn grant_user(
        &self,
        username: &str,
        permission: Permission,
    ) -> Result<User, IdentityError> {
        validate_permission(&permission)?;
        self.update_user(username, |u| {
            if !u.permissions.contains(&permission) {
                u.permissions.push(permission);
            }
            Ok(())
        })
    }

    pub fn revoke_user(
        &self,
        username: &str,
        permission: &Permission,
    ) -> Result<User, IdentityError> {
        self.update_user(username, |u| {
            u.permissions.retain(|p| p != permission);
            Ok(())
        })
    }

    pub fn assign_role(
        &self,
        username: &str,
        role: &str,
        assign: bool,
    ) -> Result<User, IdentityError> {
        let id = self
            .state
            .read()
            .role_id(role)
            .ok_or_else(|| IdentityError::NotFound("role", role.into()))?;
        self.update_user(username, |u| {
            u.roles.retain(|r| *r != id);
            if assign {
                u.roles.push(id);
            }
            Ok(())
        })
    }

    pub fn add_role(&self, name: &str) -> Result<Role, IdentityError> {
        validate_role_name(name)?;
        let _writing = self.writing.lock();
        if self.role(name).is_some() {
            return Err(IdentityError::Exists("role", name.into()));
        }
        let role = Role {
            id: new_id(),
            name: name.into(),
            permissions: Vec::new(),
        };
        self.put_role(role.clone())?;
        Ok(role)
    }

    pub fn delete_role(&self, name: &str) -> Result<(), IdentityError> {
        let _writing = self.writing.lock();
        let role = self
            .role(name)
            .ok_or_else(|| IdentityError::NotFound("role", name.into()))?;
        for user in self
            .users()
            .into_iter()
            .filter(|u| u.roles.contains(&role.id))
        {
            self.update_user(&user.username, |u| {
                u.roles.retain(|r| *r != role.id);
                Ok(())
            })?;
        }
        self.store
            .put_identity(IdentityTable::Roles, &role.id, None)?;
        self.state.write().roles.remove(&role.id);
        self.changed();
        Ok(())
    }

    pub fn grant_role(&self, name: &str, permission: Permission) -> Result<Role, IdentityError> {
        validate_permission(&permission)?;
        self.update_role(name, |r| {
            if !r.permissions.contains(&permission) {
                r.permissions.push(permission);
            }
        })
    }

    pub fn revoke_role(&self, name: &str, permission: &Permission) -> Result<Role, IdentityError> {
        self.update_role(name, |r| r.permissions.retain(|p| p != permission))
    }

    /// The user's own permissions plus those of their roles.
    pub fn effective_permissions(&self, user: &User) -> Vec<Permission> {
        let state = self.state.read();
        let mut out = user.permissions.clone();
        for id in &user.roles {
            if let Some(role) = state.roles.get(id) {
                out.extend(role.permissions.iter().cloned());
            }
        }
        out
    }
}
