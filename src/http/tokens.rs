//! A user's tokens: listed, revoked one by one (by fingerprint) or all at
//! once. A revoked token is refused at once, and MQTT sessions that
//! logged in with it are closed (v5 DISCONNECT 0x98).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::TokenDto;
use super::error::ApiError;
use super::extract::{ApiPath, Caller};
use super::users::find_user;
use super::{AppState, blocking};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, revoke_all))
        .routes(routes!(revoke_one))
}

/// A user's live tokens (never the tokens themselves).
#[utoipa::path(get, path = "/api/users/{id}/tokens", tag = "tokens",
    params(("id" = String, Path, description = "User id, or `me`")),
    responses((status = 200, body = Vec<TokenDto>)))]
async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<TokenDto>>, ApiError> {
    let user = find_user(&state.services, caller.resolve(&id))?;
    Ok(Json(
        state
            .services
            .tokens
            .tokens_of(&user.id)
            .into_iter()
            .map(|t| TokenDto {
                fingerprint: t.fingerprint,
                label: t.label,
                created_at: t.created_at,
                expires_at: t.expires_at,
            })
            .collect(),
    ))
}

/// Revoke every token of a user.
#[utoipa::path(delete, path = "/api/users/{id}/tokens", tag = "tokens",
    params(("id" = String, Path, description = "User id, or `me`")),
    responses((status = 204, description = "Revoked")))]
async fn revoke_all(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = caller.resolve(&id).to_owned();
    let actor = caller.actor();
    blocking(&state, move |s| s.revoke_tokens(&actor, &id, None)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke one token by its fingerprint.
#[utoipa::path(delete, path = "/api/users/{id}/tokens/{fingerprint}", tag = "tokens",
    params(("id" = String, Path, description = "User id, or `me`"),
        ("fingerprint" = String, Path, description = "SHA-256 of the token, hex")),
    responses((status = 204, description = "Revoked")))]
async fn revoke_one(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, fingerprint)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = caller.resolve(&id).to_owned();
    let actor = caller.actor();
    blocking(&state, move |s| {
        s.revoke_tokens(&actor, &id, Some(&fingerprint))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
