//! Routing: the subscription trie, retained messages and shared groups.
//!
//! The router only ever pushes into subscriber [`Mailbox`]es; it never calls
//! back into a connection. A publish walks the trie under a read lock
//! (writers are SUBSCRIBE/UNSUBSCRIBE only) and allocates nothing beyond
//! the `Arc<Message>` it was given.

mod mailbox;
mod message;
mod retained;
mod trie;

pub use mailbox::{
    Delivery, DeliveryLog, Logged, Mailbox, MailboxLimits, SharedKey, SubscriptionIds,
    flush_deferred,
};
pub use message::{Message, now_millis};
pub use retained::RetainedStore;
pub use trie::{Subscription, SubscriptionTrie};

use parking_lot::RwLock;
use std::sync::Arc;

use crate::protocol::topic;
use crate::protocol::{MqttStr, SubscriptionOptions};

/// Where a subscription goes: a plain filter or a member of a shared group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterKey {
    /// `Some(group)` for `$share/{group}/{filter}`.
    pub group: Option<Arc<str>>,
    pub filter: Arc<str>,
}

impl FilterKey {
    /// Parses a SUBSCRIBE filter; `None` when it is not a valid filter.
    pub fn parse(raw: &str) -> Option<FilterKey> {
        match topic::parse_shared(raw) {
            Some(Ok(shared)) => Some(FilterKey {
                group: Some(shared.group.into()),
                filter: shared.filter.into(),
            }),
            Some(Err(())) => None,
            None if topic::is_valid_filter(raw) => Some(FilterKey {
                group: None,
                filter: raw.into(),
            }),
            None => None,
        }
    }
}

/// One publish's copies for clients with overlapping subscriptions, one
/// per client. Searched linearly while small (the usual case: a client or
/// two), through an index by mailbox once many clients overlap.
#[derive(Default)]
struct Overlapping {
    copies: Vec<(Arc<Mailbox>, Delivery)>,
    index: Option<std::collections::HashMap<*const Mailbox, usize>>,
}

impl Overlapping {
    const LINEAR: usize = 16;

    fn merge(&mut self, mailbox: &Arc<Mailbox>, delivery: Delivery, id: Option<u32>) {
        let key = Arc::as_ptr(mailbox);
        let found = match &self.index {
            Some(index) => index.get(&key).copied(),
            None => self.copies.iter().position(|(m, _)| Arc::as_ptr(m) == key),
        };
        match found {
            Some(at) => {
                let merged = &mut self.copies[at].1;
                merged.qos = merged.qos.max(delivery.qos);
                merged.retain |= delivery.retain;
                merged.subscription_ids.add(id);
            }
            None => {
                self.copies.push((mailbox.clone(), delivery));
                let at = self.copies.len() - 1;
                if let Some(index) = &mut self.index {
                    index.insert(key, at);
                } else if self.copies.len() > Self::LINEAR {
                    let index = self
                        .copies
                        .iter()
                        .enumerate()
                        .map(|(i, (m, _))| (Arc::as_ptr(m), i))
                        .collect();
                    self.index = Some(index);
                }
            }
        }
    }
}

/// Hands messages from publishers to subscribers' mailboxes.
#[derive(Default)]
pub struct Router {
    subscriptions: RwLock<SubscriptionTrie>,
    retained: RetainedStore,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    pub fn retained(&self) -> &RetainedStore {
        &self.retained
    }

    /// Adds or replaces `mailbox`'s subscription; returns whether it existed.
    /// `overlapping`: the client has other plain subscriptions, which may
    /// match the same messages (they are merged into one copy).
    pub fn subscribe(
        &self,
        key: &FilterKey,
        mailbox: &Arc<Mailbox>,
        options: SubscriptionOptions,
        id: Option<u32>,
        overlapping: bool,
    ) -> bool {
        let mut sub = Subscription::new(mailbox.clone(), options, id);
        sub.overlapping = overlapping && key.group.is_none();
        self.subscriptions.write().insert(key, sub)
    }

    /// Removes `client_id`'s subscription; returns whether it existed.
    pub fn unsubscribe(&self, key: &FilterKey, client_id: &MqttStr) -> bool {
        self.subscriptions.write().remove(key, client_id)
    }

    /// Delivers to every matching subscription; returns how many received it.
    /// The message's own retain flag is kept only for `retain_as_published`
    /// subscriptions (MQTT 3.3.1.3). A client whose overlapping
    /// subscriptions match gets one copy, at the highest QoS granted,
    /// carrying every matching subscription's identifier (MQTT 5 §3.3.4);
    /// only clients with several subscriptions pay for finding them.
    pub fn publish(&self, message: &Arc<Message>) -> usize {
        let trie = self.subscriptions.read();
        let mut delivered = 0;
        let mut overlapping = Overlapping::default();
        trie.for_each_match(&message.topic, |sub, shared| {
            if sub.options.no_local && message.origin.as_ref() == Some(sub.mailbox.client_id()) {
                return;
            }
            let delivery = Delivery {
                message: message.clone(),
                qos: message.qos.min(sub.options.qos),
                retain: sub.options.retain_as_published && message.retain,
                subscription_ids: SubscriptionIds::from_option(sub.id),
                shared: shared.cloned(),
                seq: 0,
            };
            if sub.overlapping && shared.is_none() {
                overlapping.merge(&sub.mailbox, delivery, sub.id);
                return;
            }
            if sub.mailbox.push(delivery) {
                delivered += 1;
            }
        });
        for (mailbox, delivery) in overlapping.copies {
            if mailbox.push(delivery) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Gives an unacknowledged shared-subscription message to another member
    /// of its group (used when a member leaves). Returns whether one took it.
    pub fn redeliver_shared(&self, delivery: Delivery, leaving: &MqttStr) -> bool {
        let Some(shared) = delivery.shared.clone() else {
            return false;
        };
        let trie = self.subscriptions.read();
        match trie.pick_shared_member(&shared, Some(leaving)) {
            Some(sub) => sub.mailbox.push(Delivery {
                qos: delivery.message.qos.min(sub.options.qos),
                subscription_ids: SubscriptionIds::from_option(sub.id),
                seq: 0,
                ..delivery
            }),
            None => false,
        }
    }

    /// Whether a persistent session subscribes to `topic` at QoS 1 or 2
    /// (its deliveries would be stored).
    pub fn has_persistent_subscriber(&self, topic: &str) -> bool {
        let mut found = false;
        self.subscriptions.read().for_each_match(topic, |sub, _| {
            found |= sub.options.qos != crate::protocol::QoS::AtMostOnce && sub.mailbox.is_logged();
        });
        found
    }

    /// Number of subscriptions (for `$SYS`).
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.read().len()
    }
}
