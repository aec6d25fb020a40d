//! An application message as the router carries it: decoded once, shared by
//! every subscriber through an `Arc`.

use bytes::Bytes;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::protocol::{MqttStr, Properties, Publish, QoS};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: MqttStr,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// v5 properties forwarded unchanged (payload format, content type,
    /// response topic, correlation data, user properties). The expiry
    /// interval is kept as `expires_at` instead, and topic alias and
    /// subscription identifiers are per hop.
    pub properties: Properties,
    /// Absolute expiry in Unix milliseconds (v5 message expiry interval).
    pub expires_at: Option<u64>,
    /// Client id of the publisher, for the no-local option.
    pub origin: Option<MqttStr>,
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Message {
    /// Builds a message from a received PUBLISH (topic already resolved
    /// from any alias and prefixed).
    pub fn from_publish(mut publish: Publish, origin: Option<MqttStr>) -> Message {
        let expires_at = publish
            .properties
            .message_expiry_interval
            .take()
            .map(|secs| now_millis() + u64::from(secs) * 1000);
        publish.properties.topic_alias = None;
        publish.properties.subscription_identifiers.clear();
        Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties: publish.properties,
            expires_at,
            origin,
        }
    }

    /// Seconds left before expiry: `None` = never expires, `Some(0)` = expired.
    pub fn remaining_expiry(&self, now_ms: u64) -> Option<u32> {
        self.expires_at
            .map(|at| (at.saturating_sub(now_ms).div_ceil(1000)).min(u32::MAX as u64) as u32)
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }

    /// Bytes counted against queue limits.
    pub fn weight(&self) -> usize {
        self.topic.len() + self.payload.len() + 64
    }
}
