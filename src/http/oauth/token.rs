//! `POST /oauth/token` (RFC 6749 §3.2), `/oauth/introspect` (RFC 7662) and
//! `/oauth/revoke` (RFC 7009): form bodies in, JSON out, errors as RFC
//! 6749 bodies. Each hands the client's credentials and the parameters to
//! the OAuth service; the token endpoint dispatches there by grant type.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Form, OAuthErrorBody, OAuthResponseError, client_credentials};
use crate::http::AppState;
use crate::http::extract::Peer;
use crate::identity::oauth::grant::TokenRequest;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(oauth_token))
        .routes(routes!(oauth_introspect))
        .routes(routes!(oauth_revoke))
}

/// The token request's fields (documentation; the body is read as a form).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct TokenForm {
    /// `authorization_code`, `client_credentials`, `password` or
    /// `refresh_token`.
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    /// PKCE (S256).
    code_verifier: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    /// `api`, `mqtt` or both (the default).
    scope: Option<String>,
    /// With `client_secret`, instead of HTTP Basic; alone for public clients.
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// RFC 6749 §5.1.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// An RFC 9068 JWT: a Bearer token for the admin API and an MQTT
    /// password (user name: the token's user, or the client id).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds; absent when the token never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// Get tokens: `authorization_code`, `client_credentials`, `password`,
/// `refresh_token`.
#[utoipa::path(post, path = "/oauth/token", tag = "oauth", security(()),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = TokenResponse),
        (status = 400, body = OAuthErrorBody, description = "RFC 6749 §5.2 error"),
        (status = 401, body = OAuthErrorBody, description = "invalid_client"),
        (status = 429, body = OAuthErrorBody, description = "Too many attempts (Retry-After)"),
        (status = 503, body = OAuthErrorBody, description = "The store failed")))]
#[tracing::instrument(name = "oauth_token", skip_all)]
async fn oauth_token(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Form(params): Form,
) -> Result<Json<TokenResponse>, OAuthResponseError> {
    let credentials = client_credentials(&headers, &params)?;
    let request = TokenRequest {
        grant_type: params.get("grant_type"),
        code: params.get("code"),
        redirect_uri: params.get("redirect_uri"),
        code_verifier: params.get("code_verifier"),
        username: params.get("username"),
        password: params.get("password"),
        refresh_token: params.get("refresh_token"),
        scope: params.get("scope"),
    };
    let issued = state.services.token(credentials, request, peer.0).await?;
    Ok(Json(TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        refresh_token: issued.refresh_token,
        scope: issued.scope,
    }))
}

/// The introspection and revocation requests' fields.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct TokenRefForm {
    token: String,
    /// `access_token` or `refresh_token`; a hint only.
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// RFC 7662 §2.2; only `active` when it is false.
#[derive(Serialize, ToSchema)]
pub struct IntrospectionResponse {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// Is this token active, and whose is it? For confidential clients.
#[utoipa::path(post, path = "/oauth/introspect", tag = "oauth", security(()),
    request_body(content = TokenRefForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = IntrospectionResponse),
        (status = 400, body = OAuthErrorBody, description = "invalid_request"),
        (status = 401, body = OAuthErrorBody, description = "invalid_client"),
        (status = 429, body = OAuthErrorBody, description = "Too many attempts (Retry-After)")))]
#[tracing::instrument(name = "oauth_introspect", skip_all)]
async fn oauth_introspect(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Form(params): Form,
) -> Result<Json<IntrospectionResponse>, OAuthResponseError> {
    let credentials = client_credentials(&headers, &params)?;
    let services = &state.services;
    let client = services.authenticate_client(credentials.as_ref(), peer.0)?;
    let token = params
        .get("token")
        .ok_or_else(|| crate::identity::oauth::OAuthError::request("token is missing"))?;
    let i = services.introspect(&client, &token)?;
    Ok(Json(IntrospectionResponse {
        active: i.active,
        scope: i.scope,
        client_id: i.client_id,
        username: i.username,
        token_type: i.token_type,
        exp: i.exp,
        iat: i.iat,
        sub: i.sub,
        aud: i.aud,
        iss: i.iss,
        jti: i.jti,
    }))
}

/// Revoke a token issued to the calling client: a refresh token ends its
/// whole grant. Unknown tokens, or other clients', answer 200 too.
#[utoipa::path(post, path = "/oauth/revoke", tag = "oauth", security(()),
    request_body(content = TokenRefForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Revoked, or nothing to revoke"),
        (status = 400, body = OAuthErrorBody, description = "invalid_request"),
        (status = 401, body = OAuthErrorBody, description = "invalid_client"),
        (status = 429, body = OAuthErrorBody, description = "Too many attempts (Retry-After)"),
        (status = 503, body = OAuthErrorBody, description = "The store failed")))]
#[tracing::instrument(name = "oauth_revoke", skip_all)]
async fn oauth_revoke(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Form(params): Form,
) -> Result<(), OAuthResponseError> {
    let credentials = client_credentials(&headers, &params)?;
    let client = state
        .services
        .authenticate_client(credentials.as_ref(), peer.0)?;
    let token = params
        .get("token")
        .ok_or_else(|| crate::identity::oauth::OAuthError::request("token is missing"))?;
    let services = state.services.clone();
    tokio::task::spawn_blocking(move || services.revoke_oauth_token(&client, &token))
        .await
        .map_err(|_| {
            crate::identity::oauth::OAuthError::new(
                crate::identity::oauth::ErrorCode::ServerError,
                "the request was interrupted",
            )
        })??;
    Ok(())
}
