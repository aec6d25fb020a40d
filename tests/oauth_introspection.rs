//! The implicit grant with a never-expiring token, introspection (RFC
//! 7662), revocation (RFC 7009) and the server metadata (RFC 8414),
//! driven with `curl`.

mod common;

use common::api::Api;
use common::oauth::*;
use common::*;
use serde_json::json;

const CB: &str = "http://127.0.0.1:9/callback";

/// `curl` over borrowed arguments, as a future that owns them.
async fn curl_owned<const N: usize>(args: [&str; N]) -> Curl {
    curl(&args).await
}

#[tokio::test]
async fn implicit_never_expiring_introspection_revocation_metadata() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    admin
        .create_user(json!({"username": "bob", "password": "bob-pw"}))
        .await;
    let base = format!("http://{}", b.http_addr());
    let implicit = register(
        &admin,
        json!({"name": "legacy", "version": "1", "type": "public", "redirectUris": [CB],
            "allowedGrants": ["implicit"], "tokenExpiration": "never"}),
    )
    .await;
    let jar = b.dir.path().join("jar");
    let query = format!(
        "response_type=token&client_id={}&state=abc&scope=api",
        implicit.id
    );
    let r = sign_in(&base, &jar, &query, "bob", "bob-pw", &[]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let location = r.header("location").unwrap().to_owned();
    assert!(location.starts_with(&format!("{CB}#")), "{location}");
    assert_eq!(param(&location, "state").as_deref(), Some("abc"));
    assert!(
        param(&location, "expires_in").is_none(),
        "never expires: {location}"
    );
    let forever = param(&location, "access_token").unwrap();
    assert_eq!(claims(&forever)["exp"], 253_402_300_799u64);
    assert_eq!(
        admin.with_token(&forever).get("/api/users/me").await.status,
        200
    );

    // Introspection by a confidential client (a resource server): another
    // client's token is not revealed to it ...
    let rs = confidential(&admin, "rs", CB, json!(120), json!(3)).await;
    let url = |p: &str| format!("{base}/oauth/{p}");
    let token_field = |t: &str| format!("token={t}");
    let forever_field = token_field(&forever);
    let introspect_url = url("introspect");
    let rs_basic = rs.basic();
    let introspect_forever =
        || curl_owned(["-u", &rs_basic, "-d", &forever_field, &introspect_url]);
    let r = introspect_forever().await;
    assert_eq!((r.status, &r.body), (200, &json!({"active": false})));
    // ... until its account is given the right explicitly.
    let rs_account = rs.user_id.clone().unwrap();
    let r = admin
        .post(
            &format!("/api/users/{rs_account}/permissions"),
            json!({"resource": "/oauth/introspect", "operation": "read", "context": "http"}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let r = introspect_forever().await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["exp"], 253_402_300_799u64);
    assert_eq!(r.body["username"], "bob");
    assert_eq!(r.body["client_id"], implicit.id.as_str());
    assert_eq!(r.body["scope"], "api");
    assert_eq!(r.body["token_type"], "Bearer");
    let r = curl(&["-u", &rs.basic(), "-d", "token=garbage", &url("introspect")]).await;
    assert_eq!(r.body, json!({"active": false}));
    let public = format!("client_id={}", implicit.id);
    let r = curl(&[
        "-d",
        &public,
        "-d",
        &token_field(&forever),
        &url("introspect"),
    ])
    .await;
    assert_eq!((r.status, r.error()), (401, "invalid_client"));

    // rs's own password-grant tokens: introspected, then revoked.
    let r = curl(&[
        "-u",
        &rs.basic(),
        "-d",
        "grant_type=password&username=bob&password=bob-pw",
        &url("token"),
    ])
    .await;
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    let refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
    let r = curl(&[
        "-u",
        &rs.basic(),
        "-d",
        &token_field(&refresh),
        &url("introspect"),
    ])
    .await;
    assert_eq!(
        (r.body["active"].as_bool(), r.body["token_type"].as_str()),
        (Some(true), Some("refresh_token"))
    );
    // Another client's revocation does nothing (and says nothing).
    let other = confidential(&admin, "other", CB, json!(60), json!(0)).await;
    let r = curl(&[
        "-u",
        &other.basic(),
        "-d",
        &token_field(&access),
        &url("revoke"),
    ])
    .await;
    assert_eq!(r.status, 200);
    let bob = admin.with_token(&access);
    assert_eq!(bob.get("/api/users/me").await.status, 200);
    let r = curl(&[
        "-u",
        &rs.basic(),
        "-d",
        &token_field(&access),
        "-d",
        "token_type_hint=access_token",
        &url("revoke"),
    ])
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(bob.get("/api/users/me").await.status, 401);
    let r = curl(&[
        "-u",
        &rs.basic(),
        "-d",
        &token_field(&access),
        &url("introspect"),
    ])
    .await;
    assert_eq!(r.body["active"], false);
    // Revoking the refresh token ends its grant.
    let r = curl(&[
        "-u",
        &rs.basic(),
        "-d",
        &token_field(&refresh),
        &url("revoke"),
    ])
    .await;
    assert_eq!(r.status, 200);
    let again = format!("grant_type=refresh_token&refresh_token={refresh}");
    assert_eq!(
        curl(&["-u", &rs.basic(), "-d", &again, &url("token")])
            .await
            .error(),
        "invalid_grant"
    );
    let r = curl(&["-u", &rs.basic(), "-d", "token=unknown", &url("revoke")]).await;
    assert_eq!(r.status, 200);
    let r = curl(&[
        "-u",
        &rs.basic(),
        "-d",
        "token_type_hint=access_token",
        &url("revoke"),
    ])
    .await;
    assert_eq!((r.status, r.error()), (400, "invalid_request"));

    // RFC 8414 metadata.
    let m = curl(&[&format!("{base}/.well-known/oauth-authorization-server")]).await;
    assert_eq!(m.body["issuer"], "gatehouse");
    assert_eq!(m.body["token_endpoint"], url("token").as_str());
    assert_eq!(
        m.body["jwks_uri"],
        format!("{base}/.well-known/jwks.json").as_str()
    );
    assert_eq!(m.body["code_challenge_methods_supported"], json!(["S256"]));
    b.stop().await;
}
