//! A subscriber's bounded queue. The router pushes, the session's
//! connection drains; the mailbox outlives connections so a persistent
//! session keeps receiving while its client is away.

use parking_lot::Mutex;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use super::Message;
use crate::protocol::{MqttStr, QoS};
use crate::signal::Signal;

/// A shared subscription a delivery came through, so it can be handed to
/// another member when this one leaves before acknowledging it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SharedKey {
    pub group: Arc<str>,
    pub filter: Arc<str>,
}

/// The subscription identifiers a delivery carries: none or one, or
/// several when overlapping subscriptions of one client matched (it gets
/// one copy carrying all of them, MQTT 5 §3.3.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SubscriptionIds {
    #[default]
    None,
    One(u32),
    /// Boxed: rare, and every queued delivery carries the field.
    Several(Box<Vec<u32>>),
}

impl SubscriptionIds {
    pub fn from_option(id: Option<u32>) -> SubscriptionIds {
        id.map_or(SubscriptionIds::None, SubscriptionIds::One)
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let (one, several): (Option<u32>, &[u32]) = match self {
            SubscriptionIds::None => (None, &[]),
            SubscriptionIds::One(id) => (Some(*id), &[]),
            SubscriptionIds::Several(ids) => (None, ids),
        };
        one.into_iter().chain(several.iter().copied())
    }

    /// Adds `id` (once).
    pub fn add(&mut self, id: Option<u32>) {
        let Some(id) = id else { return };
        match self {
            SubscriptionIds::None => *self = SubscriptionIds::One(id),
            SubscriptionIds::One(first) if *first != id => {
                *self = SubscriptionIds::Several(Box::new(vec![*first, id]));
            }
            SubscriptionIds::Several(ids) if !ids.contains(&id) => ids.push(id),
            _ => {}
        }
    }
}

/// One message on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// min(published QoS, granted QoS).
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: SubscriptionIds,
    pub shared: Option<Arc<SharedKey>>,
    /// Store sequence number when persisted (0 = not persisted).
    pub seq: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct MailboxLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
}

#[derive(Default)]
struct Queue {
    deliveries: VecDeque<Delivery>,
    /// At most `max_bytes` (a u32), so four bytes do.
    bytes: u32,
    /// Deliveries accepted but not yet appended (see [`flush_deferred`]).
    reserved: u32,
    log: Option<Arc<dyn DeliveryLog>>,
}

/// What the store did with a delivery it was asked to keep.
pub struct Logged {
    /// The delivery's sequence number in the store.
    pub seq: u64,
    /// Gathered into its publish's transaction, not sent yet: the delivery
    /// must not become visible before its record is on its way to the
    /// store, or the subscriber's acknowledgement could overtake it.
    pub deferred: bool,
}

/// Hook the store installs to persist deliveries to persistent sessions.
pub trait DeliveryLog: Send + Sync {
    /// Records `delivery` for `client_id`.
    fn enqueued(&self, client_id: &MqttStr, delivery: &Delivery) -> Logged;
}

thread_local! {
    /// Deliveries accepted during a publish whose store records are
    /// gathered; appended once the publish's transaction is sent.
    static DEFERRED: RefCell<VecDeque<(Arc<Mailbox>, Delivery)>> =
        const { RefCell::new(VecDeque::new()) };
}

/// Appends the deliveries this thread deferred, in order. Called right
/// after the store sent the publish's transaction (`Services::publish`).
pub fn flush_deferred() {
    while let Some((mailbox, delivery)) = DEFERRED.with_borrow_mut(|d| d.pop_front()) {
        mailbox.append(delivery);
    }
}

/// A delivery's weight against the byte limit (which fits a u32).
fn weight_of(delivery: &Delivery) -> u32 {
    u32::try_from(delivery.message.weight()).unwrap_or(u32::MAX)
}

pub struct Mailbox {
    client_id: MqttStr,
    /// The limits, narrowed (every session keeps a mailbox).
    max_messages: u32,
    max_bytes: u32,
    queue: Mutex<Queue>,
    /// The one connection serving this mailbox waits on it.
    ready: Signal,
    online: AtomicBool,
    dropped: AtomicU64,
}

impl Mailbox {
    pub fn new(client_id: MqttStr, limits: MailboxLimits) -> Mailbox {
        Mailbox {
            client_id,
            max_messages: u32::try_from(limits.max_messages).unwrap_or(u32::MAX),
            max_bytes: u32::try_from(limits.max_bytes).unwrap_or(u32::MAX),
            queue: Mutex::new(Queue::default()),
            ready: Signal::default(),
            online: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn client_id(&self) -> &MqttStr {
        &self.client_id
    }

    /// Persist QoS 1/2 deliveries through `log` (persistent sessions only).
    pub fn set_log(&self, log: Option<Arc<dyn DeliveryLog>>) {
        self.queue.lock().log = log;
    }

    /// Deliveries to this mailbox are stored (a persistent session).
    pub fn is_logged(&self) -> bool {
        self.queue.lock().log.is_some()
    }

    /// No wake-up when going online: the connection that attaches pumps
    /// the mailbox on its first turn anyway (a wake-up here only made it
    /// go round once more, and abandon its first hibernation attempt).
    /// Switched under the queue's lock, which `push` reads it under: a
    /// delivery either lands before the switch (and the first pump finds
    /// it) or sees the mailbox online (and wakes the connection).
    pub fn set_online(&self, online: bool) {
        let _queue = self.queue.lock();
        self.online.store(online, Ordering::Release);
    }

    /// Wakes the connection serving this mailbox without mail (a kick).
    pub fn wake(&self) {
        self.ready.notify();
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    /// Queues a delivery. A full queue (by count or bytes) drops the new
    /// message and counts it; QoS 0 to an offline client is not queued.
    pub fn push(self: &Arc<Self>, mut delivery: Delivery) -> bool {
        let weight = weight_of(&delivery);
        let mut queue = self.queue.lock();
        let online = self.is_online();
        if !online && delivery.qos == QoS::AtMostOnce {
            return false;
        }
        if queue.deliveries.len() + queue.reserved as usize >= self.max_messages as usize
            || u64::from(queue.bytes) + u64::from(weight) > u64::from(self.max_bytes)
        {
            drop(queue);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if let (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(log)) = (delivery.qos, &queue.log) {
            let logged = log.enqueued(&self.client_id, &delivery);
            delivery.seq = logged.seq;
            if logged.deferred {
                queue.reserved += 1;
                drop(queue);
                DEFERRED.with_borrow_mut(|d| d.push_back((self.clone(), delivery)));
                return true;
            }
        }
        queue.bytes += weight;
        queue.deliveries.push_back(delivery);
        drop(queue);
        if online {
            self.ready.notify();
        }
        true
    }

    /// Appends a delivery `push` accepted and deferred.
    fn append(&self, delivery: Delivery) {
        let mut queue = self.queue.lock();
        queue.reserved = queue.reserved.saturating_sub(1);
        queue.bytes = queue.bytes.saturating_add(weight_of(&delivery));
        queue.deliveries.push_back(delivery);
        let online = self.is_online();
        drop(queue);
        if online {
            self.ready.notify();
        }
    }

    /// Puts back deliveries restored from the store, in order, ignoring limits.
    pub fn restore(&self, deliveries: impl IntoIterator<Item = Delivery>) {
        let mut queue = self.queue.lock();
        for delivery in deliveries {
            queue.bytes = queue.bytes.saturating_add(weight_of(&delivery));
            queue.deliveries.push_back(delivery);
        }
    }

    /// Takes up to `max` deliveries from the front.
    pub fn pop_into(&self, max: usize, out: &mut Vec<Delivery>) {
        if max == 0 {
            return;
        }
        let mut queue = self.queue.lock();
        let queue = &mut *queue;
        let n = max.min(queue.deliveries.len());
        for delivery in queue.deliveries.drain(..n) {
            queue.bytes = queue.bytes.saturating_sub(weight_of(&delivery));
            out.push(delivery);
        }
    }

    /// Takes everything (session end, shared redelivery).
    pub fn take_all(&self) -> Vec<Delivery> {
        let mut queue = self.queue.lock();
        queue.bytes = 0;
        queue.deliveries.drain(..).collect()
    }

    pub fn len(&self) -> usize {
        self.queue.lock().deliveries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages refused because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Ready when a delivery may be waiting (since the last `Ready`).
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.ready.poll(cx)
    }

    /// Resolves when a delivery may be waiting.
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }
}
