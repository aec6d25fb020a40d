//! Unmodified third-party clients: rumqttc (3.1.1 and 5.0), the mosquitto
//! command-line clients and a WebSocket client.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;

async fn rumqttc_v4_roundtrip(port: u16) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new("rumq-v4", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    client.subscribe("rq/+", QoS::ExactlyOnce).await.unwrap();
    let mut received = Vec::new();
    let result = tokio::time::timeout(TIMEOUT, async {
        loop {
            match eventloop.poll().await.unwrap() {
                Event::Incoming(Packet::SubAck(_)) => {
                    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                        client
                            .publish("rq/v4", qos, false, format!("{qos:?}"))
                            .await
                            .unwrap();
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    received.push((p.qos, p.payload));
                    if received.len() == 3 {
                        return;
                    }
                }
                _ => {}
            }
        }
    })
    .await;
    result.expect("rumqttc v4 round trip timed out");
    received.sort_by_key(|(q, _)| *q as u8);
    assert_eq!(received[0].1.as_ref(), b"AtMostOnce");
    assert_eq!(received[2], (QoS::ExactlyOnce, "ExactlyOnce".into()));
}

async fn rumqttc_v5_roundtrip(port: u16) {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let mut opts = MqttOptions::new("rumq-v5", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    client.subscribe("rq5/#", QoS::AtLeastOnce).await.unwrap();
    let result = tokio::time::timeout(TIMEOUT, async {
        loop {
            match eventloop.poll().await.unwrap() {
                Event::Incoming(Packet::SubAck(_)) => {
                    let props = PublishProperties {
                        user_properties: vec![("site".into(), "plant-7".into())],
                        content_type: Some("text/plain".into()),
                        ..Default::default()
                    };
                    client
                        .publish_with_properties(
                            "rq5/a",
                            QoS::AtLeastOnce,
                            false,
                            "hello v5",
                            props,
                        )
                        .await
                        .unwrap();
                }
                Event::Incoming(Packet::Publish(p)) => return p,
                _ => {}
            }
        }
    })
    .await;
    let p = result.expect("rumqttc v5 round trip timed out");
    assert_eq!(p.payload.as_ref(), b"hello v5");
    let props = p.properties.expect("properties forwarded");
    assert_eq!(
        props.user_properties,
        vec![("site".to_string(), "plant-7".to_string())]
    );
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
}

#[tokio::test]
async fn rumqttc_v4_and_v5() {
    let broker = TestBroker::start().await;
    rumqttc_v4_roundtrip(broker.port()).await;
    rumqttc_v5_roundtrip(broker.port()).await;
    broker.stop().await;
}

#[tokio::test]
async fn mosquitto_clients_both_versions() {
    let broker = TestBroker::start().await;
    let port = broker.port().to_string();
    for version in ["311", "5"] {
        for qos in ["0", "1", "2"] {
            let topic = format!("mosq/{version}/{qos}");
            let args = ["-V", version, "-q", qos];
            let (status, out) = mosquitto_roundtrip(
                broker.port(),
                &topic,
                &topic,
                "Hello World",
                &[&args[..], &["-v"]].concat(),
                &args,
            )
            .await;
            assert_eq!(
                status,
                Some(0),
                "mosquitto_sub -V {version} -q {qos}: {out}"
            );
            assert_eq!(out.trim(), format!("{topic} Hello World"));
        }
    }
    // Retained message picked up by a later subscriber.
    let (status, _) = run_cmd(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "mosq/retained",
            "-m",
            "kept",
            "-r",
            "-q",
            "1",
        ],
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status, Some(0));
    let (status, out) = run_cmd(
        "mosquitto_sub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "5",
            "-t",
            "mosq/#",
            "-C",
            "1",
            "-W",
            "5",
        ],
        Duration::from_secs(8),
    )
    .await;
    assert_eq!((status, out.trim()), (Some(0), "kept"));
    broker.stop().await;
}

#[tokio::test]
async fn websocket_transport() {
    use gatehouse::protocol::*;
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let broker = TestBroker::start().await;
    let url = format!("ws://{}/mqtt", broker.ws_addr());
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "mqtt"
    );

    let frame = |packet: Packet| {
        let mut out = bytes::BytesMut::new();
        encode(&packet, ProtocolVersion::V5, &mut out);
        Message::Binary(out.freeze())
    };
    let next_packet = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| loop {
        match tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Binary(data) => {
                let mut buf = bytes::BytesMut::from(&data[..]);
                return decode(&mut buf, Some(ProtocolVersion::V5), usize::MAX)
                    .unwrap()
                    .unwrap();
            }
            _ => continue,
        }
    };
    ws.send(frame(Packet::Connect(Box::new(connect_packet(
        ProtocolVersion::V5,
        "ws-client",
        true,
    )))))
    .await
    .unwrap();
    assert!(
        matches!(next_packet(&mut ws).await, Packet::ConnAck(a) if a.reason == ReasonCode::SUCCESS)
    );
    ws.send(frame(Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![("ws/t".into(), SubscriptionOptions::default())],
        properties: Properties::default(),
    })))
    .await
    .unwrap();
    assert!(matches!(next_packet(&mut ws).await, Packet::SubAck(_)));

    // A TCP client publishes; the WebSocket client receives.
    let mut tcp = RawClient::connect(broker.addr(), ProtocolVersion::V311, "tcp").await;
    tcp.publish("ws/t", b"over ws", QoS::AtLeastOnce, false)
        .await;
    match next_packet(&mut ws).await {
        Packet::Publish(p) => assert_eq!(p.payload.as_ref(), b"over ws"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }

    // Wrong path is refused at the handshake.
    let bad = format!("ws://{}/other", broker.ws_addr());
    assert!(tokio_tungstenite::connect_async(bad).await.is_err());
    broker.stop().await;
}

#[tokio::test]
async fn paho_python_both_versions() {
    let broker = TestBroker::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paho_client.py");
    let (status, out) = run_cmd(
        "python3",
        &[script, &broker.port().to_string()],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        status,
        Some(0),
        "paho client failed (install with `python3 -m pip install paho-mqtt`): {out}"
    );
    assert!(
        out.contains("paho 3.1.1 ok") && out.contains("paho 5.0 ok"),
        "{out}"
    );
    broker.stop().await;
}
