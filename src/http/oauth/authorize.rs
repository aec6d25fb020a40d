//! `GET /oauth/authorize` shows the login form for a valid authorization
//! request; `POST /oauth/authorize` (the form) signs the user in through
//! the login rules (rate limits, lockout, MFA) and sends the browser back
//! to the client with a code or, implicit, a token.
//!
//! CSRF: the GET sets a random nonce as a `SameSite=Strict`, `HttpOnly`
//! cookie (over HTTPS, or behind a TLS proxy, `Secure` with the `__Host-`
//! prefix, so no subdomain or plain-HTTP page can set it); the form carries `issued-at.MAC(nonce, issued-at, the request)`
//! (double submit, signed with the OAuth key and bound to this form's
//! request). A POST without both, or older than ten minutes, is refused.

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::html::{self, error_page};
use super::{Params, Scheme};
use crate::http::AppState;
use crate::http::extract::Peer;
use crate::identity::login::{LoginError, LoginRequest};
use crate::identity::mfa::MfaError;
use crate::identity::oauth::authorize::{Authorization, AuthorizeError, AuthorizeRequest};
use crate::identity::oauth::{hex, same};
use crate::router::now_millis;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(oauth_authorize, oauth_authorize_form))
}

const COOKIE: &str = "gatehouse_oauth_csrf";
/// The cookie's name when served over HTTPS (`Secure`, `Path=/`, no
/// `Domain`: RFC 6265bis §4.1.3.2).
const HOST_COOKIE: &str = "__Host-gatehouse_oauth_csrf";
/// How long a form may be submitted after it was shown.
const FORM_SECS: u64 = 600;

/// The authorization request (RFC 6749 §4.1.1, §4.2.1; RFC 7636).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AuthorizeQuery {
    /// `code` or `token` (implicit).
    response_type: String,
    client_id: String,
    /// Must equal a registered redirect URI exactly; optional when the
    /// client has exactly one.
    redirect_uri: Option<String>,
    /// `api`, `mqtt` or both (the default).
    scope: Option<String>,
    /// Echoed back.
    state: Option<String>,
    /// PKCE, required from public clients.
    code_challenge: Option<String>,
    /// `S256` only.
    code_challenge_method: Option<String>,
}

/// The login form's fields (documentation; the body is read as a form).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct AuthorizeForm {
    /// The authorization request, as the form carries it.
    response_type: String,
    client_id: String,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    /// The form's CSRF token (with its cookie).
    csrf: String,
    username: String,
    password: String,
    /// A TOTP or backup code, when the user has MFA.
    otp: Option<String>,
    /// `allow` (the default) or `deny`.
    action: Option<String>,
}

fn request_of(params: &Params) -> AuthorizeRequest {
    AuthorizeRequest {
        response_type: params.get("response_type"),
        client_id: params.get("client_id"),
        redirect_uri: params.get("redirect_uri"),
        scope: params.get("scope"),
        state: params.get("state"),
        code_challenge: params.get("code_challenge"),
        code_challenge_method: params.get("code_challenge_method"),
    }
}

fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (status, [(header::LOCATION, value)]).into_response(),
        Err(_) => error_page(StatusCode::BAD_REQUEST, "The redirect URI cannot be used."),
    }
}

/// The authorization request as hidden form fields.
fn hidden(a: &Authorization) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("response_type", a.response_type.as_str().to_owned()),
        ("client_id", a.client.client_id.clone()),
        ("scope", a.scope.clone()),
    ];
    if a.redirect_given {
        fields.push(("redirect_uri", a.redirect_uri.clone()));
    }
    if let Some(state) = &a.state {
        fields.push(("state", state.clone()));
    }
    if let Some(challenge) = &a.challenge {
        fields.push(("code_challenge", challenge.clone()));
        fields.push(("code_challenge_method", "S256".into()));
    }
    fields
}

fn csrf_mac(state: &AppState, nonce: &str, issued: u64, a: &Authorization) -> String {
    let issued = issued.to_string();
    let parts: Vec<&[u8]> = vec![
        nonce.as_bytes(),
        issued.as_bytes(),
        a.client.client_id.as_bytes(),
        a.redirect_uri.as_bytes(),
        a.response_type.as_str().as_bytes(),
        a.scope.as_bytes(),
        a.state.as_deref().unwrap_or("").as_bytes(),
        a.challenge.as_deref().unwrap_or("").as_bytes(),
    ];
    hex(&state.services.oauth.mac("gatehouse oauth csrf v1", &parts))
}

fn cookie_nonce(headers: &HeaderMap, secure: bool) -> Option<String> {
    let wanted = if secure { HOST_COOKIE } else { COOKIE };
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_owned())
        .filter(|v| (16..=128).contains(&v.len()))
}

fn csrf_ok(nonce: &str, state: &AppState, field: Option<&str>, a: &Authorization) -> bool {
    let Some(field) = field else {
        return false;
    };
    let Some((issued, mac)) = field.split_once('.') else {
        return false;
    };
    let Ok(issued) = issued.parse::<u64>() else {
        return false;
    };
    let now = now_millis() / 1000;
    issued <= now + 60
        && now.saturating_sub(issued) <= FORM_SECS
        && same(&csrf_mac(state, nonce, issued, a), mac)
}

/// The login form for `a`, with a CSRF field bound to `nonce`; with
/// `new_cookie`, sets it (`Some(true)`: `Secure` with the `__Host-`
/// prefix).
fn form(
    state: &AppState,
    a: &Authorization,
    nonce: &str,
    new_cookie: Option<bool>,
    username: &str,
    message: Option<&str>,
    status: StatusCode,
) -> Response {
    let issued = now_millis() / 1000;
    let mut fields = hidden(a);
    fields.push((
        "csrf",
        format!("{issued}.{}", csrf_mac(state, nonce, issued, a)),
    ));
    let body = html::login_form(&html::Form {
        client_name: &a.client.name,
        client_version: &a.client.version,
        scope: &a.scope,
        hidden: &fields,
        username,
        message,
    });
    let cookie = new_cookie.map(|secure| {
        let attributes = format!("Max-Age={FORM_SECS}; HttpOnly; SameSite=Strict");
        if secure {
            format!("{HOST_COOKIE}={nonce}; Path=/; {attributes}; Secure")
        } else {
            format!("{COOKIE}={nonce}; Path=/oauth/authorize; {attributes}")
        }
    });
    html::page(status, "Sign in", &body, cookie)
}

/// The authorization request: the login form, or back to the client with
/// an error, or (unknown client or redirect URI) an error page.
#[utoipa::path(get, path = "/oauth/authorize", tag = "oauth", security(()), params(AuthorizeQuery),
    responses((status = 200, description = "The login form", content_type = "text/html", body = String),
        (status = 302, description = "Back to the redirect URI with an error and `state`"),
        (status = 400, description = "Unknown client or redirect URI (never redirected)", content_type = "text/html", body = String)))]
#[tracing::instrument(name = "oauth_authorize", skip_all)]
async fn oauth_authorize(State(state): State<AppState>, scheme: Scheme, uri: Uri) -> Response {
    let secure = scheme.secure(&state);
    let params = match Params::parse(uri.query().unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
    };
    match state.services.check_authorization(&request_of(&params)) {
        Err(AuthorizeError::Page(message)) => error_page(StatusCode::BAD_REQUEST, &message),
        Err(AuthorizeError::Redirect(location)) => redirect(StatusCode::FOUND, &location),
        Ok(a) => {
            let bytes: [u8; 32] = rand::random();
            let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            form(&state, &a, &nonce, Some(secure), "", None, StatusCode::OK)
        }
    }
}

/// What the form tells the user about a refused login.
fn refusal(e: &LoginError) -> Result<(StatusCode, String), String> {
    let retry = StatusCode::TOO_MANY_REQUESTS;
    Ok(match e {
        LoginError::BadCredentials => (StatusCode::OK, "Wrong user name or password.".into()),
        LoginError::Mfa(MfaError::Required) => (
            StatusCode::OK,
            "This account uses two-factor authentication: enter the one-time code too.".into(),
        ),
        LoginError::Mfa(MfaError::Invalid) => (
            StatusCode::OK,
            "The one-time code is wrong or was used already.".into(),
        ),
        LoginError::Disabled | LoginError::InitialAdminRemote => (StatusCode::OK, e.to_string()),
        LoginError::RateLimited(_) | LoginError::Mfa(MfaError::Locked(_)) => (retry, e.to_string()),
        LoginError::Mfa(
            MfaError::NotEnrolled | MfaError::AlreadyEnrolled | MfaError::NoPendingEnrollment,
        ) => (StatusCode::OK, e.to_string()),
        LoginError::Mfa(MfaError::Store(_) | MfaError::Key(_) | MfaError::Corrupt(_))
        | LoginError::Tokens(_)
        | LoginError::Lifetime(_)
        | LoginError::Label
        | LoginError::Interrupted => return Err("The server cannot sign you in now.".into()),
    })
}

/// The login form submitted: sign in, then back to the client.
#[utoipa::path(post, path = "/oauth/authorize", tag = "oauth", security(()),
    request_body(content = AuthorizeForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The form again, with what went wrong", content_type = "text/html", body = String),
        (status = 303, description = "Back to the redirect URI with a code, a token, or an error"),
        (status = 400, description = "Bad request (never redirected)", content_type = "text/html", body = String),
        (status = 403, description = "CSRF check failed", content_type = "text/html", body = String),
        (status = 429, description = "Too many attempts", content_type = "text/html", body = String),
        (status = 503, description = "The server cannot sign in now", content_type = "text/html", body = String)))]
#[tracing::instrument(name = "oauth_authorize_form", skip_all)]
async fn oauth_authorize_form(
    State(state): State<AppState>,
    peer: Peer,
    scheme: Scheme,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let secure = scheme.secure(&state);
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let params = match body.map(|b| (form_type, Params::parse(&b))) {
        Ok((true, Ok(params))) => params,
        Ok((true, Err(e))) => return error_page(StatusCode::BAD_REQUEST, &e.description),
        Ok((false, _)) | Err(_) => {
            return error_page(StatusCode::BAD_REQUEST, "Expected the login form.");
        }
    };
    let a = match state.services.check_authorization(&request_of(&params)) {
        Ok(a) => a,
        Err(AuthorizeError::Page(message)) => return error_page(StatusCode::BAD_REQUEST, &message),
        Err(AuthorizeError::Redirect(location)) => {
            return redirect(StatusCode::SEE_OTHER, &location);
        }
    };
    let Some(nonce) = cookie_nonce(&headers, secure)
        .filter(|nonce| csrf_ok(nonce, &state, params.get("csrf").as_deref(), &a))
    else {
        tracing::warn!(peer = %peer.0, "OAuth login form refused: CSRF check failed");
        return error_page(
            StatusCode::FORBIDDEN,
            "The form expired or did not come from this server. Start again from the application.",
        );
    };
    if params.get("action").as_deref() == Some("deny") {
        let location = state.services.deny_authorization(&a);
        return redirect(StatusCode::SEE_OTHER, &location);
    }
    let username = params.get("username").unwrap_or_default();
    let retry = |message: &str, status: StatusCode| {
        form(&state, &a, &nonce, None, &username, Some(message), status)
    };
    let Some(password) = params.get("password") else {
        return retry("Enter your user name and password.", StatusCode::OK);
    };
    // The code field takes a TOTP code or a backup code.
    let code = params.get("otp").map(|c| c.trim().to_owned());
    let totp = code
        .as_deref()
        .is_some_and(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()));
    let login = LoginRequest {
        username: username.clone(),
        password,
        otp: code.clone().filter(|_| totp),
        backup_code: code.filter(|_| !totp),
        ..LoginRequest::default()
    };
    let user = match state.services.verify_login(login, peer.0).await {
        Ok(user) => user,
        Err(e) => {
            return match refusal(&e) {
                Ok((status, message)) => retry(&message, status),
                Err(message) => error_page(StatusCode::SERVICE_UNAVAILABLE, &message),
            };
        }
    };
    let services = state.services.clone();
    let granted =
        tokio::task::spawn_blocking(move || services.grant_authorization(&a, &user)).await;
    match granted {
        Ok(Ok(location)) | Ok(Err(AuthorizeError::Redirect(location))) => {
            redirect(StatusCode::SEE_OTHER, &location)
        }
        Ok(Err(AuthorizeError::Page(message))) => error_page(StatusCode::BAD_REQUEST, &message),
        Err(_) => error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server cannot sign you in now.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        let nonce = "n".repeat(43);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE}={nonce}; c=d")).unwrap(),
        );
        assert_eq!(cookie_nonce(&headers, false), Some(nonce.clone()));
        // Over HTTPS only the `__Host-` cookie counts.
        assert_eq!(cookie_nonce(&headers, true), None);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{HOST_COOKIE}={nonce}")).unwrap(),
        );
        assert_eq!(cookie_nonce(&headers, true), Some(nonce));
    }
}
