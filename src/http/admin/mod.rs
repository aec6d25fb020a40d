//! The admin web page at `/admin` (`docs/admin-ui.md`): static files built
//! from `web/` and embedded here, a session cookie holding the API's own
//! token, and nothing else. The page reads and changes everything through
//! the admin API, which checks every call as it checks any other client's.
//!
//! Routes: `GET /admin` (the page; `?apiToken=` signs in and redirects),
//! `GET /admin/assets/{file}`, and `/admin/session` (sign in, who am I,
//! sign out). All answers carry the strict Content-Security-Policy, set in
//! one layer; the cookie's CSRF rules are in [`cookie`] and applied by
//! `extract::authorize` to every API call that comes with the cookie.

mod assets;
pub mod cookie;
mod session;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::extract::{Peer, holder};
use super::oauth::Scheme;

/// The policy, word for word: the page loads only its own files
/// and talks only to its own server.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Where the page lives (also the default target after an `apiToken` sign-in).
const PAGE: &str = "/admin";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(asset))
        .merge(session::routes())
        .layer(middleware::map_response(security_headers))
}

/// Names of the embedded files (for tests).
pub fn embedded_files() -> Vec<String> {
    assets::names()
}

/// The Content-Security-Policy and friends on every `/admin` answer.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A small HTML error page (no script, no style: the policy allows none
/// inline).
fn html_error(status: StatusCode, message: &str) -> Response {
    let escaped: String = message
        .chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            c => c.to_string(),
        })
        .collect();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{status} - Gatehouse</title></head>\n<body><main><h1>{status}</h1>\
         <p>{escaped}</p><p><a href=\"{PAGE}\">Back to the admin page</a></p></main></body></html>\n"
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// A same-server path to go to after signing in: starts with one `/`
/// (not `//`, which is another host), and has no backslash (browsers read
/// it as `/`) or control character.
fn local_path(target: &str) -> Option<&str> {
    let ok = target.starts_with('/')
        && !target.starts_with("//")
        && target.len() <= 2048
        && !target.chars().any(|c| c == '\\' || c.is_control());
    ok.then_some(target)
}

#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query; parsed leniently by `page_query`
struct PageQuery {
    /// A long-lived API token: signs the browser in (session cookie) and
    /// redirects to the page without it, as Connectware's
    /// `/admin?apiToken=` does.
    #[param(rename = "apiToken")]
    api_token: Option<String>,
    /// With `apiToken`: where to go afterwards, a path on this server.
    redirect: Option<String>,
}

/// `(apiToken, redirect)`; a query that cannot be parsed has neither.
fn page_query(query: Option<&str>) -> (Option<String>, Option<String>) {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or_default()).unwrap_or_default();
    let find = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    (find("apiToken"), find("redirect"))
}

fn see_other(location: &str, cookie: Option<HeaderValue>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    let location = HeaderValue::from_str(location)
        .unwrap_or(HeaderValue::from_static("/admin?signin=bad-redirect"));
    headers.insert(header::LOCATION, location);
    if let Some(cookie) = cookie {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The admin page. With `?apiToken=` it signs in with that token and
/// redirects (303) to `redirect` or the page, so the token leaves the
/// address bar; a bad token or redirect lands on the page with
/// `?signin=<reason>`, which the page explains.
#[utoipa::path(get, path = "/admin", tag = "admin", security(()), params(PageQuery),
    responses(
        (status = 200, content_type = "text/html", body = String, description = "The admin page"),
        (status = 303, description = "Signed in with `apiToken` (cookie set), or not (`?signin=` says why); redirected")))]
async fn page(
    State(state): State<AppState>,
    peer: Peer,
    scheme: Scheme,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (token, redirect) = page_query(query.as_deref());
    let Some(token) = token else {
        return assets::serve("index.html", &headers).unwrap_or_else(|| {
            html_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the admin page was not built into this binary",
            )
        });
    };
    let services = &state.services;
    let key = format!("token-addr:{}", peer.0);
    if services.per_address.check(&key).is_err() {
        return see_other("/admin?signin=rate-limited", None);
    }
    match holder(services, &token) {
        Err((_, counts)) => {
            if counts {
                let _ = services.per_address.take(&key);
            }
            see_other("/admin?signin=invalid-token", None)
        }
        // The page gets a session token of its own (signing out revokes
        // it, not the link's token); the cookie goes when the browser
        // closes or the session token expires.
        Ok((info, user)) => {
            let target = match redirect.as_deref() {
                None => PAGE,
                Some(r) => local_path(r).unwrap_or("/admin?signin=bad-redirect"),
            };
            let session = {
                let (services, peer) = (services.clone(), peer.0);
                tokio::task::spawn_blocking(move || services.session_from_token(&user, &info, peer))
                    .await
            };
            match session {
                Ok(Ok(session)) => {
                    let max_age = session.record.expires_at / 1000;
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let max_age = max_age.saturating_sub(now);
                    let secure = scheme.secure(&state);
                    see_other(target, cookie::set(&session.token, secure, Some(max_age)))
                }
                _ => see_other("/admin?signin=unavailable", None),
            }
        }
    }
}

/// A file of the page (script, style sheet, icon); names carry a hash of
/// the content and are cached for good.
#[utoipa::path(get, path = "/admin/assets/{file}", tag = "admin", security(()),
    params(("file" = String, Path, description = "File name, e.g. `app-3MZK2JQX.js`")),
    responses(
        (status = 200, content_type = "text/javascript", body = String, description = "The file (JavaScript, CSS or SVG)"),
        (status = 304, description = "Not modified (ETag)"),
        (status = 404, content_type = "text/html", body = String, description = "No such file")))]
async fn asset(
    axum::extract::Path(file): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    assets::serve(&format!("assets/{file}"), &headers)
        .unwrap_or_else(|| html_error(StatusCode::NOT_FOUND, "no such file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_on_this_server() {
        assert_eq!(local_path("/services/foo/bar"), Some("/services/foo/bar"));
        assert_eq!(local_path("/admin?x=1#users"), Some("/admin?x=1#users"));
        for bad in [
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example/",
            "evil.example",
            "javascript:alert(1)",
            "/a\nb",
            "",
        ] {
            assert_eq!(local_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_query_is_read_leniently() {
        assert_eq!(
            page_query(Some("redirect=%2Fx&apiToken=a.b.c")),
            (Some("a.b.c".into()), Some("/x".into()))
        );
        assert_eq!(page_query(Some("%zz")), (None, None));
        assert_eq!(page_query(None), (None, None));
    }
}
