//! Multi-factor authentication (TOTP, RFC 6238): a user enrols, confirms
//! with a code (and receives backup codes), disables, or regenerates the
//! backup codes; an administrator can turn a user's MFA off. Gatehouse
//! names these routes (Connectware's are not public).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Caller};
use super::{AppState, blocking};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enroll))
        .routes(routes!(confirm))
        .routes(routes!(disable))
        .routes(routes!(backup_codes))
        .routes(routes!(admin_disable))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollResponse {
    /// Base32, for typing into an authenticator app.
    pub secret: String,
    /// `otpauth://totp/...?...&algorithm=SHA1&digits=6&period=30`
    pub otpauth_uri: String,
    /// The URI as a QR code (SVG).
    pub qr_code_svg: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OtpBody {
    /// The 6-digit code from the authenticator app.
    #[schema(pattern = "^[0-9]{6}$")]
    pub otp: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupCodes {
    /// Ten single-use codes, shown once.
    pub backup_codes: Vec<String>,
}

/// Code attempts are limited per user and per address.
fn limit(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    let services = &state.services;
    services
        .per_user
        .take(&format!("mfa:{}", caller.user.id))
        .and_then(|()| {
            services
                .per_address
                .take(&format!("mfa-addr:{}", caller.address))
        })
        .map_err(ApiError::rate_limited)
}

/// Start enrolment: a new secret, its `otpauth://` URI and QR code. MFA is
/// on once `/api/mfa/confirm` gets a valid code.
#[utoipa::path(post, path = "/api/mfa/enroll", tag = "mfa",
    responses((status = 200, body = EnrollResponse)))]
async fn enroll(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<EnrollResponse>, ApiError> {
    let actor = caller.actor();
    let (id, name) = (caller.user.id.clone(), caller.user.username.clone());
    let enrollment = blocking(&state, move |s| {
        let e = s.mfa.enroll(&id, &name, &s.config.issuer)?;
        s.audit_self(&actor, "mfa.enroll")?;
        Ok(e)
    })
    .await?;
    Ok(Json(EnrollResponse {
        secret: enrollment.secret,
        otpauth_uri: enrollment.uri,
        qr_code_svg: enrollment.qr_svg,
    }))
}

/// Confirm enrolment with a current code: MFA is on; returns the backup codes.
#[utoipa::path(post, path = "/api/mfa/confirm", tag = "mfa", request_body = OtpBody,
    responses((status = 200, body = BackupCodes)))]
async fn confirm(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<OtpBody>,
) -> Result<Json<BackupCodes>, ApiError> {
    limit(&state, &caller)?;
    let actor = caller.actor();
    let id = caller.user.id.clone();
    let codes = blocking(&state, move |s| {
        let codes = s.mfa.confirm(&id, &body.otp)?;
        s.audit_self(&actor, "mfa.confirm")?;
        Ok(codes)
    })
    .await?;
    Ok(Json(BackupCodes {
        backup_codes: codes,
    }))
}

/// Turn one's own MFA off (with a current code).
#[utoipa::path(post, path = "/api/mfa/disable", tag = "mfa", request_body = OtpBody,
    responses((status = 204, description = "MFA off")))]
async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<OtpBody>,
) -> Result<StatusCode, ApiError> {
    limit(&state, &caller)?;
    let actor = caller.actor();
    let id = caller.user.id.clone();
    blocking(&state, move |s| {
        s.mfa.disable(&id, &body.otp)?;
        s.audit_self(&actor, "mfa.disable")
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// New backup codes (with a current code); the old ones stop working.
#[utoipa::path(post, path = "/api/mfa/backup-codes", tag = "mfa", request_body = OtpBody,
    responses((status = 200, body = BackupCodes)))]
async fn backup_codes(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<OtpBody>,
) -> Result<Json<BackupCodes>, ApiError> {
    limit(&state, &caller)?;
    let actor = caller.actor();
    let id = caller.user.id.clone();
    let codes = blocking(&state, move |s| {
        let codes = s.mfa.regenerate_backup_codes(&id, &body.otp)?;
        s.audit_self(&actor, "mfa.backup_codes")?;
        Ok(codes)
    })
    .await?;
    Ok(Json(BackupCodes {
        backup_codes: codes,
    }))
}

/// An administrator turns a user's MFA off.
#[utoipa::path(delete, path = "/api/users/{id}/mfa", tag = "mfa",
    params(("id" = String, Path, description = "User id")),
    responses((status = 204, description = "MFA off")))]
async fn admin_disable(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = caller.resolve(&id).to_owned();
    let actor = caller.actor();
    blocking(&state, move |s| s.admin_disable_mfa(&actor, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
