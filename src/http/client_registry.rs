//! The client registry (`docs/onboarding.md`): devices register without
//! authentication (`POST /api/client-registry/register`, Connectware's
//! route); administrators unlock, lock, list, confirm (Connectware's
//! grant) and reject. The rules live in `identity::registry`.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::dto::{PermissionDto, PermissionInput, UserDto, permissions_in};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Caller, Peer};
use super::users::user_view;
use crate::identity::registry::{
    PendingRequest, Registered, Registration, RegistryError, RegistryStatus, Wishes,
};
use crate::identity::services::IdentityServices;

/// The one unauthenticated registry route (rate-limited per address).
pub fn device_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(register))
}

/// Routes that need their HTTP permission, like any other.
pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(registry_status))
        .routes(routes!(unlock_registry))
        .routes(routes!(lock_registry))
        .routes(routes!(confirm_registration))
        .routes(routes!(reject_registration))
}

/// Connectware's body: `username` and `password` or `csr`; `context`,
/// `roles` and `permissions` are Gatehouse's names.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterBody {
    /// The user the device will be (3 to 128 characters).
    #[schema(min_length = 3, max_length = 128)]
    pub username: String,
    /// The password the device will log in with (password policy applies).
    pub password: Option<String>,
    /// A PKCS#10 CSR whose CN is `username`: PEM text, or base64 of it.
    pub csr: Option<String>,
    /// Free text telling the administrator where the request comes from
    /// (Gatehouse extension, at most 1024 characters).
    pub context: Option<String>,
    /// Role names the device asks for; granted only as an administrator
    /// confirms them (Gatehouse extension).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions the device asks for; granted only as an administrator
    /// confirms them (Gatehouse extension).
    #[serde(default)]
    pub permissions: Vec<PermissionInput>,
}

/// 202: the request waits for an administrator; repeat it to poll.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterPending {
    /// Always `pending`.
    pub status: String,
    /// 8 base32 characters; the administrator sees the same code.
    pub pairing_code: String,
}

/// 201: granted. Certificate fields only for a CSR.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterGranted {
    pub username: String,
    /// The signed client certificate (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// The built-in CA's certificate (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingRequestDto {
    pub id: String,
    pub username: String,
    /// `password` or `csr`.
    pub method: String,
    /// `explicit` (register) or `implicit` (a refused MQTT CONNECT).
    pub flow: String,
    /// `pending`, or `granted` (confirmed, the device has not fetched it yet).
    pub status: String,
    /// Requested, not granted.
    pub roles: Vec<String>,
    /// Requested, not granted.
    pub permissions: Vec<PermissionDto>,
    pub context: Option<String>,
    /// The device's address.
    pub address: String,
    /// Unix milliseconds.
    pub first_seen: u64,
    pub last_seen: u64,
    pub attempts: u64,
    /// Refused requests for this name with another password or key
    /// (Gatehouse extension): more than 0 means two devices want it.
    pub conflicts: u64,
    pub pairing_code: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatusDto {
    pub locked: bool,
    /// Unix milliseconds; `null` while locked.
    pub unlocked_until: Option<u64>,
    pub pending_requests: Vec<PendingRequestDto>,
}

/// Optional: an empty body opens for the configured default.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockBody {
    /// Milliseconds (Connectware's unit); default
    /// `[registry] default_unlock_minutes`, cut to `max_unlock_minutes`.
    #[schema(minimum = 1)]
    pub duration: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfirmBody {
    pub username: String,
    /// The pairing code the administrator compared with the device's
    /// (Gatehouse extension): the confirm is refused (409) when the pending
    /// request has another one.
    pub pairing_code: Option<String>,
    /// Role ids or names to give the new user; none when absent (the
    /// request's own wishes are only shown).
    pub roles: Option<Vec<String>>,
    /// Permissions to give the new user; none when absent.
    pub permissions: Option<Vec<PermissionInput>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    pub username: String,
}

fn request_dto(r: PendingRequest) -> PendingRequestDto {
    PendingRequestDto {
        method: r.credential.method().into(),
        flow: r.flow.name().into(),
        status: if r.granted.is_some() {
            "granted"
        } else {
            "pending"
        }
        .into(),
        permissions: r
            .wishes
            .permissions
            .iter()
            .map(PermissionDto::from)
            .collect(),
        roles: r.wishes.roles,
        context: r.wishes.context,
        address: r.address.to_string(),
        first_seen: r.first_seen,
        last_seen: r.last_seen,
        attempts: r.attempts,
        conflicts: r.conflicts,
        pairing_code: r.pairing_code,
        username: r.username,
        id: r.id,
    }
}

fn status_dto(status: RegistryStatus) -> RegistryStatusDto {
    RegistryStatusDto {
        locked: status.locked,
        unlocked_until: status.unlocked_until,
        pending_requests: status.requests.into_iter().map(request_dto).collect(),
    }
}

/// A service call on the blocking pool (audit writes fsync).
async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&IdentityServices) -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, ApiError> {
    let services = state.services.clone();
    tokio::task::spawn_blocking(move || f(&services))
        .await
        .map_err(|_| ApiError::from(RegistryError::Interrupted))?
        .map_err(ApiError::from)
}

/// A JSON body that may be left out (no bytes, or `null`); when present,
/// it is checked like [`ApiJson`].
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<OptionalJson<T>, ApiError> {
        let headers = request.headers();
        let declared_empty = headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
        let no_body = !headers.contains_key(header::CONTENT_LENGTH)
            && !headers.contains_key(header::TRANSFER_ENCODING);
        if declared_empty || no_body {
            return Ok(OptionalJson(None));
        }
        let ApiJson(value) = ApiJson::<Option<T>>::from_request(request, state).await?;
        Ok(OptionalJson(value))
    }
}

/// Register a device (no authentication). Locked → 423; bad request →
/// 400 with the reason; existing user, or a different request pending for
/// the name → 409; else 202 with the pairing code until an administrator
/// confirms, then 201 once (with the certificate for a CSR).
#[utoipa::path(post, path = "/api/client-registry/register", tag = "client-registry",
    security(()), request_body = RegisterBody,
    responses(
        (status = 201, body = RegisterGranted, description = "Granted; the request is forgotten"),
        (status = 202, body = RegisterPending, description = "Pending; repeat to poll"),
        (status = 400, body = ErrorBody, description = "Bad request, with the reason"),
        (status = 409, body = ErrorBody, description = "The user exists, or a different request for the name is pending"),
        (status = 423, body = ErrorBody, description = "The registry is locked"),
        (status = 429, body = ErrorBody, description = "Rate limited, or the registry is full (Retry-After)")))]
#[tracing::instrument(name = "register", skip_all)]
async fn register(
    State(state): State<AppState>,
    peer: Peer,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Response, ApiError> {
    let request = Registration {
        username: body.username,
        password: body.password,
        csr: body.csr,
        wishes: Wishes {
            roles: body.roles,
            permissions: permissions_in(body.permissions),
            context: body.context,
        },
    };
    Ok(match state.services.register(request, peer.0).await? {
        Registered::Pending { pairing_code } => (
            StatusCode::ACCEPTED,
            Json(RegisterPending {
                status: "pending".into(),
                pairing_code,
            }),
        )
            .into_response(),
        Registered::Granted { username, grant } => (
            StatusCode::CREATED,
            Json(RegisterGranted {
                username,
                certificate: grant.certificate,
                ca_certificate: grant.ca_certificate,
            }),
        )
            .into_response(),
    })
}

/// Lock state and requests (Gatehouse extension).
#[utoipa::path(get, path = "/api/client-registry", tag = "client-registry",
    responses((status = 200, body = RegistryStatusDto)))]
async fn registry_status(State(state): State<AppState>) -> Json<RegistryStatusDto> {
    Json(status_dto(state.services.registry_status()))
}

/// Open the registry for `duration` milliseconds (Gatehouse extension).
#[utoipa::path(post, path = "/api/client-registry/unlock", tag = "client-registry",
    request_body(content = Option<UnlockBody>, description = "Optional"),
    responses((status = 200, body = RegistryStatusDto)))]
async fn unlock_registry(
    State(state): State<AppState>,
    caller: Caller,
    OptionalJson(body): OptionalJson<UnlockBody>,
) -> Result<Json<RegistryStatusDto>, ApiError> {
    let duration = body.and_then(|b| b.duration);
    let actor = caller.actor();
    let status = blocking(&state, move |s| s.registry_unlock(&actor, duration)).await?;
    Ok(Json(status_dto(status)))
}

/// Close the registry now; pending requests stay until they age out
/// (Gatehouse extension).
#[utoipa::path(post, path = "/api/client-registry/lock", tag = "client-registry",
    responses((status = 200, body = RegistryStatusDto)))]
async fn lock_registry(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<RegistryStatusDto>, ApiError> {
    let actor = caller.actor();
    let status = blocking(&state, move |s| s.registry_lock(&actor)).await?;
    Ok(Json(status_dto(status)))
}

/// Grant a pending request: the user is created (with exactly the given
/// roles and permissions), a CSR is signed; the device gets its answer
/// with its next identical request.
#[utoipa::path(post, path = "/api/client-registry/confirm", tag = "client-registry",
    request_body = ConfirmBody,
    responses((status = 200, body = UserDto, description = "The new user")))]
async fn confirm_registration(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ConfirmBody>,
) -> Result<Json<UserDto>, ApiError> {
    let actor = caller.actor();
    let permissions = body.permissions.map(permissions_in);
    let user = blocking(&state, move |s| {
        s.registry_confirm(
            &actor,
            &body.username,
            body.pairing_code.as_deref(),
            body.roles,
            permissions,
        )
    })
    .await?;
    Ok(Json(user_view(&state.services, &user)))
}

/// Drop a pending request (Gatehouse extension).
#[utoipa::path(post, path = "/api/client-registry/reject", tag = "client-registry",
    request_body = RejectBody,
    responses((status = 204, description = "Rejected")))]
async fn reject_registration(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<RejectBody>,
) -> Result<StatusCode, ApiError> {
    let actor = caller.actor();
    blocking(&state, move |s| s.registry_reject(&actor, &body.username)).await?;
    Ok(StatusCode::NO_CONTENT)
}
