//! All sessions by client id: attach (with ownership and takeover),
//! detach, expiry and delayed wills, administrative removal, and restoring
//! persistent sessions from the store.

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::deadlines::{self, Deadlines};
use super::{
    ClientInfo, Connected, Detached, Outgoing, PendingWill, Presence, Services, Session,
    SessionState, Stage, SubscriptionEntry,
};
use crate::identity::LiveAcl;
use crate::protocol::{MqttStr, QoS, ReasonCode, Will};
use crate::router::{FilterKey, Message, now_millis};
use crate::store::LoadedSession;

/// A connection's hold on its session.
pub struct Attached {
    /// The session with its attach lock held.
    pub session: Held,
    pub state: SessionState,
    pub session_present: bool,
}

/// Why a CONNECT could not have the session it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// The client id belongs to another user's live or stored session.
    #[error("the client id belongs to another user's session")]
    OwnedByAnother,
    /// The connection holding the session did not let go in time.
    #[error("the session's current connection did not give it back in time")]
    Busy,
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
        session.attach_waiters.fetch_add(1, Ordering::SeqCst);
        Waiting(session)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.attach_waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What an administrator sees of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub client_id: String,
    /// The user it belongs to (`None`: not claimed yet, e.g. a record
    /// from before sessions had owners).
    pub owner: Option<String>,
    pub connected: bool,
    /// Known while the session is detached.
    pub expiry_interval: Option<u32>,
    /// Unix ms; `None` while connected.
    pub disconnected_at: Option<u64>,
    /// When it expires (Unix ms); `None` while connected or never.
    pub expires_at: Option<u64>,
    /// Messages waiting in its queue.
    pub queued: usize,
}

/// User names interned as small numbers, so each session records its
/// owner in four bytes.
#[derive(Default)]
struct Owners {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Owners {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let name: Arc<str> = Arc::from(name);
        self.names.push(name.clone());
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 users");
        self.ids.insert(name, id);
        id
    }

    fn name(&self, id: u32) -> Option<Arc<str>> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.names.get(index).cloned()
    }
}

pub struct Registry {
    services: Arc<Services>,
    /// Keyed by the session itself (looked up by its client id): 8 bytes
    /// a slot instead of a 32-byte id and a pointer.
    sessions: DashMap<ByClientId, ()>,
    owners: Mutex<Owners>,
    deadlines: Arc<Deadlines>,
    stopping: AtomicBool,
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
    /// A registry with its timer task (expiry and delayed wills) running.
    pub fn new(services: Arc<Services>) -> Arc<Registry> {
        let registry = Arc::new(Registry {
            services,
            sessions: DashMap::new(),
            owners: Mutex::default(),
            deadlines: Arc::default(),
            stopping: AtomicBool::new(false),
        });
        tokio::spawn(deadlines::run(
            registry.deadlines.clone(),
            Arc::downgrade(&registry),
        ));
        registry
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

    /// Sessions waiting for their expiry or will delay.
    pub fn pending_deadlines(&self) -> usize {
        self.deadlines.len()
    }

    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
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

    fn remove(&self, session: &Arc<Session>) {
        self.sessions
            .remove_if(session.client_id().as_str(), |k, _| {
                Arc::ptr_eq(&k.0, session)
            });
    }

    /// The name of a session's owner.
    pub fn owner_of(&self, session: &Session) -> Option<Arc<str>> {
        self.owners
            .lock()
            .name(session.owner.load(Ordering::Acquire))
    }

    /// Takes the session for `client_id` on behalf of `owner` (a user name;
    /// `""` for the core's clients without identities), kicking a
    /// connection of the same owner that holds it. Another user's session
    /// is refused without disturbing it; a holder that does not give the
    /// session back within the connect timeout makes this `Busy`.
    pub async fn attach(
        self: &Arc<Self>,
        client_id: &MqttStr,
        clean_start: bool,
        owner: &str,
        connection: Connected,
    ) -> Result<Attached, AttachError> {
        let owner = self.owners.lock().intern(owner);
        let limit = Duration::from_secs(self.services.config.limits.connect_timeout_secs);
        let give_up = tokio::time::Instant::now() + limit;
        loop {
            let session = self.get_or_create(client_id);
            if session.claim(owner) != owner {
                return Err(AttachError::OwnedByAnother);
            }
            let acquired = {
                let _waiting = Waiting::on(&session);
                session.kick(ReasonCode::SESSION_TAKEN_OVER);
                match tokio::time::timeout_at(give_up, session.attach_lock.acquire()).await {
                    Err(_) => return Err(AttachError::Busy),
                    // Kept until `Held` gives it back.
                    Ok(Ok(permit)) => {
                        permit.forget();
                        true
                    }
                    Ok(Err(_)) => false, // only if the lock were closed, which it never is
                }
            };
            if !acquired {
                continue;
            }
            let session = Held(session);
            // The session may have ended while we waited.
            let current = self.get(client_id);
            if !current.is_some_and(|c| Arc::ptr_eq(&c, &session)) {
                continue;
            }
            // A kick meant for the previous holder is spent. SeqCst with
            // the waiters' count below: a kick that lands between the two
            // is either kept or followed by a fresh one.
            session.kick.store(0, Ordering::SeqCst);
            session.generation.fetch_add(1, Ordering::AcqRel);
            let detached = std::mem::replace(
                &mut *session.presence.lock(),
                Presence::Connected(Box::new(connection.clone())),
            );
            let mut state = match detached {
                Presence::Detached(detached) => {
                    self.deadlines.cancel(detached.deadline, &session);
                    let Detached { state, will, .. } = *detached;
                    // Back before its will delay ran out: no will, unless
                    // the session ends here (clean start).
                    if let Some(will) = will.filter(|_| clean_start) {
                        self.fire_will(&session, will);
                    }
                    state
                }
                _ => SessionState::default(),
            };
            if clean_start && state.established {
                self.discard(&session, &mut state);
            }
            let session_present = state.established;
            state.established = true;
            session.mailbox.set_online(true);
            // Someone asked for the session while this connection took it;
            // their kick may have been the one cleared above: leave for
            // them at once.
            if session.attach_waiters.load(Ordering::SeqCst) > 0 {
                session.kick(ReasonCode::SESSION_TAKEN_OVER);
            }
            return Ok(Attached {
                session,
                state,
                session_present,
            });
        }
    }

    /// Drops a session's subscriptions, queue and stored record.
    fn discard(&self, session: &Session, state: &mut SessionState) {
        let router = &self.services.router;
        for entry in state.subscriptions.values() {
            router.unsubscribe(&entry.key, session.client_id());
        }
        // QoS 2 messages already sent to this client end with it (MQTT 5
        // §4.8.2); unsent ones, and QoS 1, may go to another group member.
        let mut leftovers: Vec<_> = state
            .inflight
            .drain()
            .map(|o| o.delivery)
            .filter(|d| d.qos != QoS::ExactlyOnce)
            .collect();
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

    /// Gives the session back when its connection ends. `will` (with the
    /// owner's live permissions) is published after its delay unless the
    /// client returns first; at once when the session ends now.
    pub fn detach(&self, attached: Attached, will: Option<(Will, Arc<LiveAcl>)>) {
        let Attached {
            session: held,
            mut state,
            ..
        } = attached;
        let session = Arc::clone(&held);
        session.mailbox.set_online(false);
        session.kick.store(0, Ordering::Release);
        let now = now_millis();
        let expiry = state.expiry_interval;
        let mut will = will.map(|(will, acl)| {
            let delay = will.properties.will_delay_interval.unwrap_or(0).min(expiry);
            PendingWill {
                message: will_message(will, session.client_id()),
                due: now.saturating_add(u64::from(delay) * 1000),
                acl: Some(acl),
            }
        });
        if let Some(due_now) = will.take_if(|w| w.due <= now) {
            self.fire_will(&session, due_now);
        }
        if expiry == 0 {
            *session.presence.lock() = Presence::Gone;
            self.discard(&session, &mut state);
            self.remove(&session);
            drop(held);
            return;
        }
        let mut detached = Box::new(Detached {
            state,
            disconnected_at: now,
            will,
            deadline: 0,
        });
        self.persist(&session, &detached);
        detached.state.stored = true;
        detached.deadline = detached.next_due().unwrap_or(0);
        let deadline = detached.deadline;
        *session.presence.lock() = Presence::Detached(detached);
        // Armed once the lock is back: a timer that fired while the lock
        // was still held would take the session for connected.
        drop(held);
        if deadline != 0 {
            self.deadlines.arm(deadline, &session);
        }
    }

    /// Writes a detached session's record (with its will, if one waits).
    fn persist(&self, session: &Session, detached: &Detached) {
        let owner = self.owner_of(session);
        let mut record = detached.state.record(owner.as_deref());
        record.disconnected_at = detached.disconnected_at;
        record.will = detached.will.as_ref().map(|w| (w.message.clone(), w.due));
        self.services
            .store
            .put_session(session.client_id(), &record);
    }

    /// Publishes a will if its owner may still publish it: not revoked
    /// (disabled, deleted, certificate revoked) and still allowed to write
    /// its topic.
    fn fire_will(&self, session: &Session, will: PendingWill) {
        let topic = &will.message.topic;
        let allowed = match (&will.acl, &self.services.will_check) {
            (Some(acl), _) => !acl.is_revoked() && acl.load().can_publish(topic),
            (None, Some(check)) => {
                let owner = self.owner_of(session);
                check.may_publish_will(owner.as_deref().unwrap_or(""), session.client_id(), topic)
            }
            (None, None) => true,
        };
        if allowed {
            self.services.publish(will.message);
        } else {
            tracing::info!(client_id = %session.client_id(), %topic, "will not published: its owner may no longer publish it");
        }
    }

    /// The timer reached `due` for `session`: publish its will, or end it.
    pub(super) fn deadline_reached(&self, due: u64, session: &Arc<Session>) {
        let Ok(permit) = session.attach_lock.try_acquire() else {
            return; // connected again (its attach cancelled the timer)
        };
        let now = now_millis();
        let mut slot = session.presence.lock();
        let Some(detached) = slot.detached().filter(|d| d.deadline == due) else {
            return; // a stale entry: the session was re-armed or ended
        };
        let will = detached.will.take_if(|w| w.due <= now);
        let expired = detached.expires_at().is_some_and(|at| at <= now);
        if expired {
            let detached = slot.take_detached().expect("checked above");
            drop(slot);
            let Detached {
                mut state,
                will: left,
                ..
            } = *detached;
            // The session ends: a will still waiting goes now (MQTT 5
            // §3.1.2.5).
            for will in will.into_iter().chain(left) {
                self.fire_will(session, will);
            }
            tracing::debug!(client_id = %session.client_id(), "session expired");
            self.discard(session, &mut state);
            self.remove(session);
            drop(permit);
            return;
        }
        detached.deadline = detached.next_due().unwrap_or(0);
        let next = detached.deadline;
        if will.is_some() {
            self.persist(session, detached);
        }
        drop(slot);
        drop(permit);
        if let Some(will) = will {
            self.fire_will(session, will);
        }
        if next != 0 {
            self.deadlines.arm(next, session);
        }
    }

    /// Ends a session (administrative action): its connection, if any, is
    /// closed (v5 DISCONNECT 0x98), a waiting will is published, and its
    /// subscriptions, queue and stored record are removed. `false` when
    /// no such session exists or its connection did not let go in time.
    pub async fn end_session(&self, client_id: &str) -> bool {
        let Some(session) = self.get(client_id) else {
            return false;
        };
        let limit = Duration::from_secs(self.services.config.limits.connect_timeout_secs);
        let acquired = {
            let _waiting = Waiting::on(&session);
            session.kick(ReasonCode::ADMINISTRATIVE_ACTION);
            match tokio::time::timeout(limit, session.attach_lock.acquire()).await {
                Ok(Ok(permit)) => {
                    permit.forget();
                    true
                }
                _ => false,
            }
        };
        if !acquired {
            return false;
        }
        let held = Held(session);
        session_ended_by(self, &held);
        true
    }

    /// Ends every stored session of `owner` (its user was deleted, so no
    /// one may resume them). Connected ones are closed by the revocation
    /// of their permissions and end when they detach.
    pub async fn end_sessions_of(&self, owner: &str) {
        let Some(id) = self.owners.lock().ids.get(owner).copied() else {
            return;
        };
        let owned: Vec<String> = self
            .sessions
            .iter()
            .filter(|s| s.key().0.owner.load(Ordering::Acquire) == id)
            .map(|s| s.key().0.client_id().to_string())
            .collect();
        for client_id in owned {
            self.end_session(&client_id).await;
        }
    }

    /// Connected clients, for administrators, sorted by client id.
    pub fn clients(&self) -> Vec<ClientInfo> {
        let all: Vec<Arc<Session>> = self.sessions.iter().map(|s| s.key().0.clone()).collect();
        let mut clients: Vec<ClientInfo> = all
            .iter()
            .filter_map(|session| {
                let connection = match &*session.presence.lock() {
                    Presence::Connected(connection) => (**connection).clone(),
                    _ => return None,
                };
                let username = self.owner_of(session).filter(|o| !o.is_empty());
                Some(ClientInfo {
                    client_id: session.client_id().to_string(),
                    username: username.map(|o| o.to_string()),
                    connection,
                })
            })
            .collect();
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        clients
    }

    /// Disconnects a connected client (v5 DISCONNECT 0x98); its session
    /// stays as its expiry says. `false` when it is not connected.
    pub fn disconnect(&self, client_id: &str) -> bool {
        let Some(session) = self.get(client_id) else {
            return false;
        };
        if !matches!(*session.presence.lock(), Presence::Connected(_)) {
            return false;
        }
        tracing::info!(%client_id, "client disconnected by an administrator");
        session.kick(ReasonCode::ADMINISTRATIVE_ACTION);
        true
    }

    /// Every session, for administrators, sorted by client id.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let all: Vec<Arc<Session>> = self.sessions.iter().map(|s| s.key().0.clone()).collect();
        let mut infos: Vec<SessionInfo> = all
            .iter()
            .map(|session| {
                let owner = self.owner_of(session).map(|o| o.to_string());
                let mut slot = session.presence.lock();
                let connected = matches!(*slot, Presence::Connected(_));
                let detached = slot.detached().map(|d| &*d);
                SessionInfo {
                    client_id: session.client_id().to_string(),
                    owner,
                    connected,
                    expiry_interval: detached.map(|d| d.state.expiry_interval),
                    disconnected_at: detached.map(|d| d.disconnected_at),
                    expires_at: detached.and_then(Detached::expires_at),
                    queued: session.mailbox.len(),
                }
            })
            .collect();
        infos.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        infos
    }

    /// Kicks every connected client (shutdown or administrative action).
    pub fn kick_all(&self, reason: ReasonCode) {
        for session in self.sessions.iter() {
            session.key().0.kick(reason);
        }
    }

    /// Stops the timer (shutdown): wills and expiries wait for the next
    /// start, where they continue from the stored disconnect times.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.deadlines.stop();
    }

    /// Messages refused by full session queues, over all sessions.
    pub fn dropped_messages(&self) -> u64 {
        self.sessions
            .iter()
            .map(|s| s.key().0.mailbox.dropped())
            .sum()
    }

    /// Messages waiting in session queues: (all of them, the deepest queue).
    pub fn queue_depths(&self) -> (u64, u64) {
        self.sessions.iter().fold((0, 0), |(sum, max), s| {
            let n = s.key().0.mailbox.len() as u64;
            (sum + n, max.max(n))
        })
    }

    /// Recreates persistent sessions found in the store at start-up. Their
    /// expiry and will delay continue from the stored disconnect time (a
    /// session that was connected when the broker stopped counts from now).
    /// QoS 2 deliveries that were in flight go back into the in-flight
    /// window with their packet ids, to be resent as they were.
    pub fn restore(&self, sessions: Vec<LoadedSession>) {
        let now = now_millis();
        for loaded in sessions {
            let LoadedSession {
                client_id,
                record,
                deliveries,
                inbound_qos2,
            } = loaded;
            let Some(client_id) = MqttStr::from_bytes(client_id.into()) else {
                tracing::warn!("skipping a stored session with an invalid client id");
                continue;
            };
            let session = self.get_or_create(&client_id);
            if let Some(owner) = &record.owner {
                session.claim(self.owners.lock().intern(owner));
            }
            session.mailbox.set_log(Some(
                self.services.store.clone() as Arc<dyn crate::router::DeliveryLog>
            ));
            let mut state = SessionState {
                established: true,
                stored: true,
                expiry_interval: record.expiry_interval,
                ..SessionState::default()
            };
            let mut queued = Vec::with_capacity(deliveries.len());
            for (delivery, stage) in deliveries {
                match stage {
                    Some(stage) => state.inflight.push(Outgoing {
                        packet_id: stage.packet_id,
                        stage: if stage.released {
                            Stage::AwaitPubComp
                        } else {
                            Stage::AwaitPubRec
                        },
                        delivery,
                        resend: true,
                    }),
                    None => queued.push(delivery),
                }
            }
            session.mailbox.restore(queued);
            for id in inbound_qos2 {
                state.inbound_qos2.insert(id);
            }
            for (raw, options, id) in record.subscriptions {
                let Some(key) = FilterKey::parse(&raw) else {
                    continue;
                };
                state
                    .subscriptions
                    .insert(raw, SubscriptionEntry { key, options, id });
            }
            let overlapping = state.overlapping();
            for entry in state.subscriptions.values() {
                self.services.router.subscribe(
                    &entry.key,
                    &session.mailbox,
                    entry.options,
                    entry.id,
                    overlapping,
                );
            }
            let disconnected_at = match record.disconnected_at {
                0 => now,
                at => at,
            };
            let mut detached = Box::new(Detached {
                state,
                disconnected_at,
                will: record.will.map(|(message, due)| PendingWill {
                    message,
                    due,
                    acl: None,
                }),
                deadline: 0,
            });
            detached.deadline = detached.next_due().unwrap_or(0);
            let deadline = detached.deadline;
            *session.presence.lock() = Presence::Detached(detached);
            if deadline != 0 {
                self.deadlines.arm(deadline, &session);
            }
        }
    }
}

/// Ends a session whose attach lock `held` holds (see
/// [`Registry::end_session`]).
fn session_ended_by(registry: &Registry, held: &Held) {
    let session: &Arc<Session> = held;
    let current = registry.get(session.client_id());
    if !current.is_some_and(|c| Arc::ptr_eq(&c, session)) {
        return; // it ended meanwhile
    }
    let mut state = match session.take_detached() {
        Some(detached) => {
            registry.deadlines.cancel(detached.deadline, session);
            let Detached { state, will, .. } = *detached;
            if let Some(will) = will {
                registry.fire_will(session, will);
            }
            state
        }
        None => SessionState::default(),
    };
    tracing::info!(client_id = %session.client_id(), "session ended by an administrator");
    registry.discard(session, &mut state);
    registry.remove(session);
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
