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

impl SessionAdmin<'_> {
    pub fn clients(&self) -> Vec<ClientInfo> {
        self.registry.clients()
    }

    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.registry.sessions()
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
