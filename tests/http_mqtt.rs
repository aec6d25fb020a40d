//! Tokens as MQTT passwords and live permission changes, with real MQTT
//! clients (mosquitto_sub/mosquitto_pub, and the crate's raw client for
//! exact DISCONNECT reason codes): a revoked token closes its session
//! (0x98) and is refused everywhere, an expired one closes it (0xA0), a
//! disabled user's token session closes (0x98), and a role change stops
//! deliveries at once.

mod common;

use common::api::Api;
use common::*;
use gatehouse::protocol::*;
use serde_json::json;
use std::time::Duration;

/// A user `name` (password `name-pw`) with readWrite on `name/#`.
async fn device(admin: &Api, name: &str) -> String {
    let role = admin
        .create_role(json!({"name": format!("{name}-role"), "permissions": [
            {"resource": format!("{name}/#"), "operation": "readWrite", "context": "mqtt"}]}))
        .await;
    admin
        .create_user(json!({"username": name, "password": format!("{name}-pw"), "roles": [role]}))
        .await
}

async fn token_for(b: &TestBroker, name: &str, hours: f64, label: &str) -> String {
    let r = Api::new(b.http_addr())
        .post(
            "/api/login",
            json!({"username": name, "password": format!("{name}-pw"), "expireTimeInHours": hours, "label": label}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["token"].as_str().unwrap().to_owned()
}

async fn raw_login(
    addr: std::net::SocketAddr,
    client_id: &str,
    user: &str,
    password: &str,
) -> (RawClient, ReasonCode) {
    let mut client = RawClient::tcp(addr, ProtocolVersion::V5).await;
    let mut connect = connect_packet(ProtocolVersion::V5, client_id, true);
    connect.username = Some(user.into());
    connect.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
    let ack = client.connect_with(connect).await;
    (client, ack.reason)
}

async fn expect_disconnect(client: &mut RawClient, reason: ReasonCode, within: Duration) {
    loop {
        match tokio::time::timeout(within, client.recv()).await {
            Ok(Some(Packet::Disconnect(d))) => {
                assert_eq!(d.reason, reason);
                return;
            }
            Ok(Some(_)) => continue,
            Ok(None) => panic!("closed without DISCONNECT {reason:?}"),
            Err(_) => panic!("no DISCONNECT {reason:?} within {within:?}"),
        }
    }
}

#[tokio::test]
async fn long_lived_token_listed_revoked_and_its_mqtt_session_closed() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let id = device(&admin, "dev1").await;
    let token = token_for(&b, "dev1", 99999.0, "long").await;
    let tokens = admin.get(&format!("/api/users/{id}/tokens")).await.body;
    assert_eq!(tokens[0]["label"], "long");
    let fingerprint = tokens[0]["fingerprint"].as_str().unwrap().to_owned();
    let port = b.port().to_string();
    let sub_args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "5",
        "-u",
        "dev1",
        "-P",
        &token,
        "-t",
        "dev1/x",
        "-d",
        "-k",
        "5",
        "-W",
        "8",
    ]
    .map(String::from);
    let subscriber = tokio::spawn(async move {
        let args: Vec<&str> = sub_args.iter().map(String::as_str).collect();
        run_cmd("mosquitto_sub", &args, Duration::from_secs(10)).await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, out) = run_cmd(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "5",
            "-u",
            "dev1",
            "-P",
            &token,
            "-t",
            "dev1/x",
            "-m",
            "hello",
        ],
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status, Some(0), "publish with the token: {out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let revoke = admin
        .delete(&format!("/api/users/{id}/tokens/{fingerprint}"))
        .await;
    assert_eq!(revoke.status, 204);
    let (_, out) = subscriber.await.unwrap();
    assert!(
        out.contains("hello"),
        "delivered before the revocation: {out}"
    );
    assert!(
        out.contains("Received DISCONNECT (152)"),
        "closed with 0x98: {out}"
    );
    // Refused at once everywhere.
    let http = admin.with_token(&token).get("/api/users/me").await;
    assert_eq!((http.status.as_u16(), http.code()), (401, "invalid_token"));
    let (status, out) = run_cmd(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "5",
            "-u",
            "dev1",
            "-P",
            &token,
            "-t",
            "dev1/x",
            "-m",
            "again",
        ],
        Duration::from_secs(5),
    )
    .await;
    assert_ne!(status, Some(0), "{out}");
    assert!(
        admin
            .get(&format!("/api/users/{id}/tokens"))
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty()
    );
    b.stop().await;
}

#[tokio::test]
async fn token_expiry_closes_the_session_with_0xa0() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    device(&admin, "dev2").await;
    // 0.0008 h = 2.9 s.
    let token = token_for(&b, "dev2", 0.0008, "short").await;
    let since = std::time::Instant::now();
    // mosquitto_sub on the same token, beside a raw client.
    let port = b.port().to_string();
    let sub_args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "5",
        "-u",
        "dev2",
        "-P",
        &token,
        "-t",
        "dev2/x",
        "-d",
        "-k",
        "5",
        "-W",
        "8",
    ]
    .map(String::from);
    let subscriber = tokio::spawn(async move {
        let args: Vec<&str> = sub_args.iter().map(String::as_str).collect();
        run_cmd("mosquitto_sub", &args, Duration::from_secs(10)).await
    });
    let (mut client, reason) = raw_login(b.addr(), "dev2-c", "dev2", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(
        client.subscribe("dev2/#", QoS::AtMostOnce).await,
        ReasonCode::SUCCESS
    );
    expect_disconnect(
        &mut client,
        ReasonCode::MAXIMUM_CONNECT_TIME,
        Duration::from_secs(6),
    )
    .await;
    assert!(
        since.elapsed() >= Duration::from_secs(2),
        "{:?}",
        since.elapsed()
    );
    let (_, out) = subscriber.await.unwrap();
    assert!(out.contains("received CONNACK (0)"), "{out}");
    assert!(
        out.contains("Received DISCONNECT (160)"),
        "closed with 0xA0: {out}"
    );
    // An expired token cannot connect again.
    let (_, reason) = raw_login(b.addr(), "dev2-c", "dev2", &token).await;
    assert_eq!(reason, ReasonCode::BAD_USERNAME_OR_PASSWORD);
    b.stop().await;
}

#[tokio::test]
async fn token_sessions_close_when_the_user_is_disabled_or_deleted() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let id = device(&admin, "dev3").await;
    let token = token_for(&b, "dev3", 1.0, "t").await;
    // Another user's name with this token is refused.
    let (_, reason) = raw_login(b.addr(), "x", "admin", &token).await;
    assert_eq!(reason, ReasonCode::BAD_USERNAME_OR_PASSWORD);
    let (mut client, reason) = raw_login(b.addr(), "dev3-c", "dev3", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    let r = admin
        .put(&format!("/api/users/{id}"), json!({"enabled": false}))
        .await;
    assert_eq!(r.status, 200);
    expect_disconnect(
        &mut client,
        ReasonCode::ADMINISTRATIVE_ACTION,
        Duration::from_secs(3),
    )
    .await;
    let (_, reason) = raw_login(b.addr(), "dev3-c", "dev3", &token).await;
    assert_ne!(reason, ReasonCode::SUCCESS);
    admin
        .put(&format!("/api/users/{id}"), json!({"enabled": true}))
        .await;
    let (mut client, reason) = raw_login(b.addr(), "dev3-c", "dev3", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(admin.delete(&format!("/api/users/{id}")).await.status, 204);
    expect_disconnect(
        &mut client,
        ReasonCode::ADMINISTRATIVE_ACTION,
        Duration::from_secs(3),
    )
    .await;
    b.stop().await;
}

#[tokio::test]
async fn role_change_stops_deliveries_to_a_live_subscription() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let role = admin
        .create_role(json!({"name": "watchers", "permissions": [
            {"resource": "live/#", "operation": "read", "context": "mqtt"}]}))
        .await;
    admin
        .create_user(json!({"username": "watcher", "password": "watcher-pw", "roles": [role]}))
        .await;
    let (mut watcher, reason) = raw_login(b.addr(), "w", "watcher", "watcher-pw").await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(
        watcher.subscribe("live/#", QoS::AtMostOnce).await,
        ReasonCode::SUCCESS
    );
    let (mut publisher, _) = raw_login(b.addr(), "p", "admin", "admin").await;
    publisher
        .publish("live/a", b"before", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&watcher.recv_publish().await.payload[..], b"before");
    let permissions = admin
        .get(&format!("/api/roles/{role}/permissions"))
        .await
        .body;
    let pid = permissions[0]["id"].as_str().unwrap();
    let r = admin
        .delete(&format!("/api/roles/{role}/permissions/{pid}"))
        .await;
    assert_eq!(r.status, 204);
    publisher
        .publish("live/b", b"after", QoS::AtLeastOnce, false)
        .await;
    watcher.expect_silence(Duration::from_millis(800)).await;
    // Granted again: deliveries resume for a new subscription.
    admin
        .post(
            &format!("/api/roles/{role}/permissions"),
            json!({"resource": "live/#", "operation": "read", "context": "mqtt"}),
        )
        .await;
    assert_eq!(
        watcher.subscribe("live/#", QoS::AtMostOnce).await,
        ReasonCode::SUCCESS
    );
    publisher
        .publish("live/c", b"again", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&watcher.recv_publish().await.payload[..], b"again");
    b.stop().await;
}
