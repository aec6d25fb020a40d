//! Sessions: the state MQTT keeps per client id, across connections.
//!
//! A [`Session`] lives in the [`Registry`] and outlives connections; while a
//! client is connected its [`SessionState`] is moved into that connection's
//! [`ClientSession`], so the per-message path touches no shared lock.

mod acks;
pub mod admin;
mod client;
mod connected;
mod deadlines;
mod inflight;
mod outbound;
mod registry;

pub use client::{ClientSession, Close, ConnectParams};
pub use connected::{ClientInfo, Connected, Listener};
pub use inflight::{Inflight, Outgoing, Stage};
pub use registry::{AttachError, Attached, Registry, SessionInfo};

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use crate::config::Config;
use crate::identity::LiveAcl;
use crate::metrics::Metrics;
use crate::protocol::{MqttStr, ReasonCode, SubscriptionOptions};
use crate::router::{FilterKey, Mailbox, MailboxLimits, Message, Router};
use crate::store::{SessionRecord, Store, Written};

/// A revoked `LiveAcl` wakes its connections through their mailboxes.
impl crate::identity::Wakeup for Mailbox {
    fn wake(&self) {
        Mailbox::wake(self);
    }
}

/// Decides, when a will is due, whether its owner may still publish it
/// (the user may have been disabled, deleted or lost the permission since
/// it connected). Implemented by the directory authenticator.
pub trait WillCheck: Send + Sync {
    fn may_publish_will(&self, owner: &str, client_id: &MqttStr, topic: &MqttStr) -> bool;
}

/// What every session needs from the rest of the broker.
pub struct Services {
    pub config: Config,
    pub router: Router,
    pub store: Arc<Store>,
    pub metrics: Metrics,
    /// `None` for the broker core without identities.
    pub will_check: Option<Arc<dyn WillCheck>>,
}

/// Whether a publish must wait for a store commit before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persisted {
    Nothing,
    /// Acknowledge once the store has committed this many operations.
    AwaitCommit(u64),
    /// It had to be stored, but the store is closed (shutdown).
    Unstored,
}

impl Services {
    /// Routes a message (and keeps it when retained). Returns whether the
    /// store was written, so `sync` durability can wait for the commit.
    pub fn publish(&self, message: Message) -> Persisted {
        self.publish_with(message, || {})
    }

    /// [`publish`](Self::publish), with `also`'s store operations in the
    /// same transaction as the message's.
    pub fn publish_with(&self, message: Message, also: impl FnOnce()) -> Persisted {
        let message = Arc::new(message);
        let ((), written) = self.store.atomically(|| {
            also();
            if message.retain {
                // Own copy: the payload is a slice of a connection's read
                // buffer.
                let kept = Arc::new(Message {
                    topic: MqttStr::from_bytes(Bytes::copy_from_slice(message.topic.as_bytes()))
                        .expect("already a valid MQTT string"),
                    payload: Bytes::copy_from_slice(&message.payload),
                    ..(*message).clone()
                });
                // Written under the retained store's lock: the disk gets
                // the same order as memory.
                self.router
                    .retained()
                    .set_with(&kept, |kept| self.store.put_retained(kept));
            }
            self.router.publish(&message);
        });
        // Now that the transaction is on its way to the store, the copies
        // queued for persistent sessions may be seen (and acknowledged).
        crate::router::flush_deferred();
        self.metrics.received(message.qos, message.payload.len());
        match written {
            Written::Nothing => Persisted::Nothing,
            Written::Upto(ticket) => Persisted::AwaitCommit(ticket),
            Written::Closed => Persisted::Unstored,
        }
    }

    /// Whether routing `publish` would write to the store: it is retained,
    /// or a persistent session subscribes to it at QoS 1 or 2. Asked only
    /// while the store fails.
    pub fn would_persist(&self, publish: &crate::protocol::Publish) -> bool {
        publish.retain || self.router.has_persistent_subscriber(&publish.topic)
    }

    /// Drops expired retained messages (memory and store, in one order).
    pub fn purge_expired_retained(&self) {
        self.router
            .retained()
            .purge_expired_with(|topic| self.store.delete_retained(topic));
    }

    pub fn mailbox_limits(&self) -> MailboxLimits {
        MailboxLimits {
            max_messages: self.config.limits.max_queued_messages,
            max_bytes: self.config.limits.max_queued_bytes,
        }
    }
}

/// One subscription as the session remembers it.
#[derive(Debug, Clone)]
pub struct SubscriptionEntry {
    pub key: FilterKey,
    pub options: SubscriptionOptions,
    pub id: Option<u32>,
}

/// A small set of packet ids: bounded by the receive maximum we announce,
/// so a scan is short, and 24 bytes where a `HashSet` takes 48 in every
/// session.
#[derive(Debug, Default)]
pub struct PacketIds(Vec<u16>);

impl PacketIds {
    pub fn contains(&self, id: &u16) -> bool {
        self.0.contains(id)
    }

    /// Adds `id`; `false` if it was there already.
    pub fn insert(&mut self, id: u16) -> bool {
        if self.contains(&id) {
            return false;
        }
        self.0.push(id);
        true
    }

    /// Removes `id`; `false` if it was not there.
    pub fn remove(&mut self, id: &u16) -> bool {
        match self.0.iter().position(|x| x == id) {
            Some(i) => {
                self.0.swap_remove(i);
                if self.0.is_empty() {
                    self.0 = Vec::new();
                }
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Session state that moves between the registry (client away) and the
/// connection (client present).
#[derive(Default)]
pub struct SessionState {
    /// Keyed by the raw filter as subscribed (including `$share/...`).
    pub subscriptions: BTreeMap<String, SubscriptionEntry>,
    pub expiry_interval: u32,
    pub inflight: Inflight,
    /// QoS 2 packet ids received and not yet released by PUBREL.
    pub inbound_qos2: PacketIds,
    /// Set once a connection has used this session.
    pub established: bool,
    /// The store holds a record of this session (delete it on discard;
    /// clean sessions never touch the store).
    pub stored: bool,
}

impl SessionState {
    /// More than one plain (not shared) subscription: they may overlap.
    pub fn overlapping(&self) -> bool {
        self.subscriptions
            .values()
            .filter(|e| e.key.group.is_none())
            .nth(1)
            .is_some()
    }

    /// The durable part, as written while the client is connected.
    pub fn record(&self, owner: Option<&str>) -> SessionRecord {
        SessionRecord {
            expiry_interval: self.expiry_interval,
            owner: owner.map(str::to_owned),
            disconnected_at: 0,
            will: None,
            subscriptions: self
                .subscriptions
                .iter()
                .map(|(raw, e)| (raw.clone(), e.options, e.id))
                .collect(),
        }
    }
}

/// A will waiting for its delay (or for its session to end).
pub struct PendingWill {
    pub message: Message,
    /// Unix ms.
    pub due: u64,
    /// The owner's live permissions while it was connected (`None` after a
    /// restart: the directory decides then).
    pub acl: Option<Arc<LiveAcl>>,
}

/// A session while no connection holds it. Boxed: only detached sessions
/// carry it, so a connected one pays nothing for these fields.
pub struct Detached {
    pub state: SessionState,
    /// Unix ms of the disconnect.
    pub disconnected_at: u64,
    pub will: Option<PendingWill>,
    /// The registry's timer key for this session (Unix ms; 0: none).
    pub deadline: u64,
}

impl Detached {
    /// When the session expires (Unix ms); `None`: never.
    pub fn expires_at(&self) -> Option<u64> {
        (self.state.expiry_interval != u32::MAX).then(|| {
            self.disconnected_at
                .saturating_add(u64::from(self.state.expiry_interval) * 1000)
        })
    }

    /// The next moment something is due: the will or the expiry.
    pub fn next_due(&self) -> Option<u64> {
        let will = self.will.as_ref().map(|w| w.due);
        match (will, self.expires_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

pub struct Session {
    /// Also holds the client id (`client_id()`).
    pub mailbox: Arc<Mailbox>,
    /// Held by the connection that owns the session; a new connection for
    /// the same client id kicks the holder and waits for it.
    /// One permit (inline: no allocation of its own per session).
    attach_lock: tokio::sync::Semaphore,
    /// Why the attached connection must leave (0: it need not). Set by a
    /// takeover or shutdown; the connection learns of it through its
    /// mailbox's wake-up, so a kick costs no channel.
    kick: AtomicU8,
    /// Connections waiting for `attach_lock`: the one that gets the lock
    /// next kicks itself if someone is still waiting (their kick may have
    /// landed before it cleared the old one).
    attach_waiters: AtomicU32,
    /// Bumped on each attach.
    generation: AtomicU32,
    /// The user the session belongs to, interned by the registry (0: not
    /// claimed yet). Claimed before any kick, so another user can neither
    /// take the session over nor knock its owner off.
    owner: AtomicU32,
    /// The detached state, or the facts of the connection that holds the
    /// session (its state then lives in the connection).
    presence: Mutex<Presence>,
}

/// Where a session is: boxed either way, so the session pays one pointer.
#[derive(Default)]
pub(super) enum Presence {
    /// Neither (a new session, or one ending).
    #[default]
    Gone,
    Connected(Box<Connected>),
    Detached(Box<Detached>),
}

impl Presence {
    /// The detached part, if the session is detached.
    pub(super) fn detached(&mut self) -> Option<&mut Detached> {
        match self {
            Presence::Detached(detached) => Some(detached),
            _ => None,
        }
    }

    /// Takes the detached part out, leaving the session `Gone`.
    pub(super) fn take_detached(&mut self) -> Option<Box<Detached>> {
        match std::mem::take(self) {
            Presence::Detached(detached) => Some(detached),
            other => {
                *self = other;
                None
            }
        }
    }
}

impl Session {
    fn new(client_id: MqttStr, limits: MailboxLimits) -> Session {
        Session {
            mailbox: Arc::new(Mailbox::new(client_id, limits)),
            attach_lock: tokio::sync::Semaphore::new(1),
            kick: AtomicU8::new(0),
            attach_waiters: AtomicU32::new(0),
            generation: AtomicU32::new(0),
            owner: AtomicU32::new(0),
            presence: Mutex::new(Presence::Gone),
        }
    }

    pub fn client_id(&self) -> &MqttStr {
        self.mailbox.client_id()
    }

    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }

    /// Claims the session for `owner` unless another user holds it;
    /// returns the owner it belongs to.
    fn claim(&self, owner: u32) -> u32 {
        match self
            .owner
            .compare_exchange(0, owner, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => owner,
            Err(current) => current,
        }
    }

    /// Asks the connected client (if any) to leave with `reason`. The
    /// first reason stands; the next attach clears it.
    pub fn kick(&self, reason: ReasonCode) {
        let _ = self
            .kick
            .compare_exchange(0, reason.0.max(1), Ordering::SeqCst, Ordering::SeqCst);
        self.mailbox.wake();
    }

    /// The reason the attached connection was asked to leave, if it was.
    pub fn kicked(&self) -> Option<ReasonCode> {
        match self.kick.load(Ordering::Acquire) {
            0 => None,
            reason => Some(ReasonCode(reason)),
        }
    }

    /// Takes the detached part out (attach, expiry, removal).
    fn take_detached(&self) -> Option<Box<Detached>> {
        self.presence.lock().take_detached()
    }
}
