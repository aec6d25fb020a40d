//! `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.6): a
//! single-use code of this client, the same redirect URI as the
//! authorization request, and the PKCE verifier when a challenge was
//! sent (and none when it was not, RFC 9700 §2.1.1). A code presented
//! twice revokes what it granted.

use base64::Engine;
use sha2::{Digest, Sha256};

use super::super::codes::Redeemed;
use super::super::{ErrorCode, GrantKind, IssuedTokens, OAuthClient, OAuthError, same};
use super::{Origin, TokenRequest, required};
use crate::identity::services::IdentityServices;

pub(super) fn exchange(
    services: &IdentityServices,
    client: &OAuthClient,
    request: &TokenRequest,
    origin: Origin,
) -> Result<IssuedTokens, OAuthError> {
    if !client.allows(GrantKind::AuthorizationCode) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the authorization_code grant",
        ));
    }
    let code = required(&request.code, "code")?;
    let grant = match services.oauth.codes.redeem(code) {
        Redeemed::Fresh(grant) => grant,
        Redeemed::Reused(grant) => {
            services.revoke_reused(client, &grant, "authorization code", origin.peer);
            return Err(OAuthError::grant(
                "the code was already used; the tokens issued from it are revoked",
            ));
        }
        Redeemed::Unknown => return Err(OAuthError::grant("the code is invalid or expired")),
    };
    if grant.client_id != client.client_id {
        return Err(OAuthError::grant("the code was issued to another client"));
    }
    let redirect_ok = match (&grant.redirect_uri, &request.redirect_uri) {
        (Some(expected), Some(sent)) => expected == sent,
        (Some(_), None) => false,
        (None, Some(sent)) => client.redirect_uris.contains(sent),
        (None, None) => true,
    };
    if !redirect_ok {
        return Err(OAuthError::grant(
            "redirect_uri differs from the authorization request's",
        ));
    }
    match (&grant.challenge, &request.code_verifier) {
        (Some(challenge), Some(verifier)) => {
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()));
            if !same(&computed, challenge) {
                return Err(OAuthError::grant("code_verifier does not match"));
            }
        }
        (Some(_), None) => return Err(OAuthError::grant("code_verifier is missing")),
        (None, Some(_)) => {
            return Err(OAuthError::grant(
                "code_verifier sent, but the authorization request had no code_challenge",
            ));
        }
        (None, None) => {}
    }
    let user = services.live_user(&grant.user_id)?;
    // The code's ticket: revocations since the user signed in void it.
    let kind = GrantKind::AuthorizationCode;
    services.issue_tokens(
        client,
        &user,
        &grant.scope,
        Some(&grant.grant),
        grant.ticket,
        kind,
    )
}
