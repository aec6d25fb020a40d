//! A stopped broker's store, administered through the services the admin
//! API calls (`identity::services`): the same rules, the same audit log
//! (actor `cli:<login name>`), and answers in the API's JSON shapes, so
//! `--json` prints the same either way.

use serde_json::{Value, json};
use std::sync::Arc;

use super::Result;
use gatehouse::Config;
use gatehouse::broker::open_directory;
use gatehouse::identity::audit::Actor;
use gatehouse::identity::registry::ClientRegistry;
use gatehouse::identity::services::IdentityServices;
use gatehouse::identity::{Directory, Role, User};
use gatehouse::store::Store;

pub struct Local {
    pub store: Arc<Store>,
    pub directory: Arc<Directory>,
    pub services: Arc<IdentityServices>,
    pub actor: Actor,
}

impl Local {
    pub fn open(config: &Config, store: Arc<Store>) -> Result<Local> {
        let directory = open_directory(config, store.clone())?;
        // The registry lives in a running broker's memory; a stopped
        // broker's is empty and locked.
        let registry = ClientRegistry::new(
            &config.registry,
            config.tls.dir.clone(),
            config.tls.device_cert_days,
        );
        let services = IdentityServices::open(
            directory.clone(),
            store.clone(),
            &config.storage.dir,
            &config.http,
            &config.oauth,
            registry,
        )?;
        let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        Ok(Local {
            store,
            directory,
            services,
            actor: Actor {
                username: format!("cli:{who}"),
                user_id: None,
                address: None,
            },
        })
    }

    pub fn user(&self, name: &str) -> Result<User> {
        self.directory
            .user(name)
            .ok_or_else(|| gatehouse::identity::IdentityError::NotFound("user", name.into()).into())
    }

    pub fn role(&self, name: &str) -> Result<Role> {
        self.directory
            .role(name)
            .ok_or_else(|| gatehouse::identity::IdentityError::NotFound("role", name.into()).into())
    }

    /// A user as `GET /api/users/{id}` shows it.
    pub fn user_json(&self, user: &User) -> Value {
        serde_json::to_value(gatehouse::http::user_view(&self.services, user)).unwrap_or_default()
    }

    pub fn role_json(&self, role: &Role) -> Value {
        serde_json::to_value(gatehouse::http::role_dto(role)).unwrap_or_default()
    }

    /// Stored sessions as `GET /api/sessions` lists them (none is connected).
    pub fn sessions_json(&self) -> Vec<Value> {
        let loaded = self.store.take_loaded().unwrap_or_default();
        let mut out: Vec<Value> = loaded
            .sessions
            .iter()
            .map(|s| {
                let r = &s.record;
                let expires_at =
                    (r.expiry_interval != u32::MAX && r.disconnected_at > 0).then(|| {
                        r.disconnected_at
                            .saturating_add(u64::from(r.expiry_interval) * 1000)
                    });
                json!({
                    "clientId": s.client_id,
                    "owner": r.owner.as_deref().filter(|o| !o.is_empty()),
                    "connected": false,
                    "expiryInterval": r.expiry_interval,
                    "expiresAt": expires_at,
                    "queued": s.deliveries.len(),
                })
            })
            .collect();
        out.sort_by(|a, b| a["clientId"].as_str().cmp(&b["clientId"].as_str()));
        out
    }
}

impl Drop for Local {
    /// Commits what is pending and releases the file.
    fn drop(&mut self) {
        self.store.close();
    }
}
