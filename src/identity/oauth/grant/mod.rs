//! The token endpoint (RFC 6749 §3.2): the client is authenticated first,
//! then the request goes to the module of its grant type. Grants that
//! only write the store run on the blocking pool; the password grant
//! verifies the password there too (through the login rules).

mod authorization_code;
mod client_credentials;
mod password;
mod refresh_token;

use std::net::IpAddr;
use std::sync::Arc;

use super::revocation::Ticket;
use super::{ClientCredentials, ErrorCode, IssuedTokens, OAuthClient, OAuthError};
use crate::identity::audit::Actor;
use crate::identity::services::IdentityServices;

/// The parameters of a token request (RFC 6749 §4.1.3, §4.3.2, §4.4.2,
/// §6), as sent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenRequest {
    /// Without the code, verifier, password or refresh token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("username", &self.username)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, OAuthError> {
    value
        .as_deref()
        .ok_or_else(|| OAuthError::request(format!("{name} is missing")))
}

/// Where a token request comes from, and when it started (before the
/// client was read: see `revocation`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    pub peer: IpAddr,
    pub ticket: Ticket,
}

/// A grant that only writes the store.
type SyncGrant =
    fn(&IdentityServices, &OAuthClient, &TokenRequest, Origin) -> Result<IssuedTokens, OAuthError>;

async fn on_blocking_pool(
    this: &Arc<IdentityServices>,
    client: &OAuthClient,
    request: &TokenRequest,
    origin: Origin,
    f: SyncGrant,
) -> Result<IssuedTokens, OAuthError> {
    let (this, client, request) = (this.clone(), client.clone(), request.clone());
    tokio::task::spawn_blocking(move || f(&this, &client, &request, origin))
        .await
        .map_err(|_| OAuthError::new(ErrorCode::ServerError, "the request was interrupted"))?
}

impl IdentityServices {
    /// `POST /oauth/token`.
    pub async fn token(
        self: &Arc<Self>,
        credentials: Option<ClientCredentials>,
        request: TokenRequest,
        peer: IpAddr,
    ) -> Result<IssuedTokens, OAuthError> {
        let origin = Origin {
            peer,
            ticket: self.oauth.revocations.ticket(),
        };
        let client = self.authenticate_client(credentials.as_ref(), peer)?;
        let grant_type = required(&request.grant_type, "grant_type")?.to_owned();
        let blocking = |f: SyncGrant| on_blocking_pool(self, &client, &request, origin, f);
        match grant_type.as_str() {
            "authorization_code" => blocking(authorization_code::exchange).await,
            "client_credentials" => blocking(client_credentials::grant).await,
            "refresh_token" => blocking(refresh_token::refresh).await,
            "password" => password::grant(self, &client, &request, origin).await,
            other => {
                let shown: String = other.chars().take(64).collect();
                Err(OAuthError::new(
                    ErrorCode::UnsupportedGrantType,
                    format!("grant_type `{shown}` is not supported"),
                ))
            }
        }
    }

    /// A reused code or refresh token: the authorization ends, with every
    /// token it issued (RFC 6749 §4.1.2, RFC 9700 §4.14.2). Audited.
    fn revoke_reused(&self, client: &OAuthClient, grant: &str, what: &str, peer: IpAddr) {
        let revoked = self.revoke_grant(grant);
        tracing::warn!(%peer, client_id = client.client_id, "OAuth {what} presented again: its grant is revoked ({revoked:?} access tokens)");
        let actor = Actor {
            username: client.client_id.clone(),
            user_id: client.user_id.clone(),
            address: Some(peer),
        };
        let detail = serde_json::json!({"reason": format!("{what} reused"),
            "clientId": client.client_id, "revokedAccessTokens": revoked.ok()});
        if let Err(e) = self
            .audit
            .record(&actor, "oauth.grant.revoke", grant, detail)
        {
            tracing::warn!("cannot audit a revoked OAuth grant: {e}");
        }
    }
}
