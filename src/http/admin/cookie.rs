//! The admin page's session cookie and the rules that make a cookie safe
//! to authenticate with: the API's own JWT in an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` over HTTPS), and for every write a
//! same-origin check (`Sec-Fetch-Site`, else `Origin` against `Host`)
//! plus a JSON body, which no cross-site form can send.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::http::error::ApiError;

/// The cookie's name over plain HTTP. `Path=/`: the page calls `/api/...`.
pub const COOKIE: &str = "gatehouse_session";
/// Its name when served over HTTPS (here or behind a TLS proxy): the
/// browser keeps a `__Host-` cookie only if it is `Secure`, `Path=/` and
/// without `Domain`, so a sibling host cannot plant one.
pub const SECURE_COOKIE: &str = "__Host-gatehouse_session";

fn name(secure: bool) -> &'static str {
    if secure { SECURE_COOKIE } else { COOKIE }
}

/// The session token from the `Cookie` header(s), if exactly one session
/// cookie of the name for this scheme is sent (two mean one was planted:
/// neither is trusted).
pub fn session_token(headers: &HeaderMap, secure: bool) -> Option<String> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name(secure));
    let (_, value) = found.next()?;
    (found.next().is_none() && !value.is_empty()).then(|| value.to_owned())
}

/// `Set-Cookie` for a session: `max_age` seconds, or until the browser
/// closes (`None`).
pub fn set(token: &str, secure: bool, max_age: Option<u64>) -> Option<HeaderValue> {
    let age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    let flag = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict{flag}{age}",
        name(secure)
    ))
    .ok()
}

/// `Set-Cookie` that removes the session.
pub fn clear(secure: bool) -> HeaderValue {
    HeaderValue::from_static(if secure {
        "__Host-gatehouse_session=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0"
    } else {
        "gatehouse_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
    })
}

fn refused(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf",
        format!(
            "refused: a write with the session cookie must come from this server's page ({why})"
        ),
    )
}

/// Whether the request came from a page of this very origin. A browser
/// sends `Sec-Fetch-Site` (any current one) or at least `Origin` on a
/// cross-origin write; a request with neither is refused.
pub fn same_origin(headers: &HeaderMap, https: bool) -> Result<(), ApiError> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return if site.as_bytes() == b"same-origin" {
            Ok(())
        } else {
            Err(refused("Sec-Fetch-Site is not same-origin"))
        };
    }
    let origin = headers
        .get(header::ORIGIN)
        .ok_or_else(|| refused("neither Sec-Fetch-Site nor Origin was sent"))?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| refused("no Host header"))?;
    let scheme = if https { "https" } else { "http" };
    if origin.as_bytes() == format!("{scheme}://{host}").as_bytes() {
        Ok(())
    } else {
        Err(refused("Origin is another site"))
    }
}

/// `Content-Type: application/json` (or `application/...+json`).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("application/json")
                || (v.starts_with("application/") && v.ends_with("+json"))
        })
}

/// The check for a request authenticated by the cookie: reads pass;
/// writes must be same-origin, and those that may carry a body must
/// declare JSON (a form or `text/plain` body is how cross-site requests
/// avoid a CORS preflight).
pub fn guard(method: &Method, headers: &HeaderMap, https: bool) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    same_origin(headers, https)?;
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH) && !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a write with the session cookie must send Content-Type: application/json",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=b; gatehouse_session=t.o.k; c=d")]);
        assert_eq!(session_token(&h, false).as_deref(), Some("t.o.k"));
        // Over HTTPS only the `__Host-` cookie counts.
        assert_eq!(session_token(&h, true), None);
        let h = headers(&[("cookie", "__Host-gatehouse_session=s.e.c")]);
        assert_eq!(session_token(&h, true).as_deref(), Some("s.e.c"));
        assert_eq!(
            session_token(&headers(&[("cookie", "gatehouse_session=")]), false),
            None
        );
        assert_eq!(
            session_token(&headers(&[("cookie", "x_gatehouse_session=a")]), false),
            None
        );
        // Two session cookies: one was planted; neither is trusted.
        let h = headers(&[("cookie", "gatehouse_session=a; gatehouse_session=b")]);
        assert_eq!(session_token(&h, false), None);
    }

    #[test]
    fn cookie_flags() {
        let c = set("abc", true, Some(60)).unwrap();
        assert_eq!(
            c.to_str().unwrap(),
            "__Host-gatehouse_session=abc; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=60"
        );
        let c = set("abc", false, None).unwrap();
        assert!(!c.to_str().unwrap().contains("Secure"));
        assert!(clear(true).to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn cross_site_writes_are_refused() {
        let post = Method::POST;
        let json = ("content-type", "application/json");
        let host = ("host", "127.0.0.1:8080");
        let ok = |h: &[(&'static str, &str)]| guard(&post, &headers(h), false).is_ok();
        assert!(ok(&[("sec-fetch-site", "same-origin"), json]));
        assert!(!ok(&[("sec-fetch-site", "same-site"), json]));
        assert!(!ok(&[("sec-fetch-site", "cross-site"), json]));
        assert!(!ok(&[("sec-fetch-site", "none"), json]));
        assert!(ok(&[("origin", "http://127.0.0.1:8080"), host, json]));
        assert!(!ok(&[("origin", "https://127.0.0.1:8080"), host, json]));
        assert!(!ok(&[("origin", "http://evil.example"), host, json]));
        assert!(!ok(&[host, json]), "neither header");
        assert!(
            !ok(&[
                ("sec-fetch-site", "same-origin"),
                ("content-type", "text/plain")
            ]),
            "form-like body"
        );
        assert!(
            guard(
                &Method::DELETE,
                &headers(&[("sec-fetch-site", "same-origin")]),
                false
            )
            .is_ok()
        );
        assert!(guard(&Method::GET, &HeaderMap::new(), false).is_ok());
    }
}
