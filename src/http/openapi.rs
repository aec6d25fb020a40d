//! The OpenAPI 3.1 description, generated from the handlers' `#[utoipa::path]`
//! declarations (the same ones that register the routes), plus what is
//! common to every operation: the two ways to send a token, the error
//! answers, and which routes are Gatehouse extensions (Connectware's
//! public description has no such route or field).

use axum::http::header;
use axum::response::IntoResponse;
use std::sync::OnceLock;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, ResponseBuilder,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ErrorBody;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// Routes and operations Connectware does not document (ours to name).
pub const EXTENSIONS: &[(&str, &str)] = &[
    ("put", "/api/users/{id}/password"),
    ("get", "/api/users/{id}/permissions"),
    ("post", "/api/users/{id}/permissions"),
    ("delete", "/api/users/{id}/permissions/{permissionId}"),
    ("post", "/api/users/{id}/roles"),
    ("delete", "/api/users/{id}/roles/{roleId}"),
    ("get", "/api/users/me"),
    ("delete", "/api/users/{id}/mfa"),
    ("post", "/api/mfa/enroll"),
    ("post", "/api/mfa/confirm"),
    ("post", "/api/mfa/disable"),
    ("post", "/api/mfa/backup-codes"),
    ("get", "/api/permissions"),
    ("get", "/api/audit"),
    ("get", "/api/clients"),
    ("delete", "/api/clients/{clientId}"),
    ("get", "/api/sessions"),
    ("delete", "/api/sessions/{clientId}"),
    ("get", "/api/client-registry"),
    ("post", "/api/client-registry/unlock"),
    ("post", "/api/client-registry/lock"),
    ("post", "/api/client-registry/reject"),
    ("get", "/api/backup"),
    ("get", "/metrics"),
    ("get", "/api/health"),
    ("get", "/api/openapi.json"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/api/oauth/clients"),
    ("post", "/api/oauth/clients"),
    ("get", "/api/oauth/clients/{clientId}"),
    ("put", "/api/oauth/clients/{clientId}"),
    ("delete", "/api/oauth/clients/{clientId}"),
    ("get", "/oauth/authorize"),
    ("post", "/oauth/authorize"),
    ("post", "/oauth/token"),
    ("post", "/oauth/introspect"),
    ("post", "/oauth/revoke"),
    ("get", "/.well-known/oauth-authorization-server"),
    ("get", "/api/users/{id}/access"),
    ("get", "/admin/assets/{file}"),
    ("get", "/admin/session"),
    ("post", "/admin/session"),
    ("delete", "/admin/session"),
];

/// Statuses any operation may answer with `ErrorBody`.
const ERRORS: &[(&str, &str)] = &[
    ("400", "Malformed request (bad JSON, query or path)"),
    (
        "401",
        "No token, or a bad, expired or revoked one; wrong credentials; MFA code required",
    ),
    ("403", "The token's user lacks the HTTP permission"),
    ("404", "No such resource"),
    ("408", "The request took too long"),
    (
        "409",
        "Conflict (already exists, permission already declared)",
    ),
    ("413", "Body larger than the limit"),
    ("415", "Body is not JSON"),
    ("422", "Invalid field (named in the message)"),
    ("429", "Rate limited (see Retry-After)"),
    ("503", "The store failed; nothing was changed"),
];

pub fn base() -> OpenApi {
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Gatehouse admin API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Users, roles, permissions, tokens and MFA of a running Gatehouse broker, \
                     in the shape of Connectware's auth server. Operations marked \
                     `x-gatehouse-extension` are Gatehouse's own.",
                ))
                .build(),
        )
        .components(Some(
            ComponentsBuilder::new()
                .schema_from::<ErrorBody>()
                .security_scheme(
                    "bearer",
                    SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
                )
                .security_scheme(
                    "apiToken",
                    SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("apiToken"))),
                )
                .build(),
        ))
        .security(Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("apiToken", Vec::<String>::new()),
        ]))
        .build()
}

fn operations(item: &mut utoipa::openapi::path::PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("patch", item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// Adds the error answers to every operation and marks the extensions.
pub fn finish(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in operations(item) {
            for (status, description) in ERRORS {
                op.responses
                    .responses
                    .entry((*status).into())
                    .or_insert_with(|| {
                        ResponseBuilder::new()
                            .description(*description)
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                                    .build(),
                            )
                            .build()
                            .into()
                    });
            }
            if EXTENSIONS.contains(&(method, path.as_str())) {
                op.extensions
                    .get_or_insert_with(Extensions::default)
                    .insert(
                        "x-gatehouse-extension".into(),
                        serde_json::Value::Bool(true),
                    );
            }
        }
    }
}

/// `(method, path)` of every documented operation, sorted.
pub fn operations_of(doc: &OpenApi) -> Vec<(String, String)> {
    let mut doc = doc.clone();
    let mut out: Vec<(String, String)> = doc
        .paths
        .paths
        .iter_mut()
        .flat_map(|(path, item)| {
            operations(item)
                .into_iter()
                .map(|(m, _)| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out
}

/// This document (OpenAPI 3.1, no authentication needed).
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", security(()),
    responses((status = 200, body = Object, description = "OpenAPI 3.1 document")))]
async fn openapi_json() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| super::document().to_json().unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], body.as_str())
}
