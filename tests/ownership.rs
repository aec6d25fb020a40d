//! Sessions belong to the user who created them: another user cannot
//! resume, take over or knock off a session by reusing its client id, a
//! deleted user's sessions end with it, and administrators can end one.

mod common;

use bytes::Bytes;
use common::users::*;
use common::*;
use gatehouse::identity::Operation;
use gatehouse::protocol::*;
use std::time::Duration;

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// alice may read `secret/#`, mallory only `public/#`; admin publishes.
async fn two_users() -> TestBroker {
    let broker = TestBroker::start_with(|c| {
        c.auth.failure_delay_ms = 1;
        c.auth.failure_delay_max_ms = 1;
    })
    .await;
    let dir = directory(&broker);
    add_user(
        &dir,
        "alice",
        "alice-pw",
        vec![perm("secret/#", Operation::Read)],
    );
    add_user(
        &dir,
        "mallory",
        "mallory-pw",
        vec![perm("public/#", Operation::Read)],
    );
    broker
}

fn persistent_connect(client_id: &str, user: &str, password: &str, clean: bool) -> Connect {
    let mut connect = connect_packet(V5, client_id, clean);
    connect.username = Some(user.into());
    connect.password = Some(Bytes::copy_from_slice(password.as_bytes()));
    connect.properties.session_expiry_interval = Some(3600);
    connect
}

/// alice's persistent session `dev1` holding one unacknowledged QoS 1
/// message on `secret/x`, with alice gone (TCP dropped, no PUBACK).
async fn alice_leaves_a_secret(broker: &TestBroker) {
    let mut alice = RawClient::tcp(broker.addr(), V5).await;
    let ack = alice
        .connect_with(persistent_connect("dev1", "alice", "alice-pw", true))
        .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(alice.subscribe("secret/#", QoS::AtLeastOnce).await.0, 1);
    let mut admin = login_ok(broker.addr(), V5, "admin-pub", "admin", "admin").await;
    admin
        .publish("secret/x", b"TOPSECRET", QoS::AtLeastOnce, false)
        .await;
    let got = alice.recv_publish().await;
    assert_eq!(got.payload.as_ref(), b"TOPSECRET");
    drop(alice); // no PUBACK, no DISCONNECT
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// The confirmed leak: mallory reusing alice's client id with clean start
/// 0 used to get "session present" and alice's secret message (dup=1).
#[tokio::test]
async fn another_user_cannot_resume_a_stored_session() {
    let broker = two_users().await;
    alice_leaves_a_secret(&broker).await;

    let mut mallory = RawClient::tcp(broker.addr(), V5).await;
    let ack = mallory
        .connect_with(persistent_connect("dev1", "mallory", "mallory-pw", false))
        .await;
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert!(!ack.session_present);
    match mallory.try_recv(Duration::from_secs(2)).await {
        Ok(None) => {} // closed, and nothing of alice's was sent
        other => panic!("expected the refused connection to close, got {other:?}"),
    }

    // 3.1.1: return code 2 (identifier rejected).
    let (_, ack) = login(broker.addr(), V3, "dev1", "mallory", "mallory-pw").await;
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);

    // The owner still finds everything where it left it.
    let mut alice = RawClient::tcp(broker.addr(), V5).await;
    let ack = alice
        .connect_with(persistent_connect("dev1", "alice", "alice-pw", false))
        .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(ack.session_present);
    let again = alice.recv_publish().await;
    assert!(again.dup);
    assert_eq!(again.payload.as_ref(), b"TOPSECRET");
    broker.stop().await;
}

/// A live connection is neither kicked nor taken over by another user.
#[tokio::test]
async fn another_user_cannot_take_over_a_live_connection() {
    let broker = two_users().await;
    let mut alice = login_ok(broker.addr(), V5, "dev2", "alice", "alice-pw").await;
    let (_, ack) = login(broker.addr(), V5, "dev2", "mallory", "mallory-pw").await;
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    alice.send(&Packet::PingReq).await;
    assert!(
        matches!(alice.recv().await, Some(Packet::PingResp)),
        "alice still connected, not kicked"
    );
    // The same user may still take its own session over.
    let _again = login_ok(broker.addr(), V5, "dev2", "alice", "alice-pw").await;
    match alice.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER),
        other => panic!("expected takeover, got {other:?}"),
    }
    broker.stop().await;
}

/// Ownership is stored with the session and holds after a restart.
#[tokio::test]
async fn ownership_survives_a_restart() {
    let mut broker = two_users().await;
    alice_leaves_a_secret(&broker).await;
    broker.restart().await;
    let mut mallory = RawClient::tcp(broker.addr(), V5).await;
    let ack = mallory
        .connect_with(persistent_connect("dev1", "mallory", "mallory-pw", false))
        .await;
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    let infos = broker.broker.as_ref().unwrap().registry().sessions();
    let dev1 = infos.iter().find(|s| s.client_id == "dev1").unwrap();
    assert_eq!(dev1.owner.as_deref(), Some("alice"));
    assert_eq!(dev1.queued, 1);
    broker.stop().await;
}

/// Deleting a user ends its stored sessions: a new user of the same name
/// does not inherit them.
#[tokio::test]
async fn a_deleted_users_sessions_end_with_it() {
    let broker = two_users().await;
    alice_leaves_a_secret(&broker).await;
    let dir = directory(&broker);
    dir.delete_user("alice").unwrap();
    let registry = broker.broker.as_ref().unwrap().registry().clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while registry.get("dev1").is_some() {
        assert!(std::time::Instant::now() < deadline, "session not ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    add_user(
        &dir,
        "alice",
        "alice-pw2",
        vec![perm("secret/#", Operation::Read)],
    );
    let mut alice = RawClient::tcp(broker.addr(), V5).await;
    let ack = alice
        .connect_with(persistent_connect("dev1", "alice", "alice-pw2", false))
        .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(!ack.session_present);
    alice.expect_silence(Duration::from_millis(300)).await;
    broker.stop().await;
}

/// An administrator ends a session: the connection closes with 0x98 and
/// the stored state is gone.
#[tokio::test]
async fn an_administrator_ends_a_session() {
    let broker = two_users().await;
    let mut alice = RawClient::tcp(broker.addr(), V5).await;
    alice
        .connect_with(persistent_connect("dev3", "alice", "alice-pw", true))
        .await;
    assert_eq!(alice.subscribe("secret/#", QoS::AtLeastOnce).await.0, 1);
    let registry = broker.broker.as_ref().unwrap().registry().clone();
    assert!(registry.end_session("dev3").await);
    match alice.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::ADMINISTRATIVE_ACTION),
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    assert!(registry.get("dev3").is_none());
    assert!(!registry.end_session("dev3").await, "already gone");
    let mut alice = RawClient::tcp(broker.addr(), V5).await;
    let ack = alice
        .connect_with(persistent_connect("dev3", "alice", "alice-pw", false))
        .await;
    assert!(!ack.session_present);
    broker.stop().await;
}
