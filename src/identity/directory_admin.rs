//! Directory reads and changes the admin API needs beyond the CLI's:
//! lookups by id, pages without copying every user, whole-list updates.

use super::directory::{Directory, IdentityError};
use super::model::*;

impl Directory {
    pub fn user_by_id(&self, id: &str) -> Option<User> {
        let state = self.state.read();
        let name = state.by_id.get(id)?;
        state.users.get(name).cloned()
    }

    pub fn role_by_id(&self, id: &str) -> Option<Role> {
        self.state.read().roles.get(id).cloned()
    }

    /// Moves on every change (see [`Directory::changes`]): caches of
    /// derived views compare it.
    pub fn version(&self) -> u64 {
        *self.changes().borrow()
    }

    pub fn user_count(&self) -> usize {
        self.state.read().users.len()
    }

    /// Users in username order, `limit` of them from `offset`: only the
    /// page is copied, and found through the ordered name list (no walk
    /// over the users before it).
    pub fn users_page(&self, offset: usize, limit: usize) -> (usize, Vec<User>) {
        let state = self.state.read();
        let start = offset.min(state.order.len());
        let end = start.saturating_add(limit).min(state.order.len());
        let page = state.order[start..end]
            .iter()
            .filter_map(|name| state.users.get(name).cloned())
            .collect();
        (state.users.len(), page)
    }

    /// Users whose name contains `part` (any case), in username order:
    /// how many match, and `limit` of them from `offset` (the admin
    /// page's search).
    pub fn users_matching(&self, part: &str, offset: usize, limit: usize) -> (usize, Vec<User>) {
        let part = part.to_lowercase();
        let state = self.state.read();
        let mut total = 0;
        let mut page = Vec::new();
        for name in state
            .order
            .iter()
            .filter(|n| n.to_lowercase().contains(&part))
        {
            if total >= offset && page.len() < limit {
                page.extend(state.users.get(name).cloned());
            }
            total += 1;
        }
        (total, page)
    }

    /// Calls `f` with each of the user's own and roles' permissions,
    /// without copying them (HTTP permission checks run per request).
    pub fn for_each_permission(&self, user: &User, mut f: impl FnMut(&Permission)) {
        let state = self.state.read();
        user.permissions.iter().for_each(&mut f);
        for id in &user.roles {
            if let Some(role) = state.roles.get(id) {
                role.permissions.iter().for_each(&mut f);
            }
        }
    }

    /// Calls `f` with every role and every user that has own permissions.
    pub fn for_each_holder(&self, mut f: impl FnMut(Holder<'_>)) {
        let state = self.state.read();
        for role in state.roles.values() {
            f(Holder::Role(role));
        }
        for user in state.users.values().filter(|u| !u.permissions.is_empty()) {
            f(Holder::User(user));
        }
    }

    /// Replaces a user's own permissions (each validated first).
    pub fn set_user_permissions(
        &self,
        username: &str,
        permissions: Vec<Permission>,
    ) -> Result<User, IdentityError> {
        for p in &permissions {
            validate_permission(p)?;
        }
        self.update_user(username, |u| {
            u.permissions = permissions;
            Ok(())
        })
    }

    /// Replaces a user's roles (by id; each must exist).
    pub fn set_user_roles(
        &self,
        username: &str,
        role_ids: Vec<String>,
    ) -> Result<User, IdentityError> {
        {
            let state = self.state.read();
            if let Some(missing) = role_ids.iter().find(|id| !state.roles.contains_key(*id)) {
                return Err(IdentityError::NotFound("role", missing.clone()));
            }
        }
        let mut unique = Vec::with_capacity(role_ids.len());
        for id in role_ids {
            if !unique.contains(&id) {
                unique.push(id);
            }
        }
        self.update_user(username, |u| {
            u.roles = unique;
            Ok(())
        })
    }

    /// Renames a role (names stay unique).
    pub fn rename_role(&self, name: &str, new_name: &str) -> Result<Role, IdentityError> {
        validate_role_name(new_name)?;
        if name != new_name && self.role(new_name).is_some() {
            return Err(IdentityError::Exists("role", new_name.into()));
        }
        let mut role = self
            .role(name)
            .ok_or_else(|| IdentityError::NotFound("role", name.into()))?;
        role.name = new_name.into();
        self.save_role(role)
    }

    /// Replaces a role's permissions (each validated first).
    pub fn set_role_permissions(
        &self,
        name: &str,
        permissions: Vec<Permission>,
    ) -> Result<Role, IdentityError> {
        for p in &permissions {
            validate_permission(p)?;
        }
        let mut role = self
            .role(name)
            .ok_or_else(|| IdentityError::NotFound("role", name.into()))?;
        role.permissions = permissions;
        self.save_role(role)
    }

    fn save_role(&self, role: Role) -> Result<Role, IdentityError> {
        let json = serde_json::to_vec(&role).expect("role serialises");
        self.store
            .put_identity(crate::store::IdentityTable::Roles, &role.id, Some(&json))?;
        self.state
            .write()
            .roles
            .insert(role.id.clone(), role.clone());
        self.changed();
        Ok(role)
    }
}

/// Something that holds permissions directly.
pub enum Holder<'a> {
    Role(&'a Role),
    User(&'a User),
}
