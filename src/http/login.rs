//! `POST /api/login`: Connectware's body (`username`, `password`,
//! `expireTimeInHours`, `label`) plus `otp` or `backupCode` when the user
//! has MFA on. Answers `{"token": "<JWT>"}`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Peer};
use crate::identity::login::LoginRequest;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginBody {
    pub username: String,
    pub password: String,
    /// Token lifetime in hours (fractions allowed); default and maximum
    /// are configured (`[http] token_default_hours`, `token_max_hours`).
    #[schema(exclusive_minimum = 0)]
    pub expire_time_in_hours: Option<f64>,
    /// Shown in the user's token list.
    #[schema(max_length = 256)]
    pub label: Option<String>,
    /// TOTP code, when MFA is on (Gatehouse extension).
    pub otp: Option<String>,
    /// A backup code instead of `otp` (Gatehouse extension).
    pub backup_code: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    /// An ES256 JWT: `Authorization: Bearer <token>`, `?apiToken=<token>`,
    /// or as the MQTT password with the user name.
    pub token: String,
    /// SHA-256 of the token, hex (as listed in the user's `tokens`).
    pub fingerprint: String,
    /// Unix milliseconds.
    pub expires_at: u64,
    /// The user must enrol MFA first: this token may only do that.
    #[serde(rename = "mfaEnrollmentRequired")]
    pub mfa_enrollment_required: bool,
}

/// Log in: a token for the API and for MQTT.
#[utoipa::path(post, path = "/api/login", tag = "login", security(()), request_body = LoginBody,
    responses((status = 200, body = LoginResponse)))]
#[tracing::instrument(name = "login", skip_all)]
async fn login(
    State(state): State<AppState>,
    peer: Peer,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<LoginResponse>, ApiError> {
    let request = LoginRequest {
        username: body.username,
        password: body.password,
        expire_time_in_hours: body.expire_time_in_hours,
        label: body.label,
        otp: body.otp,
        backup_code: body.backup_code,
    };
    let outcome = state.services.login(request, peer.0).await?;
    Ok(Json(LoginResponse {
        token: outcome.token,
        fingerprint: outcome.record.fingerprint,
        expires_at: outcome.record.expires_at,
        mfa_enrollment_required: outcome.enrol_only,
    }))
}
