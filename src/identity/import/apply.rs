//! Carries out a [`Plan`] through the audited services: roles first, then
//! users with their mosquitto hashes, then the anonymous user's rights.
//! Users that already exist are left as they are (a second run changes
//! nothing); roles that exist get the permissions they lack.

use super::Plan;
use crate::identity::audit::Actor;
use crate::identity::directory::ANONYMOUS_USER;
use crate::identity::model::{GrantMethod, GrantType};
use crate::identity::services::{AdminError, CreateUser, IdentityServices, UpdateUser};

/// What an import did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub users_created: Vec<String>,
    pub users_skipped: Vec<String>,
    pub roles_created: Vec<String>,
    pub roles_updated: Vec<String>,
    /// The plan's notes and what happened while applying it.
    pub notes: Vec<String>,
}

impl Plan {
    pub fn apply(self, services: &IdentityServices, actor: &Actor) -> Result<Report, AdminError> {
        let directory = &services.directory;
        let mut report = Report {
            notes: self.notes.clone(),
            ..Report::default()
        };
        for (name, permissions) in &self.roles {
            match directory.role(name) {
                None => {
                    services.create_role(actor, name, permissions.clone(), None)?;
                    report.roles_created.push(name.clone());
                }
                Some(role) => {
                    let mut added = false;
                    for p in permissions {
                        if !role.permissions.contains(p) {
                            services.add_role_permission(actor, &role.id, p.clone())?;
                            added = true;
                        }
                    }
                    if added {
                        report.roles_updated.push(name.clone());
                    }
                }
            }
        }
        let role_id = |name: &str| directory.role(name).map(|r| r.id);
        for (name, user) in &self.users {
            if directory.user(name).is_some() {
                report.notes.push(format!(
                    "user `{name}` already exists in Gatehouse: left unchanged"
                ));
                report.users_skipped.push(name.clone());
                continue;
            }
            let created = services.create_user(
                actor,
                CreateUser {
                    username: name.clone(),
                    password: None,
                    grant_types: vec![GrantType {
                        method: GrantMethod::Password,
                        is_required: false,
                    }],
                    permissions: user.permissions.clone(),
                    role_ids: user.roles.iter().filter_map(|r| role_id(r)).collect(),
                    ..CreateUser::default()
                },
            )?;
            if let Some(hash) = &user.hash {
                directory.update_user(name, |u| {
                    u.password_hash = Some(hash.clone());
                    Ok(())
                })?;
            }
            if !user.enabled {
                let update = UpdateUser {
                    enabled: Some(false),
                    ..UpdateUser::default()
                };
                services.update_user(actor, &created.id, update)?;
            }
            report.users_created.push(name.clone());
        }
        if let Some(anonymous) = directory.user(ANONYMOUS_USER) {
            for p in &self.anonymous {
                if !anonymous.permissions.contains(p) {
                    services.add_user_permission(actor, &anonymous.id, p.clone())?;
                }
            }
            for role in &self.anonymous_roles {
                if let Some(id) = role_id(role).filter(|id| !anonymous.roles.contains(id)) {
                    services.set_user_role(actor, &anonymous.id, &id, true)?;
                }
            }
        }
        for (name, permissions) in &self.orphans {
            match directory.user(name) {
                Some(user) => {
                    for p in permissions {
                        if !user.permissions.contains(p) {
                            services.add_user_permission(actor, &user.id, p.clone())?;
                        }
                    }
                    report.notes.push(format!(
                        "user `{name}` (ACL file only) exists in Gatehouse: its ACL was added"
                    ));
                }
                None => report.notes.push(format!(
                    "user `{name}` is in the ACL file but in no password file: not created"
                )),
            }
        }
        services.audit.record(
            actor,
            "import.mosquitto",
            "mosquitto",
            serde_json::json!({"usersCreated": report.users_created,
                "rolesCreated": report.roles_created, "rolesUpdated": report.roles_updated,
                "notes": report.notes.len()}),
        )?;
        Ok(report)
    }
}
