//! No client can hold another hostage: a peer that stops reading is closed
//! after the write deadline; a takeover interrupts a blocked write; a
//! holder that never lets go makes a takeover answer 0x89 instead of
//! hanging; a delivery pushed while a session attaches is not left behind.

mod common;

use common::*;
use gatehouse::protocol::*;
use std::time::{Duration, Instant};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// A subscriber that never reads, with a publisher filling its socket.
async fn stalled_subscriber(broker: &TestBroker, client_id: &str) -> RawClient {
    let mut stalled = RawClient::connect(broker.addr(), V5, client_id).await;
    stalled.subscribe("flood/#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connect(broker.addr(), V5, &format!("{client_id}-pub")).await;
    let payload = vec![0u8; 64 * 1024];
    // Far more than the socket buffers of both ends hold.
    for _ in 0..200 {
        publisher
            .publish("flood/x", &payload, QoS::AtMostOnce, false)
            .await;
    }
    stalled
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_the_write_deadline() {
    let broker = TestBroker::start_with(|c| {
        c.limits.write_timeout_secs = 1;
        c.limits.max_queued_bytes = 1 << 30;
    })
    .await;
    let _stalled = stalled_subscriber(&broker, "sleepy").await;
    let registry = broker.broker.as_ref().unwrap().registry().clone();
    let started = Instant::now();
    while registry.get("sleepy").is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still connected after the 1 s write deadline"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Everyone else is still served.
    let mut other = RawClient::connect(broker.addr(), V5, "other").await;
    other.send(&Packet::PingReq).await;
    assert!(matches!(other.recv().await, Some(Packet::PingResp)));
    broker.stop().await;
}

/// A takeover is not held up by the old connection's blocked write: the
/// kick interrupts it (the write deadline is far away).
#[tokio::test]
async fn a_takeover_interrupts_a_blocked_write() {
    let broker = TestBroker::start_with(|c| c.limits.max_queued_bytes = 1 << 30).await;
    let _stalled = stalled_subscriber(&broker, "blocked").await;
    let started = Instant::now();
    let mut taker = RawClient::tcp(broker.addr(), V5).await;
    let ack = taker
        .connect_with(connect_packet(V5, "blocked", true))
        .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "takeover took {:?}",
        started.elapsed()
    );
    broker.stop().await;
}

/// A holder that never gives the session back: the new connection gets
/// CONNACK 0x89 (server busy) after the connect timeout.
#[tokio::test]
async fn a_takeover_waits_a_bounded_time() {
    let broker = TestBroker::start_with(|c| c.limits.connect_timeout_secs = 1).await;
    let registry = broker.broker.as_ref().unwrap().registry().clone();
    let facts = gatehouse::session::Connected::new(
        "127.0.0.1:1".parse().unwrap(),
        gatehouse::session::Listener::Tcp,
        V5,
        gatehouse::identity::LoginMethod::Anonymous,
    );
    let held = registry
        .attach(&"stuck".into(), false, "anonymous", facts)
        .await
        .unwrap();
    let started = Instant::now();
    let mut client = RawClient::tcp(broker.addr(), V5).await;
    let ack = client.connect_with(connect_packet(V5, "stuck", true)).await;
    assert_eq!(ack.reason, ReasonCode::SERVER_BUSY);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    drop(held);
    broker.stop().await;
}

/// Deliveries racing with the subscriber's reconnect are not left in its
/// queue until some unrelated wake-up.
#[tokio::test]
async fn a_delivery_during_attach_is_not_left_waiting() {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::tcp(broker.addr(), V5).await;
    let mut connect = connect_packet(V5, "racer", true);
    connect.properties.session_expiry_interval = Some(3600);
    sub.connect_with(connect).await;
    sub.subscribe("race/#", QoS::AtLeastOnce).await;
    drop(sub);
    let mut publisher = RawClient::connect(broker.addr(), V5, "race-pub").await;
    for round in 0..100u8 {
        let mut sub = RawClient::tcp(broker.addr(), V5).await;
        let mut connect = connect_packet(V5, "racer", false);
        connect.properties.session_expiry_interval = Some(3600);
        connect.keep_alive = 0;
        // The CONNECT and the publish race each other.
        let (ack, ()) = tokio::join!(sub.connect_with(connect), async {
            publisher
                .publish("race/x", &[round], QoS::AtLeastOnce, false)
                .await
        });
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        let got = tokio::time::timeout(Duration::from_secs(2), sub.recv_publish())
            .await
            .unwrap_or_else(|_| panic!("round {round}: delivery left waiting"));
        assert_eq!(got.payload[0], round);
        sub.send(&Packet::PubAck(PubResponse::new(
            got.packet_id,
            ReasonCode::SUCCESS,
        )))
        .await;
        sub.disconnect().await;
    }
    broker.stop().await;
}

/// Connections are admitted a limited number at a time, but silent
/// sockets cannot keep the listener from accepting: each gives up its
/// place after the admission window.
#[tokio::test]
async fn silent_sockets_do_not_block_admission() {
    let broker = TestBroker::start_with(|c| c.limits.max_pending_connects = 2).await;
    let silent: Vec<_> = futures_util::future::join_all(
        (0..4).map(|_| tokio::net::TcpStream::connect(broker.addr())),
    )
    .await;
    let started = Instant::now();
    let mut client = RawClient::connect(broker.addr(), V5, "patient").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "admitted after {:?}",
        started.elapsed()
    );
    client.send(&Packet::PingReq).await;
    assert!(matches!(client.recv().await, Some(Packet::PingResp)));
    drop(silent);
    broker.stop().await;
}

/// The write deadline is for a client that takes nothing: a slow reader
/// that keeps taking bytes is not cut off, however long the backlog.
#[tokio::test]
async fn a_slow_reader_is_not_cut_off() {
    use tokio::io::AsyncReadExt;
    let broker = TestBroker::start_with(|c| {
        c.limits.write_timeout_secs = 1;
        c.limits.max_queued_bytes = 1 << 30;
    })
    .await;
    let mut slow = RawClient::connect(broker.addr(), V5, "slow").await;
    slow.subscribe("flood/#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connect(broker.addr(), V5, "slow-pub").await;
    let payload = vec![0u8; 64 * 1024];
    for _ in 0..120 {
        publisher
            .publish("flood/x", &payload, QoS::AtMostOnce, false)
            .await;
    }
    // About 7.5 MB at 1 MB/s: far longer than the 1 s deadline.
    let mut taken = 0usize;
    let mut chunk = vec![0u8; 64 * 1024];
    let started = Instant::now();
    while taken < 120 * 64 * 1024 {
        match tokio::time::timeout(Duration::from_secs(3), slow.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                panic!("cut off after {taken} bytes, {:?}", started.elapsed())
            }
            Ok(Ok(n)) => taken += n,
            Err(_) => panic!("stalled after {taken} bytes"),
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(started.elapsed() > Duration::from_secs(3));
    broker.stop().await;
}
