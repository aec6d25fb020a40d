//! Idle plain-TCP connections hibernate (no task; `net::park`) and every
//! kind of wake-up still reaches them: a delivery, a packet from the
//! client, a takeover, the keep-alive deadline, a revoked user and the
//! broker's shutdown. Each case first waits until the connection really
//! hibernates, read from the broker's `clients_hibernating` gauge.

mod common;

use bytes::Bytes;
use common::*;
use gatehouse::identity::NewUser;
use gatehouse::metrics::Metrics;
use gatehouse::protocol::*;
use std::time::{Duration, Instant};

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn hibernating(broker: &TestBroker) -> u64 {
    let registry = broker.broker.as_ref().unwrap().registry();
    Metrics::get(&registry.services().metrics.clients_hibernating)
}

/// Waits until exactly `n` connections hibernate.
async fn until_hibernating(broker: &TestBroker, n: u64) {
    let started = Instant::now();
    while hibernating(broker) != n {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "expected {n} hibernating connections, have {}",
            hibernating(broker)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn quick_hibernation() -> TestBroker {
    TestBroker::start_with(|c| c.limits.hibernate_after_ms = 200).await
}

#[tokio::test]
async fn a_hibernating_subscriber_gets_deliveries_and_answers_pings() {
    let broker = quick_hibernation().await;
    let mut sleeper = RawClient::connect(broker.addr(), V5, "sleeper").await;
    sleeper.subscribe("h/#", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(broker.addr(), V3, "publisher").await;
    until_hibernating(&broker, 2).await;

    // A delivery wakes the subscriber (its mailbox), which then acks it.
    publisher
        .publish("h/1", b"one", QoS::AtLeastOnce, false)
        .await;
    let delivered = sleeper.recv_publish().await;
    assert_eq!(delivered.payload.as_ref(), b"one");
    assert_eq!(delivered.qos, QoS::AtLeastOnce);
    sleeper
        .send(&Packet::PubAck(PubResponse::new(
            delivered.packet_id,
            ReasonCode::SUCCESS,
        )))
        .await;
    until_hibernating(&broker, 2).await;

    // A packet from the client wakes it through its socket.
    sleeper.send(&Packet::PingReq).await;
    assert_eq!(sleeper.recv().await, Some(Packet::PingResp));
    until_hibernating(&broker, 2).await;

    // Several wake-ups in a row, with hibernation in between.
    for i in 0..3u8 {
        publisher.publish("h/2", &[i], QoS::AtMostOnce, false).await;
        assert_eq!(sleeper.recv_publish().await.payload.as_ref(), &[i]);
        until_hibernating(&broker, 2).await;
    }
    sleeper.disconnect().await;
    until_hibernating(&broker, 1).await;
    broker.stop().await;
}

#[tokio::test]
async fn a_hibernating_connection_can_be_taken_over() {
    let broker = quick_hibernation().await;
    let mut first = RawClient::connect(broker.addr(), V5, "device-7").await;
    until_hibernating(&broker, 1).await;
    let _second = RawClient::connect(broker.addr(), V5, "device-7").await;
    match first.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER),
        other => panic!("expected DISCONNECT 0x8E, got {other:?}"),
    }
    broker.stop().await;
}

#[tokio::test]
async fn keep_alive_closes_a_hibernating_connection_with_its_will() {
    let broker = quick_hibernation().await;
    let mut watcher = RawClient::connect(broker.addr(), V5, "watcher").await;
    watcher.subscribe("gone", QoS::AtMostOnce).await;
    let mut sleepy = RawClient::tcp(broker.addr(), V5).await;
    let mut connect = connect_packet(V5, "sleepy", true);
    connect.keep_alive = 1;
    connect.will = Some(Will {
        topic: "gone".into(),
        payload: Bytes::from_static(b"sleepy"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    sleepy.connect_with(connect).await;
    let started = Instant::now();
    until_hibernating(&broker, 2).await;
    expect_keep_alive_close(&mut sleepy, started).await;
    assert_eq!(watcher.recv_publish().await.payload.as_ref(), b"sleepy");
    broker.stop().await;
}

#[tokio::test]
async fn a_disabled_user_is_disconnected_while_hibernating() {
    let broker = quick_hibernation().await;
    let directory = broker.broker.as_ref().unwrap().directory().unwrap().clone();
    directory
        .add_user(NewUser {
            username: "napper".into(),
            password: Some("secret1".into()),
            ..NewUser::default()
        })
        .unwrap();
    let mut c = RawClient::tcp(broker.addr(), V5).await;
    let mut connect = connect_packet(V5, "napper-1", true);
    connect.username = Some("napper".into());
    connect.password = Some(Bytes::from_static(b"secret1"));
    assert_eq!(c.connect_with(connect).await.reason, ReasonCode::SUCCESS);
    until_hibernating(&broker, 1).await;
    directory.set_enabled("napper", false).unwrap();
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::ADMINISTRATIVE_ACTION),
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    broker.stop().await;
}

#[tokio::test]
async fn shutdown_reaches_hibernating_connections() {
    let broker = quick_hibernation().await;
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(RawClient::connect(broker.addr(), V5, &format!("c{i}")).await);
    }
    until_hibernating(&broker, 20).await;
    tokio::time::timeout(Duration::from_secs(10), broker.stop())
        .await
        .expect("the broker stops while connections hibernate");
    for c in &mut clients {
        match c.recv().await {
            Some(Packet::Disconnect(d)) => {
                assert_eq!(d.reason, ReasonCode::SERVER_SHUTTING_DOWN)
            }
            other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn busy_connections_stay_tasks_and_hibernation_can_be_off() {
    // A connection that keeps talking does not hibernate between packets.
    let broker = TestBroker::start_with(|c| c.limits.hibernate_after_ms = 1000).await;
    let mut busy = RawClient::connect(broker.addr(), V5, "busy").await;
    busy.subscribe("b", QoS::AtMostOnce).await;
    for _ in 0..10 {
        busy.publish("b", b"x", QoS::AtMostOnce, false).await;
        busy.recv_publish().await;
        assert_eq!(hibernating(&broker), 0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until_hibernating(&broker, 1).await;
    broker.stop().await;

    let broker = TestBroker::start_with(|c| c.limits.hibernate_after_ms = 0).await;
    let mut c = RawClient::connect(broker.addr(), V5, "awake").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hibernating(&broker), 0);
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
    broker.stop().await;
}
