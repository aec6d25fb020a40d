//! The OAuth token endpoint driven with `curl`: client credentials,
//! password, authorization code with PKCE through the login form with
//! MFA, refresh; every RFC 6749 error, refresh-count exhaustion and
//! refresh-token reuse, code reuse. (Implicit, introspection, revocation:
//! `oauth_introspection.rs`.)

mod common;

use base64::Engine;
use common::api::{Api, base32_decode, step_now, totp};
use common::oauth::*;
use common::*;
use serde_json::json;

const CB: &str = "http://127.0.0.1:9/callback";

fn token_url(b: &TestBroker) -> String {
    b.http_url("/oauth/token")
}

#[tokio::test]
async fn client_credentials_and_every_token_error() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let svc = confidential(&admin, "svc", CB, json!("global"), json!(0)).await;
    let secret = svc.secret.clone().unwrap();
    assert_eq!(secret.len(), 36);
    let url = token_url(&b);

    let r = curl(&[
        "-u",
        &svc.basic(),
        "-d",
        "grant_type=client_credentials",
        &url,
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 3600);
    assert_eq!(r.body["scope"], "api mqtt");
    assert!(r.body.get("refresh_token").is_none(), "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_header(&token)["typ"], "at+jwt");
    let c = claims(&token);
    assert_eq!(c["client_id"], svc.id.as_str());
    assert_eq!(c["sub"], svc.user_id.as_deref().unwrap());
    assert_eq!(c["aud"], "gatehouse");
    assert_eq!(c["iss"], "gatehouse");
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        3600
    );
    assert!(c["jti"].is_string());

    // The client's account, with the permissions given to it.
    let api = admin.with_token(&token);
    assert_eq!(
        api.get("/api/users/me").await.body["username"],
        svc.id.as_str()
    );
    assert_eq!(api.get("/api/users").await.status, 403);
    let role = admin
        .create_role(json!({"name": "user-reader", "permissions": [
            {"resource": "/api/users", "operation": "read", "context": "http"}]}))
        .await;
    let uid = svc.user_id.clone().unwrap();
    let r2 = admin
        .post(&format!("/api/users/{uid}/roles"), json!({"roleId": role}))
        .await;
    assert!(r2.status.is_success(), "{}", r2.body);
    assert_eq!(api.get("/api/users").await.status, 200);

    // Basic credentials are URL-decoded (RFC 6749 §2.3.1): `-` as %2D.
    let encoded = format!(
        "{}:{}",
        svc.id.replace('-', "%2D"),
        secret.replace('-', "%2D")
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(encoded);
    let header = format!("Authorization: Basic {basic}");
    let r = curl(&["-H", &header, "-d", "grant_type=client_credentials", &url]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Form fields instead of Basic.
    let id_field = format!("client_id={}", svc.id);
    let secret_field = format!("client_secret={secret}");
    let r = curl(&[
        "-d",
        "grant_type=client_credentials",
        "-d",
        &id_field,
        "-d",
        &secret_field,
        &url,
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // invalid_request: no grant type; a repeated parameter; two methods.
    let r = curl(&["-u", &svc.basic(), "-d", "scope=api", &url]).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_request"),
        "{}",
        r.text
    );
    let r = curl(&[
        "-u",
        &svc.basic(),
        "-d",
        "grant_type=client_credentials&scope=api&scope=mqtt",
        &url,
    ])
    .await;
    assert_eq!((r.status, r.error()), (400, "invalid_request"));
    let r = curl(&[
        "-u",
        &svc.basic(),
        "-d",
        "grant_type=client_credentials",
        "-d",
        &secret_field,
        &url,
    ])
    .await;
    assert_eq!((r.status, r.error()), (400, "invalid_request"));
    let r = curl(&[
        "-d",
        "grant_type=client_credentials",
        "-H",
        "Content-Type: application/json",
        &url,
    ])
    .await;
    assert_eq!((r.status, r.error()), (400, "invalid_request"));
    // invalid_client: 401, with WWW-Authenticate for Basic.
    let wrong = format!("{}:{}x", svc.id, secret);
    let r = curl(&["-u", &wrong, "-d", "grant_type=client_credentials", &url]).await;
    assert_eq!((r.status, r.error()), (401, "invalid_client"));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"gatehouse\"")
    );
    let r = curl(&[
        "-d",
        "grant_type=client_credentials&client_id=nobody&client_secret=x",
        &url,
    ])
    .await;
    assert_eq!((r.status, r.error()), (401, "invalid_client"));
    let r = curl(&["-d", "grant_type=client_credentials", &url]).await;
    assert_eq!((r.status, r.error()), (401, "invalid_client"));
    // unsupported_grant_type, invalid_scope, invalid_grant.
    let r = curl(&["-u", &svc.basic(), "-d", "grant_type=urn:x", &url]).await;
    assert_eq!((r.status, r.error()), (400, "unsupported_grant_type"));
    let r = curl(&[
        "-u",
        &svc.basic(),
        "-d",
        "grant_type=client_credentials&scope=admin",
        &url,
    ])
    .await;
    assert_eq!((r.status, r.error()), (400, "invalid_scope"));
    let bogus = format!("grant_type=authorization_code&code=nope&redirect_uri={CB}");
    let r = curl(&["-u", &svc.basic(), "-d", &bogus, &url]).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant"));
    let r = curl(&[
        "-u",
        &svc.basic(),
        "-d",
        "grant_type=refresh_token&refresh_token=ghr.x",
        &url,
    ])
    .await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant"));
    // unauthorized_client: a grant this client was not given.
    let web = register(
        &admin,
        json!({"name": "web", "version": "1", "type": "confidential", "redirectUris": [CB]}),
    )
    .await;
    let r = curl(&[
        "-u",
        &web.basic(),
        "-d",
        "grant_type=client_credentials",
        &url,
    ])
    .await;
    assert_eq!((r.status, r.error()), (400, "unauthorized_client"));
    let r = curl(&[
        "-u",
        &web.basic(),
        "-d",
        "grant_type=password&username=admin&password=admin",
        &url,
    ])
    .await;
    assert_eq!((r.status, r.error()), (400, "unauthorized_client"));
    // A scope-limited token: mqtt only does not open the API.
    let r = curl(&[
        "-u",
        &svc.basic(),
        "-d",
        "grant_type=client_credentials&scope=mqtt",
        &url,
    ])
    .await;
    assert_eq!(r.body["scope"], "mqtt");
    let mqtt_only = admin.with_token(r.body["access_token"].as_str().unwrap());
    let denied = mqtt_only.get("/api/users/me").await;
    assert_eq!(
        (denied.status.as_u16(), denied.code()),
        (403, "insufficient_scope")
    );
    b.stop().await;
}

#[tokio::test]
async fn password_grant_refresh_exhaustion_and_reuse() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    admin
        .create_user(json!({"username": "alice", "password": "alice-pw"}))
        .await;
    let app = confidential(&admin, "app", CB, json!(60), json!(2)).await;
    let url = token_url(&b);
    let login = "grant_type=password&username=alice&password=alice-pw";

    let r = curl(&["-u", &app.basic(), "-d", login, &url]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["expires_in"], 60);
    let rt0 = r.body["refresh_token"].as_str().unwrap().to_owned();
    let me = admin.with_token(r.body["access_token"].as_str().unwrap());
    assert_eq!(me.get("/api/users/me").await.body["username"], "alice");

    // Two refreshes allowed: each rotates; the second gives none back.
    let refresh = |rt: &str| format!("grant_type=refresh_token&refresh_token={rt}");
    let r = curl(&["-u", &app.basic(), "-d", &refresh(&rt0), &url]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rt1 = r.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt0);
    let r = curl(&["-u", &app.basic(), "-d", &refresh(&rt1), &url]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body.get("refresh_token").is_none(),
        "exhausted: {}",
        r.body
    );
    let last = admin.with_token(r.body["access_token"].as_str().unwrap());
    assert_eq!(last.get("/api/users/me").await.status, 200);
    // Presenting a used one again is reuse: the grant and its tokens end.
    let r = curl(&["-u", &app.basic(), "-d", &refresh(&rt1), &url]).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant"), "{}", r.text);
    assert_eq!(last.get("/api/users/me").await.status, 401);
    assert_eq!(me.get("/api/users/me").await.status, 401);

    // Unlimited refreshes; reuse of the first after one rotation.
    let free = confidential(&admin, "free", CB, json!("global"), json!("unlimited")).await;
    let r = curl(&["-u", &free.basic(), "-d", login, &url]).await;
    let a0 = r.body["access_token"].as_str().unwrap().to_owned();
    let f0 = r.body["refresh_token"].as_str().unwrap().to_owned();
    let r = curl(&["-u", &free.basic(), "-d", &refresh(&f0), &url]).await;
    let f1 = r.body["refresh_token"].as_str().unwrap().to_owned();
    // Another client cannot use it.
    let r = curl(&["-u", &app.basic(), "-d", &refresh(&f1), &url]).await;
    assert_eq!(r.error(), "invalid_grant");
    // Scope may narrow, not widen.
    let narrow = format!("{}&scope=mqtt", refresh(&f1));
    let r = curl(&["-u", &free.basic(), "-d", &narrow, &url]).await;
    assert_eq!(
        (r.status, r.body["scope"].as_str()),
        (200, Some("mqtt")),
        "{}",
        r.text
    );
    let f2 = r.body["refresh_token"].as_str().unwrap().to_owned();
    let r = curl(&[
        "-u",
        &free.basic(),
        "-d",
        &format!("{}&scope=admin", refresh(&f2)),
        &url,
    ])
    .await;
    assert_eq!(r.error(), "invalid_scope");
    let r = curl(&["-u", &free.basic(), "-d", &refresh(&f0), &url]).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant"));
    let r = curl(&["-u", &free.basic(), "-d", &refresh(&f2), &url]).await;
    assert_eq!(
        r.error(),
        "invalid_grant",
        "the family is revoked: {}",
        r.text
    );
    assert_eq!(admin.with_token(&a0).get("/api/users/me").await.status, 401);
    // The reuse is in the audit log.
    let audit = admin.get("/api/audit").await.body.to_string();
    assert!(audit.contains("oauth.grant.revoke"), "{audit}");

    // Refused logins are invalid_grant; missing fields invalid_request.
    let r = curl(&[
        "-u",
        &app.basic(),
        "-d",
        "grant_type=password&username=alice&password=nope",
        &url,
    ])
    .await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant"));
    let r = curl(&[
        "-u",
        &app.basic(),
        "-d",
        "grant_type=password&username=alice",
        &url,
    ])
    .await;
    assert_eq!((r.status, r.error()), (400, "invalid_request"));
    // Without refresh count, no refresh token at all.
    let none = confidential(&admin, "none", CB, json!(30), json!("")).await;
    let r = curl(&["-u", &none.basic(), "-d", login, &url]).await;
    assert!(r.body.get("refresh_token").is_none(), "{}", r.body);
    b.stop().await;
}

/// Enrols `api`'s user in MFA; returns the TOTP secret and backup codes.
async fn enrol(api: &Api) -> (Vec<u8>, Vec<String>) {
    let e = api.post("/api/mfa/enroll", json!({})).await;
    let secret = base32_decode(e.body["secret"].as_str().unwrap());
    let c = api
        .post(
            "/api/mfa/confirm",
            json!({"otp": totp(&secret, step_now())}),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.body);
    let backup = c.body["backupCodes"].as_array().unwrap();
    (
        secret,
        backup
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect(),
    )
}

#[tokio::test]
async fn authorization_code_with_pkce_mfa_form_and_code_reuse() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    admin
        .create_user(json!({"username": "mia", "password": "mia-pw"}))
        .await;
    let (secret, backup) = enrol(&Api::login(b.http_addr(), "mia", "mia-pw").await).await;
    let app = register(
        &admin,
        json!({"name": "spa", "version": "2", "type": "public", "redirectUris": [CB],
            "refreshCount": "unlimited"}),
    )
    .await;
    assert!(app.secret.is_none());
    let base = format!("http://{}", b.http_addr());
    let q = |extra: &str| format!("response_type=code&client_id={}&state=s%201{extra}", app.id);

    // Errors the user sees (never redirected): unknown client or URI.
    let page = curl(&[&format!(
        "{base}/oauth/authorize?response_type=code&client_id=nobody"
    )])
    .await;
    assert_eq!(page.status, 400);
    assert!(page.header("location").is_none());
    let r = curl(&[&format!(
        "{base}/oauth/authorize?{}&redirect_uri=http://evil/cb",
        q("")
    )])
    .await;
    assert_eq!(r.status, 400);
    assert!(r.header("location").is_none());
    // Errors the client hears, with its state: PKCE missing, or plain.
    let r = curl(&[&format!("{base}/oauth/authorize?{}", q(""))]).await;
    assert_eq!(r.status, 302);
    let location = r.header("location").unwrap().to_owned();
    assert!(location.starts_with(CB), "{location}");
    assert_eq!(
        param(&location, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(param(&location, "state").as_deref(), Some("s 1"));
    let r = curl(&[&format!(
        "{base}/oauth/authorize?{}&code_challenge={}&code_challenge_method=plain",
        q(""),
        "a".repeat(43)
    )])
    .await;
    assert_eq!(
        param(r.header("location").unwrap(), "error").as_deref(),
        Some("invalid_request")
    );
    let r = curl(&[&format!(
        "{base}/oauth/authorize?{}&code_challenge={}&code_challenge_method=S256&scope=root",
        q(""),
        "a".repeat(43)
    )])
    .await;
    assert_eq!(
        param(r.header("location").unwrap(), "error").as_deref(),
        Some("invalid_scope")
    );
    let r = curl(&[&format!(
        "{base}/oauth/authorize?response_type=token&client_id={}",
        app.id
    )])
    .await;
    assert_eq!(
        param(r.header("location").unwrap(), "error").as_deref(),
        Some("unauthorized_client")
    );

    // The form: strict CSP, no script; MFA needs the code.
    let (verifier, challenge) = pkce();
    let query = q(&format!(
        "&redirect_uri={CB}&code_challenge={challenge}&code_challenge_method=S256"
    ));
    let form = curl(&[&format!("{base}/oauth/authorize?{query}")]).await;
    assert_eq!(form.status, 200);
    assert!(
        form.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(
        form.header("set-cookie")
            .unwrap()
            .contains("SameSite=Strict")
    );
    assert!(!form.text.contains("<script"), "{}", form.text);
    assert!(form.text.contains("spa 2"), "{}", form.text);
    let jar = b.dir.path().join("jar");
    let r = sign_in(&base, &jar, &query, "mia", "mia-pw", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("two-factor"), "{}", r.text);
    let r = sign_in(&base, &jar, &query, "mia", "wrong", &[("otp", "000000")]).await;
    assert!(r.text.contains("Wrong user name or password"), "{}", r.text);
    // A POST without the cookie (a forged form) is refused.
    let mut fields: Vec<String> = hidden_fields(&form.text)
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    fields.push("username=mia".into());
    fields.push("password=mia-pw".into());
    let mut args: Vec<&str> = Vec::new();
    for f in &fields {
        args.extend(["--data-urlencode", f.as_str()]);
    }
    let post = format!("{base}/oauth/authorize");
    args.push(&post);
    assert_eq!(curl(&args).await.status, 403);
    // Signed in with the code: back to the client with code, state, iss.
    let otp = totp(&secret, step_now() + 1);
    let r = sign_in(&base, &jar, &query, "mia", "mia-pw", &[("otp", &otp)]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let location = r.header("location").unwrap().to_owned();
    assert_eq!(param(&location, "state").as_deref(), Some("s 1"));
    assert_eq!(param(&location, "iss").as_deref(), Some("gatehouse"));
    let code = param(&location, "code").unwrap();

    let url = token_url(&b);
    let exchange = |code: &str, verifier: &str| {
        format!(
            "grant_type=authorization_code&code={code}&redirect_uri={CB}&client_id={}&code_verifier={verifier}",
            app.id
        )
    };
    let r = curl(&[
        "-d",
        &exchange(&code, "wrong-verifier-wrong-verifier-wrong-verifier"),
        &url,
    ])
    .await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant"), "{}", r.text);
    // That presentation used the code up: presenting it again is reuse.
    let r = curl(&["-d", &exchange(&code, &verifier), &url]).await;
    assert_eq!(r.error(), "invalid_grant");

    // A fresh code (a backup code this time: the TOTP step is spent):
    // exchanged once; a second exchange revokes its tokens.
    let (verifier, challenge) = pkce();
    let query = q(&format!(
        "&redirect_uri={CB}&code_challenge={challenge}&code_challenge_method=S256"
    ));
    let r = sign_in(&base, &jar, &query, "mia", "mia-pw", &[("otp", &backup[0])]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let r = r.header("location").unwrap().to_owned();
    let code = param(&r, "code").unwrap();
    let r = curl(&["-d", &exchange(&code, &verifier), &url]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    let refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&access)["sub"], admin_lookup(&admin, "mia").await);
    let mia = admin.with_token(&access);
    assert_eq!(mia.get("/api/users/me").await.body["username"], "mia");
    let r = curl(&["-d", &exchange(&code, &verifier), &url]).await;
    assert_eq!(r.error(), "invalid_grant");
    assert_eq!(
        mia.get("/api/users/me").await.status,
        401,
        "revoked with its code"
    );
    let again = format!(
        "grant_type=refresh_token&refresh_token={refresh}&client_id={}",
        app.id
    );
    assert_eq!(curl(&["-d", &again, &url]).await.error(), "invalid_grant");
    b.stop().await;
}

async fn admin_lookup(admin: &Api, name: &str) -> serde_json::Value {
    let users = admin
        .get(&format!("/api/users?username[eq]={name}"))
        .await
        .body;
    users[0]["id"].clone()
}
