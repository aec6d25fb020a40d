//! A deliberately small MQTT 3.1.1 codec for the load generator: only the
//! packets the scenarios need, written for speed (no allocation per packet;
//! frames are parsed in place from the read buffer).
//!
//! It is independent of the broker's codec on purpose: a benchmark client
//! that shared the broker's decoder would hide encoding mistakes on both
//! sides.

use bytes::{BufMut, BytesMut};

pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const SUBACK: u8 = 9;
pub const PINGRESP: u8 = 13;

/// Appends the variable-length "remaining length".
fn put_remaining_length(buf: &mut BytesMut, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_str(buf: &mut BytesMut, s: &[u8]) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s);
}

/// What a CONNECT carries.
pub struct ConnectFields<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub clean_session: bool,
    pub keep_alive: u16,
}

pub fn connect(buf: &mut BytesMut, c: &ConnectFields<'_>) {
    let mut flags = 0u8;
    if c.clean_session {
        flags |= 0x02;
    }
    let mut len = 10 + 2 + c.client_id.len();
    if let Some(u) = c.username {
        flags |= 0x80;
        len += 2 + u.len();
    }
    if let Some(p) = c.password {
        flags |= 0x40;
        len += 2 + p.len();
    }
    buf.reserve(len + 5);
    buf.put_u8(0x10);
    put_remaining_length(buf, len);
    put_str(buf, b"MQTT");
    buf.put_u8(4); // protocol level 3.1.1
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    put_str(buf, c.client_id.as_bytes());
    if let Some(u) = c.username {
        put_str(buf, u.as_bytes());
    }
    if let Some(p) = c.password {
        put_str(buf, p.as_bytes());
    }
}

/// PUBLISH with `payload_head` followed by `payload_tail` (so a timestamp
/// can be prepended without copying the payload twice). `packet_id` is
/// ignored for QoS 0.
pub fn publish(
    buf: &mut BytesMut,
    topic: &[u8],
    qos: u8,
    packet_id: u16,
    payload_head: &[u8],
    payload_tail: &[u8],
) {
    let pid_len = if qos > 0 { 2 } else { 0 };
    let len = 2 + topic.len() + pid_len + payload_head.len() + payload_tail.len();
    buf.reserve(len + 5);
    buf.put_u8(0x30 | (qos << 1));
    put_remaining_length(buf, len);
    put_str(buf, topic);
    if qos > 0 {
        buf.put_u16(packet_id);
    }
    buf.put_slice(payload_head);
    buf.put_slice(payload_tail);
}

pub fn puback(buf: &mut BytesMut, packet_id: u16) {
    buf.put_slice(&[0x40, 2]);
    buf.put_u16(packet_id);
}

pub fn subscribe(buf: &mut BytesMut, packet_id: u16, filter: &str, qos: u8) {
    let len = 2 + 2 + filter.len() + 1;
    buf.put_u8(0x82);
    put_remaining_length(buf, len);
    buf.put_u16(packet_id);
    put_str(buf, filter.as_bytes());
    buf.put_u8(qos);
}

pub fn pingreq(buf: &mut BytesMut) {
    buf.put_slice(&[0xC0, 0]);
}

pub fn disconnect(buf: &mut BytesMut) {
    buf.put_slice(&[0xE0, 0]);
}

/// One packet, borrowed from the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// First byte: type in the high nibble, flags in the low one.
    pub header: u8,
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    pub fn kind(&self) -> u8 {
        self.header >> 4
    }

    pub fn qos(&self) -> u8 {
        (self.header >> 1) & 3
    }

    /// The packet identifier of PUBACK/SUBACK (first two body bytes).
    pub fn packet_id(&self) -> Option<u16> {
        (self.body.len() >= 2).then(|| u16::from_be_bytes([self.body[0], self.body[1]]))
    }

    /// (topic, packet id (0 for QoS 0), payload) of a PUBLISH.
    pub fn publish(&self) -> Option<(&'a [u8], u16, &'a [u8])> {
        let body = self.body;
        if body.len() < 2 {
            return None;
        }
        let tlen = u16::from_be_bytes([body[0], body[1]]) as usize;
        let mut at = 2 + tlen;
        if body.len() < at {
            return None;
        }
        let topic = &body[2..at];
        let mut pid = 0;
        if self.qos() > 0 {
            if body.len() < at + 2 {
                return None;
            }
            pid = u16::from_be_bytes([body[at], body[at + 1]]);
            at += 2;
        }
        Some((topic, pid, &body[at..]))
    }
}

/// Error for a stream that cannot be MQTT.
#[derive(Debug)]
pub struct Malformed;

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed MQTT stream (remaining length over 4 bytes)")
    }
}

impl std::error::Error for Malformed {}

/// Parses one frame at the start of `buf`: `Ok(None)` when incomplete,
/// otherwise the frame and its total length.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, Malformed> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let mut len = 0usize;
    let mut shift = 0;
    let mut at = 1;
    loop {
        if at > 4 {
            return Err(Malformed);
        }
        let Some(&byte) = buf.get(at) else {
            return Ok(None);
        };
        len |= ((byte & 0x7F) as usize) << shift;
        shift += 7;
        at += 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let total = at + len;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((
        Frame {
            header: buf[0],
            body: &buf[at..total],
        },
        total,
    )))
}

/// Calls `f` for every complete frame in `buf` and returns the number of
/// bytes consumed (the caller advances its buffer by that much).
pub fn for_each_frame(
    buf: &[u8],
    mut f: impl FnMut(Frame<'_>) -> Result<(), Malformed>,
) -> Result<usize, Malformed> {
    let mut at = 0;
    while let Some((frame, len)) = parse(&buf[at..])? {
        f(frame)?;
        at += len;
    }
    Ok(at)
}

// `cargo test --example load` runs these (the example is not a test
// target by default).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_roundtrip() {
        let mut buf = BytesMut::new();
        let payload = vec![7u8; 300];
        publish(&mut buf, b"a/b", 1, 42, b"head", &payload);
        let (frame, len) = parse(&buf).unwrap().unwrap();
        assert_eq!(len, buf.len());
        assert_eq!(frame.kind(), PUBLISH);
        let (topic, pid, body) = frame.publish().unwrap();
        assert_eq!(topic, b"a/b");
        assert_eq!(pid, 42);
        assert_eq!(&body[..4], b"head");
        assert_eq!(body.len(), 304);
    }

    #[test]
    fn partial_frames_wait() {
        let mut buf = BytesMut::new();
        puback(&mut buf, 1);
        puback(&mut buf, 2);
        let mut ids = Vec::new();
        let used = for_each_frame(&buf[..5], |f| {
            ids.push(f.packet_id().unwrap());
            Ok(())
        })
        .unwrap();
        assert_eq!((used, ids), (4, vec![1]));
    }
}
