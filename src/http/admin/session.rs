//! `/admin/session`: the page signs in (`POST`, the same login as
//! `POST /api/login`, its token put in the session cookie instead of the
//! answer), asks whether it is signed in (`GET`, always 200, so a fresh
//! page logs no failed request) and signs out (`DELETE`: the token is
//! revoked, the cookie removed).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::cookie;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Peer, holder};
use crate::http::oauth::Scheme;
use crate::http::{AppState, blocking};
use crate::identity::audit::Actor;
use crate::identity::login::{LoginError, LoginRequest};
use crate::identity::mfa::MfaError;

/// The label of the tokens the page signs in with (the user's token list
/// shows it).
const LABEL: &str = "admin page";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(session, sign_in, sign_out))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignInBody {
    pub username: String,
    pub password: String,
    /// The 6-digit code, when the user has MFA on.
    pub otp: Option<String>,
    /// A backup code instead of `otp`.
    pub backup_code: Option<String>,
}

/// Who the page is signed in as. Never the token.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub signed_in: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The session token's fingerprint, as in the user's token list (so
    /// the page can mark "this browser"); never the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The session may only enrol MFA (`enforceMFAEnrollment`).
    #[serde(rename = "mfaEnrollmentRequired")]
    pub mfa_enrollment_required: bool,
    /// Sign-in only: the password was right, and the account wants its
    /// 6-digit code or a backup code (sent again with the password).
    #[serde(rename = "mfaRequired", skip_serializing_if = "std::ops::Not::not")]
    pub mfa_required: bool,
}

impl SessionInfo {
    fn none() -> SessionInfo {
        SessionInfo {
            signed_in: false,
            user_id: None,
            username: None,
            expires_at: None,
            fingerprint: None,
            mfa_enrollment_required: false,
            mfa_required: false,
        }
    }
}

/// Whether the browser's session cookie holds a valid token (always 200;
/// an invalid cookie counts as a failed token check for the address).
#[utoipa::path(get, path = "/admin/session", tag = "admin", security(()),
    responses((status = 200, body = SessionInfo)))]
async fn session(
    State(state): State<AppState>,
    peer: Peer,
    scheme: Scheme,
    headers: HeaderMap,
) -> Result<Json<SessionInfo>, ApiError> {
    let Some(token) = cookie::session_token(&headers, scheme.secure(&state)) else {
        return Ok(Json(SessionInfo::none()));
    };
    let services = &state.services;
    let key = format!("token-addr:{}", peer.0);
    services
        .per_address
        .check(&key)
        .map_err(ApiError::rate_limited)?;
    Ok(Json(match holder(services, &token) {
        Ok((info, user)) => SessionInfo {
            signed_in: true,
            user_id: Some(user.id),
            username: Some(user.username),
            expires_at: Some(info.expires_at.saturating_mul(1000)),
            fingerprint: Some(info.fingerprint.to_string()),
            mfa_enrollment_required: info.enrol_only(),
            mfa_required: false,
        },
        Err((_, counts)) => {
            if counts {
                let _ = services.per_address.take(&key);
            }
            SessionInfo::none()
        }
    }))
}

/// Sign in: the rules of `POST /api/login` (rate limits, MFA), the token
/// kept in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` over HTTPS)
/// that lives as long as the token. Only from this server's own page.
/// A right password without the code the account needs is the sign-in's
/// second step, not an error: 200 with `mfaRequired` (a wrong code is).
#[utoipa::path(post, path = "/admin/session", tag = "admin", security(()), request_body = SignInBody,
    responses((status = 200, body = SessionInfo,
        description = "Signed in (the cookie is set), or `mfaRequired`: send the code too")))]
#[tracing::instrument(name = "admin_sign_in", skip_all)]
async fn sign_in(
    State(state): State<AppState>,
    peer: Peer,
    scheme: Scheme,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignInBody>,
) -> Result<Response, ApiError> {
    let secure = scheme.secure(&state);
    cookie::same_origin(&headers, secure)?;
    let request = LoginRequest {
        username: body.username,
        password: body.password,
        expire_time_in_hours: None,
        label: Some(LABEL.into()),
        otp: body.otp,
        backup_code: body.backup_code,
    };
    let outcome = match state.services.login(request, peer.0).await {
        Ok(outcome) => outcome,
        Err(LoginError::Mfa(MfaError::Required)) => {
            let info = SessionInfo {
                mfa_required: true,
                ..SessionInfo::none()
            };
            return Ok(Json(info).into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let max_age = outcome.record.expires_at.saturating_sub(now) / 1000;
    let info = SessionInfo {
        signed_in: true,
        user_id: Some(outcome.record.user_id.clone()),
        username: Some(outcome.record.username.clone()),
        expires_at: Some(outcome.record.expires_at),
        fingerprint: Some(outcome.record.fingerprint.clone()),
        mfa_enrollment_required: outcome.enrol_only,
        mfa_required: false,
    };
    let mut response = Json(info).into_response();
    if let Some(value) = cookie::set(&outcome.token, secure, Some(max_age)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Sign out: the session's token is revoked and the cookie removed.
#[utoipa::path(delete, path = "/admin/session", tag = "admin", security(()),
    responses((status = 204, description = "Signed out; the cookie is removed")))]
async fn sign_out(
    State(state): State<AppState>,
    peer: Peer,
    scheme: Scheme,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let secure = scheme.secure(&state);
    if let Some(token) = cookie::session_token(&headers, secure) {
        cookie::same_origin(&headers, secure)?;
        if let Ok((info, user)) = holder(&state.services, &token) {
            let actor = Actor {
                username: user.username.clone(),
                user_id: Some(user.id.clone()),
                address: Some(peer.0),
            };
            let fingerprint = info.fingerprint.to_string();
            blocking(&state, move |s| {
                s.revoke_tokens(&actor, &user.id, Some(&fingerprint))
            })
            .await?;
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie::clear(secure));
    Ok(response)
}
