//! Unauthenticated: health, and the token signing key as a JWK Set so
//! that other services can verify Gatehouse tokens without a secret.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::dto::Health;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(jwks))
}

/// Liveness (no authentication).
#[utoipa::path(get, path = "/api/health", tag = "meta", security(()),
    responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// The public key(s) tokens are signed with (RFC 7517 JWK Set).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "meta", security(()),
    responses((status = 200, body = Object, description = "JWK Set: {\"keys\": [{kty, crv, x, y, kid, use, alg}]}")))]
async fn jwks(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.services.tokens.jwks())
}
