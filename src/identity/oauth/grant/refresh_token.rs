//! `grant_type=refresh_token` (RFC 6749 §6): the family's current token,
//! presented by the client it was issued to, rotates: a new access token
//! and, while the refresh count allows, a new refresh token. An older
//! token of the family is reuse and revokes the whole grant. `scope` may
//! narrow, never widen (`invalid_scope`).
//!
//! Rotation and issuance are one step: the refresh holds its family's
//! stripe until its access token is recorded, so of two presentations of
//! one token exactly one succeeds, and the other (reuse) revokes the
//! family with the access token the first one got. The client must still
//! be enabled and allow the grant that started the family, the user must
//! still be enabled, and no revocation may have come since the request
//! began.

use super::super::families::Rotation;
use super::super::{ErrorCode, GrantKind, IssuedTokens, OAuthClient, OAuthError, parse_scope};
use super::{Origin, TokenRequest, required};
use crate::identity::services::IdentityServices;
use crate::identity::tokens::NEVER_EXPIRES;
use crate::router::now_millis;

pub(super) fn refresh(
    services: &IdentityServices,
    client: &OAuthClient,
    request: &TokenRequest,
    origin: Origin,
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
    let families = &services.oauth.families;
    let _serial = families
        .serialize(token)
        .ok_or_else(|| OAuthError::grant("the refresh token is invalid, expired or revoked"))?;
    let revocations = &services.oauth.revocations;
    let rotation = families.rotate(token, &client.client_id, keep_until, |family| {
        revocations.check(
            origin.ticket,
            Some(&family.id),
            &client.client_id,
            &family.user_id,
        )?;
        services.live_user(&family.user_id)?;
        let origin_kind = family.origin.unwrap_or(GrantKind::AuthorizationCode);
        if !client.allows(origin_kind) {
            return Err(OAuthError::grant(format!(
                "the client may no longer use the {} grant",
                origin_kind.as_str()
            )));
        }
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
            services.revoke_reused(client, &family.id, "refresh token", origin.peer);
            return Err(OAuthError::grant(
                "the refresh token was already used; the grant is revoked",
            ));
        }
    };
    let user = services.live_user(&family.user_id)?;
    let scope = asked.unwrap_or(family.scope);
    let kind = family.origin.unwrap_or(GrantKind::AuthorizationCode);
    let (access_token, expires_in, _) =
        services.issue_access_token(client, &user, &scope, Some(&family.id), kind)?;
    let recheck = revocations.check(origin.ticket, Some(&family.id), &client.client_id, &user.id);
    if let Err(e) = recheck {
        // A revocation came while this was issuing: it ends the grant.
        let _ = services.revoke_grant(&family.id);
        return Err(e);
    }
    Ok(IssuedTokens {
        access_token,
        expires_in,
        refresh_token,
        scope,
    })
}
