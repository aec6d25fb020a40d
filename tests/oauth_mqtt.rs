//! OAuth access tokens on MQTT: as the CONNECT password with
//! `mosquitto_pub` (user name: the token's user, or the client id),
//! refused once expired or revoked; a live session closed at expiry
//! (v5 DISCONNECT 0xA0); and Gatehouse's in-session renewal, MQTT 5
//! enhanced authentication with the method `gatehouse-token`, in raw
//! packets: AUTH 0x19 with a fresh token extends the session past the
//! first token's expiry.

mod common;

use bytes::Bytes;
use common::api::Api;
use common::oauth::*;
use common::*;
use gatehouse::protocol::*;
use serde_json::json;
use std::time::{Duration, Instant};

const CB: &str = "http://127.0.0.1:9/cb";
const METHOD: &str = "gatehouse-token";

/// A client-credentials client whose account may use `svc/#`.
async fn service(admin: &Api, name: &str, expiration: u32) -> Registered {
    let svc = confidential(admin, name, CB, json!(expiration), json!(0)).await;
    let role = admin
        .create_role(json!({"name": format!("{name}-mqtt"), "permissions": [
            {"resource": "svc/#", "operation": "readWrite", "context": "mqtt"}]}))
        .await;
    let uid = svc.user_id.clone().unwrap();
    let r = admin
        .post(&format!("/api/users/{uid}/roles"), json!({"roleId": role}))
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    svc
}

async fn token(b: &TestBroker, client: &Registered, extra: &str) -> String {
    let body = format!("grant_type=client_credentials{extra}");
    let r = curl(&[
        "-u",
        &client.basic(),
        "-d",
        &body,
        &b.http_url("/oauth/token"),
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["access_token"].as_str().unwrap().to_owned()
}

async fn mosquitto_pub(b: &TestBroker, user: &str, password: &str) -> (Option<i32>, String) {
    let port = b.port().to_string();
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "5",
        "-u",
        user,
        "-P",
        password,
        "-t",
        "svc/x",
        "-m",
        "hi",
        "-q",
        "1",
    ];
    run_cmd("mosquitto_pub", &args, Duration::from_secs(5)).await
}

#[tokio::test]
async fn access_token_as_mosquitto_password_refused_once_expired_or_revoked() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let svc = service(&admin, "svc", 2).await;
    let t = token(&b, &svc, "").await;
    let (status, out) = mosquitto_pub(&b, &svc.id, &t).await;
    assert_eq!(status, Some(0), "published with the token: {out}");
    // Another user name with this token is refused.
    let (status, _) = mosquitto_pub(&b, "admin", &t).await;
    assert_ne!(status, Some(0));
    // A token without the mqtt scope does not open MQTT.
    let api_only = token(&b, &svc, "&scope=api").await;
    let (status, _) = mosquitto_pub(&b, &svc.id, &api_only).await;
    assert_ne!(status, Some(0));
    // Revoked (by its client, RFC 7009): refused.
    let revoked = token(&b, &svc, "").await;
    let field = format!("token={revoked}");
    let r = curl(&[
        "-u",
        &svc.basic(),
        "-d",
        &field,
        &b.http_url("/oauth/revoke"),
    ])
    .await;
    assert_eq!(r.status, 200);
    let (status, out) = mosquitto_pub(&b, &svc.id, &revoked).await;
    assert_ne!(status, Some(0), "revoked: {out}");
    // Expired (2 s): refused.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, out) = mosquitto_pub(&b, &svc.id, &t).await;
    assert_ne!(status, Some(0), "expired: {out}");
    // A password-grant token opens MQTT as its user.
    admin
        .create_user(
            json!({"username": "dana", "password": "dana-pw", "initialPermissions": [
            {"resource": "svc/#", "operation": "write", "context": "mqtt"}]}),
        )
        .await;
    let app = confidential(&admin, "app", CB, json!(60), json!(0)).await;
    let r = curl(&[
        "-u",
        &app.basic(),
        "-d",
        "grant_type=password&username=dana&password=dana-pw",
        &b.http_url("/oauth/token"),
    ])
    .await;
    let dana = r.body["access_token"].as_str().unwrap().to_owned();
    let (status, out) = mosquitto_pub(&b, "dana", &dana).await;
    assert_eq!(status, Some(0), "{out}");
    b.stop().await;
}

async fn connect_with(
    b: &TestBroker,
    user: &str,
    method: Option<&str>,
    data: &str,
) -> (RawClient, ConnAck) {
    let mut client = RawClient::tcp(b.addr(), ProtocolVersion::V5).await;
    let mut connect = connect_packet(ProtocolVersion::V5, "renewing", true);
    connect.username = Some(user.into());
    match method {
        Some(method) => {
            connect.properties.authentication_method = Some(method.into());
            connect.properties.authentication_data = Some(Bytes::copy_from_slice(data.as_bytes()));
        }
        None => connect.password = Some(Bytes::copy_from_slice(data.as_bytes())),
    }
    let ack = client.connect_with(connect).await;
    (client, ack)
}

fn auth(reason: ReasonCode, method: &str, data: &str) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: Properties {
            authentication_method: Some(method.into()),
            authentication_data: Some(Bytes::copy_from_slice(data.as_bytes())),
            ..Properties::default()
        },
    })
}

async fn expect_disconnect(client: &mut RawClient, reason: ReasonCode, within: Duration) {
    match tokio::time::timeout(within, client.recv()).await {
        Ok(Some(Packet::Disconnect(d))) => assert_eq!(d.reason, reason, "{d:?}"),
        other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn live_session_closed_at_its_tokens_expiry() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let svc = service(&admin, "svc", 2).await;
    let t = token(&b, &svc, "").await;
    let started = Instant::now();
    let (mut client, ack) = connect_with(&b, &svc.id, None, &t).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(
        client.subscribe("svc/#", QoS::AtMostOnce).await,
        ReasonCode(0)
    );
    expect_disconnect(
        &mut client,
        ReasonCode::MAXIMUM_CONNECT_TIME,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    b.stop().await;
}

#[tokio::test]
async fn auth_reauthentication_extends_the_session() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let svc = service(&admin, "svc", 4).await;
    let first = token(&b, &svc, "").await;
    let started = Instant::now();
    let (mut client, ack) = connect_with(&b, &svc.id, Some(METHOD), &first).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{ack:?}");
    assert_eq!(
        ack.properties.authentication_method.as_deref(),
        Some(METHOD)
    );
    // Expiries are whole seconds: the first ends 3 to 4 s after the
    // start, the second 5.5 to 6.5 s.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = token(&b, &svc, "").await;
    client
        .send(&auth(ReasonCode::REAUTHENTICATE, METHOD, &second))
        .await;
    match client.recv().await {
        Some(Packet::Auth(a)) => {
            assert_eq!(a.reason, ReasonCode::SUCCESS);
            assert_eq!(a.properties.authentication_method.as_deref(), Some(METHOD));
        }
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    // Past the first token's expiry: still connected.
    tokio::time::sleep(Duration::from_millis(4500).saturating_sub(started.elapsed())).await;
    client.send(&Packet::PingReq).await;
    assert_eq!(client.recv().await, Some(Packet::PingResp));
    // Revoking the first token no longer closes it either.
    let field = format!("token={first}");
    curl(&[
        "-u",
        &svc.basic(),
        "-d",
        &field,
        &b.http_url("/oauth/revoke"),
    ])
    .await;
    client.send(&Packet::PingReq).await;
    assert_eq!(client.recv().await, Some(Packet::PingResp));
    // The second token's expiry ends it.
    expect_disconnect(
        &mut client,
        ReasonCode::MAXIMUM_CONNECT_TIME,
        Duration::from_secs(4),
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(5400),
        "{:?}",
        started.elapsed()
    );
    b.stop().await;
}

#[tokio::test]
async fn refused_renewals_and_methods() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let svc = service(&admin, "svc", 60).await;
    let other = service(&admin, "other", 60).await;
    let t = token(&b, &svc, "").await;
    // Another method: 0x8C. A password sent as gatehouse-token data: 0x86.
    let (_, ack) = connect_with(&b, &svc.id, Some("SCRAM-SHA-1"), &t).await;
    assert_eq!(ack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);
    let (_, ack) = connect_with(&b, &svc.id, Some(METHOD), svc.secret.as_deref().unwrap()).await;
    assert_eq!(ack.reason, ReasonCode::BAD_USERNAME_OR_PASSWORD);
    // A token of another user: 0x87.
    let (mut client, ack) = connect_with(&b, &svc.id, Some(METHOD), &t).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let foreign = token(&b, &other, "").await;
    client
        .send(&auth(ReasonCode::REAUTHENTICATE, METHOD, &foreign))
        .await;
    expect_disconnect(
        &mut client,
        ReasonCode::NOT_AUTHORIZED,
        Duration::from_secs(3),
    )
    .await;
    // Garbage: 0x87.
    let (mut client, _) = connect_with(&b, &svc.id, Some(METHOD), &t).await;
    client
        .send(&auth(ReasonCode::REAUTHENTICATE, METHOD, "not-a-token"))
        .await;
    expect_disconnect(
        &mut client,
        ReasonCode::NOT_AUTHORIZED,
        Duration::from_secs(3),
    )
    .await;
    // AUTH on a connection that did not use the method: protocol error.
    let (mut client, ack) = connect_with(&b, &svc.id, None, &t).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(ack.properties.authentication_method.is_none());
    client
        .send(&auth(ReasonCode::REAUTHENTICATE, METHOD, &t))
        .await;
    expect_disconnect(
        &mut client,
        ReasonCode::PROTOCOL_ERROR,
        Duration::from_secs(3),
    )
    .await;
    // A renewed session closes when the new token is revoked (0x98).
    let (mut client, _) = connect_with(&b, &svc.id, Some(METHOD), &t).await;
    let fresh = token(&b, &svc, "").await;
    client
        .send(&auth(ReasonCode::REAUTHENTICATE, METHOD, &fresh))
        .await;
    assert!(matches!(client.recv().await, Some(Packet::Auth(_))));
    let field = format!("token={fresh}");
    curl(&[
        "-u",
        &svc.basic(),
        "-d",
        &field,
        &b.http_url("/oauth/revoke"),
    ])
    .await;
    expect_disconnect(
        &mut client,
        ReasonCode::ADMINISTRATIVE_ACTION,
        Duration::from_secs(3),
    )
    .await;
    b.stop().await;
}
