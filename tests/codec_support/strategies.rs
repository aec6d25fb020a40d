//! Proptest strategies for valid packets of either version, shared by the
//! round-trip and differential tests.

#![allow(dead_code)]

use bytes::Bytes;
use gatehouse::protocol::*;
use proptest::collection::vec;
use proptest::prelude::*;

use ProtocolVersion::{V5, V311};

pub fn text() -> impl Strategy<Value = MqttStr> {
    "[^\\x00]{0,12}".prop_map(MqttStr::from)
}

pub fn topic_name() -> impl Strategy<Value = MqttStr> {
    "[^\\x00+#]{1,12}".prop_map(MqttStr::from)
}

/// Non-empty filters, often with wildcards in odd places: the decoder must
/// not judge filter syntax.
pub fn filter() -> impl Strategy<Value = MqttStr> {
    let level = prop_oneof![
        Just("+".to_owned()),
        Just("#".to_owned()),
        Just("a+".to_owned()),
        Just(String::new()),
        Just("$share".to_owned()),
        "[^\\x00/]{1,6}",
    ];
    vec(level, 1..4).prop_filter_map("empty filter", |levels| {
        let filter = levels.join("/");
        (!filter.is_empty()).then(|| MqttStr::from(filter))
    })
}

pub fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

pub fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

pub fn pick(codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    prop::sample::select(codes).prop_map(ReasonCode)
}

/// Which property list is being generated.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Ctx {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubResponse,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

/// One property occurrence; folded into `Properties`.
#[derive(Clone, Debug)]
enum Prop {
    U8(fn(&mut Properties) -> &mut Option<u8>, u8),
    U16(fn(&mut Properties) -> &mut Option<u16>, u16),
    U32(fn(&mut Properties) -> &mut Option<u32>, u32),
    Str(fn(&mut Properties) -> &mut Option<MqttStr>, MqttStr),
    Bin(fn(&mut Properties) -> &mut Option<Bytes>, Bytes),
    SubId(u32),
    User(MqttStr, MqttStr),
}

pub fn props(ctx: Ctx) -> BoxedStrategy<Properties> {
    use Ctx::*;
    let flag = || 0u8..=1;
    let nonzero16 = || 1u16..;
    let mut options: Vec<BoxedStrategy<Prop>> =
        vec![(text(), text()).prop_map(|(k, v)| Prop::User(k, v)).boxed()];
    if matches!(ctx, Publish | Will) {
        options.extend([
            flag()
                .prop_map(|v| Prop::U8(|p| &mut p.payload_format_indicator, v))
                .boxed(),
            any::<u32>()
                .prop_map(|v| Prop::U32(|p| &mut p.message_expiry_interval, v))
                .boxed(),
            text()
                .prop_map(|v| Prop::Str(|p| &mut p.content_type, v))
                .boxed(),
            topic_name()
                .prop_map(|v| Prop::Str(|p| &mut p.response_topic, v))
                .boxed(),
            binary()
                .prop_map(|v| Prop::Bin(|p| &mut p.correlation_data, v))
                .boxed(),
        ]);
    }
    if matches!(ctx, Publish | Subscribe) {
        options.push((1u32..=268_435_455).prop_map(Prop::SubId).boxed());
    }
    if ctx == Publish {
        options.push(
            nonzero16()
                .prop_map(|v| Prop::U16(|p| &mut p.topic_alias, v))
                .boxed(),
        );
    }
    if ctx == Will {
        options.push(
            any::<u32>()
                .prop_map(|v| Prop::U32(|p| &mut p.will_delay_interval, v))
                .boxed(),
        );
    }
    if matches!(ctx, Connect | ConnAck | Disconnect) {
        options.push(
            any::<u32>()
                .prop_map(|v| Prop::U32(|p| &mut p.session_expiry_interval, v))
                .boxed(),
        );
    }
    if matches!(ctx, Connect | ConnAck | Auth) {
        options.extend([
            text()
                .prop_map(|v| Prop::Str(|p| &mut p.authentication_method, v))
                .boxed(),
            binary()
                .prop_map(|v| Prop::Bin(|p| &mut p.authentication_data, v))
                .boxed(),
        ]);
    }
    if matches!(ctx, Connect | ConnAck) {
        options.extend([
            nonzero16()
                .prop_map(|v| Prop::U16(|p| &mut p.receive_maximum, v))
                .boxed(),
            any::<u16>()
                .prop_map(|v| Prop::U16(|p| &mut p.topic_alias_maximum, v))
                .boxed(),
            (1u32..)
                .prop_map(|v| Prop::U32(|p| &mut p.maximum_packet_size, v))
                .boxed(),
        ]);
    }
    if ctx == Connect {
        options.extend([
            flag()
                .prop_map(|v| Prop::U8(|p| &mut p.request_problem_information, v))
                .boxed(),
            flag()
                .prop_map(|v| Prop::U8(|p| &mut p.request_response_information, v))
                .boxed(),
        ]);
    }
    if ctx == ConnAck {
        options.extend([
            text()
                .prop_map(|v| Prop::Str(|p| &mut p.assigned_client_identifier, v))
                .boxed(),
            any::<u16>()
                .prop_map(|v| Prop::U16(|p| &mut p.server_keep_alive, v))
                .boxed(),
            text()
                .prop_map(|v| Prop::Str(|p| &mut p.response_information, v))
                .boxed(),
            flag()
                .prop_map(|v| Prop::U8(|p| &mut p.maximum_qos, v))
                .boxed(),
            flag()
                .prop_map(|v| Prop::U8(|p| &mut p.retain_available, v))
                .boxed(),
            flag()
                .prop_map(|v| Prop::U8(|p| &mut p.wildcard_subscription_available, v))
                .boxed(),
            flag()
                .prop_map(|v| Prop::U8(|p| &mut p.subscription_identifier_available, v))
                .boxed(),
            flag()
                .prop_map(|v| Prop::U8(|p| &mut p.shared_subscription_available, v))
                .boxed(),
        ]);
    }
    if matches!(ctx, ConnAck | Disconnect) {
        options.push(
            text()
                .prop_map(|v| Prop::Str(|p| &mut p.server_reference, v))
                .boxed(),
        );
    }
    if matches!(
        ctx,
        ConnAck | PubResponse | SubAck | UnsubAck | Disconnect | Auth
    ) {
        options.push(
            text()
                .prop_map(|v| Prop::Str(|p| &mut p.reason_string, v))
                .boxed(),
        );
    }
    vec(prop::strategy::Union::new(options), 0..6)
        .prop_map(move |list| {
            let mut p = Properties::default();
            for prop in list {
                match prop {
                    Prop::U8(f, v) => *f(&mut p) = Some(v),
                    Prop::U16(f, v) => *f(&mut p) = Some(v),
                    Prop::U32(f, v) => *f(&mut p) = Some(v),
                    Prop::Str(f, v) => *f(&mut p) = Some(v),
                    Prop::Bin(f, v) => *f(&mut p) = Some(v),
                    Prop::SubId(id) if ctx == Subscribe => p.subscription_identifiers = vec![id],
                    Prop::SubId(id) => p.subscription_identifiers.push(id),
                    Prop::User(k, v) => p.user_properties.push((k, v)),
                }
            }
            if p.authentication_data.is_some() && p.authentication_method.is_none() {
                p.authentication_method = Some(MqttStr::from("method"));
            }
            p
        })
        .boxed()
}

/// Properties for v5; always empty for 3.1.1.
pub fn props_for(v: ProtocolVersion, ctx: Ctx) -> BoxedStrategy<Properties> {
    match v {
        V5 => props(ctx),
        V311 => Just(Properties::default()).boxed(),
    }
}

/// v5 reason from `codes`; 3.1.1 packets carry none and decode as success.
pub fn reason_for(v: ProtocolVersion, codes: &'static [u8]) -> BoxedStrategy<ReasonCode> {
    match v {
        V5 => pick(codes).boxed(),
        V311 => Just(ReasonCode::SUCCESS).boxed(),
    }
}

pub const CONNACK_V3: &[u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
pub const CONNACK_V5: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
pub const PUBACK_V5: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
pub const PUBREL_V5: &[u8] = &[0x00, 0x92];
pub const SUBACK_V3: &[u8] = &[0x00, 0x01, 0x02, 0x80];
pub const SUBACK_V5: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
pub const UNSUBACK_V5: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
pub const DISCONNECT_V5: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
pub const AUTH_V5: &[u8] = &[0x00, 0x18, 0x19];

pub fn will(v: ProtocolVersion) -> impl Strategy<Value = Will> {
    (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        props_for(v, Ctx::Will),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload: utf8_if_marked(&properties, payload),
            qos,
            retain,
            properties,
        })
}

/// A payload marked UTF-8 (payload format indicator 1) must be UTF-8 to be
/// valid: such payloads are made UTF-8, keeping the marked case covered.
fn utf8_if_marked(properties: &Properties, payload: Bytes) -> Bytes {
    match properties.payload_format_indicator {
        Some(1) => Bytes::from(String::from_utf8_lossy(&payload).into_owned()),
        _ => payload,
    }
}

pub fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let fields = (
        any::<bool>(),
        any::<u16>(),
        text(),
        prop::option::of(will(v)),
    );
    let auth = (
        prop::option::of(text()),
        prop::option::of(binary()),
        props_for(v, Ctx::Connect),
    );
    (fields, auth).prop_map(
        move |((clean_start, keep_alive, client_id, will), (username, password, properties))| {
            // 3.1.1 forbids a password without a user name.
            let username = match (v, &username, &password) {
                (V311, None, Some(_)) => Some(MqttStr::from("user")),
                _ => username,
            };
            Packet::Connect(Box::new(Connect {
                protocol_version: v,
                clean_start,
                keep_alive,
                client_id,
                will,
                username,
                password,
                properties,
            }))
        },
    )
}

pub fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let topic = match v {
        // v5: an empty topic is only valid with an alias (fixed up below).
        V5 => prop_oneof![4 => topic_name(), 1 => Just(MqttStr::default())].boxed(),
        V311 => topic_name().boxed(),
    };
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic,
        1u16..,
        props_for(v, Ctx::Publish),
        binary(),
    )
        .prop_map(|(qos, dup, retain, topic, id, mut properties, payload)| {
            if topic.is_empty() && properties.topic_alias.is_none() {
                properties.topic_alias = Some(1);
            }
            let qos0 = qos == QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && !qos0,
                qos,
                retain,
                topic,
                packet_id: if qos0 { 0 } else { id },
                payload: utf8_if_marked(&properties, payload),
                properties,
            })
        })
}

pub fn pub_response(
    v: ProtocolVersion,
    codes: &'static [u8],
) -> impl Strategy<Value = PubResponse> {
    (1u16.., reason_for(v, codes), props_for(v, Ctx::PubResponse)).prop_map(
        |(packet_id, reason, properties)| PubResponse {
            packet_id,
            reason,
            properties,
        },
    )
}

pub fn sub_options(v: ProtocolVersion) -> BoxedStrategy<SubscriptionOptions> {
    match v {
        V311 => qos()
            .prop_map(|qos| SubscriptionOptions {
                qos,
                ..Default::default()
            })
            .boxed(),
        V5 => (qos(), any::<bool>(), any::<bool>(), 0u8..=2)
            .prop_map(
                |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                },
            )
            .boxed(),
    }
}

pub fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let suback_codes = if v == V5 { SUBACK_V5 } else { SUBACK_V3 };
    let connack_codes = if v == V5 { CONNACK_V5 } else { CONNACK_V3 };
    let unsuback_reasons = match v {
        V5 => vec(pick(UNSUBACK_V5), 1..4).boxed(),
        V311 => Just(Vec::new()).boxed(),
    };
    let mut all = vec![
        connect(v).boxed(),
        (
            any::<bool>(),
            pick(connack_codes),
            props_for(v, Ctx::ConnAck),
        )
            .prop_map(|(session_present, reason, properties)| {
                Packet::ConnAck(ConnAck {
                    session_present,
                    reason,
                    properties,
                })
            })
            .boxed(),
        publish(v).boxed(),
        pub_response(v, PUBACK_V5).prop_map(Packet::PubAck).boxed(),
        pub_response(v, PUBACK_V5).prop_map(Packet::PubRec).boxed(),
        pub_response(v, PUBREL_V5).prop_map(Packet::PubRel).boxed(),
        pub_response(v, PUBREL_V5).prop_map(Packet::PubComp).boxed(),
        (
            1u16..,
            vec((filter(), sub_options(v)), 1..4),
            props_for(v, Ctx::Subscribe),
        )
            .prop_map(|(packet_id, filters, properties)| {
                Packet::Subscribe(Subscribe {
                    packet_id,
                    filters,
                    properties,
                })
            })
            .boxed(),
        (
            1u16..,
            vec(pick(suback_codes), 1..4),
            props_for(v, Ctx::SubAck),
        )
            .prop_map(|(packet_id, reasons, properties)| {
                Packet::SubAck(SubAck {
                    packet_id,
                    reasons,
                    properties,
                })
            })
            .boxed(),
        (1u16.., vec(filter(), 1..4), props_for(v, Ctx::Unsubscribe))
            .prop_map(|(packet_id, filters, properties)| {
                Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    filters,
                    properties,
                })
            })
            .boxed(),
        (1u16.., unsuback_reasons, props_for(v, Ctx::UnsubAck))
            .prop_map(|(packet_id, reasons, properties)| {
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    reasons,
                    properties,
                })
            })
            .boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        (reason_for(v, DISCONNECT_V5), props_for(v, Ctx::Disconnect))
            .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
            .boxed(),
    ];
    if v == V5 {
        all.push(
            (pick(AUTH_V5), props(Ctx::Auth))
                .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
                .boxed(),
        );
    }
    prop::strategy::Union::new(all).boxed()
}
