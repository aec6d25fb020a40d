//! Publish/subscribe behaviour through raw MQTT 3.1.1 and 5.0 clients.

mod common;

use bytes::Bytes;
use common::*;
use gatehouse::protocol::*;
use std::time::Duration;

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

#[tokio::test]
async fn qos_levels_both_versions() {
    let broker = TestBroker::start().await;
    for version in [V3, V5] {
        let mut sub = RawClient::connect(broker.addr(), version, "sub").await;
        assert_eq!(
            sub.subscribe("a/+/c", QoS::ExactlyOnce).await,
            ReasonCode::GRANTED_QOS_2
        );
        let mut publ = RawClient::connect(broker.addr(), version, "pub").await;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            publ.publish("a/b/c", format!("{qos:?}").as_bytes(), qos, false)
                .await;
            let got = sub.recv_publish().await;
            assert_eq!(got.topic.as_str(), "a/b/c");
            assert_eq!(got.qos, qos);
            assert_eq!(got.payload, Bytes::from(format!("{qos:?}")));
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => {
                    sub.send(&Packet::PubAck(PubResponse::new(
                        got.packet_id,
                        ReasonCode::SUCCESS,
                    )))
                    .await
                }
                QoS::ExactlyOnce => {
                    sub.send(&Packet::PubRec(PubResponse::new(
                        got.packet_id,
                        ReasonCode::SUCCESS,
                    )))
                    .await;
                    match sub.recv().await {
                        Some(Packet::PubRel(rel)) => assert_eq!(rel.packet_id, got.packet_id),
                        other => panic!("expected PUBREL, got {other:?}"),
                    }
                    sub.send(&Packet::PubComp(PubResponse::new(
                        got.packet_id,
                        ReasonCode::SUCCESS,
                    )))
                    .await;
                }
            }
        }
        sub.disconnect().await;
        publ.disconnect().await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn granted_qos_caps_delivery_and_order_is_kept() {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connect(broker.addr(), V5, "sub").await;
    sub.subscribe("t", QoS::AtLeastOnce).await;
    let mut publ = RawClient::connect(broker.addr(), V5, "pub").await;
    for i in 0..50u32 {
        publ.send(&Packet::Publish(publish(
            "t",
            &i.to_be_bytes(),
            QoS::ExactlyOnce,
            false,
            (i + 1) as u16,
        )))
        .await;
    }
    for i in 0..50u32 {
        let got = sub.recv_publish().await;
        assert_eq!(got.qos, QoS::AtLeastOnce);
        assert_eq!(got.payload.as_ref(), &i.to_be_bytes());
        sub.send(&Packet::PubAck(PubResponse::new(
            got.packet_id,
            ReasonCode::SUCCESS,
        )))
        .await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn qos2_duplicate_is_routed_once() {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connect(broker.addr(), V3, "sub").await;
    sub.subscribe("t", QoS::AtMostOnce).await;
    let mut publ = RawClient::connect(broker.addr(), V3, "pub").await;
    let mut p = publish("t", b"once", QoS::ExactlyOnce, false, 9);
    publ.send(&Packet::Publish(p.clone())).await;
    assert!(matches!(publ.recv().await, Some(Packet::PubRec(_))));
    p.dup = true;
    publ.send(&Packet::Publish(p)).await;
    assert!(matches!(publ.recv().await, Some(Packet::PubRec(_))));
    publ.send(&Packet::PubRel(PubResponse::new(9, ReasonCode::SUCCESS)))
        .await;
    assert!(matches!(publ.recv().await, Some(Packet::PubComp(_))));
    assert_eq!(sub.recv_publish().await.payload.as_ref(), b"once");
    sub.expect_silence(Duration::from_millis(300)).await;
    broker.stop().await;
}

#[tokio::test]
async fn retained_store_replace_delete_and_handling() {
    let broker = TestBroker::start().await;
    let mut publ = RawClient::connect(broker.addr(), V5, "pub").await;
    publ.publish("r/1", b"first", QoS::AtLeastOnce, true).await;
    publ.publish("r/1", b"second", QoS::AtLeastOnce, true).await;
    publ.publish("r/2", b"other", QoS::AtMostOnce, true).await;

    let mut sub = RawClient::connect(broker.addr(), V5, "sub").await;
    sub.subscribe("r/1", QoS::AtLeastOnce).await;
    let got = sub.recv_publish().await;
    assert_eq!(got.payload.as_ref(), b"second");
    assert!(got.retain, "retained message carries RETAIN on subscribe");
    sub.send(&Packet::PubAck(PubResponse::new(
        got.packet_id,
        ReasonCode::SUCCESS,
    )))
    .await;

    // retain handling 2: never send retained messages.
    let options = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        retain_handling: 2,
        ..Default::default()
    };
    let mut quiet = RawClient::connect(broker.addr(), V5, "quiet").await;
    quiet
        .subscribe_with("r/#", options, Properties::default())
        .await;
    quiet.expect_silence(Duration::from_millis(300)).await;

    // retain handling 1: only for a new subscription.
    let options = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        retain_handling: 1,
        ..Default::default()
    };
    let mut once = RawClient::connect(broker.addr(), V5, "once").await;
    once.subscribe_with("r/2", options, Properties::default())
        .await;
    assert_eq!(once.recv_publish().await.payload.as_ref(), b"other");
    once.subscribe_with("r/2", options, Properties::default())
        .await;
    once.expect_silence(Duration::from_millis(300)).await;

    // Empty payload deletes.
    publ.publish("r/1", b"", QoS::AtMostOnce, true).await;
    let got = sub.recv_publish().await; // live delivery of the delete itself
    assert!(got.payload.is_empty());
    let mut late = RawClient::connect(broker.addr(), V3, "late").await;
    late.subscribe("r/1", QoS::AtMostOnce).await;
    late.expect_silence(Duration::from_millis(300)).await;
    broker.stop().await;
}

#[tokio::test]
async fn retain_as_published_and_live_retain_flag() {
    let broker = TestBroker::start().await;
    let mut plain = RawClient::connect(broker.addr(), V5, "plain").await;
    plain.subscribe("x", QoS::AtMostOnce).await;
    let mut rap = RawClient::connect(broker.addr(), V5, "rap").await;
    let options = SubscriptionOptions {
        retain_as_published: true,
        ..Default::default()
    };
    rap.subscribe_with("x", options, Properties::default())
        .await;
    let mut publ = RawClient::connect(broker.addr(), V5, "pub").await;
    publ.publish("x", b"r", QoS::AtMostOnce, true).await;
    assert!(!plain.recv_publish().await.retain);
    assert!(rap.recv_publish().await.retain);
    broker.stop().await;
}

#[tokio::test]
async fn retained_message_expiry_is_honoured() {
    let broker = TestBroker::start().await;
    let mut publ = RawClient::connect(broker.addr(), V5, "pub").await;
    let mut p = publish("exp", b"soon gone", QoS::AtMostOnce, true, 0);
    p.properties.message_expiry_interval = Some(1);
    publ.send(&Packet::Publish(p)).await;
    let mut sub = RawClient::connect(broker.addr(), V5, "early").await;
    sub.subscribe("exp", QoS::AtMostOnce).await;
    let got = sub.recv_publish().await;
    assert!(got.properties.message_expiry_interval.unwrap() <= 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut late = RawClient::connect(broker.addr(), V5, "late").await;
    late.subscribe("exp", QoS::AtMostOnce).await;
    late.expect_silence(Duration::from_millis(300)).await;
    broker.stop().await;
}

#[tokio::test]
async fn v5_properties_are_forwarded_unchanged() {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::connect(broker.addr(), V5, "sub").await;
    let props = Properties {
        subscription_identifiers: vec![42],
        ..Default::default()
    };
    sub.subscribe_with("p/#", SubscriptionOptions::default(), props)
        .await;
    let mut publ = RawClient::connect(broker.addr(), V5, "pub").await;
    let mut p = publish("p/1", b"{}", QoS::AtMostOnce, false, 0);
    p.properties.user_properties = vec![("k".into(), "v".into()), ("k".into(), "w".into())];
    p.properties.response_topic = Some("reply/here".into());
    p.properties.correlation_data = Some(Bytes::from_static(b"\x01\x02"));
    p.properties.content_type = Some("application/json".into());
    p.properties.payload_format_indicator = Some(1);
    publ.send(&Packet::Publish(p.clone())).await;
    let got = sub.recv_publish().await;
    assert_eq!(got.properties.user_properties, p.properties.user_properties);
    assert_eq!(got.properties.response_topic, p.properties.response_topic);
    assert_eq!(
        got.properties.correlation_data,
        p.properties.correlation_data
    );
    assert_eq!(got.properties.content_type, p.properties.content_type);
    assert_eq!(got.properties.payload_format_indicator, Some(1));
    assert_eq!(got.properties.subscription_identifiers, vec![42]);
    broker.stop().await;
}

#[tokio::test]
async fn no_local_and_overlapping_subscriptions() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::connect(broker.addr(), V5, "self").await;
    let options = SubscriptionOptions {
        no_local: true,
        ..Default::default()
    };
    c.subscribe_with("loop", options, Properties::default())
        .await;
    c.publish("loop", b"mine", QoS::AtMostOnce, false).await;
    c.expect_silence(Duration::from_millis(300)).await;

    let mut o = RawClient::connect(broker.addr(), V5, "overlap").await;
    let p1 = Properties {
        subscription_identifiers: vec![1],
        ..Default::default()
    };
    o.subscribe_with("a/#", SubscriptionOptions::default(), p1)
        .await;
    let p2 = Properties {
        subscription_identifiers: vec![2],
        ..Default::default()
    };
    o.subscribe_with("a/+", SubscriptionOptions::default(), p2)
        .await;
    c.publish("a/b", b"x", QoS::AtMostOnce, false).await;
    // One copy carrying both identifiers (MQTT 5 §3.3.4).
    let mut ids = o.recv_publish().await.properties.subscription_identifiers;
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
    o.expect_silence(Duration::from_millis(200)).await;

    // UNSUBSCRIBE removes one; the other remains.
    o.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: 5,
        filters: vec!["a/#".into(), "nope".into()],
        properties: Properties::default(),
    }))
    .await;
    match o.recv().await {
        Some(Packet::UnsubAck(ack)) => assert_eq!(
            ack.reasons,
            vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
        ),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    c.publish("a/b", b"y", QoS::AtMostOnce, false).await;
    assert_eq!(
        o.recv_publish().await.properties.subscription_identifiers,
        vec![2]
    );
    o.expect_silence(Duration::from_millis(300)).await;
    broker.stop().await;
}

#[tokio::test]
async fn invalid_filters_are_refused_per_filter() {
    let broker = TestBroker::start().await;
    for (version, refused) in [
        (V5, ReasonCode::TOPIC_FILTER_INVALID),
        (V3, ReasonCode(0x80)),
    ] {
        let mut c = RawClient::connect(broker.addr(), version, "f").await;
        c.send(&Packet::Subscribe(Subscribe {
            packet_id: 3,
            filters: vec![
                ("a/#/b".into(), SubscriptionOptions::default()),
                ("ok/+".into(), SubscriptionOptions::default()),
                ("$share/g".into(), SubscriptionOptions::default()),
            ],
            properties: Properties::default(),
        }))
        .await;
        match c.recv().await {
            Some(Packet::SubAck(ack)) => assert_eq!(
                ack.reasons,
                vec![refused, ReasonCode::GRANTED_QOS_0, refused]
            ),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
    broker.stop().await;
}

#[tokio::test]
async fn system_topics_and_dollar_rule() {
    let broker = TestBroker::start().await;
    let mut all = RawClient::connect(broker.addr(), V5, "all").await;
    all.subscribe("#", QoS::AtMostOnce).await;
    let mut sys = RawClient::connect(broker.addr(), V5, "sys").await;
    sys.subscribe("$SYS/broker/#", QoS::AtMostOnce).await;
    let mut missing: std::collections::HashSet<&str> = [
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
    ]
    .into();
    while !missing.is_empty() {
        let p = sys.recv_publish().await;
        missing.remove(p.topic.as_str());
    }
    // `#` never sees `$SYS`.
    all.expect_silence(Duration::from_millis(1200)).await;
    broker.stop().await;
}

#[tokio::test]
async fn topic_alias_inbound_and_outbound() {
    let broker = TestBroker::start().await;
    let mut sub = RawClient::tcp(broker.addr(), V5).await;
    let mut connect = connect_packet(V5, "alias-sub", true);
    connect.properties.topic_alias_maximum = Some(5);
    sub.connect_with(connect).await;
    sub.subscribe("al/#", QoS::AtMostOnce).await;
    let mut publ = RawClient::connect(broker.addr(), V5, "alias-pub").await;
    let mut p = publish("al/long/topic", b"1", QoS::AtMostOnce, false, 0);
    p.properties.topic_alias = Some(3);
    publ.send(&Packet::Publish(p.clone())).await;
    p.topic = MqttStr::default();
    p.payload = Bytes::from_static(b"2");
    publ.send(&Packet::Publish(p)).await;
    let first = sub.recv_publish().await;
    assert_eq!(first.topic.as_str(), "al/long/topic");
    let alias = first
        .properties
        .topic_alias
        .expect("broker assigns an alias");
    let second = sub.recv_publish().await;
    assert!(
        second.topic.is_empty(),
        "second delivery uses the alias only"
    );
    assert_eq!(second.properties.topic_alias, Some(alias));
    assert_eq!(second.payload.as_ref(), b"2");

    // An unknown alias is a protocol error.
    let mut bad = publish("", b"x", QoS::AtMostOnce, false, 0);
    bad.properties.topic_alias = Some(4);
    publ.send(&Packet::Publish(bad)).await;
    match publ.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::PROTOCOL_ERROR),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    broker.stop().await;
}

#[tokio::test]
async fn packets_pipelined_behind_connect_are_served() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::tcp(broker.addr(), V5).await;
    let mut bytes = bytes::BytesMut::new();
    encode(
        &Packet::Connect(Box::new(connect_packet(V5, "pipeliner", true))),
        V5,
        &mut bytes,
    );
    encode(
        &Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![("pipe".into(), SubscriptionOptions::default())],
            properties: Properties::default(),
        }),
        V5,
        &mut bytes,
    );
    encode(
        &Packet::Publish(publish("pipe", b"same segment", QoS::AtMostOnce, false, 0)),
        V5,
        &mut bytes,
    );
    encode(&Packet::PingReq, V5, &mut bytes);
    c.send_raw(&bytes).await;
    assert!(matches!(c.recv().await, Some(Packet::ConnAck(_))));
    assert!(matches!(c.recv().await, Some(Packet::SubAck(_))));
    // The PINGRESP may come before the delivery of the publish.
    let (mut delivered, mut pong) = (false, false);
    while !(delivered && pong) {
        match c.recv().await {
            Some(Packet::Publish(p)) => delivered = p.payload.as_ref() == b"same segment",
            Some(Packet::PingResp) => pong = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    broker.stop().await;
}

#[tokio::test]
async fn expired_retained_messages_leave_memory_and_store() {
    let mut broker = TestBroker::start().await;
    let mut publ = RawClient::connect(broker.addr(), V5, "pub").await;
    let mut p = publish("exp/gone", b"short-lived", QoS::AtLeastOnce, true, 1);
    p.properties.message_expiry_interval = Some(1);
    publ.send(&Packet::Publish(p)).await;
    assert!(matches!(publ.recv().await, Some(Packet::PubAck(_))));
    publ.publish("exp/kept", b"long-lived", QoS::AtLeastOnce, true)
        .await;
    let retained = || {
        broker
            .broker
            .as_ref()
            .unwrap()
            .services()
            .router
            .retained()
            .len()
    };
    let before = retained();
    // Expiry (1 s) plus one housekeeping tick (sys_interval_secs = 1).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        retained(),
        before - 1,
        "expired retained message still held"
    );
    let data = broker.data_dir();
    // Stop the broker but keep its (temporary) data directory.
    broker.broker.take().unwrap().shutdown().await;
    let store = gatehouse::store::Store::open(
        &data,
        gatehouse::config::Durability::Sync,
        Duration::from_millis(100),
    )
    .unwrap();
    let topics: Vec<String> = store
        .take_loaded()
        .unwrap()
        .retained
        .iter()
        .map(|m| m.topic.to_string())
        .collect();
    assert_eq!(topics, vec!["exp/kept".to_string()]);
}
