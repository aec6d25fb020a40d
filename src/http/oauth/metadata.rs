//! `GET /.well-known/oauth-authorization-server` (RFC 8414): where the
//! endpoints are, what they support, and the JWKS that verifies access
//! tokens. Endpoint URLs come from `[oauth] base_url`, else from the
//! local address the request's connection was accepted on (and the
//! listener's scheme); never from the `Host` header, which the caller
//! chooses.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Scheme;
use crate::http::AppState;
use crate::identity::oauth::SCOPES;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(oauth_metadata))
}

/// RFC 8414 §2.
#[derive(Serialize, ToSchema)]
pub struct Metadata {
    /// `[http] issuer`: the `iss` of every token.
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    pub jwks_uri: String,
    pub response_types_supported: Vec<&'static str>,
    pub response_modes_supported: Vec<&'static str>,
    pub grant_types_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    pub code_challenge_methods_supported: Vec<&'static str>,
    pub scopes_supported: Vec<&'static str>,
    pub authorization_response_iss_parameter_supported: bool,
}

/// The public URL of this API, without a trailing slash.
pub fn base_url(state: &AppState, scheme: &Scheme) -> String {
    let configured = &state.services.oauth.config.base_url;
    if !configured.is_empty() {
        return configured.clone();
    }
    let name = if scheme.secure(state) {
        "https"
    } else {
        "http"
    };
    match scheme.local {
        Some(local) => format!("{name}://{local}"),
        None => format!("{name}://localhost"),
    }
}

/// The authorization server's metadata (RFC 8414).
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth",
    security(()), responses((status = 200, body = Metadata)))]
async fn oauth_metadata(State(state): State<AppState>, scheme: Scheme) -> Json<Metadata> {
    let base = base_url(&state, &scheme);
    Json(Metadata {
        issuer: state.services.tokens.issuer().into(),
        authorization_endpoint: format!("{base}/oauth/authorize"),
        token_endpoint: format!("{base}/oauth/token"),
        introspection_endpoint: format!("{base}/oauth/introspect"),
        revocation_endpoint: format!("{base}/oauth/revoke"),
        jwks_uri: format!("{base}/.well-known/jwks.json"),
        response_types_supported: vec!["code", "token"],
        response_modes_supported: vec!["query", "fragment"],
        grant_types_supported: vec![
            "authorization_code",
            "implicit",
            "client_credentials",
            "password",
            "refresh_token",
        ],
        token_endpoint_auth_methods_supported: vec![
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        introspection_endpoint_auth_methods_supported: vec![
            "client_secret_basic",
            "client_secret_post",
        ],
        revocation_endpoint_auth_methods_supported: vec![
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        code_challenge_methods_supported: vec!["S256"],
        scopes_supported: SCOPES.to_vec(),
        authorization_response_iss_parameter_supported: true,
    })
}
