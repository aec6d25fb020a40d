//! Bad input: malformed and oversized packets get the right reason code
//! (v5 DISCONNECT) or a closed socket (3.1.1), and everyone else is served.

mod common;

use common::*;
use gatehouse::protocol::*;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

async fn expect_disconnect(c: &mut RawClient, reason: ReasonCode) {
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason),
        other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
    }
    assert_eq!(c.recv().await, None, "socket closed after DISCONNECT");
}

#[tokio::test]
async fn malformed_packets_get_reason_codes_and_others_keep_working() {
    let broker = TestBroker::start().await;
    let mut bystander = RawClient::connect(broker.addr(), V5, "bystander").await;
    bystander.subscribe("ok", QoS::AtMostOnce).await;

    // (bytes, v5 reason) — each sent after a valid CONNECT.
    let cases: Vec<(Vec<u8>, ReasonCode)> = vec![
        // PUBLISH QoS 3
        (
            vec![0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01],
            ReasonCode::MALFORMED_PACKET,
        ),
        // PUBLISH topic with wildcard
        (
            vec![0x30, 0x04, 0x00, 0x01, b'#', 0x00],
            ReasonCode::TOPIC_NAME_INVALID,
        ),
        // PUBLISH topic with invalid UTF-8
        (
            vec![0x30, 0x05, 0x00, 0x02, 0xC3, 0x28, 0x00],
            ReasonCode::MALFORMED_PACKET,
        ),
        // PUBLISH topic with U+0000
        (
            vec![0x30, 0x05, 0x00, 0x02, b'a', 0x00, 0x00],
            ReasonCode::MALFORMED_PACKET,
        ),
        // SUBSCRIBE with wrong reserved flags (0x80 instead of 0x82)
        (
            vec![0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, b'a'],
            ReasonCode::MALFORMED_PACKET,
        ),
        // PINGREQ with a body
        (vec![0xC0, 0x01, 0x00], ReasonCode::MALFORMED_PACKET),
        // remaining length with five bytes
        (
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            ReasonCode::MALFORMED_PACKET,
        ),
        // duplicate property (payload format indicator twice)
        (
            vec![0x30, 0x08, 0x00, 0x01, b't', 0x04, 0x01, 0x00, 0x01, 0x00],
            ReasonCode::PROTOCOL_ERROR,
        ),
        // a second CONNECT
        (
            vec![
                0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C, 0x00, 0x00,
                0x00,
            ],
            ReasonCode::PROTOCOL_ERROR,
        ),
    ];
    for (i, (bytes, reason)) in cases.into_iter().enumerate() {
        let mut c = RawClient::connect(broker.addr(), V5, &format!("bad{i}")).await;
        c.send_raw(&bytes).await;
        match c.recv().await {
            Some(Packet::Disconnect(d)) => {
                // The decoder may classify some as malformed vs protocol error;
                // both are errors, but the specific code is asserted here.
                assert_eq!(d.reason, reason, "case {i}: {bytes:02x?}");
            }
            other => panic!("case {i}: expected DISCONNECT, got {other:?}"),
        }
        if reason == ReasonCode::PROTOCOL_ERROR && bytes[0] == 0x30 {
            continue; // properties: valid payload bytes in 3.1.1
        }
        // 3.1.1: the same bytes just close the socket.
        let mut c3 = RawClient::connect(broker.addr(), V3, &format!("bad3-{i}")).await;
        c3.send_raw(&bytes).await;
        assert_eq!(c3.recv().await, None, "case {i} (3.1.1)");
    }
    let mut publ = RawClient::connect(broker.addr(), V5, "good").await;
    publ.publish("ok", b"still here", QoS::AtMostOnce, false)
        .await;
    assert_eq!(
        bystander.recv_publish().await.payload.as_ref(),
        b"still here"
    );
    broker.stop().await;
}

#[tokio::test]
async fn oversized_packet_is_refused_from_its_header() {
    let broker = TestBroker::start_with(|c| c.limits.max_packet_size = 1024).await;
    let mut c = RawClient::connect(broker.addr(), V5, "big").await;
    // Announce 100 MB and send only the header: the broker must not wait
    // for (or reserve) the body.
    c.send_raw(&[0x30, 0x80, 0x80, 0x80, 0x30]).await;
    expect_disconnect(&mut c, ReasonCode::PACKET_TOO_LARGE).await;

    // A complete packet just over the limit is refused too.
    let mut c = RawClient::connect(broker.addr(), V5, "big2").await;
    c.send(&Packet::Publish(publish(
        "t",
        &[0u8; 1100],
        QoS::AtMostOnce,
        false,
        0,
    )))
    .await;
    expect_disconnect(&mut c, ReasonCode::PACKET_TOO_LARGE).await;

    // An oversized CONNECT is closed.
    let mut raw = RawClient::tcp(broker.addr(), V3).await;
    raw.send_raw(&[0x10, 0x80, 0x80, 0x80, 0x30]).await;
    assert_eq!(raw.recv().await, None);
    broker.stop().await;
}

#[tokio::test]
async fn first_packet_must_be_connect_and_arrive_in_time() {
    let broker = TestBroker::start_with(|c| c.limits.connect_timeout_secs = 1).await;
    let mut c = RawClient::tcp(broker.addr(), V3).await;
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, None);

    let mut silent = RawClient::tcp(broker.addr(), V3).await;
    let started = std::time::Instant::now();
    assert_eq!(silent.recv().await, None);
    assert!(started.elapsed() < Duration::from_secs(3));

    // Unsupported protocol level: CONNACK 0x01 (3.1.1 format), then close.
    let mut old = RawClient::tcp(broker.addr(), V3).await;
    old.send_raw(&[
        0x10, 0x0E, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3C, 0x00,
        0x00,
    ])
    .await;
    match old.recv().await {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.reason, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    broker.stop().await;
}

#[tokio::test]
async fn garbage_from_many_clients_never_stops_the_broker() {
    let broker = TestBroker::start().await;
    let mut seed = 0x1234_5678_9abc_def0u64;
    for _ in 0..200 {
        let mut bytes = vec![0u8; 64];
        for b in bytes.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        if let Ok(mut s) = tokio::net::TcpStream::connect(broker.addr()).await {
            let _ = s.write_all(&bytes).await;
        }
    }
    let mut c = RawClient::connect(broker.addr(), V5, "after-garbage").await;
    c.subscribe("x", QoS::AtMostOnce).await;
    c.publish("x", b"alive", QoS::AtMostOnce, false).await;
    assert_eq!(c.recv_publish().await.payload.as_ref(), b"alive");
    broker.stop().await;
}

#[tokio::test]
async fn connection_limit_refuses_extra_sockets() {
    let broker = TestBroker::start_with(|c| c.limits.max_connections = 2).await;
    let _a = RawClient::connect(broker.addr(), V5, "a").await;
    let _b = RawClient::connect(broker.addr(), V5, "b").await;
    let mut c = RawClient::tcp(broker.addr(), V5).await;
    c.send(&Packet::Connect(Box::new(connect_packet(V5, "c", true))))
        .await;
    assert_eq!(c.recv().await, None, "third connection is closed");
    broker.stop().await;
}

/// MQTT 5.0 3.3.2.3.2: a PUBLISH whose payload format indicator says UTF-8
/// but whose payload is not gets DISCONNECT 0x99 and is neither routed nor
/// retained; a will breaking the same rule gets CONNACK 0x99 (3.1.3.2.3).
/// Marked UTF-8 payloads, unmarked bytes and other clients are unaffected.
#[tokio::test]
async fn payload_marked_utf8_that_is_not_gets_0x99() {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connect(broker.addr(), V5, "watcher").await;
    sub.subscribe("pf/#", QoS::AtMostOnce).await;
    let bad: &[u8] = &[b'o', b'k', 0xC3, 0x28];
    let marked = |topic: &str, payload: &[u8], qos: QoS, retain: bool| {
        let mut p = publish(topic, payload, qos, retain, 1);
        p.properties.payload_format_indicator = Some(1);
        Packet::Publish(p)
    };
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let mut liar = RawClient::connect(broker.addr(), V5, &format!("liar{i}")).await;
        liar.send(&marked("pf/bad", bad, qos, true)).await;
        expect_disconnect(&mut liar, ReasonCode::PAYLOAD_FORMAT_INVALID).await;
    }

    // A will that breaks the rule: CONNACK 0x99, then the socket closes.
    let mut will_liar = RawClient::tcp(broker.addr(), V5).await;
    let mut connect = connect_packet(V5, "will-liar", true);
    connect.will = Some(Will {
        topic: "pf/will".into(),
        payload: bytes::Bytes::from_static(&[0xFF]),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties {
            payload_format_indicator: Some(1),
            ..Properties::default()
        },
    });
    let ack = will_liar.connect_with(connect).await;
    assert_eq!(ack.reason, ReasonCode::PAYLOAD_FORMAT_INVALID);
    assert_eq!(will_liar.recv().await, None, "socket closed after CONNACK");

    // Everyone else is served: the first thing the watcher sees is the
    // honest message (a routed bad one would have come first).
    let mut honest = RawClient::connect(broker.addr(), V5, "honest").await;
    honest
        .send(&marked(
            "pf/text",
            "grüß\0".as_bytes(),
            QoS::AtMostOnce,
            false,
        ))
        .await;
    let got = sub.recv_publish().await;
    assert_eq!(
        (
            got.topic.as_str(),
            &got.payload[..],
            got.properties.payload_format_indicator
        ),
        ("pf/text", "grüß\0".as_bytes(), Some(1))
    );
    // Unmarked, the same bytes are just bytes, in v5 and in 3.1.1.
    honest
        .publish("pf/bytes", bad, QoS::AtLeastOnce, false)
        .await;
    let got = sub.recv_publish().await;
    assert_eq!((got.topic.as_str(), &got.payload[..]), ("pf/bytes", bad));
    let mut old = RawClient::connect(broker.addr(), V3, "old").await;
    old.publish("pf/v3", bad, QoS::AtLeastOnce, false).await;
    let got = sub.recv_publish().await;
    assert_eq!((got.topic.as_str(), &got.payload[..]), ("pf/v3", bad));
    sub.expect_silence(Duration::from_millis(200)).await;

    // Nothing was retained either.
    let mut late = RawClient::connect(broker.addr(), V5, "late").await;
    late.subscribe("pf/#", QoS::AtMostOnce).await;
    late.expect_silence(Duration::from_millis(300)).await;
    broker.stop().await;
}
