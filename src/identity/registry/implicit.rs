//! The implicit flow: while the registry is open, a CONNECT refused
//! because its user name is unknown is recorded as a request (its password
//! hashed at once on the blocking pool). The MQTT authenticator calls
//! [`ImplicitRegistrations::record_refused_unknown_user`] on that path
//! only; known users' logins never reach the registry.

use std::net::IpAddr;
use std::sync::Arc;

use super::request::{RegistryError, describe, device};
use super::*;
use crate::identity::password;
use crate::identity::services::IdentityServices;
use crate::identity::validate_username;

impl IdentityServices {
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
                tracing::warn!(%peer, username, "implicit registration refused: a different request for this user name is pending");
                self.registry.note_conflict(&entry.id, username);
                let detail = serde_json::json!({"username": username, "reason": "conflict"});
                self.audit
                    .record(&device(peer), "registry.conflict", username, detail)?;
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
        if validate_username(username).is_err()
            || services.directory.policy().check(password).is_err()
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
