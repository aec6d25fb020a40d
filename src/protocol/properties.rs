//! MQTT 5.0 properties: one table says each property's identifier, field,
//! wire type and the packets that may carry it; decoding, encoding and
//! length counting are all driven by it.

use bytes::Bytes;

use super::decode::{DecodeError, Reader, is_topic_name};
use super::encode::{Counter, Sink, put_bin, put_str, put_varint};
use super::types::{MqttStr, Properties};

/// The packet (or will) a property list belongs to, as a bit set so the
/// table can list every packet a property is allowed in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Ctx(u16);

impl Ctx {
    pub(super) const CONNECT: Ctx = Ctx(1 << 0);
    pub(super) const WILL: Ctx = Ctx(1 << 1);
    pub(super) const CONNACK: Ctx = Ctx(1 << 2);
    pub(super) const PUBLISH: Ctx = Ctx(1 << 3);
    /// PUBACK, PUBREC, PUBREL and PUBCOMP allow the same properties.
    pub(super) const PUB_RESPONSE: Ctx = Ctx(1 << 4);
    pub(super) const SUBSCRIBE: Ctx = Ctx(1 << 5);
    pub(super) const SUBACK: Ctx = Ctx(1 << 6);
    pub(super) const UNSUBSCRIBE: Ctx = Ctx(1 << 7);
    pub(super) const UNSUBACK: Ctx = Ctx(1 << 8);
    pub(super) const DISCONNECT: Ctx = Ctx(1 << 9);
    pub(super) const AUTH: Ctx = Ctx(1 << 10);
    const ALL: Ctx = Ctx((1 << 11) - 1);

    fn allows(self, mask: u16) -> bool {
        self.0 & mask != 0
    }
}

/// A property value's wire type.
trait Value: Sized {
    fn read(r: &mut Reader) -> Result<Self, DecodeError>;
    fn put<S: Sink>(&self, s: &mut S);
}

impl Value for u8 {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.u8()
    }
    fn put<S: Sink>(&self, s: &mut S) {
        s.u8(*self);
    }
}

impl Value for u16 {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.u16()
    }
    fn put<S: Sink>(&self, s: &mut S) {
        s.u16(*self);
    }
}

impl Value for u32 {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.u32()
    }
    fn put<S: Sink>(&self, s: &mut S) {
        s.u32(*self);
    }
}

impl Value for MqttStr {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.string()
    }
    fn put<S: Sink>(&self, s: &mut S) {
        put_str(s, self);
    }
}

impl Value for Bytes {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        r.binary()
    }
    fn put<S: Sink>(&self, s: &mut S) {
        put_bin(s, self);
    }
}

const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
const USER_PROPERTY: u8 = 0x26;
/// Packets allowed to carry a subscription identifier (several only in PUBLISH).
const SUBSCRIPTION_IDENTIFIER_IN: u16 = Ctx::PUBLISH.0 | Ctx::SUBSCRIBE.0;

/// Generates the code for the properties that may appear at most once;
/// the two repeatable ones (subscription identifier, user property) are
/// handled next to it in `decode` and `put_body`.
macro_rules! single_properties {
    ($($id:literal $field:ident: $ty:ty, [$($ctx:ident)|+];)*) => {
        /// Packets that may carry single-valued property `id`.
        fn single_allowed_in(id: u8) -> Option<u16> {
            match id {
                $($id => Some(0 $(| Ctx::$ctx.0)+),)*
                _ => None,
            }
        }

        fn read_single(id: u8, r: &mut Reader, p: &mut Properties) -> Result<(), DecodeError> {
            match id {
                $($id => {
                    if p.$field.is_some() {
                        return Err(DecodeError::Protocol("property included more than once"));
                    }
                    p.$field = Some(<$ty as Value>::read(r)?);
                })*
                _ => return Err(DecodeError::Malformed("unknown property identifier")),
            }
            Ok(())
        }

        fn put_singles<S: Sink>(s: &mut S, p: &Properties, ctx: Ctx) {
            $(if let Some(value) = &p.$field {
                if ctx.allows(0 $(| Ctx::$ctx.0)+) {
                    s.u8($id);
                    value.put(s);
                }
            })*
        }
    };
}

single_properties! {
    0x01 payload_format_indicator: u8, [PUBLISH | WILL];
    0x02 message_expiry_interval: u32, [PUBLISH | WILL];
    0x03 content_type: MqttStr, [PUBLISH | WILL];
    0x08 response_topic: MqttStr, [PUBLISH | WILL];
    0x09 correlation_data: Bytes, [PUBLISH | WILL];
    0x11 session_expiry_interval: u32, [CONNECT | CONNACK | DISCONNECT];
    0x12 assigned_client_identifier: MqttStr, [CONNACK];
    0x13 server_keep_alive: u16, [CONNACK];
    0x15 authentication_method: MqttStr, [CONNECT | CONNACK | AUTH];
    0x16 authentication_data: Bytes, [CONNECT | CONNACK | AUTH];
    0x17 request_problem_information: u8, [CONNECT];
    0x18 will_delay_interval: u32, [WILL];
    0x19 request_response_information: u8, [CONNECT];
    0x1A response_information: MqttStr, [CONNACK];
    0x1C server_reference: MqttStr, [CONNACK | DISCONNECT];
    0x1F reason_string: MqttStr, [CONNACK | PUB_RESPONSE | SUBACK | UNSUBACK | DISCONNECT | AUTH];
    0x21 receive_maximum: u16, [CONNECT | CONNACK];
    0x22 topic_alias_maximum: u16, [CONNECT | CONNACK];
    0x23 topic_alias: u16, [PUBLISH];
    0x24 maximum_qos: u8, [CONNACK];
    0x25 retain_available: u8, [CONNACK];
    0x27 maximum_packet_size: u32, [CONNECT | CONNACK];
    0x28 wildcard_subscription_available: u8, [CONNACK];
    0x29 subscription_identifier_available: u8, [CONNACK];
    0x2A shared_subscription_available: u8, [CONNACK];
}

fn allowed_in(id: u8) -> Option<u16> {
    match id {
        SUBSCRIPTION_IDENTIFIER => Some(SUBSCRIPTION_IDENTIFIER_IN),
        USER_PROPERTY => Some(Ctx::ALL.0),
        _ => single_allowed_in(id),
    }
}

/// Reads a property length and the properties it covers.
pub(super) fn decode(r: &mut Reader, ctx: Ctx) -> Result<Properties, DecodeError> {
    let len = r.varint()?;
    let mut r = r.sub(len as usize)?;
    let mut p = Properties::default();
    while !r.is_empty() {
        let id = r.u8()?;
        let allowed =
            allowed_in(id).ok_or(DecodeError::Malformed("unknown property identifier"))?;
        if !ctx.allows(allowed) {
            return Err(DecodeError::Malformed(
                "property not allowed in this packet",
            ));
        }
        match id {
            SUBSCRIPTION_IDENTIFIER => p.subscription_identifiers.push(r.varint()?),
            USER_PROPERTY => {
                let name = r.string()?;
                let value = r.string()?;
                p.user_properties.push((name, value));
            }
            _ => read_single(id, &mut r, &mut p)?,
        }
    }
    validate(&p, ctx)?;
    Ok(p)
}

/// Value rules the specification states for individual properties.
fn validate(p: &Properties, ctx: Ctx) -> Result<(), DecodeError> {
    let flags = [
        p.payload_format_indicator,
        p.request_problem_information,
        p.request_response_information,
        p.maximum_qos,
        p.retain_available,
        p.wildcard_subscription_available,
        p.subscription_identifier_available,
        p.shared_subscription_available,
    ];
    if flags.iter().flatten().any(|&b| b > 1) {
        return Err(DecodeError::Protocol("byte property other than 0 or 1"));
    }
    if p.receive_maximum == Some(0) {
        return Err(DecodeError::Protocol("receive maximum of 0"));
    }
    if p.maximum_packet_size == Some(0) {
        return Err(DecodeError::Protocol("maximum packet size of 0"));
    }
    if p.topic_alias == Some(0) {
        return Err(DecodeError::Protocol("topic alias of 0"));
    }
    if p.subscription_identifiers.contains(&0) {
        return Err(DecodeError::Protocol("subscription identifier of 0"));
    }
    if ctx == Ctx::SUBSCRIBE && p.subscription_identifiers.len() > 1 {
        return Err(DecodeError::Protocol(
            "more than one subscription identifier",
        ));
    }
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(DecodeError::Protocol("authentication data without method"));
    }
    if p.response_topic.as_ref().is_some_and(|t| !is_topic_name(t)) {
        return Err(DecodeError::Protocol("response topic is not a topic name"));
    }
    Ok(())
}

/// Writes the properties `ctx` allows (others are silently dropped, so a
/// caller may reuse a property set across packet types), without length.
fn put_body<S: Sink>(s: &mut S, p: &Properties, ctx: Ctx) {
    put_singles(s, p, ctx);
    if ctx.allows(SUBSCRIPTION_IDENTIFIER_IN) {
        for &id in &p.subscription_identifiers {
            s.u8(SUBSCRIPTION_IDENTIFIER);
            put_varint(s, id as usize);
        }
    }
    for (name, value) in &p.user_properties {
        s.u8(USER_PROPERTY);
        put_str(s, name);
        put_str(s, value);
    }
}

/// Bytes the properties take on the wire, excluding the length prefix.
pub(super) fn len(p: &Properties, ctx: Ctx) -> usize {
    let mut counter = Counter::default();
    put_body(&mut counter, p, ctx);
    counter.0
}

/// Writes the property length and then the properties.
pub(super) fn put<S: Sink>(s: &mut S, p: &Properties, ctx: Ctx) {
    put_with_len(s, p, ctx, len(p, ctx));
}

/// Like `put`, for callers that already computed `len(p, ctx)`.
pub(super) fn put_with_len<S: Sink>(s: &mut S, p: &Properties, ctx: Ctx, len: usize) {
    put_varint(s, len);
    s.block(len, |s| put_body(s, p, ctx));
}
