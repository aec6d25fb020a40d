//! `grant_type=refresh_token` (RFC 6749 §6): the family's current token,
//! presented by the client it was issued to, rotates: a new access token
//! and, while the refresh count allows, a new refresh token. An older
//! token of the family is reuse and revokes the whole grant. `scope` may
//! narrow, never widen (`invalid_scope`).

use std::net::IpAddr;

use super::super::families::Rotation;
use super::super::{ErrorCode, GrantKind, IssuedTokens, OAuthClient, OAuthError, parse_scope};
use super::{TokenRequest, required};
use crate::identity::services::IdentityServices;
use crate::identity::tokens::NEVER_EXPIRES;
use crate::router::now_millis;

pub(super) fn refresh(
    services: &IdentityServices,
    client: &OAuthClient,
    request: &TokenRequest,
    peer: IpAddr,
) -> Result<IssuedTokens, OAuthError> {
    if !client.allows(GrantKind::AuthorizationCode) && !client.allows(GrantKind::Password) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "refresh tokens come with the authorization_code and password grants only",
        ));
    }
    let token = required(&request.refresh_token, "refresh_token")?;
    let asked = match &request.scope {
        Some(scope) => Some(parse_scope(Some(scope))?),
        None => None,
    };
    let keep_until = services
        .lifetime(client)
        .map_or(NEVER_EXPIRES * 1000, |secs| {
            now_millis().saturating_add(secs.saturating_mul(1000))
        });
    let rotation =
        services
            .oauth
            .families
            .rotate(token, &client.client_id, keep_until, |family| {
                services.live_user(&family.user_id)?;
                match &asked {
                    Some(scope)
                        if !scope
                            .split(' ')
                            .all(|w| family.scope.split(' ').any(|f| f == w)) =>
                    {
                        Err(OAuthError::new(
                            ErrorCode::InvalidScope,
                            "scope may only narrow the granted scope",
                        ))
                    }
                    _ => Ok(()),
                }
            })?;
    let (family, refresh_token) = match rotation {
        Rotation::Next { family, token } => (family, token),
        Rotation::Reused(family) => {
            services.revoke_reused(client, &family.id, "refresh token", peer);
            return Err(OAuthError::grant(
                "the refresh token was already used; the grant is revoked",
            ));
        }
    };
    let user = services.live_user(&family.user_id)?;
    let scope = asked.unwrap_or(family.scope);
    let (access_token, expires_in) =
        services.issue_access_token(client, &user, &scope, Some(&family.id))?;
    Ok(IssuedTokens {
        access_token,
        expires_in,
        refresh_token,
        scope,
    })
}
