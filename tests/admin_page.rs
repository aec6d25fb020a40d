//! The admin page's server side over real HTTP (the browser tests in
//! `web/tests/` drive the page itself): its security headers, the
//! `?apiToken=` sign-in and its redirect rule, the session cookie as a way
//! to call the API, and the CSRF rules for writes made with that cookie.

mod common;

use common::api::{Api, base32_decode, step_now, totp};
use common::*;
use reqwest::header::{self, HeaderMap};
use reqwest::redirect::Policy;
use serde_json::json;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn cookie_of(headers: &HeaderMap) -> String {
    let set = headers[header::SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn the_page_has_its_security_headers_everywhere_under_admin() {
    let b = TestBroker::start().await;
    let http = client();
    for (path, status) in [
        ("/admin", 200),
        ("/admin/assets/no-such-file.js", 404),
        ("/admin/session", 200),
    ] {
        let r = http.get(b.http_url(path)).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(r.headers()["content-security-policy"], CSP, "{path}");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(r.headers()["x-frame-options"], "DENY", "{path}");
    }
    let html = http
        .get(b.http_url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !html.contains("<style") && !html.contains("<script>"),
        "{html}"
    );
}

#[tokio::test]
async fn an_api_token_link_signs_in_and_redirects_only_on_this_server() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let token = admin.token.clone().unwrap();
    let http = client();
    let go = |query: String| {
        let http = http.clone();
        let url = b.http_url(&format!("/admin?{query}"));
        async move { http.get(url).send().await.unwrap() }
    };

    let r = go(format!("apiToken={token}")).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[header::LOCATION], "/admin");
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    // The page's session is a token of its own, not the link's: signing
    // out revokes it, and the link's token keeps working.
    let session = set
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("gatehouse_session="))
        .unwrap()
        .to_owned();
    assert_ne!(session, token);
    assert!(set.contains("Max-Age="), "{set}");
    let r = http
        .delete(b.http_url("/admin/session"))
        .header(header::COOKIE, format!("gatehouse_session={session}"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(admin.get("/api/users/me").await.status, 200);
    assert_eq!(
        admin.with_token(&session).get("/api/users/me").await.status,
        401
    );

    let r = go(format!("redirect=%2Fadmin%23%2Fclients&apiToken={token}")).await;
    assert_eq!(r.headers()[header::LOCATION], "/admin#/clients");
    for bad in [
        "%2F%2Fevil.example%2F",
        "https%3A%2F%2Fevil.example%2F",
        "%2F%5Cevil.example",
    ] {
        let r = go(format!("redirect={bad}&apiToken={token}")).await;
        assert_eq!(
            r.headers()[header::LOCATION],
            "/admin?signin=bad-redirect",
            "{bad}"
        );
    }
    let r = go("apiToken=not.a.token".into()).await;
    assert_eq!(r.headers()[header::LOCATION], "/admin?signin=invalid-token");
    assert!(r.headers().get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn the_cookie_reads_freely_and_writes_only_same_origin_json() {
    let b = TestBroker::start().await;
    let http = client();
    let signed_in = http
        .post(b.http_url("/admin/session"))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"username": "admin", "password": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let cookie = cookie_of(signed_in.headers());
    let body: serde_json::Value = signed_in.json().await.unwrap();
    assert_eq!(body["signedIn"], true);
    assert!(body.get("token").is_none(), "the token stays in the cookie");

    let me = http
        .get(b.http_url("/api/users/me"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    let role = |origin: Option<(&'static str, String)>, content_type: &'static str| {
        let mut r = http
            .post(b.http_url("/api/roles"))
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, content_type)
            .body(format!(r#"{{"name": "page-role-{}"}}"#, rand_suffix()));
        if let Some((name, value)) = origin {
            r = r.header(name, value);
        }
        async move { r.send().await.unwrap().status() }
    };
    let host = b.http_addr();
    let json_type = "application/json";
    assert_eq!(role(None, json_type).await, 403, "neither header");
    assert_eq!(
        role(Some(("sec-fetch-site", "cross-site".into())), json_type).await,
        403
    );
    assert_eq!(
        role(Some(("sec-fetch-site", "same-site".into())), json_type).await,
        403
    );
    assert_eq!(
        role(Some(("origin", "http://evil.example".into())), json_type).await,
        403
    );
    assert_eq!(
        role(Some(("sec-fetch-site", "same-origin".into())), "text/plain").await,
        415
    );
    assert_eq!(
        role(Some(("sec-fetch-site", "same-origin".into())), json_type).await,
        201
    );
    assert_eq!(
        role(Some(("origin", format!("http://{host}"))), json_type).await,
        201
    );

    // A bearer token is not subject to the cookie's rules.
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let r = admin
        .post("/api/roles", json!({"name": "bearer-role"}))
        .await;
    assert_eq!(r.status, 201);

    // Signing out revokes the token: the cookie no longer works.
    let out = http
        .delete(b.http_url("/admin/session"))
        .header(header::COOKIE, &cookie)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(
        out.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let me = http
        .get(b.http_url("/api/users/me"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
}

#[tokio::test]
async fn a_sign_in_without_the_mfa_code_asks_for_it() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let enrol = admin.post("/api/mfa/enroll", json!({})).await;
    let secret = base32_decode(enrol.body["secret"].as_str().unwrap());
    let step = step_now();
    let confirmed = admin
        .post("/api/mfa/confirm", json!({"otp": totp(&secret, step)}))
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    let http = client();
    let sign_in = |body: serde_json::Value| {
        let r = http
            .post(b.http_url("/admin/session"))
            .header("sec-fetch-site", "same-origin")
            .json(&body);
        async move { r.send().await.unwrap() }
    };
    let r = sign_in(json!({"username": "admin", "password": "admin"})).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["signedIn"], false);
    assert_eq!(body["mfaRequired"], true);
    let r =
        sign_in(json!({"username": "admin", "password": "admin", "otp": totp(&secret, step + 1)}))
            .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get(header::SET_COOKIE).is_some());
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test]
async fn over_https_the_cookie_is_secure() {
    let b =
        TestBroker::start_with(|c| c.listeners.https = Some("127.0.0.1:0".parse().unwrap())).await;
    let port = b.broker.as_ref().unwrap().https_addr.unwrap().port();
    let ca = b.dir.path().join("certs/ca.crt");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let curl = |extra: Vec<String>| {
        let mut args: Vec<String> = [
            "-sS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_cmd("curl", &args, std::time::Duration::from_secs(20)).await
        }
    };
    let origin = format!("https://localhost:{port}");
    let (status, headers) = curl(vec![
        "-X".into(),
        "POST".into(),
        "-H".into(),
        "Content-Type: application/json".into(),
        "-H".into(),
        format!("Origin: {origin}"),
        "-d".into(),
        r#"{"username": "admin", "password": "admin"}"#.into(),
        format!("{origin}/admin/session"),
    ])
    .await;
    assert_eq!(status, Some(0), "{headers}");
    let set_cookie = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {headers}"));
    assert!(
        set_cookie.contains("; Secure") && set_cookie.contains("HttpOnly"),
        "{set_cookie}"
    );
    // The same origin over plain HTTP is another origin.
    let (_, refused) = curl(vec![
        "-X".into(),
        "POST".into(),
        "-H".into(),
        "Content-Type: application/json".into(),
        "-H".into(),
        format!("Origin: http://localhost:{port}"),
        "-d".into(),
        r#"{"username": "admin", "password": "admin"}"#.into(),
        format!("{origin}/admin/session"),
    ])
    .await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    b.stop().await;
}

#[tokio::test]
async fn users_are_searched_and_paged_on_the_server() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    for name in ["Sensor-A", "sensor-b", "sensor-c", "pump-1"] {
        admin
            .create_user(json!({"username": name, "password": format!("{name}-secret")}))
            .await;
    }
    let r = admin
        .get("/api/users?search=SENSOR&rowsPerPage=2&pageNumber=2")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["x-total-count"], "3");
    let names: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sensor-c"]);
    let r = admin.get("/api/users?search=nothing-like-it").await;
    assert_eq!(r.headers["x-total-count"], "0");
    let r = admin.get("/api/clients?search=x").await;
    assert_eq!(r.body["pagination"]["totalRows"], 0);
    b.stop().await;
}

/// Behind a TLS-terminating proxy (`[oauth] behind_tls_proxy`) the cookie
/// is the `Secure`, `__Host-` one, and only that one is read.
#[tokio::test]
async fn behind_a_tls_proxy_the_cookie_is_host_prefixed_and_secure() {
    let b = TestBroker::start_with(|c| c.oauth.behind_tls_proxy = true).await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let token = admin.token.clone().unwrap();
    let r = client()
        .get(b.http_url(&format!("/admin?apiToken={token}")))
        .send()
        .await
        .unwrap();
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.starts_with("__Host-gatehouse_session=") && set.contains("; Secure"),
        "{set}"
    );
    let session = set.split(';').next().unwrap().split_once('=').unwrap().1;
    let me = |cookie: String| {
        let url = b.http_url("/api/users/me");
        async move {
            client()
                .get(url)
                .header(header::COOKIE, cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(me(format!("__Host-gatehouse_session={session}")).await, 200);
    assert_eq!(me(format!("gatehouse_session={session}")).await, 401);
    // Two session cookies: one was planted; neither counts.
    assert_eq!(
        me(format!(
            "__Host-gatehouse_session={session}; __Host-gatehouse_session=x"
        ))
        .await,
        401
    );
}
