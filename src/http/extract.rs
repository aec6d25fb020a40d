//! Extractors: who is calling (one middleware resolves the token, from the
//! `Authorization` header, `?apiToken=` or the admin page's cookie, and asks
//! `identity::http_access` whether the route is allowed, for every route
//! but the public ones), where from, and JSON bodies and queries whose
//! rejections are the API's error bodies.

use axum::extract::{
    ConnectInfo, FromRequest, FromRequestParts, MatchedPath, RawPathParams, Request, State,
};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::AppState;
use super::admin::cookie;
use super::error::ApiError;
use super::server::Https;
use crate::identity::User;
use crate::identity::audit::Actor;
use crate::identity::http_access::{self, Request as AccessRequest};
use crate::identity::services::IdentityServices;
use crate::identity::tokens::{SCOPE_API, TokenError, TokenInfo};

/// The client's address (`0.0.0.0` when unknown, e.g. in-process tests:
/// never mistaken for loopback).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Peer, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip()),
        ))
    }
}

/// The authenticated caller of a protected route: the user as the
/// directory has them now, and the token they came with.
#[derive(Clone)]
pub struct Caller {
    pub user: User,
    pub token: Arc<TokenInfo>,
    pub address: IpAddr,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor {
            username: self.user.username.clone(),
            user_id: Some(self.user.id.clone()),
            address: Some(self.address),
        }
    }

    /// `me` as a user id means the caller.
    pub fn resolve<'a>(&'a self, id: &'a str) -> &'a str {
        if id == "me" { &self.user.id } else { id }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("authentication required"))
    }
}

/// Where the caller's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenSource {
    Header,
    Query,
    /// The admin page's session cookie: writes need the CSRF checks.
    Cookie,
}

/// `Authorization: Bearer <token>`, else `?apiToken=<token>`, else the
/// admin page's session cookie.
fn token_of(parts: &Parts, secure: bool) -> Option<(String, TokenSource)> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| (token.trim().to_owned(), TokenSource::Header));
    }
    let query = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            (name == "apiToken").then(|| (value.to_owned(), TokenSource::Query))
        });
    query
        .or_else(|| cookie::session_token(&parts.headers, secure).map(|t| (t, TokenSource::Cookie)))
}

/// The holder of `token`: verified, an API token (an OAuth access token
/// needs the `api` scope), its user present, enabled and of the same
/// name. `Err(e, true)`: a bad token, counted against the address.
pub(super) fn holder(
    services: &IdentityServices,
    token: &str,
) -> Result<(Arc<TokenInfo>, User), (ApiError, bool)> {
    let info = services
        .tokens
        .verify(token)
        .map_err(|e| (e.into(), true))?;
    if info.client_id.is_some() && !info.allows(SCOPE_API) {
        return Err((
            ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "this access token lacks the `api` scope",
            ),
            false,
        ));
    }
    let user = services
        .directory
        .user_by_id(&info.user_id)
        .filter(|u| u.enabled && *u.username == *info.username)
        .ok_or_else(|| (TokenError::Revoked.into(), true))?;
    Ok((info, user))
}

/// The one gate of every protected route: resolves the caller from the
/// token (401 when missing, bad, expired, revoked, or its user is gone
/// or disabled), then asks `http_access` (403 when not allowed).
/// Failed token checks are rate-limited per address.
#[tracing::instrument(name = "authorize", skip_all)]
pub async fn authorize(
    State(state): State<AppState>,
    peer: Peer,
    matched: MatchedPath,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let params = params.map_err(|e| ApiError::bad_request("bad_path", e.body_text()))?;
    let services = &state.services;
    let (mut parts, body) = request.into_parts();
    let limit_key = format!("token-addr:{}", peer.0);
    services
        .per_address
        .check(&limit_key)
        .map_err(ApiError::rate_limited)?;
    // Served over HTTPS, here or behind a TLS proxy: the cookie is the
    // `__Host-` one and an `Origin` says https.
    let secure = super::oauth::served_securely(parts.extensions.get::<Https>().is_some(), services);
    let Some((token, source)) = token_of(&parts, secure) else {
        return Err(ApiError::unauthorized(
            "a token is required: Authorization: Bearer <token> or ?apiToken=<token>",
        ));
    };
    if source == TokenSource::Cookie {
        cookie::guard(&parts.method, &parts.headers, secure)?;
    }
    let (info, user) = holder(services, &token).map_err(|(e, counts)| {
        if counts {
            let _ = services.per_address.take(&limit_key);
        }
        e
    })?;
    let Some(path) = percent_decode(parts.uri.path()) else {
        return Err(ApiError::bad_request(
            "bad_path",
            "the path is not valid UTF-8",
        ));
    };
    let route = matched.as_str();
    let user_id = route
        .starts_with("/api/users/{id}")
        .then(|| params.iter().find(|(k, _)| *k == "id").map(|(_, v)| v))
        .flatten();
    // `me` names the caller: permissions are matched against the path with
    // the caller's id in it, so a deny on one's own id cannot be dodged.
    let path = match (user_id, path.strip_prefix("/api/users/me")) {
        (Some("me"), Some(rest)) if rest.is_empty() || rest.starts_with('/') => {
            format!("/api/users/{}{rest}", user.id)
        }
        _ => path,
    };
    http_access::authorize(
        &services.directory,
        &user,
        info.enrol_only(),
        AccessRequest {
            method: parts.method.as_str(),
            route,
            path: &path,
            user_id,
        },
    )?;
    parts.extensions.insert(Caller {
        user,
        token: info,
        address: peer.0,
    });
    request = Request::from_parts(parts, body);
    Ok(next.run(request).await)
}

/// `%XX` escapes decoded; `None` when the result is not UTF-8.
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|b| hex(*b)),
            bytes.get(i + 2).and_then(|b| hex(*b)),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A JSON body: `application/json` (415 otherwise), within the body limit
/// (413), syntactically valid (400), and of the expected shape, unknown
/// fields included (422 naming the field).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<ApiJson<T>, ApiError> {
        if !cookie::is_json(request.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the body is larger than the limit",
                )
            } else {
                ApiError::bad_request("bad_body", format!("cannot read the body: {e}"))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Syntax errors are 400; shape errors (unknown or missing field, wrong
/// type) are 422 and name the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::invalid(if path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            }),
            _ => ApiError::bad_request("bad_json", format!("the body is not valid JSON: {inner}")),
        }
    })?;
    de.end().map_err(|e| {
        ApiError::bad_request("bad_json", format!("the body is not valid JSON: {e}"))
    })?;
    Ok(value)
}

/// Query parameters; unknown ones (such as `apiToken`) are ignored.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ApiQuery<T>, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::bad_request("bad_query", format!("invalid query: {e}")))
    }
}

/// Path parameters, with the API's error body on a bad one.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ApiPath<T>, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::bad_request("bad_path", e.body_text()))
    }
}
