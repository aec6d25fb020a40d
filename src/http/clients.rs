//! Connected clients and stored sessions: listed a page at a time, a
//! client disconnected (v5 0x98), a session ended. Gatehouse extensions
//! (Connectware has no such routes); changes go to the audit log.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::dto::Pagination;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery, Caller};
use super::users::page_of;
use crate::identity::LoginMethod;
use crate::protocol::ProtocolVersion;
use crate::session::admin::{SessionAdmin, SessionAdminError};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_clients))
        .routes(routes!(disconnect_client))
        .routes(routes!(list_sessions))
        .routes(routes!(end_session))
}

fn admin(state: &AppState) -> SessionAdmin<'_> {
    SessionAdmin {
        registry: &state.registry,
        audit: &state.services.audit,
    }
}

impl From<SessionAdminError> for ApiError {
    fn from(e: SessionAdminError) -> ApiError {
        let message = e.to_string();
        match e {
            SessionAdminError::NotConnected(_) | SessionAdminError::NoSession(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            SessionAdminError::Busy => ApiError::new(StatusCode::CONFLICT, "busy", message),
            SessionAdminError::Audit(e) => ApiError::from(e),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientDto {
    pub client_id: String,
    /// `null` for clients of a broker without identities.
    pub username: Option<String>,
    /// Address and port of the client.
    pub address: String,
    /// `mqtt`, `ws`, `mqtts` or `wss`.
    pub listener: String,
    /// 4 (MQTT 3.1.1) or 5.
    pub protocol_version: u8,
    /// Unix milliseconds.
    pub connected_since: u64,
    /// `password`, `token`, `certificate` or `anonymous`.
    pub authentication: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientList {
    pub clients: Vec<ClientDto>,
    pub pagination: Pagination,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionDto {
    pub client_id: String,
    /// The user the session belongs to.
    pub owner: Option<String>,
    pub connected: bool,
    /// Seconds; known while the client is away.
    pub expiry_interval: Option<u32>,
    /// Unix milliseconds; `null` while connected or for sessions that
    /// never expire.
    pub expires_at: Option<u64>,
    /// Messages waiting in its queue.
    pub queued: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionDto>,
    pub pagination: Pagination,
}

/// A page, optionally of the entries whose client id or user contains
/// `search` (any case; Gatehouse extension, for the admin page).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ClientQuery {
    #[param(minimum = 1)]
    pub page_number: Option<u32>,
    #[param(minimum = 1)]
    pub rows_per_page: Option<u32>,
    /// Part of the client id or user name.
    pub search: Option<String>,
}

/// The `(offset, rows)` window of `all`, with its pagination.
fn window<T>(all: Vec<T>, query: &ClientQuery) -> Result<(Vec<T>, Pagination), ApiError> {
    let (offset, rows, page) = page_of(query.page_number, query.rows_per_page, 1000)?;
    let total = all.len();
    let items = all.into_iter().skip(offset).take(rows as usize).collect();
    Ok((items, Pagination::new(page, rows, total)))
}

/// Connected clients, by client id (Gatehouse extension).
#[utoipa::path(get, path = "/api/clients", tag = "clients", params(ClientQuery),
    responses((status = 200, body = ClientList)))]
async fn list_clients(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ClientQuery>,
) -> Result<Json<ClientList>, ApiError> {
    let all = admin(&state).clients(query.search.as_deref());
    let (clients, pagination) = window(all, &query)?;
    let clients = clients
        .into_iter()
        .map(|c| ClientDto {
            address: c.connection.peer().to_string(),
            listener: c.connection.listener().name().into(),
            protocol_version: match c.connection.version() {
                ProtocolVersion::V311 => 4,
                ProtocolVersion::V5 => 5,
            },
            connected_since: c.connection.since_millis(),
            authentication: match c.connection.method() {
                LoginMethod::Anonymous => "anonymous",
                LoginMethod::Password => "password",
                LoginMethod::Certificate => "certificate",
                LoginMethod::Token => "token",
            }
            .into(),
            client_id: c.client_id,
            username: c.username,
        })
        .collect();
    Ok(Json(ClientList {
        clients,
        pagination,
    }))
}

/// Disconnect a client (v5 DISCONNECT 0x98). Its session stays for its
/// expiry; disable the user too, or the client reconnects at once
/// (Gatehouse extension).
#[utoipa::path(delete, path = "/api/clients/{clientId}", tag = "clients",
    params(("clientId" = String, Path, description = "MQTT client id")),
    responses((status = 204, description = "Disconnected")))]
async fn disconnect_client(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(client_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    admin(&state).disconnect(&caller.actor(), &client_id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sessions, connected or stored, by client id (Gatehouse extension).
#[utoipa::path(get, path = "/api/sessions", tag = "sessions", params(ClientQuery),
    responses((status = 200, body = SessionList)))]
async fn list_sessions(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ClientQuery>,
) -> Result<Json<SessionList>, ApiError> {
    let all = admin(&state).sessions(query.search.as_deref());
    let (sessions, pagination) = window(all, &query)?;
    let sessions = sessions
        .into_iter()
        .map(|s| SessionDto {
            client_id: s.client_id,
            owner: s.owner.filter(|o| !o.is_empty()),
            connected: s.connected,
            expiry_interval: s.expiry_interval,
            expires_at: s.expires_at,
            queued: s.queued,
        })
        .collect();
    Ok(Json(SessionList {
        sessions,
        pagination,
    }))
}

/// End a session: its connection is closed (0x98), a waiting will is
/// published, its subscriptions, queue and stored record are removed
/// (Gatehouse extension).
#[utoipa::path(delete, path = "/api/sessions/{clientId}", tag = "sessions",
    params(("clientId" = String, Path, description = "MQTT client id")),
    responses((status = 204, description = "Ended")))]
async fn end_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(client_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    admin(&state)
        .end_session(&caller.actor(), &client_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
