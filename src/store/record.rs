//! Binary records for the store. A message is kept as a v5 PUBLISH frame
//! (the codec already knows how to write and check one) behind a small
//! header with the delivery's own fields.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::sync::Arc;

use crate::protocol::{self, MqttStr, Packet, ProtocolVersion, Publish, QoS, SubscriptionOptions};
use crate::router::{Delivery, Message, SharedKey, SubscriptionIds};

const FORMAT: u8 = 1;

#[derive(Debug, thiserror::Error)]
#[error("corrupt store record: {0}")]
pub struct RecordError(&'static str);

/// A persistent session's durable part.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionRecord {
    pub expiry_interval: u32,
    /// The user who created the session (the only one who may resume it);
    /// `None` in records written before sessions had owners.
    pub owner: Option<String>,
    /// When the client disconnected (Unix ms); 0 while it is connected.
    /// Expiry and will delay count from here, also across restarts.
    pub disconnected_at: u64,
    /// A will waiting for its delay, and when it is due (Unix ms).
    pub will: Option<(Message, u64)>,
    /// Raw SUBSCRIBE filters with their options and identifier.
    pub subscriptions: Vec<(String, SubscriptionOptions, Option<u32>)>,
}

/// Session records since owners, disconnect times and wills were kept.
const SESSION_FORMAT: u8 = 2;

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s.as_bytes());
}

fn get_str(buf: &mut Bytes) -> Result<String, RecordError> {
    if buf.remaining() < 2 {
        return Err(RecordError("truncated string"));
    }
    let len = buf.get_u16() as usize;
    if buf.remaining() < len {
        return Err(RecordError("truncated string"));
    }
    String::from_utf8(buf.split_to(len).to_vec()).map_err(|_| RecordError("invalid UTF-8"))
}

fn need(buf: &Bytes, n: usize) -> Result<(), RecordError> {
    if buf.remaining() < n {
        Err(RecordError("truncated"))
    } else {
        Ok(())
    }
}

fn options_byte(o: &SubscriptionOptions) -> u8 {
    o.qos as u8
        | (o.no_local as u8) << 2
        | (o.retain_as_published as u8) << 3
        | o.retain_handling << 4
}

fn options_from(b: u8) -> Result<SubscriptionOptions, RecordError> {
    Ok(SubscriptionOptions {
        qos: QoS::from_u8(b & 3).ok_or(RecordError("bad QoS"))?,
        no_local: b & 4 != 0,
        retain_as_published: b & 8 != 0,
        retain_handling: (b >> 4) & 3,
    })
}

impl SessionRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = BytesMut::new();
        buf.put_u8(SESSION_FORMAT);
        buf.put_u32(self.expiry_interval);
        put_str(&mut buf, self.owner.as_deref().unwrap_or(""));
        buf.put_u64(self.disconnected_at);
        buf.put_u32(self.subscriptions.len() as u32);
        for (filter, options, id) in &self.subscriptions {
            put_str(&mut buf, filter);
            buf.put_u8(options_byte(options));
            buf.put_u32(id.unwrap_or(0));
        }
        if let Some((message, due)) = &self.will {
            buf.put_u64(*due);
            put_message(&mut buf, message);
        }
        buf.to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<SessionRecord, RecordError> {
        let mut buf = Bytes::copy_from_slice(bytes);
        need(&buf, 5)?;
        let format = buf.get_u8();
        if format != FORMAT && format != SESSION_FORMAT {
            return Err(RecordError("unknown format"));
        }
        let expiry_interval = buf.get_u32();
        let mut record = SessionRecord {
            expiry_interval,
            ..SessionRecord::default()
        };
        if format == SESSION_FORMAT {
            record.owner = Some(get_str(&mut buf)?).filter(|o| !o.is_empty());
            need(&buf, 8)?;
            record.disconnected_at = buf.get_u64();
        }
        need(&buf, 4)?;
        let count = buf.get_u32();
        for _ in 0..count {
            let filter = get_str(&mut buf)?;
            need(&buf, 5)?;
            let options = options_from(buf.get_u8())?;
            let id = Some(buf.get_u32()).filter(|&id| id != 0);
            record.subscriptions.push((filter, options, id));
        }
        if format == SESSION_FORMAT && buf.has_remaining() {
            need(&buf, 8)?;
            let due = buf.get_u64();
            record.will = Some((get_message(&mut buf)?, due));
        }
        Ok(record)
    }
}

/// Encodes a message (for the retained table).
pub fn encode_message(message: &Message) -> Vec<u8> {
    let mut buf = BytesMut::new();
    put_message(&mut buf, message);
    buf.to_vec()
}

pub fn decode_message(bytes: &[u8]) -> Result<Message, RecordError> {
    let mut buf = Bytes::copy_from_slice(bytes);
    get_message(&mut buf)
}

fn put_message(buf: &mut BytesMut, message: &Message) {
    buf.put_u8(FORMAT);
    buf.put_u64(message.expires_at.unwrap_or(0));
    put_str(buf, message.origin.as_deref().unwrap_or(""));
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: message.qos,
        retain: message.retain,
        topic: message.topic.clone(),
        packet_id: if message.qos == QoS::AtMostOnce { 0 } else { 1 },
        properties: message.properties.clone(),
        payload: message.payload.clone(),
    });
    protocol::encode(&publish, ProtocolVersion::V5, buf);
}

fn get_message(buf: &mut Bytes) -> Result<Message, RecordError> {
    need(buf, 9)?;
    if buf.get_u8() != FORMAT {
        return Err(RecordError("unknown format"));
    }
    let expires_at = Some(buf.get_u64()).filter(|&at| at != 0);
    let origin = get_str(buf)?;
    let mut frame = BytesMut::from(&buf[..]);
    let packet = protocol::decode(&mut frame, Some(ProtocolVersion::V5), usize::MAX)
        .map_err(|_| RecordError("bad publish frame"))?;
    let Some(Packet::Publish(publish)) = packet else {
        return Err(RecordError("not a publish frame"));
    };
    Ok(Message {
        topic: publish.topic,
        payload: publish.payload,
        qos: publish.qos,
        retain: publish.retain,
        properties: publish.properties,
        expires_at,
        origin: MqttStr::from_bytes(origin.into()).filter(|o| !o.is_empty()),
    })
}

/// Encodes a queued delivery of a persistent session into `buf`.
pub fn encode_delivery(delivery: &Delivery, buf: &mut BytesMut) {
    let several = matches!(delivery.subscription_ids, SubscriptionIds::Several(_));
    buf.put_u8(delivery.qos as u8 | (delivery.retain as u8) << 2 | u8::from(several) << 3);
    match &delivery.subscription_ids {
        SubscriptionIds::None => buf.put_u32(0),
        SubscriptionIds::One(id) => buf.put_u32(*id),
        SubscriptionIds::Several(ids) => {
            buf.put_u32(ids.len() as u32);
            for id in ids.iter() {
                buf.put_u32(*id);
            }
        }
    }
    match &delivery.shared {
        Some(shared) => {
            put_str(buf, &shared.group);
            put_str(buf, &shared.filter);
        }
        None => {
            put_str(buf, "");
            put_str(buf, "");
        }
    }
    put_message(buf, &delivery.message);
}

/// First byte of a queue record holding several deliveries; a record of
/// one delivery (the first format) starts with its flags, at most 7.
const BATCH: u8 = 0xB1;

/// Starts a queue record of several deliveries.
pub fn begin_batch(buf: &mut BytesMut) {
    buf.put_u8(BATCH);
}

/// Appends one delivery to a record started with [`begin_batch`].
pub fn put_batch_entry(buf: &mut BytesMut, delivery: &Delivery) {
    buf.put_u64(delivery.seq);
    let at = buf.len();
    buf.put_u32(0);
    encode_delivery(delivery, buf);
    let len = (buf.len() - at - 4) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// The deliveries of a queue record stored under sequence `key_seq`.
pub fn decode_queue_record(bytes: &[u8], key_seq: u64) -> Result<Vec<Delivery>, RecordError> {
    if bytes.first() != Some(&BATCH) {
        return Ok(vec![decode_delivery(bytes, key_seq)?]);
    }
    let mut buf = Bytes::copy_from_slice(&bytes[1..]);
    let mut deliveries = Vec::new();
    while buf.has_remaining() {
        need(&buf, 12)?;
        let seq = buf.get_u64();
        let len = buf.get_u32() as usize;
        need(&buf, len)?;
        deliveries.push(decode_delivery(&buf.split_to(len), seq)?);
    }
    Ok(deliveries)
}

/// A copy of a several-delivery record without the deliveries `keep`
/// refuses; `None` for a record of one delivery or a malformed one.
pub fn retain_batch(bytes: &[u8], keep: impl Fn(u64) -> bool) -> Option<Vec<u8>> {
    if bytes.first() != Some(&BATCH) {
        return None;
    }
    let mut out = vec![BATCH];
    let mut rest = &bytes[1..];
    while !rest.is_empty() {
        let seq = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        let len = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?) as usize;
        let entry = rest.get(..12 + len)?;
        if keep(seq) {
            out.extend_from_slice(entry);
        }
        rest = &rest[12 + len..];
    }
    Some(out)
}

fn decode_delivery(bytes: &[u8], seq: u64) -> Result<Delivery, RecordError> {
    let mut buf = Bytes::copy_from_slice(bytes);
    need(&buf, 5)?;
    let flags = buf.get_u8();
    let subscription_ids = if flags & 8 != 0 {
        let count = buf.get_u32() as usize;
        need(&buf, count.saturating_mul(4))?;
        SubscriptionIds::Several(Box::new((0..count).map(|_| buf.get_u32()).collect()))
    } else {
        SubscriptionIds::from_option(Some(buf.get_u32()).filter(|&id| id != 0))
    };
    let group = get_str(&mut buf)?;
    let filter = get_str(&mut buf)?;
    let message = get_message(&mut buf)?;
    Ok(Delivery {
        message: Arc::new(message),
        qos: QoS::from_u8(flags & 3).ok_or(RecordError("bad QoS"))?,
        retain: flags & 4 != 0,
        subscription_ids,
        shared: (!group.is_empty()).then(|| {
            Arc::new(SharedKey {
                group: group.into(),
                filter: filter.into(),
            })
        }),
        seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Properties;

    fn delivery(seq: u64, payload: &'static [u8]) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: "t/1".into(),
                payload: Bytes::from_static(payload),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Properties::default(),
                expires_at: None,
                origin: None,
            }),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: SubscriptionIds::One(7),
            shared: None,
            seq,
        }
    }

    #[test]
    fn queue_records_of_several_and_of_one_delivery() {
        let mut buf = BytesMut::new();
        begin_batch(&mut buf);
        for (seq, payload) in [(5, &b"a"[..]), (9, b"bb"), (12, b"")] {
            put_batch_entry(&mut buf, &delivery(seq, payload));
        }
        let read = decode_queue_record(&buf, 5).unwrap();
        let seqs: Vec<u64> = read.iter().map(|d| d.seq).collect();
        assert_eq!(seqs, [5, 9, 12]);
        assert_eq!(read[1].message.payload.as_ref(), b"bb");
        assert_eq!(read[0].subscription_ids, SubscriptionIds::One(7));

        let trimmed = retain_batch(&buf, |seq| seq != 9).unwrap();
        let seqs: Vec<u64> = decode_queue_record(&trimmed, 5)
            .unwrap()
            .iter()
            .map(|d| d.seq)
            .collect();
        assert_eq!(seqs, [5, 12]);

        // The first format: one delivery, its sequence in the key.
        let mut one = BytesMut::new();
        encode_delivery(&delivery(0, b"x"), &mut one);
        let read = decode_queue_record(&one, 42).unwrap();
        assert_eq!((read.len(), read[0].seq), (1, 42));
        assert!(retain_batch(&one, |_| true).is_none());

        // Truncated records are refused, not misread.
        assert!(decode_queue_record(&buf[..buf.len() - 1], 5).is_err());
    }
}
