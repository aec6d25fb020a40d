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
        self.set_with(message, |_| {})
    }

    /// [`set`](Self::set), calling `changed` (which persists the change)
    /// under the same lock, so that changes reach the store in the order
    /// they reached memory.
    pub fn set_with(&self, message: &Arc<Message>, changed: impl FnOnce(&Arc<Message>)) -> bool {
        let mut messages = self.messages.write();
        let did = if message.payload.is_empty() {
            messages.remove(&message.topic).is_some()
        } else {
            messages.insert(message.topic.clone(), message.clone());
            true
        };
        if did {
            changed(message);
        }
        did
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

    /// Drops expired messages, calling `removed` for each topic under the
    /// lock (a newer message for the topic cannot slip in between).
    pub fn purge_expired_with(&self, mut removed: impl FnMut(&str)) {
        let now = now_millis();
        let mut messages = self.messages.write();
        messages.retain(|topic, m| {
            let keep = !m.is_expired(now);
            if !keep {
                removed(topic);
            }
            keep
        });
    }

    pub fn len(&self) -> usize {
        self.messages.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
