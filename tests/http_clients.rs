//! Connected clients and stored sessions through the admin API: listed
//! with who, from where, over what and since when; a client disconnected
//! (v5 0x98) and a session ended, each audited.

mod common;

use bytes::Bytes;
use common::api::Api;
use common::*;
use gatehouse::protocol::*;
use serde_json::{Value, json};
use std::time::Duration;

const V5: ProtocolVersion = ProtocolVersion::V5;

async fn mqtt_login(
    broker: &TestBroker,
    client_id: &str,
    user: &str,
    password: &str,
    expiry: u32,
) -> RawClient {
    let mut client = RawClient::tcp(broker.addr(), V5).await;
    let mut connect = connect_packet(V5, client_id, true);
    connect.username = Some(user.into());
    connect.password = Some(Bytes::copy_from_slice(password.as_bytes()));
    connect.properties.session_expiry_interval = Some(expiry);
    let ack = client.connect_with(connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    client
}

fn find<'a>(list: &'a Value, key: &str, client_id: &str) -> &'a Value {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientId"] == client_id)
        .unwrap_or_else(|| panic!("{client_id} not in {list}"))
}

#[tokio::test]
async fn clients_are_listed_and_disconnected() {
    let broker = TestBroker::start().await;
    let admin = Api::login(broker.http_addr(), "admin", "admin").await;
    admin
        .create_user(json!({"username": "sensor", "password": "sensor-pw"}))
        .await;
    let mut by_password = mqtt_login(&broker, "dev-pw", "sensor", "sensor-pw", 0).await;
    let token = Api::login(broker.http_addr(), "sensor", "sensor-pw").await;
    let mut by_token = mqtt_login(
        &broker,
        "dev-tok",
        "sensor",
        token.token.as_deref().unwrap(),
        0,
    )
    .await;

    let list = admin.get("/api/clients").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let pw = find(&list.body, "clients", "dev-pw");
    assert_eq!(pw["username"], "sensor");
    assert_eq!(pw["listener"], "mqtt");
    assert_eq!(pw["protocolVersion"], 5);
    assert_eq!(pw["authentication"], "password");
    assert!(pw["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    let now = gatehouse::router::now_millis();
    let since = pw["connectedSince"].as_u64().unwrap();
    assert!(since <= now && now - since < 60_000, "{since} {now}");
    assert_eq!(
        find(&list.body, "clients", "dev-tok")["authentication"],
        "token"
    );

    // One page of one.
    let page = admin.get("/api/clients?pageNumber=2&rowsPerPage=1").await;
    assert_eq!(page.body["clients"].as_array().unwrap().len(), 1);
    assert!(page.body["pagination"]["totalRows"].as_u64().unwrap() >= 2);

    let gone = admin.delete("/api/clients/dev-pw").await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    match by_password.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::ADMINISTRATIVE_ACTION),
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    by_token.send(&Packet::PingReq).await;
    assert!(
        matches!(by_token.recv().await, Some(Packet::PingResp)),
        "others stay"
    );
    let missing = admin.delete("/api/clients/no-such-client").await;
    assert_eq!(
        (missing.status.as_u16(), missing.code()),
        (404, "not_found")
    );
    let audit = admin.get("/api/audit").await;
    assert!(
        audit.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "client.disconnect" && e["target"] == "dev-pw"),
        "{}",
        audit.body
    );
    broker.stop().await;
}

#[tokio::test]
async fn stored_sessions_are_listed_and_ended() {
    let broker = TestBroker::start().await;
    let admin = Api::login(broker.http_addr(), "admin", "admin").await;
    admin
        .create_user(json!({
            "username": "keeper",
            "password": "keeper-pw",
            "initialPermissions": [{"resource": "k/#", "operation": "readWrite", "context": "mqtt"}]
        }))
        .await;
    let mut keeper = mqtt_login(&broker, "kept", "keeper", "keeper-pw", 3600).await;
    keeper.subscribe("k/#", QoS::AtLeastOnce).await;
    keeper.disconnect().await;
    let mut publisher = mqtt_login(&broker, "pub", "keeper", "keeper-pw", 0).await;
    publisher
        .publish("k/1", b"queued", QoS::AtLeastOnce, false)
        .await;

    let list = admin.get("/api/sessions").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let kept = find(&list.body, "sessions", "kept");
    assert_eq!(kept["owner"], "keeper");
    assert_eq!(kept["connected"], false);
    assert_eq!(kept["expiryInterval"], 3600);
    assert_eq!(kept["queued"], 1);
    assert!(kept["expiresAt"].as_u64().unwrap() > gatehouse::router::now_millis());
    assert_eq!(find(&list.body, "sessions", "pub")["connected"], true);

    let ended = admin.delete("/api/sessions/kept").await;
    assert_eq!(ended.status, 204, "{}", ended.body);
    let list = admin.get("/api/sessions").await;
    assert!(
        !list.body["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["clientId"] == "kept")
    );
    let mut again = RawClient::tcp(broker.addr(), V5).await;
    let mut connect = connect_packet(V5, "kept", false);
    connect.username = Some("keeper".into());
    connect.password = Some(Bytes::from_static(b"keeper-pw"));
    connect.properties.session_expiry_interval = Some(3600);
    let ack = again.connect_with(connect).await;
    assert!(!ack.session_present, "the session and its queue are gone");
    again.expect_silence(Duration::from_millis(300)).await;
    let missing = admin.delete("/api/sessions/no-such-session").await;
    assert_eq!(missing.status, 404);
    broker.stop().await;
}
