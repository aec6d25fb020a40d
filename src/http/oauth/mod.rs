//! The OAuth 2.0 protocol endpoints: `/oauth/authorize` (an HTML login
//! form), `/oauth/token`, `/oauth/introspect`, `/oauth/revoke` and the RFC
//! 8414 metadata. Public routes: clients authenticate themselves (HTTP
//! Basic, URL-decoded per RFC 6749 §2.3.1, or form fields), users through
//! the form. The rules live in `identity::oauth`; here are the wire
//! formats: form bodies, RFC 6749 error bodies, HTML.
//!
//! Client registration (admin, HTTP permissions) is `super::oauth_clients`.

mod authorize;
mod html;
mod metadata;
mod token;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde::Serialize;
use std::collections::HashMap;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use super::AppState;
use crate::identity::oauth::{ClientCredentials, ErrorCode, OAuthError};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(authorize::routes())
        .merge(token::routes())
        .merge(metadata::routes())
}

/// RFC 6749 §5.2's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`,
    /// `temporarily_unavailable`, `server_error`.
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// An OAuth error as the token, introspection and revocation endpoints
/// answer it: 400, except `invalid_client` (401 with `WWW-Authenticate:
/// Basic`), rate limits (429 with `Retry-After`) and failures of the
/// server (503; never a 500).
#[derive(Debug)]
pub struct OAuthResponseError(pub OAuthError);

impl From<OAuthError> for OAuthResponseError {
    fn from(e: OAuthError) -> OAuthResponseError {
        OAuthResponseError(e)
    }
}

impl IntoResponse for OAuthResponseError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = match e.code {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::TemporarilyUnavailable if e.retry_after.is_some() => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ErrorCode::TemporarilyUnavailable | ErrorCode::ServerError => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidGrant
            | ErrorCode::UnauthorizedClient
            | ErrorCode::UnsupportedGrantType
            | ErrorCode::InvalidScope
            | ErrorCode::AccessDenied
            | ErrorCode::UnsupportedResponseType => StatusCode::BAD_REQUEST,
        };
        let body = OAuthErrorBody {
            error: e.code.as_str().into(),
            error_description: Some(e.description),
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6749 §5.2 wants it when the client used Basic; RFC 7235
            // for every 401, so form-authenticated clients get it too.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"gatehouse\""),
            );
        }
        if let Some(after) = e.retry_after
            && let Ok(value) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
        {
            headers.insert(header::RETRY_AFTER, value);
        }
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        response
    }
}

/// Whether the request came over TLS, and the local address its
/// connection was accepted on (absent when the app is driven in-process).
pub struct Scheme {
    pub https: bool,
    pub local: Option<std::net::SocketAddr>,
}

impl Scheme {
    /// Served over HTTPS, here or by a TLS-terminating proxy in front
    /// (`[oauth] behind_tls_proxy`).
    pub fn secure(&self, state: &AppState) -> bool {
        served_securely(self.https, &state.services)
    }
}

/// Whether a request reached us over HTTPS: on our own TLS listener
/// (`https`), or through a TLS-terminating proxy (`[oauth]
/// behind_tls_proxy`). Cookies and Origin checks follow this.
pub fn served_securely(
    https: bool,
    services: &crate::identity::services::IdentityServices,
) -> bool {
    https || services.oauth.config.behind_tls_proxy
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Scheme {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Scheme, Self::Rejection> {
        Ok(Scheme {
            https: parts.extensions.get::<super::server::Https>().is_some(),
            local: parts
                .extensions
                .get::<super::server::LocalAddr>()
                .map(|l| l.0),
        })
    }
}

/// Form parameters (`application/x-www-form-urlencoded`) or a query:
/// empty values count as absent (RFC 6749 §3.1), a repeated parameter is
/// an error (RFC 6749 §3.1, §3.2).
#[derive(Default)]
pub struct Params(HashMap<String, String>);

impl std::fmt::Debug for Params {
    /// Names only: values hold passwords, secrets and codes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Params {
    pub fn parse(text: &[u8]) -> Result<Params, OAuthError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(text)
            .map_err(|_| OAuthError::request("the parameters are not valid form encoding"))?;
        let mut map = HashMap::new();
        for (name, value) in pairs {
            if value.is_empty() {
                continue;
            }
            if map.contains_key(&name) {
                let shown: String = name.chars().take(64).collect();
                return Err(OAuthError::request(format!(
                    "parameter `{shown}` is given more than once"
                )));
            }
            map.insert(name, value);
        }
        Ok(Params(map))
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// A form body: the content type must say so (else `invalid_request`).
pub struct Form(pub Params);

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = OAuthResponseError;

    async fn from_request(request: Request, state: &S) -> Result<Form, OAuthResponseError> {
        let form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form {
            return Err(
                OAuthError::request("the body must be application/x-www-form-urlencoded").into(),
            );
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|_| OAuthError::request("the body cannot be read or is too large"))?;
        Ok(Form(Params::parse(&bytes)?))
    }
}

/// `%XX` and `+` decoded (application/x-www-form-urlencoded); `None` when
/// the result is not UTF-8.
fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The client's credentials: HTTP Basic (id and secret each URL-decoded,
/// RFC 6749 §2.3.1), else the `client_id` (and `client_secret`) form
/// fields. Both methods at once is `invalid_request` (§2.3).
pub fn client_credentials(
    headers: &HeaderMap,
    params: &Params,
) -> Result<Option<ClientCredentials>, OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, value)| value.trim().to_owned());
    let Some(encoded) = basic else {
        return Ok(params.get("client_id").map(|client_id| ClientCredentials {
            client_id,
            secret: params.get("client_secret"),
            basic: false,
        }));
    };
    let bad = || OAuthError {
        basic: true,
        ..OAuthError::new(ErrorCode::InvalidClient, "malformed Basic credentials")
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let client_id = form_decode(id).ok_or_else(bad)?;
    let secret = form_decode(secret).ok_or_else(bad)?;
    if params.has("client_secret") {
        return Err(OAuthError::request(
            "use one client authentication method (Basic or form fields), not both",
        ));
    }
    if params.get("client_id").is_some_and(|id| id != client_id) {
        return Err(OAuthError::request(
            "client_id differs from the Basic credentials",
        ));
    }
    Ok(Some(ClientCredentials {
        client_id,
        secret: (!secret.is_empty()).then_some(secret),
        basic: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_url_decoded() {
        let mut headers = HeaderMap::new();
        let raw = base64::engine::general_purpose::STANDARD.encode("my%2Dclient:a%2Bb+c%3A");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {raw}")).unwrap(),
        );
        let c = client_credentials(&headers, &Params::default())
            .unwrap()
            .unwrap();
        assert_eq!(c.client_id, "my-client");
        assert_eq!(c.secret.as_deref(), Some("a+b c:"));
        assert!(c.basic);
        let both = Params::parse(b"client_secret=x").unwrap();
        assert_eq!(
            client_credentials(&headers, &both).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic %%%"));
        let e = client_credentials(&headers, &Params::default()).unwrap_err();
        assert_eq!((e.code, e.basic), (ErrorCode::InvalidClient, true));
    }

    #[test]
    fn params_refuse_repeats_and_drop_empty_values() {
        let p = Params::parse(b"a=1&b=&c=%20").unwrap();
        assert_eq!(p.get("a").as_deref(), Some("1"));
        assert!(!p.has("b"));
        assert_eq!(p.get("c").as_deref(), Some(" "));
        assert!(Params::parse(b"a=1&a=2").is_err());
    }

    #[test]
    fn errors_have_their_statuses() {
        let cases = [
            (OAuthError::request("x"), 400),
            (OAuthError::new(ErrorCode::InvalidClient, "x"), 401),
            (OAuthError::grant("x"), 400),
            (OAuthError::new(ErrorCode::ServerError, "x"), 503),
        ];
        for (e, status) in cases {
            let r = OAuthResponseError(e).into_response();
            assert_eq!(r.status().as_u16(), status);
        }
        let r = OAuthResponseError(OAuthError::new(ErrorCode::InvalidClient, "x")).into_response();
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"gatehouse\""
        );
    }
}
