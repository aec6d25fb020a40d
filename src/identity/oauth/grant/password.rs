//! `grant_type=password` (RFC 6749 §4.3), for confidential clients that
//! were allowed it. The user's password goes through the same rules as
//! every login (rate limits, argon2 on the blocking pool, disabled users,
//! the initial admin password only from loopback). A user with MFA
//! cannot use it: there is no field for the code; the authorization code
//! grant asks for it.

use std::sync::Arc;

use super::super::{ErrorCode, GrantKind, IssuedTokens, OAuthClient, OAuthError};
use super::super::{new_id, parse_scope};
use super::{Origin, TokenRequest, required};
use crate::identity::login::{LoginError, LoginRequest};
use crate::identity::mfa::MfaError;
use crate::identity::services::IdentityServices;

pub(super) async fn grant(
    services: &Arc<IdentityServices>,
    client: &OAuthClient,
    request: &TokenRequest,
    origin: Origin,
) -> Result<IssuedTokens, OAuthError> {
    if !client.allows(GrantKind::Password) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the password grant",
        ));
    }
    let username = required(&request.username, "username")?;
    let password = required(&request.password, "password")?;
    let scope = parse_scope(request.scope.as_deref())?;
    let login = LoginRequest {
        username: username.into(),
        password: password.into(),
        ..LoginRequest::default()
    };
    let user = services
        .verify_login(login, origin.peer)
        .await
        .map_err(refused)?;
    let account = services.mfa.account(&user.id);
    if account.enforce_mfa_enrollment && !account.mfa_enrolled() {
        return Err(OAuthError::grant("the user must enrol MFA first"));
    }
    let (this, client) = (services.clone(), client.clone());
    tokio::task::spawn_blocking(move || {
        let grant = new_id();
        let kind = GrantKind::Password;
        this.issue_tokens(&client, &user, &scope, Some(&grant), origin.ticket, kind)
    })
    .await
    .map_err(|_| OAuthError::new(ErrorCode::ServerError, "the request was interrupted"))?
}

/// A refused login as the token endpoint tells it.
fn refused(e: LoginError) -> OAuthError {
    match e {
        LoginError::RateLimited(after) => OAuthError::rate_limited(after),
        LoginError::BadCredentials => OAuthError::grant("wrong username or password"),
        LoginError::Disabled | LoginError::InitialAdminRemote => OAuthError::grant(e.to_string()),
        LoginError::Mfa(MfaError::Required) => OAuthError::grant(
            "the user has MFA on: use the authorization code grant, whose form asks for the code",
        ),
        LoginError::Mfa(MfaError::Locked(secs)) => {
            OAuthError::rate_limited(std::time::Duration::from_secs(secs))
        }
        LoginError::Mfa(
            MfaError::Invalid
            | MfaError::NotEnrolled
            | MfaError::AlreadyEnrolled
            | MfaError::NoPendingEnrollment,
        ) => OAuthError::grant(e.to_string()),
        LoginError::Mfa(MfaError::Store(e)) => OAuthError::unavailable(e),
        LoginError::Mfa(MfaError::Key(m) | MfaError::Corrupt(m)) => OAuthError::unavailable(m),
        LoginError::Tokens(e) => OAuthError::unavailable(e),
        LoginError::Lifetime(_) | LoginError::Label | LoginError::Interrupted => {
            OAuthError::new(ErrorCode::ServerError, e.to_string())
        }
    }
}
