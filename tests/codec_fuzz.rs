//! Bounded mutation fuzzing on stable Rust: mutated valid packets go through
//! `decode` for both versions and before CONNECT. The decoder must never
//! panic, must not consume input when it asks for more, must agree with
//! itself when the input arrives in two pieces, and every packet it accepts
//! must re-encode to bytes that decode to the same packet.

use bytes::{Bytes, BytesMut};
use gatehouse::protocol::*;

use ProtocolVersion::{V5, V311};

const ITERATIONS: usize = 200_000;

/// xorshift64*: tiny, seeded, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        const INTERESTING: [u8; 8] = [0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF, 0x23, 0x2B];
        if self.below(4) == 0 {
            INTERESTING[self.below(INTERESTING.len())]
        } else {
            self.next() as u8
        }
    }
}

fn props_full() -> Properties {
    Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        content_type: Some("text/plain".into()),
        response_topic: Some("reply/to".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        subscription_identifiers: vec![1, 300],
        session_expiry_interval: Some(3600),
        assigned_client_identifier: Some("auto-1".into()),
        server_keep_alive: Some(30),
        authentication_method: Some("SCRAM-SHA-1".into()),
        authentication_data: Some(Bytes::from_static(b"data")),
        request_problem_information: Some(0),
        will_delay_interval: Some(5),
        request_response_information: Some(1),
        response_information: Some("resp".into()),
        server_reference: Some("other:1883".into()),
        reason_string: Some("because".into()),
        receive_maximum: Some(10),
        topic_alias_maximum: Some(5),
        topic_alias: Some(2),
        maximum_qos: Some(1),
        retain_available: Some(1),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "ü".into())],
        maximum_packet_size: Some(65536),
        wildcard_subscription_available: Some(0),
        subscription_identifier_available: Some(1),
        shared_subscription_available: Some(1),
    }
}

/// Valid packets of every type; the encoder drops properties a packet (or
/// version) cannot carry, so one full property set serves them all.
fn seed_packets(v: ProtocolVersion) -> Vec<Packet> {
    let props = if v == V5 {
        props_full()
    } else {
        Properties::default()
    };
    let mut sub_props = props.clone();
    sub_props.subscription_identifiers.truncate(1);
    let mut connect_props = props.clone();
    connect_props.topic_alias = None;
    let will = Will {
        topic: "last/will".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: props.clone(),
    };
    let connect = |will: Option<Will>, user: bool| {
        Packet::Connect(Box::new(Connect {
            protocol_version: v,
            clean_start: true,
            keep_alive: 60,
            client_id: "client-1".into(),
            will,
            username: user.then(|| "user".into()),
            password: user.then(|| Bytes::from_static(b"secret")),
            properties: connect_props.clone(),
        }))
    };
    let publish = |qos, topic: &str, payload: &'static [u8]| {
        Packet::Publish(Publish {
            dup: qos != QoS::AtMostOnce,
            qos,
            retain: true,
            topic: topic.into(),
            packet_id: if qos == QoS::AtMostOnce { 0 } else { 77 },
            properties: props.clone(),
            payload: Bytes::from_static(payload),
        })
    };
    let ack = |reason| PubResponse {
        packet_id: 9,
        reason: ReasonCode(reason),
        properties: props.clone(),
    };
    let v5_reason = |code| {
        if v == V5 {
            ReasonCode(code)
        } else {
            ReasonCode::SUCCESS
        }
    };
    let mut packets = vec![
        connect(Some(will), true),
        connect(None, false),
        Packet::ConnAck(ConnAck {
            session_present: true,
            reason: ReasonCode(0x87),
            properties: props.clone(),
        }),
        publish(QoS::AtMostOnce, "a/b", b"hello"),
        publish(QoS::AtLeastOnce, "sensors/temp", b"{\"t\":21.5}"),
        publish(QoS::ExactlyOnce, "x", b""),
        Packet::PubAck(ack(v5_reason(0x10).0)),
        Packet::PubRec(ack(0)),
        Packet::PubRel(ack(v5_reason(0x92).0)),
        Packet::PubComp(PubResponse::new(3, ReasonCode::SUCCESS)),
        Packet::Subscribe(Subscribe {
            packet_id: 4,
            filters: vec![
                (
                    "a/+/c".into(),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..Default::default()
                    },
                ),
                (
                    "#".into(),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        ..Default::default()
                    },
                ),
            ],
            properties: sub_props,
        }),
        Packet::SubAck(SubAck {
            packet_id: 4,
            reasons: vec![ReasonCode(1), ReasonCode(0x80)],
            properties: props.clone(),
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 5,
            filters: vec!["a/+/c".into(), "b".into()],
            properties: props.clone(),
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: 5,
            reasons: if v == V5 {
                vec![ReasonCode(0), ReasonCode(0x11)]
            } else {
                Vec::new()
            },
            properties: props.clone(),
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect {
            reason: v5_reason(0x04),
            properties: props.clone(),
        }),
        Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)),
    ];
    if v == V5 {
        packets.push(Packet::Auth(Auth {
            reason: ReasonCode(0x18),
            properties: props.clone(),
        }));
        packets.push(Packet::PubAck(PubResponse::new(1, ReasonCode(0x97))));
    }
    packets
}

fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for v in [V311, V5] {
        for packet in seed_packets(v) {
            let mut buf = BytesMut::new();
            encode(&packet, v, &mut buf);
            // Seeds must themselves be valid (properties the packet type
            // cannot carry were dropped by the encoder).
            let decoded = decode(&mut buf.clone(), Some(v), usize::MAX);
            assert!(matches!(decoded, Ok(Some(_))), "{packet:?}: {decoded:?}");
            out.push(buf.to_vec());
        }
    }
    out
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.byte();
            }
            2 => {
                let i = rng.below(len + 1);
                input.insert(i, rng.byte());
            }
            3 if len > 0 => {
                input.remove(rng.below(len));
            }
            // Remaining length (or a field length) nudged up or down.
            4 if len > 1 => {
                let i = 1 + rng.below(len.min(6) - 1);
                input[i] = input[i].wrapping_add([1, 255, 2, 254][rng.below(4)]);
            }
            5 if len > 0 => input.truncate(rng.below(len)),
            // Splice: keep a prefix, append the tail of another seed.
            6 => {
                let other = &seeds[rng.below(seeds.len())];
                input.truncate(rng.below(len + 1));
                input.extend_from_slice(&other[rng.below(other.len())..]);
            }
            7 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(8)).min(len);
                let chunk = input[start..end].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, chunk);
            }
            // Swap the packet type, keeping the body.
            _ if len > 0 => input[0] = (rng.byte() & 0xF0) | (input[0] & 0x0F),
            _ => {}
        }
    }
}

/// Checks every invariant for one input and one decoder state.
fn check(input: &[u8], version: Option<ProtocolVersion>, max: usize, split: usize) -> bool {
    let mut buf = BytesMut::from(input);
    let result = decode(&mut buf, version, max);
    match &result {
        Ok(None) => assert_eq!(&buf[..], input, "Ok(None) consumed input"),
        Ok(Some(packet)) => {
            let consumed = input.len() - buf.len();
            assert!(consumed > 0 && consumed <= max);
            assert_eq!(
                &buf[..],
                &input[consumed..],
                "decode consumed more than one frame"
            );
            // A CONNECT is encoded in the version it announced.
            let v = match packet {
                Packet::Connect(c) => c.protocol_version,
                _ => version.expect("only CONNECT decodes without a version"),
            };
            let mut out = BytesMut::new();
            encode(packet, v, &mut out);
            assert_eq!(out.len(), encoded_len(packet, v));
            let again = decode(&mut out, version, usize::MAX);
            assert_eq!(
                again.as_ref(),
                Ok(&Some(packet.clone())),
                "re-encoding changed {packet:?}"
            );
            assert!(out.is_empty());
        }
        Err(_) => {}
    }
    // Arriving in two pieces changes nothing but when the answer comes.
    let mut part = BytesMut::from(&input[..split.min(input.len())]);
    match decode(&mut part, version, max) {
        Ok(None) => {}
        early => assert_eq!(
            early,
            result,
            "prefix of {} bytes decided differently",
            part.len()
        ),
    }
    result.is_ok_and(|p| p.is_some())
}

#[test]
fn mutated_packets_never_break_the_decoder() {
    let seeds = seeds();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0usize;
    for _ in 0..ITERATIONS {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &seeds, &mut input);
        let max = if rng.below(8) == 0 {
            rng.below(64)
        } else {
            1 << 20
        };
        let split = rng.below(input.len() + 1);
        for version in [Some(V311), Some(V5), None] {
            accepted += usize::from(check(&input, version, max, split));
        }
    }
    eprintln!("{accepted} of {} decodes accepted", 3 * ITERATIONS);
    // The loop must exercise the accepting paths too, not just rejections.
    assert!(
        accepted > ITERATIONS / 10,
        "only {accepted} inputs accepted"
    );
}

#[test]
fn random_bytes_never_break_the_decoder() {
    let mut rng = Rng(42);
    for _ in 0..ITERATIONS / 4 {
        let len = rng.below(40);
        let mut input: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        if let Some(first) = input.first_mut() {
            // Keep plausible packet types common.
            *first = (*first & 0xF0) | [0, 2, *first & 0x0F][rng.below(3)];
        }
        let split = rng.below(len + 1);
        for version in [Some(V311), Some(V5), None] {
            check(&input, version, 1 << 20, split);
        }
    }
}
