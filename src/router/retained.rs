//! Retained messages, one per topic.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

use super::Message;
use super::message::now_millis;
use crate::protocol::MqttStr;
use crate::protocol::topic;

#[derive(Default)]
pub struct RetainedStore {
    messages: RwLock<HashMap<MqttStr, Arc<Message>>>,
}

impl RetainedStore {
    /// Stores, replaces or (empty payload) deletes the topic's message.
    /// Returns true when the stored state changed.
    pub fn set(&self, message: &Arc<Message>) -> bool {
        let mut messages = self.messages.write();
        if message.payload.is_empty() {
            messages.remove(&message.topic).is_some()
        } else {
            messages.insert(message.topic.clone(), message.clone());
            true
        }
    }

    /// Unexpired retained messages matching `filter`.
    pub fn matching(&self, filter: &str) -> Vec<Arc<Message>> {
        let now = now_millis();
        let messages = self.messages.read();
        if !filter.contains(['+', '#']) {
            return messages
                .get(filter)
                .filter(|m| !m.is_expired(now))
                .cloned()
                .into_iter()
                .collect();
        }
        messages
            .values()
            .filter(|m| !m.is_expired(now) && topic::matches(filter, &m.topic))
            .cloned()
            .collect()
    }

    /// Drops expired messages; returns their topics (so the store can too).
    pub fn purge_expired(&self) -> Vec<MqttStr> {
        let now = now_millis();
        let mut messages = self.messages.write();
        let expired: Vec<MqttStr> = messages
            .values()
            .filter(|m| m.is_expired(now))
            .map(|m| m.topic.clone())
            .collect();
        for topic in &expired {
            messages.remove(topic);
        }
        expired
    }

    pub fn len(&self) -> usize {
        self.messages.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
