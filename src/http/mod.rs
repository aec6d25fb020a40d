//! The admin HTTP API, in the shape of Connectware's auth server: login
//! and tokens, users, roles, permissions, MFA, audit log. [`app`] builds
//! it from the broker's services, so tests drive it without a socket;
//! [`server`] puts it on the `http` and `https` listeners.
//!
//! One module per resource, each returning its routes with their OpenAPI
//! description (utoipa-axum `routes!`: a route and its documentation are
//! one declaration). Every route except the public ones passes
//! [`extract::authorize`], the one place that resolves the caller and
//! checks its HTTP permission. Handlers are thin: the rules live in
//! `identity::services`. Nothing below this module imports it.

pub mod admin;
pub mod dto;
pub mod error;
pub mod extract;
pub mod server;

mod access_check;
mod audit;
mod client_registry;
mod clients;
mod health;
mod login;
mod mfa;
mod oauth;
mod oauth_clients;
pub mod openapi;
mod operations;
mod permissions;
mod roles;
mod tokens;
mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use std::sync::Arc;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;

use crate::identity::services::{AdminError, IdentityServices};
use crate::session::Registry;
use error::ApiError;
pub use users::{role_dto, user_view};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub services: Arc<IdentityServices>,
    /// The session registry (for the clients and sessions routes).
    pub registry: Arc<Registry>,
    /// Role objects as the API shows them, valid for one directory version
    /// (a page of 100 users names up to 200 roles).
    pub roles: Arc<users::RoleCache>,
}

impl AppState {
    pub fn new(services: Arc<IdentityServices>, registry: Arc<Registry>) -> AppState {
        AppState {
            services,
            registry,
            roles: Arc::default(),
        }
    }
}

/// Routes every signed-in caller passes [`extract::authorize`] for.
fn protected() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(users::routes())
        .merge(tokens::routes())
        .merge(roles::routes())
        .merge(permissions::routes())
        .merge(mfa::routes())
        .merge(audit::routes())
        .merge(clients::routes())
        .merge(operations::backup_routes())
        .merge(oauth_clients::routes())
        .merge(access_check::routes())
        .merge(client_registry::admin_routes())
}

/// Routes without authentication.
fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(login::routes())
        .merge(health::routes())
        .merge(openapi::routes())
        .merge(oauth::routes())
        .merge(admin::routes())
        .merge(client_registry::device_routes())
}

/// The OpenAPI description of every route, generated from the same
/// declarations that register them.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = openapi::base();
    doc.merge(protected().into_openapi());
    doc.merge(operations::metrics_routes().into_openapi());
    doc.merge(public().into_openapi());
    openapi::finish(&mut doc);
    doc
}

/// Every route, before state and layers (tests list it).
pub fn router(state: &AppState) -> Router<AppState> {
    let (mut protected, mut public) = (protected(), public());
    // `GET /metrics` needs a token unless `[http] metrics_public` is set.
    if state.services.config.metrics_public {
        public = public.merge(operations::metrics_routes());
    } else {
        protected = protected.merge(operations::metrics_routes());
    }
    let (protected, _) = protected
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            extract::authorize,
        ))
        .split_for_parts();
    let (public, _) = public.split_for_parts();
    protected.merge(public)
}

/// The admin API as a service: every route, the OpenAPI document at
/// `/api/openapi.json`, the body limit, the request timeout, and JSON
/// answers for unknown routes and methods.
pub fn app(services: Arc<IdentityServices>, registry: Arc<Registry>) -> Router {
    let config = services.config.clone();
    let state = AppState::new(services, registry);
    router(&state)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take this method",
            )
        })
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            operations::count_requests,
        ))
        .layer(middleware::map_response(no_store))
        .layer(middleware::from_fn(move |request, next| {
            timeout(
                Duration::from_secs(config.request_timeout_secs),
                request,
                next,
            )
        }))
        .with_state(state)
}

/// Answers carry tokens, codes and secrets: no cache keeps them, and no
/// browser guesses their type. Only the admin page's files say otherwise
/// (they set their own `Cache-Control`).
async fn no_store(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let headers = response.headers_mut();
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn timeout(
    limit: Duration,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the request took too long",
        )
        .into_response(),
    }
}

/// Runs a service call on the blocking pool (store writes fsync, password
/// hashes take a while) so the async workers stay free.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&IdentityServices) -> Result<T, AdminError> + Send + 'static,
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
