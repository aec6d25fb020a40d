//! Sessions: persistence across reconnects and restarts, takeover, wills,
//! keep alive, expiry, queues and shared subscriptions.

mod common;

use bytes::Bytes;
use common::*;
use gatehouse::protocol::*;
use std::time::Duration;

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

async fn persistent(
    addr: std::net::SocketAddr,
    version: ProtocolVersion,
    id: &str,
) -> (RawClient, ConnAck) {
    let mut c = RawClient::tcp(addr, version).await;
    let mut connect = connect_packet(version, id, false);
    if version == V5 {
        connect.properties.session_expiry_interval = Some(3600);
    }
    let ack = c.connect_with(connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    (c, ack)
}

#[tokio::test]
async fn offline_messages_survive_a_restart() {
    let mut broker = TestBroker::start().await;
    for version in [V3, V5] {
        let id = format!("keeper-{version:?}");
        let (mut sub, ack) = persistent(broker.addr(), version, &id).await;
        assert!(!ack.session_present);
        sub.subscribe("keep/#", QoS::ExactlyOnce).await;
        sub.disconnect().await;

        let mut publ = RawClient::connect(broker.addr(), version, "pub").await;
        publ.publish("keep/1", b"q1", QoS::AtLeastOnce, false).await;
        publ.publish("keep/2", b"q2", QoS::ExactlyOnce, false).await;
        publ.publish("keep/0", b"q0", QoS::AtMostOnce, false).await;
        publ.disconnect().await;

        broker.restart().await;

        let (mut sub, ack) = persistent(broker.addr(), version, &id).await;
        assert!(ack.session_present, "session restored after restart");
        let first = sub.recv_publish().await;
        assert_eq!(
            (first.payload.as_ref(), first.qos),
            (&b"q1"[..], QoS::AtLeastOnce)
        );
        sub.send(&Packet::PubAck(PubResponse::new(
            first.packet_id,
            ReasonCode::SUCCESS,
        )))
        .await;
        let second = sub.recv_publish().await;
        assert_eq!(
            (second.payload.as_ref(), second.qos),
            (&b"q2"[..], QoS::ExactlyOnce)
        );
        sub.send(&Packet::PubRec(PubResponse::new(
            second.packet_id,
            ReasonCode::SUCCESS,
        )))
        .await;
        assert!(matches!(sub.recv().await, Some(Packet::PubRel(_))));
        sub.send(&Packet::PubComp(PubResponse::new(
            second.packet_id,
            ReasonCode::SUCCESS,
        )))
        .await;
        // QoS 0 is not queued for offline clients; the subscription is live.
        sub.expect_silence(Duration::from_millis(300)).await;
        let mut publ = RawClient::connect(broker.addr(), version, "pub").await;
        publ.publish("keep/3", b"live", QoS::AtMostOnce, false)
            .await;
        assert_eq!(sub.recv_publish().await.payload.as_ref(), b"live");
        sub.disconnect().await;

        // Acknowledged messages are gone from the store: nothing after a restart.
        broker.restart().await;
        let (mut sub, _) = persistent(broker.addr(), version, &id).await;
        sub.expect_silence(Duration::from_millis(300)).await;
    }
    broker.stop().await;
}

/// Queued deliveries are stored several to a record; a clean restart
/// brings back only the unacknowledged ones of a partly acknowledged record.
#[tokio::test]
async fn a_restart_brings_back_only_unacknowledged_messages() {
    // Periodic commits put all four deliveries into one batch, so into one
    // record (sync mode commits as fast as the publisher acknowledges).
    let mut broker = TestBroker::start_with(|c| {
        c.storage.durability = gatehouse::config::Durability::Periodic;
    })
    .await;
    let (mut sub, _) = persistent(broker.addr(), V5, "partial").await;
    sub.subscribe("part/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publ = RawClient::connect(broker.addr(), V5, "pub").await;
    for i in 1..=4 {
        publ.publish(&format!("part/{i}"), b"m", QoS::AtLeastOnce, false)
            .await;
    }
    publ.disconnect().await;
    // Let that batch commit before the acknowledgements come.
    tokio::time::sleep(Duration::from_millis(400)).await;

    let (mut sub, _) = persistent(broker.addr(), V5, "partial").await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(sub.recv_publish().await);
    }
    let topics: Vec<String> = got.iter().map(|p| p.topic.to_string()).collect();
    assert_eq!(topics, ["part/1", "part/2", "part/3", "part/4"]);
    for p in &got[..2] {
        sub.send(&Packet::PubAck(PubResponse::new(
            p.packet_id,
            ReasonCode::SUCCESS,
        )))
        .await;
    }
    sub.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    broker.restart().await;
    let (mut sub, ack) = persistent(broker.addr(), V5, "partial").await;
    assert!(ack.session_present);
    for topic in ["part/3", "part/4"] {
        let again = sub.recv_publish().await;
        assert_eq!(again.topic.to_string(), topic);
        sub.send(&Packet::PubAck(PubResponse::new(
            again.packet_id,
            ReasonCode::SUCCESS,
        )))
        .await;
    }
    sub.expect_silence(Duration::from_millis(300)).await;
    broker.stop().await;
}

#[tokio::test]
async fn unacknowledged_messages_are_resent_with_dup() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = persistent(broker.addr(), V5, "resend").await;
    sub.subscribe("r", QoS::AtLeastOnce).await;
    let mut publ = RawClient::connect(broker.addr(), V5, "pub").await;
    publ.publish("r", b"one", QoS::AtLeastOnce, false).await;
    let first = sub.recv_publish().await;
    assert!(!first.dup);
    drop(sub); // socket loss, no PUBACK
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut sub, ack) = persistent(broker.addr(), V5, "resend").await;
    assert!(ack.session_present);
    let again = sub.recv_publish().await;
    assert!(again.dup);
    assert_eq!(again.packet_id, first.packet_id);
    assert_eq!(again.payload.as_ref(), b"one");
    broker.stop().await;
}

#[tokio::test]
async fn clean_start_discards_the_old_session() {
    let broker = TestBroker::start().await;
    let (mut sub, _) = persistent(broker.addr(), V5, "c").await;
    sub.subscribe("t", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut clean = RawClient::tcp(broker.addr(), V5).await;
    let ack = clean.connect_with(connect_packet(V5, "c", true)).await;
    assert!(!ack.session_present);
    let mut publ = RawClient::connect(broker.addr(), V5, "pub").await;
    publ.publish("t", b"x", QoS::AtLeastOnce, false).await;
    clean.expect_silence(Duration::from_millis(300)).await;
    broker.stop().await;
}

#[tokio::test]
async fn session_takeover_disconnects_the_first_client() {
    let broker = TestBroker::start().await;
    let mut first = RawClient::connect(broker.addr(), V5, "twin").await;
    let mut old3 = RawClient::connect(broker.addr(), V3, "twin3").await;
    let _second = RawClient::connect(broker.addr(), V5, "twin").await;
    match first.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER),
        other => panic!("expected DISCONNECT 0x8E, got {other:?}"),
    }
    assert_eq!(first.recv().await, None);
    let _new3 = RawClient::connect(broker.addr(), V3, "twin3").await;
    assert_eq!(old3.recv().await, None, "3.1.1 client is simply closed");
    broker.stop().await;
}

#[tokio::test]
async fn will_on_socket_loss_not_on_disconnect() {
    let broker = TestBroker::start().await;
    let mut watcher = RawClient::connect(broker.addr(), V5, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    for version in [V3, V5] {
        let will = will("wills/gone", b"lost", QoS::AtLeastOnce);
        let mut polite = RawClient::tcp(broker.addr(), version).await;
        let mut connect = connect_packet(version, "polite", true);
        connect.will = Some(will.clone());
        polite.connect_with(connect).await;
        polite.disconnect().await;
        watcher.expect_silence(Duration::from_millis(300)).await;

        let mut rude = RawClient::tcp(broker.addr(), version).await;
        let mut connect = connect_packet(version, "rude", true);
        connect.will = Some(will);
        rude.connect_with(connect).await;
        drop(rude);
        let got = watcher.recv_publish().await;
        assert_eq!(got.payload.as_ref(), b"lost");
        watcher
            .send(&Packet::PubAck(PubResponse::new(
                got.packet_id,
                ReasonCode::SUCCESS,
            )))
            .await;
    }
    broker.stop().await;
}

/// Shutdown reaches connected clients as a kick: v5 clients hear 0x8B, and
/// no will is published (neither live nor into a persistent session).
#[tokio::test]
async fn shutdown_disconnects_with_0x8b_and_publishes_no_will() {
    let mut broker = TestBroker::start().await;
    let (mut watcher, _) = persistent(broker.addr(), V5, "will-watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    let mut leaving = RawClient::tcp(broker.addr(), V5).await;
    let mut connect = connect_packet(V5, "leaving", true);
    connect.will = Some(will("wills/leaving", b"gone", QoS::AtLeastOnce));
    leaving.connect_with(connect).await;

    broker.restart().await;
    for client in [&mut leaving, &mut watcher] {
        match client.recv().await {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::SERVER_SHUTTING_DOWN),
            other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
        }
    }
    let (mut watcher, ack) = persistent(broker.addr(), V5, "will-watcher").await;
    assert!(ack.session_present);
    watcher.expect_silence(Duration::from_millis(500)).await;
    broker.stop().await;
}

#[tokio::test]
async fn will_on_protocol_error_and_with_delay() {
    let broker = TestBroker::start().await;
    let mut watcher = RawClient::connect(broker.addr(), V5, "watcher").await;
    watcher.subscribe("w", QoS::AtMostOnce).await;
    let mut c = RawClient::tcp(broker.addr(), V5).await;
    let mut connect = connect_packet(V5, "bad", true);
    connect.will = Some(will("w", b"err", QoS::AtMostOnce));
    c.connect_with(connect).await;
    c.send_raw(&[0xF0, 0x00]).await; // reserved packet type 15 flags / AUTH misuse
    assert_eq!(watcher.recv_publish().await.payload.as_ref(), b"err");

    // Will delay: reconnecting within the delay cancels the will.
    let props = Properties {
        will_delay_interval: Some(1),
        ..Default::default()
    };
    let will = Will {
        topic: "w".into(),
        payload: Bytes::from_static(b"delayed"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: props,
    };
    let mut c = RawClient::tcp(broker.addr(), V5).await;
    let mut connect = connect_packet(V5, "delay", false);
    connect.properties.session_expiry_interval = Some(60);
    connect.will = Some(will.clone());
    c.connect_with(connect.clone()).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut back = RawClient::tcp(broker.addr(), V5).await;
    back.connect_with(connect).await;
    watcher.expect_silence(Duration::from_millis(1500)).await;
    drop(back);
    let started = std::time::Instant::now();
    assert_eq!(watcher.recv_publish().await.payload.as_ref(), b"delayed");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "will waited for its delay"
    );
    broker.stop().await;
}

#[tokio::test]
async fn keep_alive_is_enforced_at_one_and_a_half() {
    let broker = TestBroker::start().await;
    let mut watcher = RawClient::connect(broker.addr(), V5, "watcher").await;
    watcher.subscribe("ka", QoS::AtMostOnce).await;
    let mut c = RawClient::tcp(broker.addr(), V5).await;
    let mut connect = connect_packet(V5, "sleepy", true);
    connect.keep_alive = 1;
    connect.will = Some(will("ka", b"timeout", QoS::AtMostOnce));
    c.connect_with(connect).await;
    let started = std::time::Instant::now();
    expect_keep_alive_close(&mut c, started).await;
    assert_eq!(watcher.recv_publish().await.payload.as_ref(), b"timeout");

    // PINGREQ keeps a client alive.
    let mut alive = RawClient::tcp(broker.addr(), V3).await;
    let mut connect = connect_packet(V3, "pinger", true);
    connect.keep_alive = 1;
    alive.connect_with(connect).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        alive.send(&Packet::PingReq).await;
        assert_eq!(alive.recv().await, Some(Packet::PingResp));
    }
    broker.stop().await;
}

#[tokio::test]
async fn session_expiry_removes_the_session() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::tcp(broker.addr(), V5).await;
    let mut connect = connect_packet(V5, "short", false);
    connect.properties.session_expiry_interval = Some(1);
    c.connect_with(connect.clone()).await;
    c.subscribe("t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut again = RawClient::tcp(broker.addr(), V5).await;
    let ack = again.connect_with(connect).await;
    assert!(!ack.session_present);
    broker.stop().await;
}

#[tokio::test]
async fn assigned_client_identifier_and_connack_properties() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::tcp(broker.addr(), V5).await;
    let ack = c.connect_with(connect_packet(V5, "", true)).await;
    let p = &ack.properties;
    assert!(
        p.assigned_client_identifier
            .as_ref()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(
        p.receive_maximum,
        Some(broker.config.limits.receive_maximum)
    );
    assert_eq!(
        p.maximum_packet_size,
        Some(broker.config.limits.max_packet_size)
    );
    assert_eq!(
        p.topic_alias_maximum,
        Some(broker.config.limits.topic_alias_maximum)
    );
    assert_eq!(p.retain_available, Some(1));
    assert_eq!(p.wildcard_subscription_available, Some(1));
    assert_eq!(p.shared_subscription_available, Some(1));
    assert_eq!(p.subscription_identifier_available, Some(1));

    // 3.1.1: an empty id needs clean session.
    let mut c = RawClient::tcp(broker.addr(), V3).await;
    let ack = c.connect_with(connect_packet(V3, "", false)).await;
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    let mut c = RawClient::tcp(broker.addr(), V3).await;
    assert_eq!(
        c.connect_with(connect_packet(V3, "", true)).await.reason,
        ReasonCode::SUCCESS
    );

    // Keep alive above the maximum is lowered via server keep alive.
    let mut c = RawClient::tcp(broker.addr(), V5).await;
    let mut connect = connect_packet(V5, "ka", true);
    connect.keep_alive = 65000;
    let ack = c.connect_with(connect).await;
    assert_eq!(
        ack.properties.server_keep_alive,
        Some(broker.config.limits.max_keep_alive_secs)
    );
    broker.stop().await;
}

#[tokio::test]
async fn shared_subscriptions_spread_and_redeliver() {
    let broker = TestBroker::start().await;
    let mut a = RawClient::connect(broker.addr(), V5, "a").await;
    let mut b = RawClient::connect(broker.addr(), V5, "b").await;
    a.subscribe("$share/g/jobs/#", QoS::AtLeastOnce).await;
    b.subscribe("$share/g/jobs/#", QoS::AtLeastOnce).await;
    let mut plain = RawClient::connect(broker.addr(), V3, "plain").await;
    plain.subscribe("jobs/#", QoS::AtMostOnce).await;
    let mut publ = RawClient::connect(broker.addr(), V5, "pub").await;
    for i in 0..10u8 {
        publ.publish("jobs/x", &[i], QoS::AtLeastOnce, false).await;
    }
    for _ in 0..10 {
        plain.recv_publish().await;
    }
    let mut got_a = Vec::new();
    while let Ok(Some(Packet::Publish(p))) = a.try_recv(Duration::from_millis(300)).await {
        got_a.push(p);
    }
    let mut got_b = 0;
    while let Ok(Some(Packet::Publish(p))) = b.try_recv(Duration::from_millis(300)).await {
        got_b += 1;
        b.send(&Packet::PubAck(PubResponse::new(
            p.packet_id,
            ReasonCode::SUCCESS,
        )))
        .await;
    }
    assert_eq!(got_a.len() + got_b, 10, "each message goes to one member");
    assert!(!got_a.is_empty() && got_b > 0, "both members get work");

    // `a` leaves without acknowledging: its messages go to `b`.
    drop(a);
    for _ in 0..got_a.len() {
        let p = b.recv_publish().await;
        b.send(&Packet::PubAck(PubResponse::new(
            p.packet_id,
            ReasonCode::SUCCESS,
        )))
        .await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn full_queue_drops_new_messages() {
    let broker = TestBroker::start_with(|c| c.limits.max_queued_messages = 5).await;
    let (mut sub, _) = persistent(broker.addr(), V5, "slow").await;
    sub.subscribe("q", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publ = RawClient::connect(broker.addr(), V5, "pub").await;
    for i in 0..8u8 {
        publ.publish("q", &[i], QoS::AtLeastOnce, false).await;
    }
    let (mut sub, _) = persistent(broker.addr(), V5, "slow").await;
    for i in 0..5u8 {
        let p = sub.recv_publish().await;
        assert_eq!(p.payload.as_ref(), &[i], "the oldest five are kept");
        sub.send(&Packet::PubAck(PubResponse::new(
            p.packet_id,
            ReasonCode::SUCCESS,
        )))
        .await;
    }
    sub.expect_silence(Duration::from_millis(300)).await;
    // The three refused messages are counted in $SYS.
    let mut sys = RawClient::connect(broker.addr(), V5, "sys").await;
    sys.subscribe("$SYS/broker/messages/dropped", QoS::AtMostOnce)
        .await;
    // The retained value may predate the drops; the next tick brings it.
    while sys.recv_publish().await.payload.as_ref() != b"3" {}
    broker.stop().await;
}

#[tokio::test]
async fn receive_maximum_both_ways() {
    let broker = TestBroker::start_with(|c| c.limits.receive_maximum = 2).await;
    // Outbound: a client with receive maximum 2 never has more than 2 in flight.
    let mut sub = RawClient::tcp(broker.addr(), V5).await;
    let mut connect = connect_packet(V5, "narrow", true);
    connect.properties.receive_maximum = Some(2);
    sub.connect_with(connect).await;
    sub.subscribe("rm", QoS::AtLeastOnce).await;
    let mut publ = RawClient::connect(broker.addr(), V5, "pub").await;
    for i in 0..5u8 {
        publ.publish("rm", &[i], QoS::AtLeastOnce, false).await;
    }
    let p1 = sub.recv_publish().await;
    let _p2 = sub.recv_publish().await;
    sub.expect_silence(Duration::from_millis(300)).await;
    sub.send(&Packet::PubAck(PubResponse::new(
        p1.packet_id,
        ReasonCode::SUCCESS,
    )))
    .await;
    assert_eq!(sub.recv_publish().await.payload.as_ref(), &[2]);

    // Inbound: three unacknowledged QoS 2 publishes exceed our maximum of 2.
    // (Nothing is stored here, so no acknowledgement waits for a commit;
    // `tests/delivery.rs::receive_maximum_counts_a_held_qos2_publish_once`
    // holds them, which is where a publish could be counted twice.)
    let mut greedy = RawClient::connect(broker.addr(), V5, "greedy").await;
    for id in 1..=3 {
        greedy
            .send(&Packet::Publish(publish(
                "rm2",
                b"x",
                QoS::ExactlyOnce,
                false,
                id,
            )))
            .await;
    }
    loop {
        match greedy.recv().await {
            Some(Packet::PubRec(_)) => continue,
            Some(Packet::Disconnect(d)) => {
                assert_eq!(d.reason, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
                break;
            }
            other => panic!("expected DISCONNECT 0x93, got {other:?}"),
        }
    }
    broker.stop().await;
}

#[tokio::test]
async fn simultaneous_takeovers_never_hang_and_the_last_holder_stays() {
    let broker = TestBroker::start().await;
    for round in 0..20 {
        let id = format!("contested-{round}");
        let mut first = RawClient::connect(broker.addr(), V5, &id).await;
        // Two more connections for the same id at once: each must get its
        // CONNACK (none may wait forever for a kick that was lost) ...
        let (b, c) = tokio::join!(
            RawClient::connect(broker.addr(), V5, &id),
            RawClient::connect(broker.addr(), V5, &id)
        );
        match first.recv().await {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER),
            other => panic!("round {round}: expected 0x8E, got {other:?}"),
        }
        // ... and exactly one of them is taken over by the other.
        let mut survivors = 0;
        for mut client in [b, c] {
            client.send(&Packet::PingReq).await;
            match client.recv().await {
                Some(Packet::PingResp) => survivors += 1,
                Some(Packet::Disconnect(d)) => {
                    assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER)
                }
                other => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!(survivors, 1, "round {round}");
    }
    broker.stop().await;
}
