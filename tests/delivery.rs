//! What reaches a client, on every path that writes a PUBLISH: resends
//! after a reconnect check the live ACL, the new receive maximum and
//! maximum packet size; topic aliases; shared QoS 2 messages; receive
//! maximum counted once per publish; errors that reach the client.

mod common;

use bytes::Bytes;
use common::users::*;
use common::*;
use gatehouse::identity::Operation;
use gatehouse::protocol::*;
use gatehouse::store::Fault;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn persistent(client_id: &str, clean: bool) -> Connect {
    let mut connect = connect_packet(V5, client_id, clean);
    connect.properties.session_expiry_interval = Some(3600);
    connect
}

fn as_user(mut connect: Connect, user: &str, password: &str) -> Connect {
    connect.username = Some(user.into());
    connect.password = Some(Bytes::copy_from_slice(password.as_bytes()));
    connect
}

async fn connect(broker: &TestBroker, connect: Connect) -> (RawClient, ConnAck) {
    let mut client = RawClient::tcp(broker.addr(), connect.protocol_version).await;
    let ack = client.connect_with(connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{ack:?}");
    (client, ack)
}

/// `count` QoS 1 messages on `topic` that `client` receives and leaves
/// unacknowledged; then it drops its connection.
async fn leave_unacknowledged(broker: &TestBroker, mut client: RawClient, topic: &str, count: u8) {
    let mut publisher = RawClient::connect(broker.addr(), V5, "publisher").await;
    for i in 0..count {
        publisher
            .publish(topic, &[i], QoS::AtLeastOnce, false)
            .await;
        client.recv_publish().await;
    }
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// A message left in flight is not resent to a subscriber that lost the
/// permission to read it meanwhile; the stored subscription goes too.
#[tokio::test]
async fn resends_check_the_live_acl() {
    let broker = TestBroker::start().await;
    let dir = directory(&broker);
    add_user(
        &dir,
        "reader",
        "reader-pw",
        vec![perm("secret/#", Operation::Read)],
    );
    let (mut reader, _) = connect(
        &broker,
        as_user(persistent("r1", true), "reader", "reader-pw"),
    )
    .await;
    assert_eq!(reader.subscribe("secret/#", QoS::AtLeastOnce).await.0, 1);
    leave_unacknowledged(&broker, reader, "secret/x", 1).await;
    dir.revoke_user("reader", &perm("secret/#", Operation::Read))
        .unwrap();
    let metrics = &broker.broker.as_ref().unwrap().services().metrics;
    let denied = metrics.deliveries_denied.load(Ordering::Relaxed);
    let (mut reader, ack) = connect(
        &broker,
        as_user(persistent("r1", false), "reader", "reader-pw"),
    )
    .await;
    assert!(ack.session_present);
    reader.expect_silence(Duration::from_millis(500)).await;
    assert_eq!(
        metrics.deliveries_denied.load(Ordering::Relaxed),
        denied + 1
    );
    // Nor does anything new arrive through the old subscription.
    let mut publisher = RawClient::connect(broker.addr(), V5, "publisher").await;
    publisher
        .publish("secret/y", b"no", QoS::AtLeastOnce, false)
        .await;
    reader.expect_silence(Duration::from_millis(300)).await;
    broker.stop().await;
}

/// After a reconnect, resends stay within the new connection's receive
/// maximum; the rest follow as acknowledgements make room.
#[tokio::test]
async fn resends_respect_the_new_receive_maximum() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = connect(&broker, persistent("rm", true)).await;
    sub.subscribe("rm/#", QoS::AtLeastOnce).await;
    leave_unacknowledged(&broker, sub, "rm/t", 5).await;
    let mut again = persistent("rm", false);
    again.properties.receive_maximum = Some(2);
    let (mut sub, _) = connect(&broker, again).await;
    let first = sub.recv_publish().await;
    let second = sub.recv_publish().await;
    assert!(first.dup && second.dup);
    assert_eq!((first.payload[0], second.payload[0]), (0, 1));
    sub.expect_silence(Duration::from_millis(300)).await;
    sub.send(&Packet::PubAck(PubResponse::new(
        first.packet_id,
        ReasonCode::SUCCESS,
    )))
    .await;
    let third = sub.recv_publish().await;
    assert_eq!((third.payload[0], third.dup), (2, true));
    sub.expect_silence(Duration::from_millis(300)).await;
    broker.stop().await;
}

/// A message in flight that no longer fits the client's new maximum
/// packet size is dropped for it, and counted.
#[tokio::test]
async fn resends_respect_the_new_maximum_packet_size() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = connect(&broker, persistent("mp", true)).await;
    sub.subscribe("mp/#", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(broker.addr(), V5, "publisher").await;
    publisher
        .publish("mp/big", &[7; 1000], QoS::AtLeastOnce, false)
        .await;
    sub.recv_publish().await;
    drop(sub);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = &broker.broker.as_ref().unwrap().services().metrics;
    let before = metrics.messages_too_large.load(Ordering::Relaxed);
    let mut again = persistent("mp", false);
    again.properties.maximum_packet_size = Some(200);
    let (mut sub, _) = connect(&broker, again).await;
    sub.expect_silence(Duration::from_millis(500)).await;
    assert_eq!(
        metrics.messages_too_large.load(Ordering::Relaxed),
        before + 1
    );
    publisher
        .publish("mp/small", b"ok", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(sub.recv_publish().await.payload.as_ref(), b"ok");
    broker.stop().await;
}

/// A topic alias is assigned only with a message that is actually sent:
/// a message dropped as too large must not take the alias.
#[tokio::test]
async fn an_alias_is_assigned_only_to_a_message_sent() {
    let broker = TestBroker::start().await;
    let mut connect_props = connect_packet(V5, "aliased", true);
    connect_props.properties.topic_alias_maximum = Some(4);
    connect_props.properties.maximum_packet_size = Some(300);
    let (mut sub, _) = connect(&broker, connect_props).await;
    sub.subscribe("al/#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connect(broker.addr(), V5, "publisher").await;
    publisher
        .publish("al/t", &[1; 500], QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("al/t", b"small", QoS::AtLeastOnce, false)
        .await;
    let got = sub.recv_publish().await;
    assert_eq!(
        got.topic.as_str(),
        "al/t",
        "the first message sent on the alias names the topic"
    );
    assert_eq!(got.properties.topic_alias, Some(1));
    assert_eq!(got.payload.as_ref(), b"small");
    publisher
        .publish("al/t", b"again", QoS::AtLeastOnce, false)
        .await;
    let got = sub.recv_publish().await;
    assert!(got.topic.is_empty() && got.properties.topic_alias == Some(1));
    broker.stop().await;
}

/// A QoS 2 message sent to one member of a shared group is never sent to
/// another, even when the first member's session ends (MQTT 5 §4.8.2).
#[tokio::test]
async fn a_shared_qos2_message_goes_to_one_member_only() {
    let broker = TestBroker::start().await;
    let (mut first, _) = connect(&broker, connect_packet(V5, "m1", true)).await;
    first.subscribe("$share/g/sh/#", QoS::ExactlyOnce).await;
    let mut publisher = RawClient::connect(broker.addr(), V5, "publisher").await;
    publisher
        .publish("sh/q2", b"once", QoS::ExactlyOnce, false)
        .await;
    let got = first.recv_publish().await;
    assert_eq!(got.qos, QoS::ExactlyOnce);
    let (mut second, _) = connect(&broker, connect_packet(V5, "m2", true)).await;
    second.subscribe("$share/g/sh/#", QoS::ExactlyOnce).await;
    drop(first); // session ends without PUBREC
    second.expect_silence(Duration::from_millis(700)).await;
    // QoS 1 in flight still moves to another member.
    let (mut third, _) = connect(&broker, connect_packet(V5, "m3", true)).await;
    third.subscribe("$share/g/sh/#", QoS::AtLeastOnce).await;
    publisher
        .publish("sh/q1", b"moves", QoS::AtLeastOnce, false)
        .await;
    let (holder, mut other) = tokio::select! {
        p = second.recv_publish() => { assert_eq!(p.payload.as_ref(), b"moves"); (second, third) }
        p = third.recv_publish() => { assert_eq!(p.payload.as_ref(), b"moves"); (third, second) }
    };
    drop(holder);
    assert_eq!(other.recv_publish().await.payload.as_ref(), b"moves");
    broker.stop().await;
}

/// Persistent subscriber on `topic`, so publishes to it are stored.
async fn stored_topic(broker: &TestBroker, topic: &str) {
    let (mut keeper, _) = connect(broker, persistent("keeper", true)).await;
    keeper.subscribe(topic, QoS::ExactlyOnce).await;
    keeper.disconnect().await;
}

fn stall(broker: &TestBroker, fault: Option<Fault>) {
    broker
        .broker
        .as_ref()
        .unwrap()
        .services()
        .store
        .set_fault(fault);
}

/// Receive maximum counts a QoS 2 publish once while its PUBREC waits
/// for the store (it used to count it twice and disconnect early).
#[tokio::test]
async fn receive_maximum_counts_a_held_qos2_publish_once() {
    let broker = TestBroker::start_with(|c| c.limits.receive_maximum = 3).await;
    stored_topic(&broker, "held/#").await;
    let mut publisher = RawClient::connect(broker.addr(), V5, "p").await;
    stall(&broker, Some(Fault::Stall));
    for id in 1..=3 {
        publisher
            .send_publish("held/x", b"x", QoS::ExactlyOnce, id)
            .await;
    }
    publisher.expect_silence(Duration::from_millis(300)).await;
    publisher
        .send_publish("held/x", b"x", QoS::ExactlyOnce, 4)
        .await;
    match publisher.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED),
        other => panic!("expected DISCONNECT 0x93 at the 4th, got {other:?}"),
    }
    stall(&broker, None);
    broker.stop().await;
}

/// A 3.1.1 client has no receive maximum: while its acknowledgements wait
/// for the store it is paused, never disconnected, and every PUBACK comes
/// in order once the store catches up.
#[tokio::test]
async fn a_311_client_is_paused_not_disconnected() {
    let broker = TestBroker::start_with(|c| c.limits.receive_maximum = 3).await;
    stored_topic(&broker, "held/#").await;
    let mut publisher = RawClient::connect(broker.addr(), V3, "p3").await;
    stall(&broker, Some(Fault::Stall));
    for id in 1..=8 {
        publisher
            .send_publish("held/x", b"x", QoS::AtLeastOnce, id)
            .await;
    }
    publisher.expect_silence(Duration::from_millis(300)).await;
    stall(&broker, None);
    for id in 1..=8 {
        match publisher.recv().await {
            Some(Packet::PubAck(ack)) => assert_eq!(ack.packet_id, id),
            other => panic!("expected PUBACK {id}, got {other:?}"),
        }
    }
    broker.stop().await;
}

/// An error DISCONNECT reaches a client that keeps sending: the broker
/// shuts down writing and drains input instead of resetting.
#[tokio::test]
async fn an_error_disconnect_reaches_a_client_that_keeps_sending() {
    let broker = TestBroker::start_with(|c| c.limits.receive_maximum = 3).await;
    let client = RawClient::connect(broker.addr(), V5, "flooder").await;
    let mut burst = bytes::BytesMut::new();
    for id in 1..=4 {
        let packet = Packet::Publish(publish("f/x", b"x", QoS::ExactlyOnce, false, id));
        encode(&packet, V5, &mut burst);
    }
    let mut rel = bytes::BytesMut::new();
    encode(
        &Packet::PubRel(PubResponse::new(99, ReasonCode::SUCCESS)),
        V5,
        &mut rel,
    );
    let (mut read, mut write) = client.stream.into_split();
    // The PUBRELs behind the publishes are still unread when the broker
    // gives up on the connection.
    for _ in 0..5000 {
        burst.extend_from_slice(&rel);
    }
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&burst).await;
        let until = std::time::Instant::now() + Duration::from_millis(300);
        while std::time::Instant::now() < until {
            if let Err(e) = write.write_all(&rel).await {
                return (write, Some(e.kind()));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (write, None) // kept open: the broker must not wait for our close
    });
    // Read late: whatever the broker sent waits in our socket buffer, and
    // a reset (closing with our PUBRELs unread) would end it in an error.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut buf = bytes::BytesMut::new();
    let mut reason = None;
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            while let Some(packet) = decode(&mut buf, Some(V5), usize::MAX).unwrap() {
                if let Packet::Disconnect(d) = packet {
                    reason = Some(d.reason);
                }
            }
            match read.read_buf(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.kind()),
            }
        }
    })
    .await
    .expect("timed out");
    assert_eq!(reason, Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED));
    assert_eq!(end, Ok(()), "a clean close, not a reset");
    // Our PUBRELs went on arriving after the broker's FIN: it read and
    // discarded them instead of answering with a reset.
    let (_write, error) = writer.await.unwrap();
    assert_eq!(error, None, "the broker reset the connection");
    assert!(
        error.is_none(),
        "the broker reset the connection: {error:?}"
    );

    broker.stop().await;
}

/// Overlapping subscriptions of one client: one copy, at the highest QoS
/// granted, carrying every matching subscription's identifier.
#[tokio::test]
async fn overlapping_subscriptions_get_one_copy() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = connect(&broker, connect_packet(V5, "overlap", true)).await;
    let with_id = |id: u32| Properties {
        subscription_identifiers: vec![id],
        ..Properties::default()
    };
    let qos = |qos| SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    };
    sub.subscribe_with("o/#", qos(QoS::AtLeastOnce), with_id(1))
        .await;
    sub.subscribe_with("o/+", qos(QoS::ExactlyOnce), with_id(2))
        .await;
    sub.subscribe_with("other/#", qos(QoS::AtMostOnce), with_id(3))
        .await;
    let mut publisher = RawClient::connect(broker.addr(), V5, "publisher").await;
    publisher
        .publish("o/x", b"once", QoS::ExactlyOnce, false)
        .await;
    let got = sub.recv_publish().await;
    assert_eq!(got.qos, QoS::ExactlyOnce);
    let mut ids = got.properties.subscription_identifiers.clone();
    ids.sort();
    assert_eq!(ids, [1, 2]);
    sub.send(&Packet::PubRec(PubResponse::new(
        got.packet_id,
        ReasonCode::SUCCESS,
    )))
    .await;
    assert!(matches!(sub.recv().await, Some(Packet::PubRel(_))));
    sub.send(&Packet::PubComp(PubResponse::new(
        got.packet_id,
        ReasonCode::SUCCESS,
    )))
    .await;
    sub.expect_silence(Duration::from_millis(300)).await;
    // Only one subscription left matching: its own identifier.
    sub.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: 9,
        filters: vec!["o/+".into()],
        properties: Properties::default(),
    }))
    .await;
    assert!(matches!(sub.recv().await, Some(Packet::UnsubAck(_))));
    publisher
        .publish("o/y", b"one", QoS::AtLeastOnce, false)
        .await;
    let got = sub.recv_publish().await;
    assert_eq!(got.properties.subscription_identifiers, [1]);
    sub.expect_silence(Duration::from_millis(300)).await;
    broker.stop().await;
}
