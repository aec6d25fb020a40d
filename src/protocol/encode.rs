//! Encoder. Every body is written by one generic function, run once with a
//! byte counter (for `encoded_len` and the remaining length) and once into
//! the buffer, so the two can never disagree.

use bytes::{BufMut, BytesMut};

use super::ReasonCode;
use super::decode::MAX_VARINT;
use super::properties::{self, Ctx};
use super::types::*;

/// Where encoded bytes go: the output buffer or a length counter.
pub(super) trait Sink {
    fn u8(&mut self, v: u8);
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
    fn slice(&mut self, v: &[u8]);
    /// Emits a section of known length `len`; a counter adds `len` without
    /// running `write`, so nested lengths are not counted twice.
    fn block(&mut self, len: usize, write: impl FnOnce(&mut Self));
}

impl Sink for BytesMut {
    fn u8(&mut self, v: u8) {
        self.put_u8(v);
    }
    fn u16(&mut self, v: u16) {
        self.put_u16(v);
    }
    fn u32(&mut self, v: u32) {
        self.put_u32(v);
    }
    fn slice(&mut self, v: &[u8]) {
        self.put_slice(v);
    }
    fn block(&mut self, _len: usize, write: impl FnOnce(&mut Self)) {
        write(self);
    }
}

/// Counts bytes instead of writing them.
#[derive(Default)]
pub(super) struct Counter(pub(super) usize);

impl Sink for Counter {
    fn u8(&mut self, _: u8) {
        self.0 += 1;
    }
    fn u16(&mut self, _: u16) {
        self.0 += 2;
    }
    fn u32(&mut self, _: u32) {
        self.0 += 4;
    }
    fn slice(&mut self, v: &[u8]) {
        self.0 += v.len();
    }
    fn block(&mut self, len: usize, _write: impl FnOnce(&mut Self)) {
        self.0 += len;
    }
}

fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Variable byte integer; values above the 4-byte maximum cannot be
/// represented and are clamped (the caller must enforce size limits).
pub(super) fn put_varint<S: Sink>(s: &mut S, value: usize) {
    debug_assert!(
        value <= MAX_VARINT,
        "variable byte integer {value} too large"
    );
    let mut value = value.min(MAX_VARINT);
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        s.u8(byte);
        if value == 0 {
            break;
        }
    }
}

pub(super) fn put_str<S: Sink>(s: &mut S, text: &MqttStr) {
    put_bin(s, text.as_bytes());
}

/// Two-byte length and data. Binary data is limited to 65,535 bytes; longer
/// data is a caller bug and is cut so the packet stays well-formed.
pub(super) fn put_bin<S: Sink>(s: &mut S, data: &[u8]) {
    debug_assert!(data.len() <= usize::from(u16::MAX), "binary field too long");
    let len = data.len().min(usize::from(u16::MAX));
    s.u16(len as u16);
    s.slice(&data[..len]);
}

/// AUTH has no 3.1.1 form; it is the one packet that cannot be encoded.
fn encodable(packet: &Packet, version: ProtocolVersion) -> bool {
    !(matches!(packet, Packet::Auth(_)) && version == ProtocolVersion::V311)
}

fn remaining_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let mut counter = Counter::default();
    put_body(&mut counter, packet, version);
    counter.0
}

/// Total encoded size of `packet` including the fixed header (0 for AUTH in
/// 3.1.1, which is not encodable).
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    if !encodable(packet, version) {
        return 0;
    }
    let remaining = remaining_len(packet, version);
    1 + varint_len(remaining) + remaining
}

/// Appends `packet` to `buf`. Fields the version does not have (v5
/// properties and reason codes in 3.1.1) are dropped; a CONNECT is written
/// in its own `protocol_version`.
pub fn encode(packet: &Packet, version: ProtocolVersion, buf: &mut BytesMut) {
    debug_assert!(
        encodable(packet, version),
        "AUTH cannot be sent in MQTT 3.1.1"
    );
    if !encodable(packet, version) {
        return;
    }
    let remaining = remaining_len(packet, version);
    buf.reserve(1 + varint_len(remaining) + remaining);
    buf.put_u8(first_byte(packet));
    put_varint(buf, remaining);
    put_body(buf, packet, version);
}

fn first_byte(packet: &Packet) -> u8 {
    let flags = match packet {
        Packet::Publish(p) => (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain),
        Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => 0b0010,
        _ => 0,
    };
    (packet.packet_type() << 4) | flags
}

fn put_body<S: Sink>(s: &mut S, packet: &Packet, version: ProtocolVersion) {
    let v5 = version == ProtocolVersion::V5;
    match packet {
        Packet::Connect(c) => put_connect(s, c),
        Packet::ConnAck(c) => {
            s.u8(u8::from(c.session_present));
            if v5 {
                s.u8(c.reason.0);
                properties::put(s, &c.properties, Ctx::CONNACK);
            } else {
                s.u8(c.reason.to_v3_connack());
            }
        }
        Packet::Publish(p) => {
            put_str(s, &p.topic);
            if p.qos != QoS::AtMostOnce {
                s.u16(p.packet_id);
            }
            if v5 {
                properties::put(s, &p.properties, Ctx::PUBLISH);
            }
            s.slice(&p.payload);
        }
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            s.u16(r.packet_id);
            if v5 {
                put_short_reason(s, r.reason, &r.properties, Ctx::PUB_RESPONSE);
            }
        }
        Packet::Subscribe(sub) => {
            s.u16(sub.packet_id);
            if v5 {
                properties::put(s, &sub.properties, Ctx::SUBSCRIBE);
            }
            for (filter, options) in &sub.filters {
                put_str(s, filter);
                s.u8(options_byte(options, v5));
            }
        }
        Packet::SubAck(ack) => {
            s.u16(ack.packet_id);
            if v5 {
                properties::put(s, &ack.properties, Ctx::SUBACK);
            }
            for reason in &ack.reasons {
                s.u8(if v5 {
                    reason.0
                } else {
                    v3_suback_code(*reason)
                });
            }
        }
        Packet::Unsubscribe(unsub) => {
            s.u16(unsub.packet_id);
            if v5 {
                properties::put(s, &unsub.properties, Ctx::UNSUBSCRIBE);
            }
            for filter in &unsub.filters {
                put_str(s, filter);
            }
        }
        Packet::UnsubAck(ack) => {
            s.u16(ack.packet_id);
            if v5 {
                properties::put(s, &ack.properties, Ctx::UNSUBACK);
                for reason in &ack.reasons {
                    s.u8(reason.0);
                }
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => {
            if v5 {
                put_short_reason(s, d.reason, &d.properties, Ctx::DISCONNECT);
            }
        }
        Packet::Auth(a) => {
            let len = properties::len(&a.properties, Ctx::AUTH);
            if v5 && (a.reason != ReasonCode::SUCCESS || len > 0) {
                s.u8(a.reason.0);
                properties::put_with_len(s, &a.properties, Ctx::AUTH, len);
            }
        }
    }
}

/// v5 reason code and properties in their shortest allowed form: nothing
/// for success without properties, the bare reason without properties.
fn put_short_reason<S: Sink>(s: &mut S, reason: ReasonCode, props: &Properties, ctx: Ctx) {
    let len = properties::len(props, ctx);
    if len == 0 {
        if reason != ReasonCode::SUCCESS {
            s.u8(reason.0);
        }
        return;
    }
    s.u8(reason.0);
    properties::put_with_len(s, props, ctx, len);
}

fn v3_suback_code(reason: ReasonCode) -> u8 {
    match reason.0 {
        code @ 0..=2 => code,
        _ => 0x80,
    }
}

fn options_byte(o: &SubscriptionOptions, v5: bool) -> u8 {
    let qos = o.qos as u8;
    if !v5 {
        return qos;
    }
    qos | (u8::from(o.no_local) << 2)
        | (u8::from(o.retain_as_published) << 3)
        | ((o.retain_handling & 0b11) << 4)
}

fn put_connect<S: Sink>(s: &mut S, c: &Connect) {
    let v5 = c.protocol_version == ProtocolVersion::V5;
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(will) = &c.will {
        flags |= 0x04 | ((will.qos as u8) << 3) | (u8::from(will.retain) << 5);
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    put_bin(s, b"MQTT");
    s.u8(c.protocol_version.level());
    s.u8(flags);
    s.u16(c.keep_alive);
    if v5 {
        properties::put(s, &c.properties, Ctx::CONNECT);
    }
    put_str(s, &c.client_id);
    if let Some(will) = &c.will {
        if v5 {
            properties::put(s, &will.properties, Ctx::WILL);
        }
        put_str(s, &will.topic);
        put_bin(s, &will.payload);
    }
    if let Some(username) = &c.username {
        put_str(s, username);
    }
    if let Some(password) = &c.password {
        put_bin(s, password);
    }
}
