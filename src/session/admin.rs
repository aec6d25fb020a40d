//! Administrative actions on connected clients and stored sessions, for
//! the admin API and the CLI alike: each one is written to the audit log.

use serde_json::json;

use super::{ClientInfo, Registry, SessionInfo};
use crate::identity::audit::{Actor, AuditLog};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SessionAdminError {
    #[error("no connected client `{0}`")]
    NotConnected(String),
    #[error("no session `{0}`")]
    NoSession(String),
    #[error("the session's connection did not let go in time")]
    Busy,
    #[error(transparent)]
    Audit(#[from] StoreError),
}

/// The registry's administrative side, audited.
pub struct SessionAdmin<'a> {
    pub registry: &'a Registry,
    pub audit: &'a AuditLog,
}

/// Whether a client id or user name contains `search` (any case); an
/// empty or absent search keeps everything (the admin page's search).
pub fn matches_search(search: Option<&str>, client_id: &str, user: Option<&str>) -> bool {
    let Some(part) = search.filter(|s| !s.is_empty()) else {
        return true;
    };
    let part = part.to_lowercase();
    client_id.to_lowercase().contains(&part)
        || user.is_some_and(|u| u.to_lowercase().contains(&part))
}

impl SessionAdmin<'_> {
    /// Connected clients, by client id; with `search`, those whose client
    /// id or user name contains it.
    pub fn clients(&self, search: Option<&str>) -> Vec<ClientInfo> {
        let mut all = self.registry.clients();
        all.retain(|c| matches_search(search, &c.client_id, c.username.as_deref()));
        all
    }

    /// Sessions, connected or stored, by client id; with `search`, those
    /// whose client id or owner contains it.
    pub fn sessions(&self, search: Option<&str>) -> Vec<SessionInfo> {
        let mut all = self.registry.sessions();
        all.retain(|s| matches_search(search, &s.client_id, s.owner.as_deref()));
        all
    }

    /// Closes a client's connection (v5 DISCONNECT 0x98); its session
    /// stays for its expiry.
    pub fn disconnect(&self, actor: &Actor, client_id: &str) -> Result<(), SessionAdminError> {
        if !self.registry.disconnect(client_id) {
            return Err(SessionAdminError::NotConnected(client_id.into()));
        }
        self.audit
            .record(actor, "client.disconnect", client_id, json!({}))?;
        Ok(())
    }

    /// Ends a session: its connection (if any) is closed, its
    /// subscriptions, queue and stored record are removed.
    pub async fn end_session(
        &self,
        actor: &Actor,
        client_id: &str,
    ) -> Result<(), SessionAdminError> {
        if self.registry.get(client_id).is_none() {
            return Err(SessionAdminError::NoSession(client_id.into()));
        }
        if !self.registry.end_session(client_id).await {
            return Err(SessionAdminError::Busy);
        }
        self.audit
            .record(actor, "session.delete", client_id, json!({}))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::matches_search;

    #[test]
    fn search_matches_client_id_or_user_in_any_case() {
        assert!(matches_search(None, "a", None));
        assert!(matches_search(Some(""), "a", None));
        assert!(matches_search(Some("SENS"), "sensor-1", None));
        assert!(matches_search(Some("ops"), "x", Some("Ops-team")));
        assert!(!matches_search(Some("z"), "sensor-1", Some("ops")));
        assert!(!matches_search(Some("ops"), "x", None));
    }
}
