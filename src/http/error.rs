//! Every error the API answers with: `{"error": "<code>", "message": "..."}`
//! and a status from 400, 401, 403, 404, 409, 413, 415, 422, 423, 429 (503 when
//! the store itself fails). Domain errors map here exhaustively, with no
//! catch-all, so a new domain error cannot silently become a 500.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

use crate::identity::http_access::AccessError;
use crate::identity::login::LoginError;
use crate::identity::mfa::MfaError;
use crate::identity::oauth::clients::ClientError;
use crate::identity::registry::RegistryError;
use crate::identity::services::AdminError;
use crate::identity::tokens::{TokenError, TokenServiceError};
use crate::identity::{IdentityError, ValidationError};
use crate::store::StoreError;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable code, e.g. `not_found`, `mfa_required`.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
    }

    pub fn rate_limited(retry_after: Duration) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many attempts; retry in {} s",
                    retry_after.as_secs().max(1)
                ),
            )
        }
    }

    fn unavailable(e: &dyn std::fmt::Display) -> ApiError {
        tracing::error!("admin API: storage failure: {e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the store failed; the change was not made",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.into(),
            message: self.message,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&secs) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gatehouse\""),
            );
        }
        response
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> ApiError {
        let message = e.to_string();
        match e {
            IdentityError::NotFound(..) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            IdentityError::Exists(..) => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", message)
            }
            IdentityError::Changed(..) => ApiError::new(StatusCode::CONFLICT, "changed", message),
            IdentityError::Invalid(ValidationError::UsernameLength)
            | IdentityError::Invalid(ValidationError::UsernameCharacters)
            | IdentityError::Invalid(ValidationError::Resource(_))
            | IdentityError::Invalid(ValidationError::HttpResource(_))
            | IdentityError::Invalid(ValidationError::RoleName)
            | IdentityError::Invalid(ValidationError::Prefix)
            | IdentityError::Invalid(ValidationError::PrefixLength) => ApiError::invalid(message),
            IdentityError::Policy(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "password_policy", message)
            }
            IdentityError::Store(e) => ApiError::unavailable(&e),
            IdentityError::Corrupt(_) => ApiError::unavailable(&message),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::unavailable(&e)
    }
}

impl From<MfaError> for ApiError {
    fn from(e: MfaError) -> ApiError {
        let message = e.to_string();
        match e {
            MfaError::NotEnrolled => {
                ApiError::new(StatusCode::CONFLICT, "mfa_not_enrolled", message)
            }
            MfaError::AlreadyEnrolled => {
                ApiError::new(StatusCode::CONFLICT, "mfa_already_enrolled", message)
            }
            MfaError::NoPendingEnrollment => {
                ApiError::new(StatusCode::CONFLICT, "mfa_not_started", message)
            }
            MfaError::Required => ApiError::new(StatusCode::UNAUTHORIZED, "mfa_required", message),
            MfaError::Invalid => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_otp", message),
            MfaError::Locked(secs) => ApiError {
                retry_after: Some(Duration::from_secs(secs)),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "mfa_locked", message)
            },
            MfaError::Store(e) => ApiError::unavailable(&e),
            MfaError::Key(_) | MfaError::Corrupt(_) => ApiError::unavailable(&message),
        }
    }
}

impl From<TokenServiceError> for ApiError {
    fn from(e: TokenServiceError) -> ApiError {
        let message = e.to_string();
        match e {
            TokenServiceError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            TokenServiceError::Store(e) => ApiError::unavailable(&e),
            TokenServiceError::Key { .. }
            | TokenServiceError::Corrupt(_)
            | TokenServiceError::Sign(_) => ApiError::unavailable(&message),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", e.to_string())
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> ApiError {
        let message = e.to_string();
        match e {
            AccessError::Forbidden { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
            }
            AccessError::EnrolmentRequired => {
                ApiError::new(StatusCode::FORBIDDEN, "mfa_enrollment_required", message)
            }
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        let message = e.to_string();
        match e {
            AdminError::Identity(e) => e.into(),
            AdminError::Mfa(e) => e.into(),
            AdminError::Tokens(e) => e.into(),
            AdminError::Store(e) => e.into(),
            AdminError::OAuth(e) => ApiError::unavailable(&e),
            AdminError::PermissionDeclared => {
                ApiError::new(StatusCode::CONFLICT, "permission_already_declared", message)
            }
            AdminError::PermissionNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            AdminError::WrongPassword => {
                ApiError::new(StatusCode::FORBIDDEN, "wrong_password", message)
            }
            AdminError::Unsupported(_) | AdminError::OldPasswordRequired => {
                ApiError::invalid(message)
            }
            AdminError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
        }
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> ApiError {
        let message = e.to_string();
        match e {
            ClientError::Invalid { .. } => ApiError::invalid(message),
            ClientError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            ClientError::Exists(_) => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", message)
            }
            ClientError::Admin(e) => e.into(),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> ApiError {
        let message = e.to_string();
        match e {
            LoginError::RateLimited(after) => ApiError::rate_limited(after),
            LoginError::BadCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", message)
            }
            LoginError::Disabled => ApiError::new(StatusCode::FORBIDDEN, "user_disabled", message),
            LoginError::InitialAdminRemote => {
                ApiError::new(StatusCode::FORBIDDEN, "initial_admin_password", message)
            }
            LoginError::Lifetime(_) | LoginError::Label => ApiError::invalid(message),
            LoginError::Mfa(e) => e.into(),
            LoginError::Tokens(e) => e.into(),
            LoginError::Interrupted => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        let message = e.to_string();
        let bad = |code| ApiError::bad_request(code, message.clone());
        match e {
            RegistryError::Locked => ApiError::new(StatusCode::LOCKED, "registry_locked", message),
            RegistryError::RateLimited(after) => ApiError::rate_limited(after),
            RegistryError::Full(after) => ApiError {
                retry_after: Some(after),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "registry_full", message)
            },
            RegistryError::Username(_) => bad("invalid_username"),
            RegistryError::Policy(_) => bad("password_policy"),
            RegistryError::BothCredentials | RegistryError::NoCredential => bad("credentials"),
            RegistryError::CsrEncoding | RegistryError::InvalidCsr(_) => bad("invalid_csr"),
            RegistryError::EmptyCommonName
            | RegistryError::SeveralCommonNames
            | RegistryError::CommonName { .. } => bad("csr_common_name"),
            RegistryError::Wishes(_) => bad("invalid_request"),
            RegistryError::UserExists(_) => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", message)
            }
            RegistryError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "registration_conflict", message)
            }
            RegistryError::AlreadyConfirmed(_) => {
                ApiError::new(StatusCode::CONFLICT, "already_confirmed", message)
            }
            RegistryError::PairingCode { .. } => {
                ApiError::new(StatusCode::CONFLICT, "pairing_code_mismatch", message)
            }
            RegistryError::NotPending(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            RegistryError::Duration => ApiError::invalid(message),
            RegistryError::Admin(e) => e.into(),
            RegistryError::Store(e) => e.into(),
            RegistryError::Ca(e) => ApiError::unavailable(&e),
            RegistryError::Interrupted => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (
                IdentityError::NotFound("user", "x".into()).into(),
                404,
                "not_found",
            ),
            (
                IdentityError::Exists("user", "x".into()).into(),
                409,
                "already_exists",
            ),
            (
                IdentityError::Invalid(ValidationError::Prefix).into(),
                422,
                "invalid_field",
            ),
            (
                AdminError::PermissionDeclared.into(),
                409,
                "permission_already_declared",
            ),
            (MfaError::Required.into(), 401, "mfa_required"),
            (MfaError::Locked(5).into(), 429, "mfa_locked"),
            (TokenError::Revoked.into(), 401, "invalid_token"),
            (
                ClientError::Invalid {
                    field: "redirectUris",
                    reason: "x".into(),
                }
                .into(),
                422,
                "invalid_field",
            ),
            (
                ClientError::Exists("app".into()).into(),
                409,
                "already_exists",
            ),
            (ClientError::NotFound("c".into()).into(), 404, "not_found"),
            (
                LoginError::BadCredentials.into(),
                401,
                "invalid_credentials",
            ),
            (
                AccessError::Forbidden {
                    operation: "read",
                    resource: "/api/users".into(),
                }
                .into(),
                403,
                "forbidden",
            ),
            (RegistryError::Locked.into(), 423, "registry_locked"),
            (RegistryError::NoCredential.into(), 400, "credentials"),
            (
                RegistryError::UserExists("d".into()).into(),
                409,
                "already_exists",
            ),
            (
                RegistryError::Conflict("d".into()).into(),
                409,
                "registration_conflict",
            ),
            (
                RegistryError::Full(Duration::from_secs(3)).into(),
                429,
                "registry_full",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status.as_u16(), status, "{code}");
            assert_eq!(error.code, code);
        }
        let limited = ApiError::rate_limited(Duration::from_secs(7)).into_response();
        assert_eq!(limited.headers()[header::RETRY_AFTER], "7");
    }
}
