//! OAuth client registration (`/api/oauth/clients`), after Software AG
//! Integration Server's form: administrators register, list, change and
//! remove clients; a confidential client's secret is in the answer to its
//! creation (or to its change from public) and never again. Protected by
//! the HTTP permission of the path, like every admin route. The rules live
//! in `identity::oauth::clients`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Object, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Caller};
use crate::identity::oauth::clients::{ClientError, ClientInput, MAX_SECONDS};
use crate::identity::oauth::{ClientType, Expiration, GrantKind, OAuthClient, RefreshCount};
use crate::identity::services::IdentityServices;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_oauth_clients, create_oauth_client))
        .routes(routes!(
            get_oauth_client,
            update_oauth_client,
            delete_oauth_client
        ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientTypeDto {
    Confidential,
    Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantDto {
    AuthorizationCode,
    Implicit,
    ClientCredentials,
    Password,
}

fn expiration_schema() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["global", "never"])),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(MAX_SECONDS)),
        )
        .description(Some(
            "Access-token lifetime: `global` (`[oauth] token_expiration_secs`, 3600), `never`, or seconds",
        ))
        .into()
}

fn refresh_schema() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["unlimited", ""])),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(MAX_SECONDS)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "Refreshes allowed: `unlimited`, or a limit (0, empty or null: no refresh token)",
        ))
        .into()
}

fn secret_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(36))
        .max_length(Some(36))
        .description(Some(
            "The client secret: shown once, on creation or a change to confidential",
        ))
        .build()
}

/// A registration (`POST`: `name`, `version`, `type` required) or a change
/// (`PUT`: absent fields stay). The read-only fields of a client as read
/// back are accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientBody {
    /// Without `& ( ) \ ; , / " : ' < >`; unique with `version`.
    #[schema(min_length = 1, max_length = 128)]
    pub name: Option<String>,
    #[schema(min_length = 1, max_length = 128)]
    pub version: Option<String>,
    #[serde(rename = "type")]
    pub client_type: Option<ClientTypeDto>,
    /// `""` removes it.
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// Absolute URIs without fragment, matched exactly; needed for
    /// `authorization_code` and `implicit`.
    pub redirect_uris: Option<Vec<String>>,
    /// Default `["authorization_code"]`; public clients cannot have
    /// `client_credentials` or `password`.
    pub allowed_grants: Option<Vec<GrantDto>>,
    #[schema(schema_with = expiration_schema)]
    pub token_expiration: Option<Expiration>,
    #[schema(schema_with = refresh_schema)]
    pub refresh_count: Option<RefreshCount>,
    /// Ignored.
    #[allow(dead_code)]
    pub client_id: Option<String>,
    /// Ignored.
    #[allow(dead_code)]
    pub user_id: Option<String>,
    /// Ignored.
    #[allow(dead_code)]
    pub created_at: Option<u64>,
    /// Ignored.
    #[allow(dead_code)]
    pub updated_at: Option<u64>,
}

impl ClientBody {
    fn input(self) -> ClientInput {
        ClientInput {
            name: self.name,
            version: self.version,
            client_type: self.client_type.map(|t| match t {
                ClientTypeDto::Confidential => ClientType::Confidential,
                ClientTypeDto::Public => ClientType::Public,
            }),
            description: self.description.map(Some),
            redirect_uris: self.redirect_uris,
            allowed_grants: self.allowed_grants.map(|grants| {
                grants
                    .into_iter()
                    .map(|g| match g {
                        GrantDto::AuthorizationCode => GrantKind::AuthorizationCode,
                        GrantDto::Implicit => GrantKind::Implicit,
                        GrantDto::ClientCredentials => GrantKind::ClientCredentials,
                        GrantDto::Password => GrantKind::Password,
                    })
                    .collect()
            }),
            token_expiration: self.token_expiration,
            refresh_count: self.refresh_count,
        }
    }
}

/// A registered client (never its secret, except `clientSecret` once).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientDto {
    /// Generated (a UUID); also the user name of a confidential client's
    /// account.
    pub client_id: String,
    pub name: String,
    pub version: String,
    #[serde(rename = "type")]
    pub client_type: ClientTypeDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub redirect_uris: Vec<String>,
    pub allowed_grants: Vec<GrantDto>,
    #[schema(schema_with = expiration_schema)]
    pub token_expiration: Expiration,
    #[schema(schema_with = refresh_schema)]
    pub refresh_count: RefreshCount,
    /// The confidential client's user account: give it roles and
    /// permissions for what `client_credentials` tokens may do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Unix milliseconds.
    pub created_at: u64,
    pub updated_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = secret_schema)]
    pub client_secret: Option<String>,
}

fn dto(client: OAuthClient, secret: Option<String>) -> ClientDto {
    ClientDto {
        client_id: client.client_id,
        name: client.name,
        version: client.version,
        client_type: match client.client_type {
            ClientType::Confidential => ClientTypeDto::Confidential,
            ClientType::Public => ClientTypeDto::Public,
        },
        description: client.description,
        redirect_uris: client.redirect_uris,
        allowed_grants: client
            .allowed_grants
            .into_iter()
            .map(|g| match g {
                GrantKind::AuthorizationCode => GrantDto::AuthorizationCode,
                GrantKind::Implicit => GrantDto::Implicit,
                GrantKind::ClientCredentials => GrantDto::ClientCredentials,
                GrantKind::Password => GrantDto::Password,
            })
            .collect(),
        token_expiration: client.token_expiration,
        refresh_count: client.refresh_count,
        user_id: client.user_id,
        created_at: client.created_at,
        updated_at: client.updated_at,
        client_secret: secret,
    }
}

/// Runs a registry change on the blocking pool (it hashes the secret and
/// writes the store).
async fn blocking_with<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&IdentityServices) -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ApiError> {
    let services = state.services.clone();
    tokio::task::spawn_blocking(move || f(&services))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the operation was interrupted",
            )
        })?
        .map_err(ApiError::from)
}

/// Every registered client.
#[utoipa::path(get, path = "/api/oauth/clients", tag = "oauth",
    responses((status = 200, body = Vec<ClientDto>)))]
async fn list_oauth_clients(State(state): State<AppState>) -> Json<Vec<ClientDto>> {
    let clients = state.services.oauth_clients();
    Json(clients.into_iter().map(|c| dto(c, None)).collect())
}

/// Register a client. The answer carries `clientSecret` (confidential
/// clients) this once.
#[utoipa::path(post, path = "/api/oauth/clients", tag = "oauth", request_body = ClientBody,
    responses((status = 201, description = "Registered", body = ClientDto)))]
#[tracing::instrument(name = "oauth_client_create", skip_all)]
async fn create_oauth_client(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ClientBody>,
) -> Result<(StatusCode, Json<ClientDto>), ApiError> {
    let actor = caller.actor();
    let (client, secret) =
        blocking_with(&state, move |s| s.create_oauth_client(&actor, body.input())).await?;
    Ok((StatusCode::CREATED, Json(dto(client, secret))))
}

/// One client.
#[utoipa::path(get, path = "/api/oauth/clients/{clientId}", tag = "oauth",
    params(("clientId" = String, Path, description = "Client id")),
    responses((status = 200, body = ClientDto)))]
async fn get_oauth_client(
    State(state): State<AppState>,
    ApiPath(client_id): ApiPath<String>,
) -> Result<Json<ClientDto>, ApiError> {
    Ok(Json(dto(state.services.oauth_client(&client_id)?, None)))
}

/// Change a client. A change from public to confidential answers the new
/// `clientSecret`; the other way removes the client's account.
#[utoipa::path(put, path = "/api/oauth/clients/{clientId}", tag = "oauth", request_body = ClientBody,
    params(("clientId" = String, Path, description = "Client id")),
    responses((status = 200, body = ClientDto)))]
#[tracing::instrument(name = "oauth_client_update", skip_all)]
async fn update_oauth_client(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(client_id): ApiPath<String>,
    ApiJson(body): ApiJson<ClientBody>,
) -> Result<Json<ClientDto>, ApiError> {
    let actor = caller.actor();
    let (client, secret) = blocking_with(&state, move |s| {
        s.update_oauth_client(&actor, &client_id, body.input())
    })
    .await?;
    Ok(Json(dto(client, secret)))
}

/// Remove a client: its account, refresh tokens and access tokens go
/// with it (MQTT sessions that logged in with them close, 0x98).
#[utoipa::path(delete, path = "/api/oauth/clients/{clientId}", tag = "oauth",
    params(("clientId" = String, Path, description = "Client id")),
    responses((status = 204, description = "Removed")))]
async fn delete_oauth_client(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(client_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let actor = caller.actor();
    blocking_with(&state, move |s| s.delete_oauth_client(&actor, &client_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
