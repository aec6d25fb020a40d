//! Token introspection (RFC 7662) for confidential clients, and
//! revocation (RFC 7009) by the client a token was issued to.
//!
//! Introspection reveals a token only to the client it was issued to
//! (access and refresh tokens), or to a resource server given the right
//! explicitly: its account holds `read` on the HTTP resource
//! `/oauth/introspect` (then any access or API token). Everyone else
//! hears `{"active": false}`, as for an unknown token, so introspection
//! is no oracle for other clients' tokens. Revocation of a token that is unknown, or
//! not the caller's, answers success and changes nothing (RFC 7009 §2.2:
//! nothing to learn by probing).

use super::{ClientType, ErrorCode, OAuthClient, OAuthError};
use crate::identity::http_access;
use crate::identity::model::Operation;
use crate::identity::services::IdentityServices;

/// The HTTP resource whose `read` permission lets a client's account
/// introspect every token (a resource server).
pub const INTROSPECT_ANY: &str = "/oauth/introspect";

/// An RFC 7662 answer; `None` fields are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Introspection {
    pub active: bool,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// `Bearer` (access and API tokens) or `refresh_token`.
    pub token_type: Option<&'static str>,
    pub exp: Option<u64>,
    pub iat: Option<u64>,
    pub sub: Option<String>,
    pub aud: Option<String>,
    pub iss: Option<String>,
    pub jti: Option<String>,
}

impl IdentityServices {
    /// `POST /oauth/introspect` for an authenticated client.
    pub fn introspect(
        &self,
        caller: &OAuthClient,
        token: &str,
    ) -> Result<Introspection, OAuthError> {
        if caller.client_type != ClientType::Confidential {
            return Err(OAuthError::new(
                ErrorCode::InvalidClient,
                "introspection needs a confidential client",
            ));
        }
        let inactive = Introspection::default();
        if let Some((family, current)) = self.oauth.families.lookup(token) {
            let user = self.directory.user_by_id(&family.user_id);
            if family.client_id != caller.client_id || !current || user.is_none() {
                return Ok(inactive);
            }
            return Ok(Introspection {
                active: true,
                scope: Some(family.scope),
                client_id: Some(family.client_id),
                username: user.map(|u| u.username),
                token_type: Some("refresh_token"),
                iat: Some(family.created_at / 1000),
                sub: Some(family.user_id),
                iss: Some(self.tokens.issuer().into()),
                ..inactive
            });
        }
        let Ok(info) = self.tokens.verify(token) else {
            return Ok(inactive);
        };
        let own = info.client_id.as_deref() == Some(caller.client_id.as_str());
        if !own && !self.may_introspect_any(caller) {
            return Ok(inactive);
        }
        let enabled = self
            .directory
            .user_by_id(&info.user_id)
            .is_some_and(|u| u.enabled);
        let Some(record) = self.tokens.record_of(&info.jti).filter(|_| enabled) else {
            return Ok(inactive);
        };
        let scope = match (&info.client_id, &info.scope) {
            (_, Some(scope)) => scope.to_string(),
            (None, None) => super::SCOPES.join(" "),
            (Some(_), None) => String::new(),
        };
        Ok(Introspection {
            active: true,
            scope: Some(scope),
            aud: info.client_id.as_ref().map(|_| self.tokens.issuer().into()),
            client_id: info.client_id.as_deref().map(Into::into),
            username: Some(info.username.to_string()),
            token_type: Some("Bearer"),
            exp: Some(info.expires_at),
            iat: Some(record.created_at / 1000),
            sub: Some(info.user_id.to_string()),
            iss: Some(self.tokens.issuer().into()),
            jti: Some(info.jti.to_string()),
        })
    }

    /// Whether the client's account holds the explicit right.
    fn may_introspect_any(&self, client: &OAuthClient) -> bool {
        client
            .user_id
            .as_deref()
            .and_then(|id| self.directory.user_by_id(id))
            .is_some_and(|account| {
                account.enabled
                    && http_access::permits(
                        &self.directory,
                        &account,
                        INTROSPECT_ANY,
                        Operation::Read,
                    )
            })
    }

    /// `POST /oauth/revoke`: a refresh token ends its whole grant (with
    /// the access tokens issued under it); an access token ends alone,
    /// and so do the MQTT sessions that logged in with it (0x98).
    pub fn revoke_oauth_token(&self, caller: &OAuthClient, token: &str) -> Result<(), OAuthError> {
        if let Some((family, _)) = self.oauth.families.lookup(token) {
            if family.client_id == caller.client_id {
                let count = self.revoke_grant(&family.id)?;
                tracing::info!(
                    client_id = caller.client_id,
                    count,
                    "OAuth grant revoked by its client"
                );
            }
            return Ok(());
        }
        let Ok(info) = self.tokens.verify(token) else {
            return Ok(());
        };
        if info.client_id.as_deref() == Some(caller.client_id.as_str()) {
            self.tokens.revoke_where(|r| *r.jti == *info.jti)?;
            tracing::info!(
                client_id = caller.client_id,
                "OAuth access token revoked by its client"
            );
        }
        Ok(())
    }
}
