//! Decoder: fixed header first (so oversized packets are refused before their
//! body is buffered), then the frame is split off and parsed zero-copy.

use bytes::{Bytes, BytesMut};

use super::ReasonCode;
use super::properties::{self, Ctx};
use super::types::*;

/// Why a packet could not be decoded; each maps to the reason code the broker
/// reports before closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("unsupported protocol level {0}")]
    UnsupportedVersion(u8),
    #[error("invalid topic name")]
    TopicNameInvalid,
    /// A v5 PUBLISH or will whose payload format indicator says UTF-8 but
    /// whose payload is not (MQTT 5.0 3.3.2.3.2, 3.1.3.2.3).
    #[error("payload marked as UTF-8 is not valid UTF-8")]
    PayloadFormatInvalid,
}

impl DecodeError {
    /// The v5 reason code to send in CONNACK or DISCONNECT.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            DecodeError::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            DecodeError::TooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedVersion(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::TopicNameInvalid => ReasonCode::TOPIC_NAME_INVALID,
            DecodeError::PayloadFormatInvalid => ReasonCode::PAYLOAD_FORMAT_INVALID,
        }
    }
}

const SHORT: DecodeError = DecodeError::Malformed("packet shorter than its fields");

/// Largest value a variable byte integer can hold (four bytes).
pub(super) const MAX_VARINT: usize = 268_435_455;

// Reason codes each v5 packet may carry (MQTT 5.0 section 2.4 and per packet).
const CONNACK_REASONS: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const PUBACK_REASONS: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_REASONS: &[u8] = &[0x00, 0x92];
const SUBACK_REASONS: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const UNSUBACK_REASONS: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT_REASONS: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_REASONS: &[u8] = &[0x00, 0x18, 0x19];
const V3_SUBACK_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x80];

/// Decodes one packet from the front of `buf`.
///
/// `Ok(None)` means more bytes are needed and leaves `buf` untouched.
/// `version` is `None` until CONNECT has been seen; then only CONNECT is
/// accepted. A CONNECT always decodes with the version it announces.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    // The first byte alone decides type, flags and whether the type is
    // acceptable now, so garbage is refused without waiting for more.
    check_first_byte(first, version)?;
    let Some((remaining, len_bytes)) = parse_varint(&buf[1..])? else {
        return Ok(None);
    };
    let size = 1 + len_bytes + remaining as usize;
    if size > max_packet_size {
        return Err(DecodeError::TooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    let mut frame = buf.split_to(size).freeze();
    let body = Reader::new(frame.split_off(1 + len_bytes));
    parse_body(first, body, version).map(Some)
}

fn check_first_byte(first: u8, version: Option<ProtocolVersion>) -> Result<(), DecodeError> {
    let (kind, flags) = (first >> 4, first & 0x0F);
    match (kind, version) {
        (0, _) => return Err(DecodeError::Malformed("reserved packet type 0")),
        (1, _) => {}
        (_, None) => return Err(DecodeError::Protocol("first packet must be CONNECT")),
        (15, Some(ProtocolVersion::V311)) => {
            return Err(DecodeError::Protocol("AUTH does not exist in MQTT 3.1.1"));
        }
        _ => {}
    }
    let expected = match kind {
        3 => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::Malformed("PUBLISH with QoS 3"));
            }
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(DecodeError::Malformed("PUBLISH with DUP set at QoS 0"));
            }
            return Ok(());
        }
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    if flags != expected {
        return Err(DecodeError::Malformed("reserved fixed header flags"));
    }
    Ok(())
}

/// Parses a variable byte integer: `Ok(None)` if `bytes` ends inside it.
/// Over-long (more than 4 bytes) and non-minimal encodings are malformed.
fn parse_varint(bytes: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in bytes.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(DecodeError::Malformed("non-minimal variable byte integer"));
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 {
        return Err(DecodeError::Malformed(
            "variable byte integer longer than 4 bytes",
        ));
    }
    Ok(None)
}

/// A bounds-checked cursor over one frame; slices share the frame's memory.
pub(super) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub(super) fn new(buf: Bytes) -> Reader {
        Reader { buf, pos: 0 }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn take_slice(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(SHORT)?;
        let slice = self.buf.get(self.pos..end).ok_or(SHORT)?;
        self.pos = end;
        Ok(slice)
    }

    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take_slice(1)?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        let s = self.take_slice(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take_slice(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub(super) fn varint(&mut self) -> Result<u32, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let (value, len) = parse_varint(rest)?.ok_or(SHORT)?;
        self.pos += len;
        Ok(value)
    }

    /// The next `n` bytes as a zero-copy slice of the frame.
    pub(super) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        self.take_slice(n)?;
        Ok(self.buf.slice(start..self.pos))
    }

    /// A reader over the next `n` bytes (a length-prefixed section).
    pub(super) fn sub(&mut self, n: usize) -> Result<Reader, DecodeError> {
        self.take(n).map(Reader::new)
    }

    /// Two-byte length followed by that many bytes.
    pub(super) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// UTF-8 string: invalid UTF-8 and U+0000 are malformed.
    pub(super) fn string(&mut self) -> Result<MqttStr, DecodeError> {
        let raw = self.binary()?;
        let len = raw.len();
        MqttStr::from_bytes(raw).ok_or_else(|| {
            // Only on failure: say which rule was broken (logs, tests).
            let raw = &self.buf[self.pos - len..self.pos];
            if std::str::from_utf8(raw).is_ok() {
                DecodeError::Malformed("U+0000 in a UTF-8 string")
            } else {
                DecodeError::Malformed("invalid UTF-8 string")
            }
        })
    }

    fn rest(&mut self) -> Bytes {
        let start = self.pos.min(self.buf.len());
        self.pos = self.buf.len();
        self.buf.slice(start..)
    }

    /// Every field has been read: anything left over is malformed.
    fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed("trailing bytes after packet body"))
        }
    }
}

/// A topic name: non-empty, no wildcard characters.
pub(super) fn is_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#'])
}

fn packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::Malformed("packet identifier 0")),
        id => Ok(id),
    }
}

fn reason(r: &mut Reader, allowed: &[u8]) -> Result<ReasonCode, DecodeError> {
    let code = r.u8()?;
    if allowed.contains(&code) {
        Ok(ReasonCode(code))
    } else {
        Err(DecodeError::Malformed(
            "reason code not allowed for this packet",
        ))
    }
}

/// v5 properties of a packet; 3.1.1 packets have none.
fn props(r: &mut Reader, v: ProtocolVersion, ctx: Ctx) -> Result<Properties, DecodeError> {
    match v {
        ProtocolVersion::V5 => properties::decode(r, ctx),
        ProtocolVersion::V311 => Ok(Properties::default()),
    }
}

fn parse_body(
    first: u8,
    mut r: Reader,
    version: Option<ProtocolVersion>,
) -> Result<Packet, DecodeError> {
    let kind = first >> 4;
    if kind == 1 {
        return connect(r).map(|c| Packet::Connect(Box::new(c)));
    }
    // check_first_byte already refused everything but CONNECT without a version.
    let v = version.ok_or(DecodeError::Protocol("first packet must be CONNECT"))?;
    let v5 = v == ProtocolVersion::V5;
    let packet = match kind {
        2 => Packet::ConnAck(connack(&mut r, v)?),
        3 => Packet::Publish(publish(first, &mut r, v)?),
        4 => Packet::PubAck(pub_response(&mut r, v, PUBACK_REASONS)?),
        5 => Packet::PubRec(pub_response(&mut r, v, PUBACK_REASONS)?),
        6 => Packet::PubRel(pub_response(&mut r, v, PUBREL_REASONS)?),
        7 => Packet::PubComp(pub_response(&mut r, v, PUBREL_REASONS)?),
        8 => Packet::Subscribe(subscribe(&mut r, v)?),
        9 => Packet::SubAck(suback(&mut r, v)?),
        10 => Packet::Unsubscribe(unsubscribe(&mut r, v)?),
        11 => Packet::UnsubAck(unsuback(&mut r, v)?),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 if v5 => {
            let (reason, properties) = short_reason(&mut r, DISCONNECT_REASONS, Ctx::DISCONNECT)?;
            Packet::Disconnect(Disconnect { reason, properties })
        }
        14 => Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
        15 => Packet::Auth(auth(&mut r)?),
        _ => return Err(DecodeError::Malformed("reserved packet type")),
    };
    r.finish()?;
    Ok(packet)
}

fn connect(mut r: Reader) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    let version = match (&name[..], level) {
        (b"MQTT", 4) => ProtocolVersion::V311,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (b"MQTT" | b"MQIsdp", other) => return Err(DecodeError::UnsupportedVersion(other)),
        _ => return Err(DecodeError::Protocol("unknown protocol name")),
    };
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::Malformed("CONNECT reserved flag set"));
    }
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::Malformed("will QoS 3"))?;
    if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(DecodeError::Malformed(
            "will QoS or retain without will flag",
        ));
    }
    if version == ProtocolVersion::V311 && has_password && !has_username {
        return Err(DecodeError::Protocol("password without username"));
    }
    let keep_alive = r.u16()?;
    let properties = props(&mut r, version, Ctx::CONNECT)?;
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = props(&mut r, version, Ctx::WILL)?;
        let topic = r.string()?;
        let payload = r.binary()?;
        if !is_topic_name(&topic) {
            return Err(DecodeError::TopicNameInvalid);
        }
        check_payload_format(&properties, &payload)?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary()?)
    } else {
        None
    };
    r.finish()?;
    Ok(Connect {
        protocol_version: version,
        clean_start: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn connack(r: &mut Reader, v: ProtocolVersion) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::Malformed("CONNACK reserved flags set"));
    }
    let reason = match v {
        ProtocolVersion::V311 => ReasonCode::from_v3_connack(r.u8()?)
            .ok_or(DecodeError::Malformed("CONNACK return code above 5"))?,
        ProtocolVersion::V5 => reason(r, CONNACK_REASONS)?,
    };
    Ok(ConnAck {
        session_present: flags & 0x01 != 0,
        reason,
        properties: props(r, v, Ctx::CONNACK)?,
    })
}

fn publish(first: u8, r: &mut Reader, v: ProtocolVersion) -> Result<Publish, DecodeError> {
    let qos =
        QoS::from_u8((first >> 1) & 0b11).ok_or(DecodeError::Malformed("PUBLISH with QoS 3"))?;
    let topic = r.string()?;
    let packet_id = match qos {
        QoS::AtMostOnce => 0,
        _ => packet_id(r)?,
    };
    let properties = props(r, v, Ctx::PUBLISH)?;
    if topic.is_empty() {
        // v5 lets a topic alias stand in for the name.
        if v == ProtocolVersion::V311 {
            return Err(DecodeError::TopicNameInvalid);
        }
        if properties.topic_alias.is_none() {
            return Err(DecodeError::Protocol(
                "empty topic name without topic alias",
            ));
        }
    } else if !is_topic_name(&topic) {
        return Err(DecodeError::TopicNameInvalid);
    }
    let payload = r.rest();
    check_payload_format(&properties, &payload)?;
    Ok(Publish {
        dup: first & 0x08 != 0,
        qos,
        retain: first & 0x01 != 0,
        topic,
        packet_id,
        properties,
        payload,
    })
}

/// A payload marked as UTF-8 (indicator 1) must be UTF-8: the broker checks
/// it (MQTT 5.0 lets a receiver) so subscribers can rely on the mark. Only
/// marked payloads are scanned; 3.1.1 packets carry no indicator.
fn check_payload_format(properties: &Properties, payload: &[u8]) -> Result<(), DecodeError> {
    if properties.payload_format_indicator == Some(1) && std::str::from_utf8(payload).is_err() {
        return Err(DecodeError::PayloadFormatInvalid);
    }
    Ok(())
}

fn pub_response(
    r: &mut Reader,
    v: ProtocolVersion,
    allowed: &[u8],
) -> Result<PubResponse, DecodeError> {
    let packet_id = packet_id(r)?;
    let (reason, properties) = match v {
        ProtocolVersion::V5 => short_reason(r, allowed, Ctx::PUB_RESPONSE)?,
        ProtocolVersion::V311 => (ReasonCode::SUCCESS, Properties::default()),
    };
    Ok(PubResponse {
        packet_id,
        reason,
        properties,
    })
}

/// v5 reason code and properties that may both be omitted (reason 0, no
/// properties) or just the properties (PUBACK..PUBCOMP, DISCONNECT).
fn short_reason(
    r: &mut Reader,
    allowed: &[u8],
    ctx: Ctx,
) -> Result<(ReasonCode, Properties), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::SUCCESS, Properties::default()));
    }
    let reason = reason(r, allowed)?;
    if r.is_empty() {
        return Ok((reason, Properties::default()));
    }
    Ok((reason, properties::decode(r, ctx)?))
}

fn auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    // AUTH may only omit both reason and properties, never just the properties.
    if r.is_empty() {
        return Ok(Auth {
            reason: ReasonCode::SUCCESS,
            properties: Properties::default(),
        });
    }
    let reason = reason(r, AUTH_REASONS)?;
    let properties = properties::decode(r, Ctx::AUTH)?;
    Ok(Auth { reason, properties })
}

/// A topic filter: only its encoding is checked here; the broker answers
/// syntactically invalid filters per filter with reason 0x8F.
fn filter(r: &mut Reader) -> Result<MqttStr, DecodeError> {
    let filter = r.string()?;
    if filter.is_empty() {
        return Err(DecodeError::Malformed("empty topic filter"));
    }
    Ok(filter)
}

fn subscription_options(byte: u8, v: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    let qos = QoS::from_u8(byte & 0b11);
    match v {
        ProtocolVersion::V311 => {
            if byte & 0xFC != 0 {
                return Err(DecodeError::Malformed("reserved subscription option bits"));
            }
            let qos = qos.ok_or(DecodeError::Malformed("subscription with QoS 3"))?;
            Ok(SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            })
        }
        ProtocolVersion::V5 => {
            if byte & 0xC0 != 0 {
                return Err(DecodeError::Malformed("reserved subscription option bits"));
            }
            let qos = qos.ok_or(DecodeError::Protocol("subscription with QoS 3"))?;
            let retain_handling = (byte >> 4) & 0b11;
            if retain_handling == 3 {
                return Err(DecodeError::Protocol("retain handling 3"));
            }
            Ok(SubscriptionOptions {
                qos,
                no_local: byte & 0x04 != 0,
                retain_as_published: byte & 0x08 != 0,
                retain_handling,
            })
        }
    }
}

fn subscribe(r: &mut Reader, v: ProtocolVersion) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = props(r, v, Ctx::SUBSCRIBE)?;
    if r.is_empty() {
        return Err(DecodeError::Protocol("SUBSCRIBE without topic filters"));
    }
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = filter(r)?;
        let options = subscription_options(r.u8()?, v)?;
        filters.push((filter, options));
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

fn unsubscribe(r: &mut Reader, v: ProtocolVersion) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = props(r, v, Ctx::UNSUBSCRIBE)?;
    if r.is_empty() {
        return Err(DecodeError::Protocol("UNSUBSCRIBE without topic filters"));
    }
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(filter(r)?);
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

/// One reason code per remaining byte; at least one is required.
fn reason_list(r: &mut Reader, allowed: &[u8]) -> Result<Vec<ReasonCode>, DecodeError> {
    if r.is_empty() {
        return Err(DecodeError::Protocol(
            "acknowledgement without reason codes",
        ));
    }
    let mut reasons = Vec::new();
    while !r.is_empty() {
        reasons.push(reason(r, allowed)?);
    }
    Ok(reasons)
}

fn suback(r: &mut Reader, v: ProtocolVersion) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = props(r, v, Ctx::SUBACK)?;
    let allowed = match v {
        ProtocolVersion::V311 => V3_SUBACK_CODES,
        ProtocolVersion::V5 => SUBACK_REASONS,
    };
    Ok(SubAck {
        packet_id,
        reasons: reason_list(r, allowed)?,
        properties,
    })
}

fn unsuback(r: &mut Reader, v: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    if v == ProtocolVersion::V311 {
        return Ok(UnsubAck {
            packet_id,
            reasons: Vec::new(),
            properties: Properties::default(),
        });
    }
    let properties = properties::decode(r, Ctx::UNSUBACK)?;
    Ok(UnsubAck {
        packet_id,
        reasons: reason_list(r, UNSUBACK_REASONS)?,
        properties,
    })
}
