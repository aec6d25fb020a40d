//! What ends OAuth grants (security review of issue 13), driven with
//! `curl` and raw MQTT: revoking a user's tokens, a password change,
//! disabling or deleting the user, and changing or deleting the client
//! end the refresh-token grants and their access tokens at once (API and
//! MQTT); two concurrent refreshes with one token give exactly one
//! success and reuse revokes the winner's access token too; pending codes
//! die with a change of the client; grants have idle and absolute
//! lifetimes and per-user caps; MQTT 5 renewal checks the client and its
//! grants; a disabled client account cannot refresh.

mod common;

use bytes::Bytes;
use common::api::Api;
use common::oauth::*;
use common::*;
use gatehouse::protocol::*;
use serde_json::json;
use std::time::Duration;

const CB: &str = "http://127.0.0.1:9/cb";
const METHOD: &str = "gatehouse-token";

/// A password grant for `user`: (access token, refresh token).
async fn password_grant(
    b: &TestBroker,
    client: &Registered,
    user: &str,
    pw: &str,
) -> (String, String) {
    let body = format!("grant_type=password&username={user}&password={pw}");
    let r = curl(&[
        "-u",
        &client.basic(),
        "-d",
        &body,
        &b.http_url("/oauth/token"),
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    (
        r.body["access_token"].as_str().unwrap().to_owned(),
        r.body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// `grant_type=refresh_token` by `basic` (`id:secret`, or `id:` public).
async fn refresh_as(b: &TestBroker, basic: &str, refresh: &str) -> Curl {
    let body = format!("grant_type=refresh_token&refresh_token={refresh}");
    curl(&["-u", basic, "-d", &body, &b.http_url("/oauth/token")]).await
}

/// The admin API's answer to the token: 200 or 401.
async fn api_status(admin: &Api, token: &str) -> u16 {
    admin
        .with_token(token)
        .get("/api/users/me")
        .await
        .status
        .as_u16()
}

/// Both tokens of a grant are refused now.
async fn ended(
    b: &TestBroker,
    admin: &Api,
    client: &Registered,
    (access, refresh): &(String, String),
) {
    assert_eq!(
        api_status(admin, access).await,
        401,
        "access token still accepted"
    );
    let r = refresh_as(b, &client.basic(), refresh).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant"), "{}", r.text);
}

async fn mqtt_with_token(
    b: &TestBroker,
    user: &str,
    method: Option<&str>,
    token: &str,
) -> RawClient {
    let mut client = RawClient::tcp(b.addr(), ProtocolVersion::V5).await;
    let mut connect = connect_packet(ProtocolVersion::V5, &format!("c-{user}"), true);
    connect.username = Some(user.into());
    match method {
        Some(method) => {
            connect.properties.authentication_method = Some(method.into());
            connect.properties.authentication_data = Some(Bytes::copy_from_slice(token.as_bytes()));
        }
        None => connect.password = Some(Bytes::copy_from_slice(token.as_bytes())),
    }
    let ack = client.connect_with(connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{ack:?}");
    client
}

async fn expect_disconnect(client: &mut RawClient, reason: ReasonCode) {
    match tokio::time::timeout(Duration::from_secs(5), client.recv()).await {
        Ok(Some(Packet::Disconnect(d))) => assert_eq!(d.reason, reason, "{d:?}"),
        other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
    }
}

fn mqtt_user(name: &str, pw: &str) -> serde_json::Value {
    json!({"username": name, "password": pw, "initialPermissions": [
        {"resource": "#", "operation": "readWrite", "context": "mqtt"}]})
}

#[tokio::test]
async fn user_events_end_the_users_grants_and_access_tokens() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let alice = admin.create_user(mqtt_user("alice", "alice-pw-0001")).await;
    let app = confidential(&admin, "app", CB, json!("global"), json!("unlimited")).await;

    // "Revoke all tokens" of the user: an MQTT session on the access
    // token closes (0x98) too.
    let grant = password_grant(&b, &app, "alice", "alice-pw-0001").await;
    let mut session = mqtt_with_token(&b, "alice", None, &grant.0).await;
    let r = admin.delete(&format!("/api/users/{alice}/tokens")).await;
    assert!(r.status.is_success(), "{}", r.body);
    expect_disconnect(&mut session, ReasonCode::ADMINISTRATIVE_ACTION).await;
    ended(&b, &admin, &app, &grant).await;

    // A password change (by an administrator).
    let grant = password_grant(&b, &app, "alice", "alice-pw-0001").await;
    let r = admin
        .put(
            &format!("/api/users/{alice}/password"),
            json!({"newPassword": "alice-pw-0002"}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    ended(&b, &admin, &app, &grant).await;

    // Disabling: the grant stays ended when the user is enabled again.
    let grant = password_grant(&b, &app, "alice", "alice-pw-0002").await;
    let r = admin
        .put(&format!("/api/users/{alice}"), json!({"enabled": false}))
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let r = admin
        .put(&format!("/api/users/{alice}"), json!({"enabled": true}))
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    ended(&b, &admin, &app, &grant).await;

    // A pending authorization code dies with the user's revocation too.
    let jar = b.dir.path().join("jar");
    let base = format!("http://{}", b.http_addr());
    let query = format!("response_type=code&client_id={}&redirect_uri={CB}", app.id);
    let r = sign_in(&base, &jar, &query, "alice", "alice-pw-0002", &[]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let code = param(r.header("location").unwrap(), "code").unwrap();
    let r = admin.delete(&format!("/api/users/{alice}/tokens")).await;
    assert!(r.status.is_success(), "{}", r.body);
    let body = format!("grant_type=authorization_code&code={code}&redirect_uri={CB}");
    let r = curl(&["-u", &app.basic(), "-d", &body, &b.http_url("/oauth/token")]).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant"), "{}", r.text);

    // Deleting the user.
    let grant = password_grant(&b, &app, "alice", "alice-pw-0002").await;
    let r = admin.delete(&format!("/api/users/{alice}")).await;
    assert!(r.status.is_success(), "{}", r.body);
    ended(&b, &admin, &app, &grant).await;
    b.stop().await;
}

#[tokio::test]
async fn concurrent_refreshes_one_success_and_reuse_revokes_the_family() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    admin.create_user(mqtt_user("carol", "carol-pw-0001")).await;
    let app = confidential(&admin, "app", CB, json!("global"), json!("unlimited")).await;
    for round in 0..6 {
        let (first_access, refresh) = password_grant(&b, &app, "carol", "carol-pw-0001").await;
        let basic = app.basic();
        let (x, y) = tokio::join!(
            refresh_as(&b, &basic, &refresh),
            refresh_as(&b, &basic, &refresh)
        );
        let (won, lost) = match (x.status, y.status) {
            (200, 400) => (x, y),
            (400, 200) => (y, x),
            other => panic!(
                "round {round}: exactly one success expected, got {other:?}: {} / {}",
                x.text, y.text
            ),
        };
        assert_eq!(lost.error(), "invalid_grant", "{}", lost.text);
        // The reuse revoked the whole family: the winner's tokens too.
        let access = won.body["access_token"].as_str().unwrap();
        let next = won.body["refresh_token"].as_str().unwrap();
        assert_eq!(api_status(&admin, access).await, 401, "round {round}");
        assert_eq!(
            api_status(&admin, &first_access).await,
            401,
            "round {round}"
        );
        let r = refresh_as(&b, &app.basic(), next).await;
        assert_eq!(r.error(), "invalid_grant", "round {round}: {}", r.text);
    }
    b.stop().await;
}

#[tokio::test]
async fn client_changes_end_codes_and_grants_and_deletion_takes_the_account() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    admin.create_user(mqtt_user("dave", "dave-pw-00001")).await;
    let base = format!("http://{}", b.http_addr());
    let jar = b.dir.path().join("jar");

    // confidential -> public: a pending code (no PKCE) and a refresh
    // token would otherwise work for the now secretless client.
    let web = register(
        &admin,
        json!({"name": "web", "version": "1", "type": "confidential", "redirectUris": [CB],
            "refreshCount": "unlimited"}),
    )
    .await;
    let query = format!("response_type=code&client_id={}&redirect_uri={CB}", web.id);
    let code_for =
        |code: &str| format!("grant_type=authorization_code&code={code}&redirect_uri={CB}");
    let r = sign_in(&base, &jar, &query, "dave", "dave-pw-00001", &[]).await;
    let code = param(r.header("location").unwrap(), "code").unwrap();
    let r = curl(&[
        "-u",
        &web.basic(),
        "-d",
        &code_for(&code),
        &b.http_url("/oauth/token"),
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    let refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
    let r = sign_in(&base, &jar, &query, "dave", "dave-pw-00001", &[]).await;
    let pending = param(r.header("location").unwrap(), "code").unwrap();
    let account = web.user_id.clone().unwrap();
    let r = admin
        .put(
            &format!("/api/oauth/clients/{}", web.id),
            json!({"type": "public"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        admin.get(&format!("/api/users/{account}")).await.status,
        404
    );
    let public = format!("{}:", web.id);
    let r = refresh_as(&b, &public, &refresh).await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.text);
    assert_eq!(api_status(&admin, &access).await, 401);
    let r = curl(&[
        "-u",
        &public,
        "-d",
        &code_for(&pending),
        &b.http_url("/oauth/token"),
    ])
    .await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.text);

    // A change of allowedGrants.
    let app = confidential(&admin, "app", CB, json!("global"), json!("unlimited")).await;
    let grant = password_grant(&b, &app, "dave", "dave-pw-00001").await;
    let query = format!("response_type=code&client_id={}&redirect_uri={CB}", app.id);
    let r = sign_in(&base, &jar, &query, "dave", "dave-pw-00001", &[]).await;
    let pending = param(r.header("location").unwrap(), "code").unwrap();
    let r = curl(&[
        "-u",
        &app.basic(),
        "-d",
        "grant_type=client_credentials",
        &b.http_url("/oauth/token"),
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let machine_token = r.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(api_status(&admin, &machine_token).await, 200);
    let r = admin
        .put(
            &format!("/api/oauth/clients/{}", app.id),
            json!({"allowedGrants": ["authorization_code", "password"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    ended(&b, &admin, &app, &grant).await;
    // A client_credentials token (no refresh grant behind it) goes too.
    assert_eq!(api_status(&admin, &machine_token).await, 401);
    let r = curl(&[
        "-u",
        &app.basic(),
        "-d",
        &code_for(&pending),
        &b.http_url("/oauth/token"),
    ])
    .await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.text);

    // Deleting the client: its account goes, and its tokens.
    let grant = password_grant(&b, &app, "dave", "dave-pw-00001").await;
    let account = app.user_id.clone().unwrap();
    let r = admin
        .delete(&format!("/api/oauth/clients/{}", app.id))
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    assert_eq!(
        admin.get(&format!("/api/users/{account}")).await.status,
        404
    );
    assert_eq!(api_status(&admin, &grant.0).await, 401);
    let users = admin.get("/api/users").await.body.to_string();
    assert!(!users.contains(&app.id), "orphaned account: {users}");
    b.stop().await;
}

#[tokio::test]
async fn grants_are_capped_per_user_and_have_idle_and_absolute_lifetimes() {
    let b = TestBroker::start_with(|c| {
        c.oauth.max_grants_per_user = 2;
        c.oauth.refresh_idle_lifetime_secs = 2;
        c.oauth.refresh_absolute_lifetime_secs = 4;
    })
    .await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    admin.create_user(mqtt_user("erin", "erin-pw-00001")).await;
    let app = confidential(&admin, "app", CB, json!("global"), json!("unlimited")).await;

    // A third grant ends the least recently used one.
    let one = password_grant(&b, &app, "erin", "erin-pw-00001").await;
    let two = password_grant(&b, &app, "erin", "erin-pw-00001").await;
    let r = refresh_as(&b, &app.basic(), &one.1).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let one = (
        r.body["access_token"].as_str().unwrap().to_owned(),
        r.body["refresh_token"].as_str().unwrap().to_owned(),
    );
    let _three = password_grant(&b, &app, "erin", "erin-pw-00001").await;
    ended(&b, &admin, &app, &two).await;
    let r = refresh_as(&b, &app.basic(), &one.1).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Idle: unused for 2 s.
    let idle = password_grant(&b, &app, "erin", "erin-pw-00001").await;
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let r = refresh_as(&b, &app.basic(), &idle.1).await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.text);

    // Absolute: 4 s however often it is used.
    let (_, mut refresh) = password_grant(&b, &app, "erin", "erin-pw-00001").await;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1400)).await;
        let r = refresh_as(&b, &app.basic(), &refresh).await;
        assert_eq!(r.status, 200, "{}", r.text);
        refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
    }
    // 4.3 s after the start, 1.5 s after the last use.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = refresh_as(&b, &app.basic(), &refresh).await;
    assert_eq!(r.error(), "invalid_grant", "{}", r.text);
    b.stop().await;
}

#[tokio::test]
async fn renewal_checks_the_client_and_its_grants_and_a_disabled_client_cannot_refresh() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let svc = register(
        &admin,
        json!({"name": "svc", "version": "1", "type": "confidential", "redirectUris": [CB],
            "allowedGrants": ["client_credentials", "password"], "refreshCount": "unlimited"}),
    )
    .await;
    let account = svc.user_id.clone().unwrap();
    let r = admin
        .post(
            &format!("/api/users/{account}/permissions"),
            json!({"resource": "#", "operation": "readWrite", "context": "mqtt"}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let cc = || async {
        let r = curl(&[
            "-u",
            &svc.basic(),
            "-d",
            "grant_type=client_credentials",
            &b.http_url("/oauth/token"),
        ])
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["access_token"].as_str().unwrap().to_owned()
    };
    let first = cc().await;
    let second = cc().await;
    let mut session = mqtt_with_token(&b, &svc.id, Some(METHOD), &first).await;
    // The client may no longer use client_credentials: the tokens it got
    // that way are revoked at once (the session on one closes with 0x98),
    // so none can renew a session or open a new one.
    let r = admin
        .put(
            &format!("/api/oauth/clients/{}", svc.id),
            json!({"allowedGrants": ["password"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    expect_disconnect(&mut session, ReasonCode::ADMINISTRATIVE_ACTION).await;
    let mut client = RawClient::tcp(b.addr(), ProtocolVersion::V5).await;
    let mut connect = connect_packet(ProtocolVersion::V5, "c-second", true);
    connect.username = Some(svc.id.as_str().into());
    connect.properties.authentication_method = Some(METHOD.into());
    connect.properties.authentication_data = Some(Bytes::copy_from_slice(second.as_bytes()));
    let ack = client.connect_with(connect).await;
    assert_ne!(ack.reason, ReasonCode::SUCCESS, "{ack:?}");

    // A client whose account is disabled cannot refresh.
    admin.create_user(mqtt_user("fay", "fay-pw-000001")).await;
    let grant = password_grant(&b, &svc, "fay", "fay-pw-000001").await;
    let r = admin
        .put(&format!("/api/users/{account}"), json!({"enabled": false}))
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let r = refresh_as(&b, &svc.basic(), &grant.1).await;
    assert_eq!((r.status, r.error()), (401, "invalid_client"), "{}", r.text);
    b.stop().await;
}
