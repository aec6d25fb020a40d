//! Session expiry and delayed wills: one timer per detached session,
//! cancelled when the client returns; expiry and will delay count from the
//! stored disconnect time across restarts; a will goes at once when its
//! session ends (clean-start takeover, expiry) and only while its owner
//! may still publish it.

mod common;

use bytes::Bytes;
use common::users::*;
use common::*;
use gatehouse::identity::Operation;
use gatehouse::protocol::*;
use std::time::{Duration, Instant};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn connect_with(client_id: &str, clean: bool, expiry: u32, will: Option<(Will, u32)>) -> Connect {
    let mut connect = connect_packet(V5, client_id, clean);
    connect.properties.session_expiry_interval = Some(expiry);
    connect.will = will.map(|(mut will, delay)| {
        will.properties.will_delay_interval = Some(delay);
        will
    });
    connect
}

async fn connect(broker: &TestBroker, connect: Connect) -> (RawClient, ConnAck) {
    let mut client = RawClient::tcp(broker.addr(), V5).await;
    let ack = client.connect_with(connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    (client, ack)
}

/// Reconnecting many times leaves one timer, not one per disconnect; a
/// connected session has none.
#[tokio::test]
async fn one_timer_per_detached_session() {
    let broker = TestBroker::start().await;
    let registry = broker.broker.as_ref().unwrap().registry().clone();
    for _ in 0..20 {
        let (client, _) = connect(&broker, connect_with("bouncer", false, 3600, None)).await;
        assert_eq!(registry.pending_deadlines(), 0, "connected: no timer");
        client.disconnect().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(registry.pending_deadlines(), 1);
    broker.stop().await;
}

/// Expiry continues from the disconnect, not from the restart.
#[tokio::test]
async fn expiry_counts_from_the_disconnect_across_a_restart() {
    let mut broker = TestBroker::start().await;
    let (mut client, _) = connect(&broker, connect_with("expiring", true, 3, None)).await;
    client.subscribe("e/#", QoS::AtLeastOnce).await;
    client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    broker.restart().await;
    // 3.4 s after the disconnect: expired (a restarted clock would give it
    // until 4.5 s).
    tokio::time::sleep(Duration::from_millis(1900)).await;
    let (_, ack) = connect(&broker, connect_with("expiring", false, 3, None)).await;
    assert!(!ack.session_present, "expired 3 s after its disconnect");
    broker.stop().await;
}

/// A delayed will survives a restart and goes out when its delay, counted
/// from the disconnect, is over.
#[tokio::test]
async fn a_delayed_will_survives_a_restart() {
    let mut broker = TestBroker::start().await;
    let will = (will("wills/late", b"bye", QoS::AtLeastOnce), 3);
    let (client, _) = connect(&broker, connect_with("leaver", true, 60, Some(will))).await;
    drop(client); // socket loss: the will is due in 3 s
    let lost_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.restart().await;
    let mut watcher = RawClient::connect(broker.addr(), V5, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    let got = watcher.recv_publish().await;
    assert_eq!(got.payload.as_ref(), b"bye");
    let waited = lost_at.elapsed();
    assert!(
        waited >= Duration::from_millis(2800) && waited < Duration::from_millis(4500),
        "will after {waited:?}"
    );
    // Published once: the stored session no longer carries it.
    broker.restart().await;
    let mut watcher = RawClient::connect(broker.addr(), V5, "watcher2").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    watcher.expect_silence(Duration::from_millis(1500)).await;
    broker.stop().await;
}

/// A takeover with clean start ends the old session: its delayed will goes
/// at once. Without clean start the session continues and the will is
/// cancelled.
#[tokio::test]
async fn a_will_goes_when_its_session_ends_at_a_takeover() {
    let broker = TestBroker::start().await;
    let mut watcher = RawClient::connect(broker.addr(), V5, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;

    let will_a = (will("wills/a", b"a", QoS::AtLeastOnce), 30);
    let (_old, _) = connect(&broker, connect_with("taken", true, 60, Some(will_a))).await;
    let (_new, _) = connect(&broker, connect_with("taken", true, 60, None)).await;
    let got = watcher.recv_publish().await;
    assert_eq!(got.topic.as_str(), "wills/a");

    let will_b = (will("wills/b", b"b", QoS::AtLeastOnce), 30);
    let (_old, _) = connect(&broker, connect_with("resumed", true, 60, Some(will_b))).await;
    let (_new, ack) = connect(&broker, connect_with("resumed", false, 60, None)).await;
    assert!(ack.session_present);
    watcher.expect_silence(Duration::from_millis(500)).await;
    broker.stop().await;
}

/// A session that expires before its will delay publishes the will then.
#[tokio::test]
async fn a_will_goes_when_its_session_expires() {
    let broker = TestBroker::start().await;
    let mut watcher = RawClient::connect(broker.addr(), V5, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    let will = (will("wills/expired", b"x", QoS::AtLeastOnce), 600);
    let (client, _) = connect(&broker, connect_with("short", true, 1, Some(will))).await;
    let lost_at = Instant::now();
    drop(client);
    let got = watcher.recv_publish().await;
    assert_eq!(got.topic.as_str(), "wills/expired");
    assert!(lost_at.elapsed() < Duration::from_millis(2500));
    broker.stop().await;
}

async fn user_with_will(broker: &TestBroker, delay: u32) -> RawClient {
    let dir = directory(broker);
    add_user(
        &dir,
        "willy",
        "willy-pw",
        vec![perm("wills/#", Operation::Write)],
    );
    let mut client = RawClient::tcp(broker.addr(), V5).await;
    let will = (will("wills/willy", b"gone", QoS::AtLeastOnce), delay);
    let mut connect = connect_with("willy-1", true, 60, Some(will));
    connect.username = Some("willy".into());
    connect.password = Some(Bytes::from_static(b"willy-pw"));
    assert_eq!(
        client.connect_with(connect).await.reason,
        ReasonCode::SUCCESS
    );
    client
}

/// A deleted user's will is not published.
#[tokio::test]
async fn a_deleted_users_will_is_not_published() {
    let broker = TestBroker::start().await;
    let mut watcher = RawClient::connect(broker.addr(), V5, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    let mut willy = user_with_will(&broker, 0).await;
    directory(&broker).delete_user("willy").unwrap();
    match willy.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::ADMINISTRATIVE_ACTION),
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    watcher.expect_silence(Duration::from_millis(500)).await;
    broker.stop().await;
}

/// A delayed will is checked against its owner's permissions when it is
/// due, not when the client connected.
#[tokio::test]
async fn a_will_is_checked_when_it_fires() {
    let broker = TestBroker::start().await;
    let mut watcher = RawClient::connect(broker.addr(), V5, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    let willy = user_with_will(&broker, 1).await;
    drop(willy);
    tokio::time::sleep(Duration::from_millis(200)).await;
    directory(&broker)
        .revoke_user("willy", &perm("wills/#", Operation::Write))
        .unwrap();
    watcher.expect_silence(Duration::from_millis(1500)).await;
    broker.stop().await;
}
