//! All sessions by client id: attach (with takeover), detach, expiry,
//! delayed wills, and restoring persistent sessions from the store.

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Services, Session, SessionState, SubscriptionEntry};
use crate::protocol::{MqttStr, ReasonCode, Will};
use crate::router::{FilterKey, Message};

/// A connection's hold on its session.
pub struct Attached {
    /// The session with its attach lock held.
    pub session: Held,
    pub state: SessionState,
    pub session_present: bool,
    generation: u64,
}

/// A session whose attach lock a connection holds: the permit goes back
/// when this is dropped (the connection gave the session back, or its
/// attach was abandoned).
pub struct Held(Arc<Session>);

impl std::ops::Deref for Held {
    type Target = Arc<Session>;

    fn deref(&self) -> &Arc<Session> {
        &self.0
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.attach_lock.add_permits(1);
    }
}

/// Counts a connection waiting for a session's attach lock, for as long
/// as it waits (also when its wait is cancelled).
struct Waiting<'a>(&'a Session);

impl<'a> Waiting<'a> {
    fn on(session: &'a Session) -> Waiting<'a> {
        session.attach_waiters.fetch_add(1, Ordering::AcqRel);
        Waiting(session)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.attach_waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct Registry {
    services: Arc<Services>,
    /// Keyed by the session itself (looked up by its client id): 8 bytes
    /// a slot instead of a 32-byte id and a pointer.
    sessions: DashMap<ByClientId, ()>,
}

/// A session as the key of the registry's table: hashes and compares as
/// its client id, so lookups take a `&str`.
struct ByClientId(Arc<Session>);

impl std::hash::Hash for ByClientId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.client_id().as_str().hash(state)
    }
}

impl PartialEq for ByClientId {
    fn eq(&self, other: &ByClientId) -> bool {
        self.0.client_id() == other.0.client_id()
    }
}

impl Eq for ByClientId {}

impl std::borrow::Borrow<str> for ByClientId {
    fn borrow(&self) -> &str {
        self.0.client_id().as_str()
    }
}

impl Registry {
    pub fn new(services: Arc<Services>) -> Arc<Registry> {
        Arc::new(Registry {
            services,
            sessions: DashMap::new(),
        })
    }

    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn get(&self, client_id: &str) -> Option<Arc<Session>> {
        self.sessions.get(client_id).map(|s| s.key().0.clone())
    }

    fn get_or_create(&self, client_id: &MqttStr) -> Arc<Session> {
        if let Some(session) = self.get(client_id) {
            return session;
        }
        let session = Arc::new(Session::new(
            client_id.clone(),
            self.services.mailbox_limits(),
        ));
        // Another connection may have created it meanwhile: the table's
        // entry decides.
        match self.sessions.entry(ByClientId(session.clone())) {
            Entry::Occupied(existing) => existing.key().0.clone(),
            Entry::Vacant(vacant) => {
                vacant.insert(());
                session
            }
        }
    }

    /// Takes the session for `client_id`, kicking a connection that holds it.
    pub async fn attach(self: &Arc<Self>, client_id: &MqttStr, clean_start: bool) -> Attached {
        loop {
            let session = self.get_or_create(client_id);
            let acquired = {
                let _waiting = Waiting::on(&session);
                session.kick(ReasonCode::SESSION_TAKEN_OVER);
                let permit = session.attach_lock.acquire().await;
                // Kept until the guard below gives it back.
                permit.map(|permit| permit.forget()).is_ok()
            };
            if !acquired {
                continue; // only if the lock were closed, which it never is
            }
            let session = Held(session);
            // The session may have expired while we waited.
            let current = self.get(client_id);
            if !current.is_some_and(|c| Arc::ptr_eq(&c, &session)) {
                continue;
            }
            // A kick meant for the previous holder is spent.
            session.kick.store(0, Ordering::Release);
            let generation = session.generation.fetch_add(1, Ordering::AcqRel) + 1;
            let mut state = session.take_state();
            if clean_start && state.established {
                self.discard(&session, &mut state);
            }
            let session_present = state.established;
            state.established = true;
            session.mailbox.set_online(true);
            // Someone asked for the session while this connection took it;
            // their kick may have been the one cleared above: leave for
            // them at once.
            if session.attach_waiters.load(Ordering::Acquire) > 0 {
                session.kick(ReasonCode::SESSION_TAKEN_OVER);
            }
            return Attached {
                session,
                state,
                session_present,
                generation,
            };
        }
    }

    /// Drops a session's subscriptions, queue and stored record.
    fn discard(&self, session: &Session, state: &mut SessionState) {
        let router = &self.services.router;
        for entry in state.subscriptions.values() {
            router.unsubscribe(&entry.key, session.client_id());
        }
        let mut leftovers: Vec<_> = state.inflight.drain().map(|o| o.delivery).collect();
        leftovers.extend(session.mailbox.take_all());
        for delivery in leftovers {
            router.redeliver_shared(delivery, session.client_id());
        }
        session.mailbox.set_log(None);
        if state.stored {
            self.services.store.delete_session(session.client_id());
        }
        *state = SessionState::default();
    }

    /// Gives the session back when its connection ends. `will` is published
    /// after its delay unless the client returns first.
    pub fn detach(self: &Arc<Self>, attached: Attached, will: Option<Will>) {
        let Attached {
            session: held,
            mut state,
            generation,
            ..
        } = attached;
        let session = Arc::clone(&held);
        session.mailbox.set_online(false);
        session.kick.store(0, Ordering::Release);
        let expiry = state.expiry_interval;
        if expiry == 0 {
            self.discard(&session, &mut state);
            self.sessions
                .remove_if(session.client_id().as_str(), |k, _| {
                    Arc::ptr_eq(&k.0, &session)
                });
        } else {
            self.services
                .store
                .put_session(session.client_id(), &state.record());
            state.stored = true;
            *session.state.lock() = Some(Box::new(state));
        }
        drop(held);
        if let Some(will) = will {
            let delay = will.properties.will_delay_interval.unwrap_or(0).min(expiry);
            self.schedule_will(&session, generation, will, delay);
        }
        if expiry != 0 && expiry != u32::MAX {
            self.schedule_expiry(&session, generation, expiry);
        }
    }

    fn schedule_will(
        self: &Arc<Self>,
        session: &Arc<Session>,
        generation: u64,
        will: Will,
        delay: u32,
    ) {
        let message = will_message(will, session.client_id());
        if delay == 0 {
            self.services.publish(message);
            return;
        }
        let services = self.services.clone();
        let session = session.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(delay.into())).await;
            if session.generation() == generation {
                services.publish(message);
            }
        });
    }

    fn schedule_expiry(self: &Arc<Self>, session: &Arc<Session>, generation: u64, secs: u32) {
        let registry = self.clone();
        let session = session.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs.into())).await;
            registry.expire(&session, generation).await;
        });
    }

    async fn expire(&self, session: &Arc<Session>, generation: u64) {
        let Ok(_permit) = session.attach_lock.try_acquire() else {
            return; // connected again
        };
        if session.generation() != generation {
            return;
        }
        let mut state = session.take_state();
        tracing::debug!(client_id = %session.client_id(), "session expired");
        self.discard(session, &mut state);
        self.sessions
            .remove_if(session.client_id().as_str(), |k, _| {
                Arc::ptr_eq(&k.0, session)
            });
    }

    /// Kicks every connected client (shutdown or administrative action).
    pub fn kick_all(&self, reason: ReasonCode) {
        for session in self.sessions.iter() {
            session.key().0.kick(reason);
        }
    }

    /// Messages refused by full session queues, over all sessions.
    pub fn dropped_messages(&self) -> u64 {
        self.sessions
            .iter()
            .map(|s| s.key().0.mailbox.dropped())
            .sum()
    }

    /// Recreates persistent sessions found in the store at start-up. Their
    /// expiry restarts now, as the broker cannot know how long it was down.
    pub fn restore(
        self: &Arc<Self>,
        sessions: Vec<(
            String,
            crate::store::SessionRecord,
            Vec<crate::router::Delivery>,
        )>,
    ) {
        for (client_id, record, deliveries) in sessions {
            let Some(client_id) = MqttStr::from_bytes(client_id.into()) else {
                tracing::warn!("skipping a stored session with an invalid client id");
                continue;
            };
            let session = self.get_or_create(&client_id);
            session.mailbox.set_log(Some(
                self.services.store.clone() as Arc<dyn crate::router::DeliveryLog>
            ));
            session.mailbox.restore(deliveries);
            let mut guard = session.state.lock();
            let state = guard.get_or_insert_with(Box::default);
            state.established = true;
            state.stored = true;
            state.expiry_interval = record.expiry_interval;
            for (raw, options, id) in record.subscriptions {
                let Some(key) = FilterKey::parse(&raw) else {
                    continue;
                };
                self.services
                    .router
                    .subscribe(&key, &session.mailbox, options, id);
                state
                    .subscriptions
                    .insert(raw, SubscriptionEntry { key, options, id });
            }
            drop(guard);
            if record.expiry_interval != u32::MAX {
                self.schedule_expiry(&session, session.generation(), record.expiry_interval);
            }
        }
    }
}

/// The message a will becomes (the will's properties ride along).
pub fn will_message(will: Will, client_id: &MqttStr) -> Message {
    crate::router::Message::from_publish(
        crate::protocol::Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic,
            packet_id: 0,
            properties: crate::protocol::Properties {
                will_delay_interval: None,
                ..will.properties
            },
            payload: will.payload,
        },
        Some(client_id.clone()),
    )
}
