//! The authorization endpoint's pages: a login form and an error page,
//! plain server-rendered HTML with every inserted text escaped, no script
//! and no style, under a strict Content-Security-Policy.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `default-src 'none'`: the page loads nothing and runs nothing. No
/// `form-action`: browsers apply it to the redirect that follows the
/// form's submission too, and that goes to the client's redirect URI,
/// which is any registered origin (kanidm drops it for the same reason).
const CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Text for an element or a quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTML answer with the security headers (and optionally a cookie).
pub fn page(status: StatusCode, title: &str, body: &str, cookie: Option<String>) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} - Gatehouse</title></head>\n<body><main>\n{body}\n</main></body></html>\n",
        escape(title)
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

/// A page that tells the user what went wrong (never redirected).
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!("<h1>Cannot continue</h1>\n<p>{}</p>", escape(message));
    page(status, "Error", &body, None)
}

/// What the login form shows and carries.
pub struct Form<'a> {
    pub client_name: &'a str,
    pub client_version: &'a str,
    pub scope: &'a str,
    /// The authorization request, carried as hidden fields.
    pub hidden: &'a [(&'a str, String)],
    pub username: &'a str,
    /// Shown above the form (a failed attempt).
    pub message: Option<&'a str>,
}

pub fn login_form(form: &Form<'_>) -> String {
    let mut hidden = String::new();
    for (name, value) in form.hidden {
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            escape(name),
            escape(value)
        ));
    }
    let message = form
        .message
        .map(|m| format!("<p role=\"alert\"><strong>{}</strong></p>\n", escape(m)))
        .unwrap_or_default();
    format!(
        "<h1>Sign in</h1>\n<p><strong>{name} {version}</strong> asks to act for you \
         (scope <code>{scope}</code>).</p>\n{message}\
         <form method=\"post\" action=\"/oauth/authorize\">\n{hidden}\
         <p><label>User name <input name=\"username\" value=\"{username}\" autocomplete=\"username\" required></label></p>\n\
         <p><label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label></p>\n\
         <p><label>One-time or backup code (only with two-factor authentication) \
         <input name=\"otp\" autocomplete=\"one-time-code\" maxlength=\"32\"></label></p>\n\
         <p><button type=\"submit\" name=\"action\" value=\"allow\">Sign in and allow</button> \
         <button type=\"submit\" name=\"action\" value=\"deny\" formnovalidate>Cancel</button></p>\n\
         </form>",
        name = escape(form.client_name),
        version = escape(form.client_version),
        scope = escape(form.scope),
        username = escape(form.username),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_inserted_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let html = login_form(&Form {
            client_name: "<script>",
            client_version: "1",
            scope: "api",
            hidden: &[("state", "\"><script>alert(1)</script>".into())],
            username: "a\"b",
            message: Some("<b>"),
        });
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;"));
        assert!(html.contains("value=\"a&quot;b\""));
    }
}
