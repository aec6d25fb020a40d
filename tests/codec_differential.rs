//! Differential test against the `mqtt-proto` crate.
//!
//! 1. Valid generated packets: our encoding must be accepted by mqtt-proto,
//!    with the same key fields, and mqtt-proto's re-encoding must decode
//!    back (with us) to the same key fields.
//! 2. Mutated packets: both decoders see exactly one frame; accept/reject
//!    must agree except in the categories below, each a deliberate
//!    difference (our decoder is stricter, or defers a check to the broker).
//!    Each category is recognised by our exact verdict (the precise error,
//!    or the packet we accept) and checked against what mqtt-proto made of
//!    the frame, so an unrelated rejection cannot pass as a known
//!    difference. Any other disagreement fails the test.
//!
//! Known categories (names as counted and printed by the test):
//! - "filter syntax": mqtt-proto rejects syntactically invalid topic filters
//!   in (UN)SUBSCRIBE; we accept them so the broker can answer 0x8F per
//!   filter (MQTT 5.0 allows refusing one filter without dropping the
//!   client). The filter it names must be one we decoded and one the
//!   broker's own rules refuse.
//! - "several subscription ids": PUBLISH may carry several Subscription
//!   Identifiers (MQTT 5.0 3.3.4); mqtt-proto keeps only one and rejects more.
//! - "trailing bytes": mqtt-proto stops reading fixed-size packets (PUBACK,
//!   CONNACK, PINGREQ, v3 DISCONNECT, ...) and CONNECT after their fields and
//!   ignores the rest of the frame; we call leftover bytes malformed. Only
//!   when mqtt-proto did leave bytes unread.
//! - "non-minimal varint": we reject over-long variable byte integers
//!   (MQTT 5.0 1.5.5); mqtt-proto accepts them.
//! - "dup at qos 0": DUP must be 0 at QoS 0 (3.3.1.1); mqtt-proto ignores it.
//! - "zero-valued property": receive maximum, maximum packet size, topic
//!   alias and subscription identifier must not be 0; mqtt-proto allows 0.
//! - "empty topic name": empty PUBLISH topic (v3, or v5 without alias),
//!   empty will topic or response topic; mqtt-proto accepts the empty string.
//! - "empty reason list": SUBACK/UNSUBACK must carry at least one reason.
//! - "auth data without method": a Protocol Error by 3.1.2.11.10.
//! - "v3 password without username": forbidden by 3.1.1 [MQTT-3.1.2-22].
//! - "will flags without will": will retain without the will flag.
//! - "MQTT 3.1": mqtt-proto decodes protocol "MQIsdp" level 3; we don't
//!   support it and report UnsupportedVersion (CONNACK return code 1).
//! - "U+0000": mqtt-proto only rejects U+0000 in topics, not in other strings.
//!
//! Not a difference: both decoders check that a payload (PUBLISH or will)
//! marked UTF-8 by its payload format indicator is UTF-8 (MQTT 5.0
//! 3.3.2.3.2, 3.1.3.2.3); ours reports PayloadFormatInvalid, which the
//! broker answers with DISCONNECT or CONNACK 0x99 (tests/malformed.rs).
//!
//! Not a decoding difference but an mqtt-proto 0.4.0 encoder bug: its 3.1.1
//! SUBACK writes the Failure return code as 0x03 (`enum as u8` without
//! discriminants) instead of 0x80, so those re-encodings are not fed back.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use gatehouse::protocol::*;
use mqtt_proto::{v3, v5};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use ProtocolVersion::{V5, V311};

#[path = "codec_support/strategies.rs"]
mod strategies;

/// mqtt-proto decodes from an async reader; a slice never blocks, so one
/// poll with a no-op waker completes.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("reading from a slice never blocks"),
    }
}

#[derive(Debug)]
enum Theirs {
    V3(v3::Packet),
    V5(Box<v5::Packet>),
}

/// mqtt-proto's verdict on one complete frame: the packet and the bytes it
/// consumed, or why it refused (running out of data counts as refusal since
/// the whole frame was given).
fn theirs(frame: &[u8], v: ProtocolVersion) -> Result<(Theirs, usize), String> {
    // A CONNECT is decoded in the version it announces, as ours does.
    let use_v5 = match frame.first() {
        Some(b) if b >> 4 == 1 => connect_level(frame) == Some(5),
        _ => v == V5,
    };
    let mut reader = frame;
    let result = if use_v5 {
        block_on(v5::Packet::decode_async(&mut reader))
            .map(|p| Theirs::V5(Box::new(p)))
            .map_err(|e| format!("{e:?}"))
    } else {
        block_on(v3::Packet::decode_async(&mut reader))
            .map(Theirs::V3)
            .map_err(|e| format!("{e:?}"))
    };
    result.map(|p| (p, frame.len() - reader.len()))
}

/// The protocol level byte of a CONNECT frame.
fn connect_level(frame: &[u8]) -> Option<u8> {
    let header = 1 + (1..=4).find(|&i| frame.get(i).is_some_and(|b| b & 0x80 == 0))?;
    let name_len = u16::from_be_bytes([*frame.get(header)?, *frame.get(header + 1)?]);
    frame.get(header + 2 + usize::from(name_len)).copied()
}

/// Clean start, keep alive, client id, username, password.
type ConnectFields = (bool, u16, String, Option<String>, Option<Vec<u8>>);

/// The fields both models have, in one comparable shape.
#[derive(Debug, PartialEq, Default)]
struct Summary {
    kind: u8,
    id: u16,
    flags: (u8, bool, bool),
    topic: String,
    payload: Vec<u8>,
    reasons: Vec<u8>,
    filters: Vec<(String, u8)>,
    connect: Option<ConnectFields>,
    will: Option<(String, Vec<u8>, u8, bool)>,
    users: Vec<(String, String)>,
    sub_id: Option<u32>,
    expiry: Option<u32>,
    reason_string: Option<String>,
}

fn users(list: &[(MqttStr, MqttStr)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn their_users(list: &[v5::UserProperty]) -> Vec<(String, String)> {
    list.iter()
        .map(|u| (u.name.to_string(), u.value.to_string()))
        .collect()
}

fn ours_summary(packet: &Packet, v: ProtocolVersion) -> Summary {
    let v5 = v == V5;
    let mut s = Summary {
        kind: packet.packet_type(),
        ..Summary::default()
    };
    let mut props = None;
    match packet {
        Packet::Connect(c) => {
            let pw = c.password.as_ref().map(|p| p.to_vec());
            let user = c.username.as_ref().map(|u| u.to_string());
            s.connect = Some((
                c.clean_start,
                c.keep_alive,
                c.client_id.to_string(),
                user,
                pw,
            ));
            s.will = c.will.as_ref().map(|w| {
                (
                    w.topic.to_string(),
                    w.payload.to_vec(),
                    w.qos as u8,
                    w.retain,
                )
            });
            props = Some(&c.properties);
            s.expiry = c.properties.session_expiry_interval;
        }
        Packet::ConnAck(c) => {
            s.flags.1 = c.session_present;
            s.reasons = vec![c.reason.0];
            props = Some(&c.properties);
            s.expiry = c.properties.session_expiry_interval;
        }
        Packet::Publish(p) => {
            s.id = p.packet_id;
            s.flags = (p.qos as u8, p.dup, p.retain);
            s.topic = p.topic.to_string();
            s.payload = p.payload.to_vec();
            props = Some(&p.properties);
            s.sub_id = p.properties.subscription_identifiers.first().copied();
            s.expiry = p.properties.message_expiry_interval;
        }
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            s.id = r.packet_id;
            s.reasons = vec![r.reason.0];
            props = Some(&r.properties);
        }
        Packet::Subscribe(sub) => {
            s.id = sub.packet_id;
            s.filters = sub
                .filters
                .iter()
                .map(|(f, o)| (f.to_string(), options_byte(o, v5)))
                .collect();
            props = Some(&sub.properties);
            s.sub_id = sub.properties.subscription_identifiers.first().copied();
        }
        Packet::SubAck(a) => {
            s.id = a.packet_id;
            s.reasons = a.reasons.iter().map(|r| r.0).collect();
            props = Some(&a.properties);
        }
        Packet::Unsubscribe(u) => {
            s.id = u.packet_id;
            s.filters = u.filters.iter().map(|f| (f.to_string(), 0)).collect();
            props = Some(&u.properties);
        }
        Packet::UnsubAck(a) => {
            s.id = a.packet_id;
            s.reasons = a.reasons.iter().map(|r| r.0).collect();
            props = Some(&a.properties);
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => {
            s.reasons = if v5 { vec![d.reason.0] } else { Vec::new() };
            props = Some(&d.properties);
            s.expiry = d.properties.session_expiry_interval;
        }
        Packet::Auth(a) => {
            s.reasons = vec![a.reason.0];
            props = Some(&a.properties);
        }
    }
    if let Some(p) = props {
        s.users = users(&p.user_properties);
        s.reason_string = p.reason_string.as_ref().map(|r| r.to_string());
    }
    s
}

fn options_byte(o: &SubscriptionOptions, v5: bool) -> u8 {
    let extra = if v5 {
        (u8::from(o.no_local) << 2)
            | (u8::from(o.retain_as_published) << 3)
            | (o.retain_handling << 4)
    } else {
        0
    };
    o.qos as u8 | extra
}

fn qos_pid(q: mqtt_proto::QosPid) -> (u8, u16) {
    (q.qos() as u8, q.pid().map_or(0, |p| p.value()))
}

fn v3_summary(packet: &v3::Packet) -> Summary {
    use v3::Packet as P;
    let mut s = Summary {
        reasons: Vec::new(),
        ..Summary::default()
    };
    s.kind = match packet {
        P::Connect(c) => {
            let pw = c.password.as_ref().map(|p| p.to_vec());
            let user = c.username.as_ref().map(|u| u.to_string());
            s.connect = Some((
                c.clean_session,
                c.keep_alive,
                c.client_id.to_string(),
                user,
                pw,
            ));
            s.will = c.last_will.as_ref().map(|w| {
                (
                    w.topic_name.to_string(),
                    w.message.to_vec(),
                    w.qos as u8,
                    w.retain,
                )
            });
            1
        }
        P::Connack(c) => {
            s.flags.1 = c.session_present;
            s.reasons = vec![ReasonCode::from_v3_connack(c.code as u8).map_or(0xFF, |r| r.0)];
            2
        }
        P::Publish(p) => {
            (s.flags.0, s.id) = qos_pid(p.qos_pid);
            (s.flags.1, s.flags.2) = (p.dup, p.retain);
            s.topic = p.topic_name.to_string();
            s.payload = p.payload.to_vec();
            3
        }
        P::Puback(id) | P::Pubrec(id) | P::Pubrel(id) | P::Pubcomp(id) => {
            s.id = id.value();
            s.reasons = vec![0];
            match packet {
                P::Puback(_) => 4,
                P::Pubrec(_) => 5,
                P::Pubrel(_) => 6,
                _ => 7,
            }
        }
        P::Subscribe(sub) => {
            s.id = sub.pid.value();
            s.filters = sub
                .topics
                .iter()
                .map(|(f, q)| (f.to_string(), *q as u8))
                .collect();
            8
        }
        P::Suback(a) => {
            s.id = a.pid.value();
            s.reasons = a
                .topics
                .iter()
                .map(|c| match c {
                    v3::SubscribeReturnCode::Failure => 0x80,
                    granted => *granted as u8,
                })
                .collect();
            9
        }
        P::Unsubscribe(u) => {
            s.id = u.pid.value();
            s.filters = u.topics.iter().map(|f| (f.to_string(), 0)).collect();
            10
        }
        P::Unsuback(id) => {
            s.id = id.value();
            11
        }
        P::Pingreq => 12,
        P::Pingresp => 13,
        P::Disconnect => 14,
    };
    s
}

fn v5_summary(packet: &v5::Packet) -> Summary {
    use v5::Packet as P;
    let mut s = Summary::default();
    let (kind, users, reason_string) = match packet {
        P::Connect(c) => {
            let pw = c.password.as_ref().map(|p| p.to_vec());
            let user = c.username.as_ref().map(|u| u.to_string());
            s.connect = Some((
                c.clean_start,
                c.keep_alive,
                c.client_id.to_string(),
                user,
                pw,
            ));
            s.will = c.last_will.as_ref().map(|w| {
                (
                    w.topic_name.to_string(),
                    w.payload.to_vec(),
                    w.qos as u8,
                    w.retain,
                )
            });
            s.expiry = c.properties.session_expiry_interval;
            (1, &c.properties.user_properties, None)
        }
        P::Connack(c) => {
            s.flags.1 = c.session_present;
            s.reasons = vec![c.reason_code as u8];
            s.expiry = c.properties.session_expiry_interval;
            (
                2,
                &c.properties.user_properties,
                c.properties.reason_string.as_ref(),
            )
        }
        P::Publish(p) => {
            (s.flags.0, s.id) = qos_pid(p.qos_pid);
            (s.flags.1, s.flags.2) = (p.dup, p.retain);
            s.topic = p.topic_name.to_string();
            s.payload = p.payload.to_vec();
            s.sub_id = p.properties.subscription_id.map(|id| id.value());
            s.expiry = p.properties.message_expiry_interval;
            (3, &p.properties.user_properties, None)
        }
        P::Puback(r) => ack(
            &mut s,
            4,
            r.pid,
            r.reason_code as u8,
            &r.properties.user_properties,
            &r.properties.reason_string,
        ),
        P::Pubrec(r) => ack(
            &mut s,
            5,
            r.pid,
            r.reason_code as u8,
            &r.properties.user_properties,
            &r.properties.reason_string,
        ),
        P::Pubrel(r) => ack(
            &mut s,
            6,
            r.pid,
            r.reason_code as u8,
            &r.properties.user_properties,
            &r.properties.reason_string,
        ),
        P::Pubcomp(r) => ack(
            &mut s,
            7,
            r.pid,
            r.reason_code as u8,
            &r.properties.user_properties,
            &r.properties.reason_string,
        ),
        P::Subscribe(sub) => {
            s.id = sub.pid.value();
            s.filters = sub
                .topics
                .iter()
                .map(|(f, o)| (f.to_string(), o.to_u8()))
                .collect();
            s.sub_id = sub.properties.subscription_id.map(|id| id.value());
            (8, &sub.properties.user_properties, None)
        }
        P::Suback(a) => {
            s.id = a.pid.value();
            s.reasons = a.topics.iter().map(|c| *c as u8).collect();
            (
                9,
                &a.properties.user_properties,
                a.properties.reason_string.as_ref(),
            )
        }
        P::Unsubscribe(u) => {
            s.id = u.pid.value();
            s.filters = u.topics.iter().map(|f| (f.to_string(), 0)).collect();
            (10, &u.properties.user_properties, None)
        }
        P::Unsuback(a) => {
            s.id = a.pid.value();
            s.reasons = a.topics.iter().map(|c| *c as u8).collect();
            (
                11,
                &a.properties.user_properties,
                a.properties.reason_string.as_ref(),
            )
        }
        P::Pingreq => return Summary { kind: 12, ..s },
        P::Pingresp => return Summary { kind: 13, ..s },
        P::Disconnect(d) => {
            s.reasons = vec![d.reason_code as u8];
            s.expiry = d.properties.session_expiry_interval;
            (
                14,
                &d.properties.user_properties,
                d.properties.reason_string.as_ref(),
            )
        }
        P::Auth(a) => {
            s.reasons = vec![a.reason_code as u8];
            (
                15,
                &a.properties.user_properties,
                a.properties.reason_string.as_ref(),
            )
        }
    };
    s.kind = kind;
    s.users = their_users(users);
    s.reason_string = reason_string.map(|r| r.to_string());
    s
}

fn ack<'a>(
    s: &mut Summary,
    kind: u8,
    pid: mqtt_proto::Pid,
    reason: u8,
    users: &'a Vec<v5::UserProperty>,
    reason_string: &'a Option<std::sync::Arc<str>>,
) -> (
    u8,
    &'a Vec<v5::UserProperty>,
    Option<&'a std::sync::Arc<str>>,
) {
    s.id = pid.value();
    s.reasons = vec![reason];
    (kind, users, reason_string.as_ref())
}

fn their_summary(p: &Theirs) -> Summary {
    match p {
        Theirs::V3(p) => v3_summary(p),
        Theirs::V5(p) => v5_summary(p),
    }
}

/// mqtt-proto encodes a 3.1.1 SUBACK failure as 0x03 (see module docs).
fn has_v3_suback_failure(p: &Theirs) -> bool {
    matches!(p, Theirs::V3(v3::Packet::Suback(a)) if a.topics.contains(&v3::SubscribeReturnCode::Failure))
}

fn their_encoding(p: &Theirs) -> Vec<u8> {
    match p {
        Theirs::V3(p) => p
            .encode()
            .expect("mqtt-proto encodes what it decoded")
            .as_ref()
            .to_vec(),
        Theirs::V5(p) => p
            .encode()
            .expect("mqtt-proto encodes what it decoded")
            .as_ref()
            .to_vec(),
    }
}

/// The summary with the fields the given version lacks cleared, so 3.1.1
/// packets compare equal whatever the v5-only fields hold.
fn comparable(mut s: Summary, v: ProtocolVersion, kind_connect_v5: bool) -> Summary {
    if v == V311 && !kind_connect_v5 {
        s.users.clear();
        s.sub_id = None;
        s.expiry = None;
        s.reason_string = None;
        if matches!(s.kind, 4..=7) {
            s.reasons = vec![0];
        }
    }
    s
}

/// Why the two decoders may legitimately disagree on this frame: the
/// category our exact verdict belongs to, provided mqtt-proto's side fits
/// it too. `None` is an unexplained disagreement.
fn category(
    ours: &Result<Option<Packet>, DecodeError>,
    theirs: &Result<(Theirs, usize), String>,
    frame_len: usize,
) -> Option<&'static str> {
    match (ours, theirs) {
        (Ok(Some(packet)), Err(e)) => accepted_category(packet, e),
        (Err(e), Ok((t, consumed))) => {
            let (name, fits) = refused_category(e, t, *consumed < frame_len)?;
            fits.then_some(name)
        }
        _ => None,
    }
}

/// We accept, mqtt-proto refuses with `e`.
fn accepted_category(packet: &Packet, e: &str) -> Option<&'static str> {
    let filters: Vec<&str> = match packet {
        Packet::Subscribe(s) => s.filters.iter().map(|(f, _)| f.as_str()).collect(),
        Packet::Unsubscribe(u) => u.filters.iter().map(MqttStr::as_str).collect(),
        Packet::Publish(p)
            if e.contains("DuplicatedProperty(SubscriptionIdentifier)")
                && p.properties.subscription_identifiers.len() > 1 =>
        {
            return Some("several subscription ids");
        }
        _ => return None,
    };
    // The filter mqtt-proto names is one we decoded, and one the broker
    // refuses with 0x8F.
    let refused =
        |f: &str| !topic::is_valid_filter(f) || matches!(topic::parse_shared(f), Some(Err(())));
    filters
        .iter()
        .any(|f| refused(f) && e.contains(&format!("InvalidTopicFilter({f:?})")))
        .then_some("filter syntax")
}

/// We refuse with `e`, mqtt-proto accepts `t`: the category of our error
/// and whether mqtt-proto's packet fits it.
fn refused_category(
    e: &DecodeError,
    t: &Theirs,
    left_unread: bool,
) -> Option<(&'static str, bool)> {
    let s = their_summary(t);
    Some(match e {
        DecodeError::Malformed("trailing bytes after packet body") => {
            ("trailing bytes", left_unread)
        }
        DecodeError::Malformed("non-minimal variable byte integer") => ("non-minimal varint", true),
        DecodeError::Malformed("PUBLISH with DUP set at QoS 0") => {
            ("dup at qos 0", s.kind == 3 && s.flags.0 == 0 && s.flags.1)
        }
        DecodeError::Protocol(
            "receive maximum of 0"
            | "maximum packet size of 0"
            | "topic alias of 0"
            | "subscription identifier of 0",
        ) => ("zero-valued property", true),
        DecodeError::TopicNameInvalid
        | DecodeError::Protocol(
            "empty topic name without topic alias" | "response topic is not a topic name",
        ) => ("empty topic name", has_empty_topic(t)),
        DecodeError::Protocol("acknowledgement without reason codes") => (
            "empty reason list",
            matches!(s.kind, 9 | 11) && s.reasons.is_empty(),
        ),
        DecodeError::Protocol("authentication data without method") => {
            ("auth data without method", true)
        }
        DecodeError::Protocol("password without username") => (
            "v3 password without username",
            matches!(s.connect, Some((_, _, _, None, Some(_)))),
        ),
        DecodeError::Malformed("will QoS or retain without will flag") => {
            ("will flags without will", s.kind == 1 && s.will.is_none())
        }
        DecodeError::UnsupportedVersion(3) => ("MQTT 3.1", s.kind == 1),
        DecodeError::Malformed("U+0000 in a UTF-8 string") => ("U+0000", true),
        _ => return None,
    })
}

/// Whether mqtt-proto's packet has an empty PUBLISH topic, will topic or
/// response topic (all of which we refuse).
fn has_empty_topic(t: &Theirs) -> bool {
    match t {
        Theirs::V3(v3::Packet::Publish(p)) => p.topic_name.is_empty(),
        Theirs::V3(v3::Packet::Connect(c)) => c
            .last_will
            .as_ref()
            .is_some_and(|w| w.topic_name.is_empty()),
        Theirs::V5(p) => match &**p {
            v5::Packet::Publish(p) => {
                p.topic_name.is_empty()
                    || p.properties
                        .response_topic
                        .as_ref()
                        .is_some_and(|t| t.is_empty())
            }
            v5::Packet::Connect(c) => c.last_will.as_ref().is_some_and(|w| {
                w.topic_name.is_empty()
                    || w.properties
                        .response_topic
                        .as_ref()
                        .is_some_and(|t| t.is_empty())
            }),
            _ => false,
        },
        Theirs::V3(_) => false,
    }
}

#[derive(Default)]
struct Stats {
    agree_accept: usize,
    agree_reject: usize,
    skipped: usize,
    categories: BTreeMap<&'static str, usize>,
}

/// Runs both decoders on one frame; fails on an unexplained disagreement.
fn compare(frame: &[u8], v: ProtocolVersion, stats: &mut Stats) -> Result<(), TestCaseError> {
    let ours = decode(&mut BytesMut::from(frame), Some(v), usize::MAX);
    let theirs = theirs(frame, v);
    match (&ours, &theirs) {
        (Ok(Some(p)), Ok((t, consumed))) if *consumed == frame.len() => {
            let connect_v5 = matches!(p, Packet::Connect(c) if c.protocol_version == V5);
            let version = if connect_v5 { V5 } else { v };
            prop_assert_eq!(
                comparable(ours_summary(p, version), v, connect_v5),
                comparable(their_summary(t), v, connect_v5),
                "frame {:02x?}",
                frame
            );
            // mqtt-proto's own encoding must decode to the same fields.
            if has_v3_suback_failure(t) {
                stats.agree_accept += 1;
                return Ok(());
            }
            let wire = their_encoding(t);
            let back = decode(&mut BytesMut::from(&wire[..]), Some(v), usize::MAX);
            let Ok(Some(back)) = back else {
                return Err(TestCaseError::fail(format!(
                    "we refuse mqtt-proto's {wire:02x?}: {back:?}"
                )));
            };
            prop_assert_eq!(ours_summary(&back, version), ours_summary(p, version));
            stats.agree_accept += 1;
        }
        (Err(_), Err(_)) => stats.agree_reject += 1,
        _ => match category(&ours, &theirs, frame.len()) {
            Some(name) => *stats.categories.entry(name).or_default() += 1,
            None => {
                return Err(TestCaseError::fail(format!(
                    "unexplained disagreement on {frame:02x?}: ours {ours:?}, theirs {theirs:?}"
                )));
            }
        },
    }
    Ok(())
}

fn report(name: &str, stats: &Stats) {
    eprintln!(
        "{name}: {} both accept, {} both reject, {} skipped, known differences {:?}",
        stats.agree_accept, stats.agree_reject, stats.skipped, stats.categories
    );
}

fn encoded(packet: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, v, &mut buf);
    buf.to_vec()
}

#[test]
fn generated_packets_agree() {
    for v in [V311, V5] {
        let stats = RefCell::new(Stats::default());
        let mut runner = TestRunner::new(Config {
            cases: 1500,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&strategies::packet(v), |packet| {
                compare(&encoded(&packet, v), v, &mut stats.borrow_mut())
            })
            .unwrap();
        let stats = stats.into_inner();
        report(&format!("generated {v:?}"), &stats);
        // Valid packets only differ where mqtt-proto is stricter than the spec.
        let allowed = ["filter syntax", "several subscription ids"];
        assert!(
            stats.categories.keys().all(|c| allowed.contains(c)),
            "{:?}",
            stats.categories
        );
        assert_eq!(stats.agree_reject, 0);
    }
}

/// Applies one mutation chosen by `op` and positioned by `at`/`value`.
fn mutate(bytes: &mut Vec<u8>, op: u8, at: usize, value: u8) {
    let len = bytes.len();
    let i = at % len.max(1);
    match op % 6 {
        0 if len > 0 => bytes[i] ^= 1 << (value % 8),
        1 if len > 0 => bytes[i] = value,
        2 => bytes.insert(at % (len + 1), value),
        3 if len > 0 => {
            bytes.remove(i);
        }
        4 if len > 1 => {
            let j = 1 + at % (len.min(6) - 1);
            bytes[j] = bytes[j].wrapping_add(if value & 1 == 0 { 1 } else { 255 });
        }
        _ if len > 0 => bytes[0] = (value & 0xF0) | (bytes[0] & 0x0F),
        _ => {}
    }
}

/// The first frame of `bytes`. A remaining length that runs past the end
/// is rewritten to cover the bytes present, so body mutations are still
/// compared instead of being skipped as incomplete.
fn first_frame(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut len = 0usize;
    for i in 0..4 {
        let b = *bytes.get(1 + i)?;
        len |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            if let Some(frame) = bytes.get(..2 + i + len) {
                return Some(frame.to_vec());
            }
            let body = &bytes[2 + i..];
            let mut frame = vec![bytes[0]];
            let mut n = body.len();
            loop {
                let byte = (n & 0x7F) as u8;
                n >>= 7;
                frame.push(if n > 0 { byte | 0x80 } else { byte });
                if n == 0 {
                    break;
                }
            }
            frame.extend_from_slice(body);
            return Some(frame);
        }
    }
    None
}

#[test]
fn mutated_packets_agree_or_differ_for_known_reasons() {
    for v in [V311, V5] {
        let stats = RefCell::new(Stats::default());
        let mut runner = TestRunner::new(Config {
            cases: 3000,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = (
            strategies::packet(v),
            vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..4),
        );
        runner
            .run(&strategy, |(packet, mutations)| {
                let mut bytes = encoded(&packet, v);
                for (op, at, value) in mutations {
                    mutate(&mut bytes, op, at, value);
                }
                let mut stats = stats.borrow_mut();
                match first_frame(&bytes) {
                    Some(frame) => compare(&frame, v, &mut stats),
                    None => {
                        stats.skipped += 1;
                        Ok(())
                    }
                }
            })
            .unwrap();
        let stats = stats.into_inner();
        report(&format!("mutated {v:?}"), &stats);
        assert!(stats.agree_reject > 100 && stats.agree_accept > 100);
    }
}
