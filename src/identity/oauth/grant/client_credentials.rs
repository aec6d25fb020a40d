//! `grant_type=client_credentials` (RFC 6749 §4.4): a confidential client
//! acting for itself. The token speaks for the client's own account (its
//! user name is the client id), so it can do what the roles and
//! permissions given to that account allow. No refresh token.

use super::super::{ErrorCode, GrantKind, IssuedTokens, OAuthClient, OAuthError, parse_scope};
use super::{Origin, TokenRequest};
use crate::identity::services::IdentityServices;

pub(super) fn grant(
    services: &IdentityServices,
    client: &OAuthClient,
    request: &TokenRequest,
    origin: Origin,
) -> Result<IssuedTokens, OAuthError> {
    if !client.allows(GrantKind::ClientCredentials) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the client_credentials grant",
        ));
    }
    let scope = parse_scope(request.scope.as_deref())?;
    let account = client
        .user_id
        .as_deref()
        .ok_or_else(|| OAuthError::grant("the client has no account"))?;
    let user = services.live_user(account)?;
    services.issue_tokens(
        client,
        &user,
        &scope,
        None,
        origin.ticket,
        GrantKind::ClientCredentials,
    )
}
