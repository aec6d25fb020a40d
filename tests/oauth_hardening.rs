//! OAuth hardening after the security review of issue 13, with `curl`:
//! introspection reveals a token only to its client (or one given the
//! right), failed client authentication is rate limited, the metadata
//! never takes the `Host` header, the issuer follows `[oauth] base_url`,
//! the login form's CSRF cookie is `__Host-` and `Secure` behind a TLS
//! proxy, permissive redirect URIs are refused at registration, and a
//! loopback redirect URI matches any port (RFC 8252 §7.3).

mod common;

use common::api::Api;
use common::oauth::*;
use common::*;
use serde_json::json;

const CB: &str = "http://127.0.0.1:9/cb";

async fn introspect(b: &TestBroker, basic: &str, token: &str) -> Curl {
    let field = format!("token={token}");
    curl(&["-u", basic, "-d", &field, &b.http_url("/oauth/introspect")]).await
}

#[tokio::test]
async fn introspection_is_no_oracle_for_other_clients_tokens() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let a = confidential(&admin, "a", CB, json!("global"), json!(1)).await;
    let other = confidential(&admin, "other", CB, json!("global"), json!(1)).await;
    let r = curl(&[
        "-u",
        &a.basic(),
        "-d",
        "grant_type=client_credentials",
        &b.http_url("/oauth/token"),
    ])
    .await;
    let token = r.body["access_token"].as_str().unwrap().to_owned();

    let own = introspect(&b, &a.basic(), &token).await;
    assert_eq!(own.body["active"], true, "{}", own.text);
    let r = introspect(&b, &other.basic(), &token).await;
    assert_eq!((r.status, &r.body), (200, &json!({"active": false})));
    // An API token (no client) is nobody's to introspect either.
    let api_token = admin.token.clone().unwrap();
    let r = introspect(&b, &other.basic(), &api_token).await;
    assert_eq!(r.body, json!({"active": false}));
    b.stop().await;
}

#[tokio::test]
async fn failed_client_authentication_is_rate_limited() {
    let b = TestBroker::start_with(|c| c.http.rate_per_address_per_minute = 5).await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let a = confidential(&admin, "a", CB, json!("global"), json!(1)).await;
    let wrong = format!("{}:not-the-secret", a.id);
    let mut limited = None;
    for attempt in 0..12 {
        let r = introspect(&b, &wrong, "x").await;
        if r.status == 429 {
            limited = Some((attempt, r));
            break;
        }
        assert_eq!((r.status, r.error()), (401, "invalid_client"), "{}", r.text);
    }
    let (attempt, r) = limited.expect("no 429 after 12 failed client authentications");
    assert!(attempt <= 6, "limited only after {attempt} failures");
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    // The right secret waits too.
    let r = introspect(&b, &a.basic(), "x").await;
    assert_eq!(r.status, 429, "{}", r.text);
    b.stop().await;
}

#[tokio::test]
async fn metadata_ignores_the_host_header_and_the_issuer_follows_base_url() {
    let b = TestBroker::start().await;
    let url = b.http_url("/.well-known/oauth-authorization-server");
    let m = curl(&["-H", "Host: evil.example", &url]).await;
    let expected = b.http_url("/oauth/token");
    assert_eq!(m.body["token_endpoint"], expected.as_str(), "{}", m.text);
    assert!(!m.text.contains("evil.example"), "{}", m.text);
    b.stop().await;

    let b = TestBroker::start_with(|c| {
        c.oauth.base_url = "https://broker.example:8443".into();
    })
    .await;
    let url = b.http_url("/.well-known/oauth-authorization-server");
    let m = curl(&["-H", "Host: evil.example", &url]).await;
    assert_eq!(m.body["issuer"], "https://broker.example:8443");
    assert_eq!(
        m.body["token_endpoint"],
        "https://broker.example:8443/oauth/token"
    );
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let a = confidential(&admin, "a", CB, json!("global"), json!(1)).await;
    let r = curl(&[
        "-u",
        &a.basic(),
        "-d",
        "grant_type=client_credentials",
        &b.http_url("/oauth/token"),
    ])
    .await;
    let token = r.body["access_token"].as_str().unwrap();
    let c = claims(token);
    assert_eq!(
        (c["iss"].as_str(), c["aud"].as_str()),
        (
            Some("https://broker.example:8443"),
            Some("https://broker.example:8443")
        )
    );
    assert_eq!(
        admin.with_token(token).get("/api/users/me").await.status,
        200
    );
    b.stop().await;

    // Behind a TLS proxy the listener's address is named with https.
    let b = TestBroker::start_with(|c| c.oauth.behind_tls_proxy = true).await;
    let m = curl(&[&b.http_url("/.well-known/oauth-authorization-server")]).await;
    let expected = format!("https://{}/oauth/token", b.http_addr());
    assert_eq!(m.body["token_endpoint"], expected.as_str());
    b.stop().await;
}

/// The login form's `Set-Cookie`.
async fn form_cookie(b: &TestBroker, client_id: &str) -> (String, Curl) {
    let (_, challenge) = pkce();
    let url = b.http_url(&format!(
        "/oauth/authorize?response_type=code&client_id={client_id}&code_challenge={challenge}&code_challenge_method=S256"
    ));
    let page = curl(&[&url]).await;
    assert_eq!(page.status, 200, "{}", page.text);
    (page.header("set-cookie").unwrap().to_owned(), page)
}

#[tokio::test]
async fn the_csrf_cookie_is_host_prefixed_and_secure_behind_a_tls_proxy() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let spa = register(
        &admin,
        json!({"name": "spa", "version": "1", "type": "public", "redirectUris": [CB]}),
    )
    .await;
    let (cookie, _) = form_cookie(&b, &spa.id).await;
    assert!(cookie.starts_with("gatehouse_oauth_csrf="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/oauth/authorize"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    b.stop().await;

    let b = TestBroker::start_with(|c| c.oauth.behind_tls_proxy = true).await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    admin
        .create_user(json!({"username": "gus", "password": "gus-password"}))
        .await;
    let spa = register(
        &admin,
        json!({"name": "spa", "version": "1", "type": "public", "redirectUris": [CB]}),
    )
    .await;
    let (cookie, page) = form_cookie(&b, &spa.id).await;
    assert!(
        cookie.starts_with("__Host-gatehouse_oauth_csrf="),
        "{cookie}"
    );
    for attribute in ["HttpOnly", "SameSite=Strict", "; Secure", "Path=/;"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    // The form works with that cookie (sent as a browser would over
    // HTTPS), and not with the unprefixed name.
    let pair = cookie.split(';').next().unwrap().to_owned();
    let nonce = pair.split_once('=').unwrap().1.to_owned();
    let mut args: Vec<String> = Vec::new();
    for (n, v) in hidden_fields(&page.text) {
        args.push("--data-urlencode".into());
        args.push(format!("{n}={v}"));
    }
    for field in ["username=gus", "password=gus-password"] {
        args.push("--data-urlencode".into());
        args.push(field.into());
    }
    let post = b.http_url("/oauth/authorize");
    let send = |cookie: String| {
        let mut all = vec!["-H".to_owned(), format!("Cookie: {cookie}")];
        all.extend(args.iter().cloned());
        all.push(post.clone());
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            curl(&refs).await
        }
    };
    let r = send(format!("gatehouse_oauth_csrf={nonce}")).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = send(pair.clone()).await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert!(param(r.header("location").unwrap(), "code").is_some());
    b.stop().await;
}

#[tokio::test]
async fn permissive_redirect_uris_are_refused_at_registration() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let refused = [
        "https://app.example/cb#fragment",
        "https://*.app.example/cb",
        "https://app.example/*",
        "http://app.example/cb",
        "http://127.0.0.1.evil.example/cb",
        "http://localhost@evil.example/cb",
        "javascript:alert(1)",
        "myapp:/cb",
        "https:///cb",
    ];
    for (i, uri) in refused.iter().enumerate() {
        let body = json!({"name": format!("bad{i}"), "version": "1", "type": "public", "redirectUris": [uri]});
        let r = admin.post("/api/oauth/clients", body).await;
        assert_eq!(r.status, 422, "{uri}: {}", r.body);
        assert!(
            r.body.to_string().contains("redirectUris"),
            "{uri}: {}",
            r.body
        );
    }
    let accepted = [
        "https://app.example/cb?x=1",
        "http://localhost:8765/cb",
        "http://127.0.0.1/cb",
        "http://[::1]:9000/cb",
        "com.example.app:/cb",
    ];
    for (i, uri) in accepted.iter().enumerate() {
        let body = json!({"name": format!("good{i}"), "version": "1", "type": "public", "redirectUris": [uri]});
        let r = admin.post("/api/oauth/clients", body).await;
        assert_eq!(r.status, 201, "{uri}: {}", r.body);
    }
    b.stop().await;
}

/// A native app registers `http://127.0.0.1/callback` and listens on
/// whichever port it gets (RFC 8252 §7.3): any port matches, nothing else
/// about the URI may differ.
#[tokio::test]
async fn a_loopback_redirect_uri_matches_any_port() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    admin
        .create_user(json!({"username": "nora", "password": "nora-pw-00001"}))
        .await;
    let app = confidential(
        &admin,
        "native",
        "http://127.0.0.1/callback",
        json!("global"),
        json!(0),
    )
    .await;
    let base = b.http_url("");
    let jar = b.dir.path().join("jar");
    let query = |redirect: &str| {
        format!(
            "response_type=code&client_id={}&redirect_uri={}",
            app.id,
            redirect.replace(':', "%3A").replace('/', "%2F")
        )
    };
    let r = sign_in(
        &base,
        &jar,
        &query("http://127.0.0.1:40123/callback"),
        "nora",
        "nora-pw-00001",
        &[],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let location = r.header("location").unwrap();
    assert!(
        location.starts_with("http://127.0.0.1:40123/callback?code="),
        "{location}"
    );
    for other in [
        "http://127.0.0.1:40123/other",
        "http://localhost:40123/callback",
        "https://127.0.0.1:40123/callback",
    ] {
        let url = format!("{base}/oauth/authorize?{}", query(other));
        let page = curl(&[&url]).await;
        assert!(
            page.status == 400 && page.text.contains("not registered"),
            "{other}: {} {}",
            page.status,
            page.text
        );
    }
}
