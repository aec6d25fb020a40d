//! The MQTT state machine of one connected client: turns received packets
//! into routing and replies, and the mailbox into outgoing PUBLISHes.
//! Pure with respect to I/O: everything it sends is appended to a buffer.

use bytes::BytesMut;
use std::collections::HashMap;
use std::sync::Arc;

use super::acks::{Held, HeldAck};
use super::{
    Attached, Inflight, Outgoing, Persisted, Registry, Services, Stage, SubscriptionEntry,
};
use crate::auth::Identity;
use crate::config::OnPublishDenied;
use crate::identity::Wakeup;
use crate::metrics::Metrics;
use crate::protocol::{
    self, Auth, Disconnect, MqttStr, Packet, Properties, ProtocolVersion, PubResponse, Publish,
    QoS, ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe, Will,
};
use crate::router::{Delivery, DeliveryLog, FilterKey, Mailbox, Message, SubscriptionIds};
use crate::store::StoredStage;

/// Why and how a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    pub reason: ReasonCode,
    /// Publish the will (anything but a normal DISCONNECT).
    pub publish_will: bool,
    /// Tell a v5 client why with a DISCONNECT packet.
    pub notify: bool,
}

impl Close {
    /// A protocol violation or server-side reason: will, and DISCONNECT (v5).
    pub fn error(reason: ReasonCode) -> Close {
        Close {
            reason,
            publish_will: true,
            notify: true,
        }
    }

    /// The network connection is gone (or useless: the peer stopped
    /// reading): will, no DISCONNECT.
    pub fn lost() -> Close {
        Close {
            reason: ReasonCode::UNSPECIFIED_ERROR,
            publish_will: true,
            notify: false,
        }
    }

    /// The broker is stopping: DISCONNECT (v5), and no will.
    pub fn shutdown() -> Close {
        Close {
            reason: ReasonCode::SERVER_SHUTTING_DOWN,
            publish_will: false,
            notify: true,
        }
    }
}

/// What CONNECT negotiated.
pub struct ConnectParams {
    pub version: ProtocolVersion,
    pub client_id: MqttStr,
    pub identity: Identity,
    pub will: Option<Will>,
    pub expiry_interval: u32,
    /// The client's receive maximum (our outbound window).
    pub receive_maximum: u16,
    /// The client's maximum packet size.
    pub maximum_packet_size: usize,
    /// How many topic aliases the client accepts from us.
    pub topic_alias_maximum: u16,
}

/// Topic aliases in use, both ways: boxed on first use, most clients
/// never use one.
#[derive(Default)]
pub(super) struct TopicAliases {
    /// Inbound (index = alias - 1), grown on use.
    pub(super) inbound: Vec<Option<MqttStr>>,
    pub(super) outbound: HashMap<MqttStr, u16>,
}

/// Every connection keeps one for its whole life (hibernating ones too),
/// so what most clients never use is boxed on first use.
pub struct ClientSession {
    pub(super) services: Arc<Services>,
    pub(super) attached: Option<Attached>,
    /// Also the session's client id (`client_id()`).
    pub(super) mailbox: Arc<Mailbox>,
    pub(super) version: ProtocolVersion,
    pub identity: Identity,
    /// Boxed: most sessions have none, and a will is ~500 bytes inline.
    pub(super) will: Option<Box<Will>>,
    pub(super) window: u16,
    pub(super) alias_out_max: u16,
    pub(super) max_packet_out: u32,
    pub(super) aliases: Option<Box<TopicAliases>>,
    /// What waits for the store (see `acks.rs`).
    pub(super) held: Option<Box<Held>>,
    pub(super) acl_version: u64,
    /// Our registration with the `LiveAcl` (woken on revocation).
    acl_watch: u32,
}

impl Drop for ClientSession {
    fn drop(&mut self) {
        self.identity.acl.unwatch(self.acl_watch as usize);
    }
}

impl ClientSession {
    pub fn new(services: Arc<Services>, mut attached: Attached, params: ConnectParams) -> Self {
        let mailbox = attached.session.mailbox.clone();
        attached.state.expiry_interval = params.expiry_interval;
        let log =
            (params.expiry_interval > 0).then(|| services.store.clone() as Arc<dyn DeliveryLog>);
        mailbox.set_log(log);
        if params.expiry_interval > 0 {
            let owner = params.identity.username();
            services
                .store
                .put_session(&params.client_id, &attached.state.record(owner));
            attached.state.stored = true;
        }
        let limits = &services.config.limits;
        // One behind: the first pump checks the session's subscriptions
        // against this connection's permissions (they may have changed
        // while the client was away).
        let acl_version = params.identity.acl.version().wrapping_sub(1);
        // A revocation wakes the connection through its mailbox; the
        // connection then finds `is_revoked` and closes.
        let watcher: std::sync::Weak<dyn Wakeup> = Arc::downgrade(&mailbox) as _;
        let acl_watch = params.identity.acl.watch(watcher);
        // A slot per connection of one user: far below 2^32.
        let acl_watch = u32::try_from(acl_watch).expect("fewer than 2^32 connections");
        ClientSession {
            window: params.receive_maximum.min(limits.max_inflight),
            max_packet_out: u32::try_from(params.maximum_packet_size).unwrap_or(u32::MAX),
            aliases: None,
            alias_out_max: params.topic_alias_maximum,
            services,
            attached: Some(attached),
            mailbox,
            version: params.version,
            identity: params.identity,
            will: params.will.map(Box::new),
            held: None,
            acl_version,
            acl_watch,
        }
    }

    pub(super) fn attached(&mut self) -> &mut Attached {
        self.attached.as_mut().expect("attached until finish")
    }

    pub fn mailbox(&self) -> &Arc<Mailbox> {
        &self.mailbox
    }

    pub fn client_id(&self) -> &MqttStr {
        self.mailbox.client_id()
    }

    pub fn session_present(&self) -> bool {
        self.attached.as_ref().is_some_and(|a| a.session_present)
    }

    /// Why this connection must leave (another connection took the
    /// session over, or shutdown), once it must. The
    /// mailbox's wake-up tells the connection to look.
    pub fn kicked(&self) -> Option<ReasonCode> {
        self.attached.as_ref().and_then(|a| a.session.kicked())
    }

    fn write(&self, packet: &Packet, out: &mut BytesMut) {
        protocol::encode(packet, self.version, out);
    }

    /// Handles one packet from the client.
    pub fn handle(&mut self, packet: Packet, out: &mut BytesMut) -> Result<(), Close> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, out),
            Packet::PubAck(ack) => {
                self.complete(ack.packet_id, Stage::AwaitPubAck);
                Ok(())
            }
            Packet::PubRec(rec) => {
                if rec.reason.is_error() {
                    self.complete(rec.packet_id, Stage::AwaitPubRec);
                } else {
                    let reason = match self.attached().state.inflight.released(rec.packet_id) {
                        Some(seq) => {
                            // The PUBREL stage goes to the disk before the
                            // PUBREL goes out: a restart then resends the
                            // PUBREL, never the PUBLISH again.
                            let stage = StoredStage {
                                packet_id: rec.packet_id,
                                released: true,
                            };
                            if seq != 0 {
                                self.services.store.stage(self.client_id(), seq, stage);
                                self.hold_output();
                            }
                            ReasonCode::SUCCESS
                        }
                        None => ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                    };
                    self.write(
                        &Packet::PubRel(PubResponse::new(rec.packet_id, reason)),
                        out,
                    );
                }
                Ok(())
            }
            Packet::PubComp(comp) => {
                self.complete(comp.packet_id, Stage::AwaitPubComp);
                Ok(())
            }
            Packet::PubRel(rel) => {
                let id = rel.packet_id;
                if !self.attached().state.inbound_qos2.remove(&id) {
                    let reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                    self.write(&Packet::PubComp(PubResponse::new(id, reason)), out);
                    return Ok(());
                }
                let mut persisted = Persisted::Nothing;
                if self.persistent() {
                    // Released on the disk before PUBCOMP: after a restart
                    // a reused id must not look like a duplicate.
                    self.services
                        .store
                        .inbound_qos2(self.client_id(), id, false);
                    persisted = Persisted::AwaitCommit(self.services.store.submitted());
                }
                self.acknowledge(HeldAck::PubComp(id), persisted, out);
                Ok(())
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe, out),
            Packet::Unsubscribe(unsubscribe) => {
                self.on_unsubscribe(unsubscribe, out);
                Ok(())
            }
            Packet::PingReq => {
                self.write(&Packet::PingResp, out);
                Ok(())
            }
            Packet::Disconnect(disconnect) => Err(self.on_disconnect(disconnect)),
            Packet::Connect(_) => Err(Close::error(ReasonCode::PROTOCOL_ERROR)),
            Packet::Auth(auth) => self.on_auth(auth, out),
            // Server-to-client packets.
            _ => Err(Close::error(ReasonCode::PROTOCOL_ERROR)),
        }
    }

    /// MQTT 5 re-authentication (§4.12.1), Gatehouse's `gatehouse-token`
    /// method only: AUTH 0x19 carries a fresh token of the same user; the
    /// connection's `LiveAcl` is rebound to it (its expiry becomes the
    /// session's deadline) and AUTH 0x00 answers. A refused token closes
    /// the connection (0x87); AUTH from a connection that did not connect
    /// with the method, or with another reason, is a protocol error (0x82).
    /// No state is added here: the binding lives in the `LiveAcl`.
    fn on_auth(&mut self, auth: Auth, out: &mut BytesMut) -> Result<(), Close> {
        if auth.reason != ReasonCode::REAUTHENTICATE {
            return Err(Close::error(ReasonCode::PROTOCOL_ERROR));
        }
        let props = auth.properties;
        self.identity
            .acl
            .reauthenticate(
                props.authentication_method.as_deref(),
                props.authentication_data.as_deref(),
            )
            .map_err(Close::error)?;
        let reply = Auth {
            reason: ReasonCode::SUCCESS,
            properties: Properties {
                authentication_method: props.authentication_method,
                ..Properties::default()
            },
        };
        self.write(&Packet::Auth(reply), out);
        Ok(())
    }

    fn on_disconnect(&mut self, disconnect: Disconnect) -> Close {
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            let max = self.services.config.limits.max_session_expiry_secs;
            let state = &mut self.attached().state;
            if state.expiry_interval == 0 && expiry != 0 {
                return Close::error(ReasonCode::PROTOCOL_ERROR);
            }
            state.expiry_interval = expiry.min(max);
        }
        Close {
            reason: ReasonCode::NORMAL_DISCONNECTION,
            publish_will: disconnect.reason == ReasonCode::DISCONNECT_WITH_WILL,
            notify: false,
        }
    }

    fn on_publish(&mut self, mut publish: Publish, out: &mut BytesMut) -> Result<(), Close> {
        if let Some(alias) = publish.properties.topic_alias {
            let max = usize::from(self.services.config.limits.topic_alias_maximum);
            let slot = usize::from(alias)
                .checked_sub(1)
                .filter(|&i| i < max)
                .ok_or(Close::error(ReasonCode::TOPIC_ALIAS_INVALID))?;
            let inbound = &mut self.aliases.get_or_insert_default().inbound;
            if inbound.len() <= slot {
                inbound.resize(slot + 1, None);
            }
            if publish.topic.is_empty() {
                publish.topic = inbound[slot]
                    .clone()
                    .ok_or(Close::error(ReasonCode::PROTOCOL_ERROR))?;
            } else {
                inbound[slot] = Some(publish.topic.clone());
            }
        }
        if publish.topic.is_empty() {
            return Err(Close::error(ReasonCode::PROTOCOL_ERROR));
        }
        if let Some(prefix) = &self.identity.publish_prefix {
            publish.topic = prefixed(prefix, &publish.topic)
                .ok_or(Close::error(ReasonCode::TOPIC_NAME_INVALID))?;
        }
        let (qos, packet_id) = (publish.qos, publish.packet_id);
        if qos == QoS::ExactlyOnce && self.attached().state.inbound_qos2.contains(&packet_id) {
            // A resend of a message we already routed: acknowledge again
            // only, and not before the first copy's commit.
            self.acknowledge(HeldAck::PubRec(packet_id), Persisted::Nothing, out);
            return Ok(());
        }
        if qos != QoS::AtMostOnce
            && self.version == ProtocolVersion::V5
            && self.inbound_in_flight() >= usize::from(self.services.config.limits.receive_maximum)
        {
            return Err(Close::error(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED));
        }
        if !self.identity.acl.load().can_publish(&publish.topic) {
            return self.publish_denied(&publish, out);
        }
        if publish.retain && !self.services.config.mqtt.retain_available {
            return Err(Close::error(ReasonCode::RETAIN_NOT_SUPPORTED));
        }
        let store = &self.services.store;
        if qos != QoS::AtMostOnce && !store.is_healthy() && self.services.would_persist(&publish) {
            // Refused before routing: a retry must not fan out copies.
            return self.refuse_unstored(qos, packet_id, out);
        }
        let keep_id = qos == QoS::ExactlyOnce && self.persistent();
        let message = Message::from_publish(publish, Some(self.client_id().clone()));
        let client_id = self.mailbox.client_id();
        let persisted = self.services.publish_with(message, || {
            if keep_id {
                // In the same transaction as the message: a resend after a
                // restart is recognised, and never routed twice.
                store.inbound_qos2(client_id, packet_id, true);
            }
        });
        if persisted == Persisted::Unstored && qos != QoS::AtMostOnce {
            // Shutdown closed the store between the health check and now.
            return Err(Close::shutdown());
        }
        let ack = match qos {
            QoS::AtMostOnce => return Ok(()),
            QoS::AtLeastOnce => HeldAck::PubAck(packet_id),
            QoS::ExactlyOnce => {
                self.attached().state.inbound_qos2.insert(packet_id);
                HeldAck::PubRec(packet_id)
            }
        };
        self.acknowledge(ack, persisted, out);
        Ok(())
    }

    /// A PUBLISH without write permission: dropped, logged and counted;
    /// v5 hears 0x87 in its PUBACK/PUBREC, 3.1.1 a plain acknowledgement
    /// (it has no way to be told, and would otherwise resend forever).
    fn publish_denied(&mut self, publish: &Publish, out: &mut BytesMut) -> Result<(), Close> {
        Metrics::add(&self.services.metrics.publish_denied, 1);
        tracing::warn!(
            client_id = self.client_id().as_str(),
            username = self.identity.username().unwrap_or(""),
            topic = %publish.topic,
            "publish denied"
        );
        if self.services.config.auth.on_publish_denied == OnPublishDenied::Disconnect {
            return Err(Close::error(ReasonCode::NOT_AUTHORIZED));
        }
        let reason = match self.version {
            ProtocolVersion::V5 => ReasonCode::NOT_AUTHORIZED,
            ProtocolVersion::V311 => ReasonCode::SUCCESS,
        };
        let id = publish.packet_id;
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.write(&Packet::PubAck(PubResponse::new(id, reason)), out),
            QoS::ExactlyOnce => {
                if !reason.is_error() {
                    self.attached().state.inbound_qos2.insert(id);
                }
                self.write(&Packet::PubRec(PubResponse::new(id, reason)), out);
            }
        }
        Ok(())
    }

    fn on_subscribe(&mut self, subscribe: Subscribe, out: &mut BytesMut) -> Result<(), Close> {
        let id = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let acl = self.identity.acl.load_full();
        let overlapped = self.attached().state.overlapping();
        for (raw, options) in subscribe.filters {
            let Some(key) = FilterKey::parse(&raw) else {
                reasons.push(ReasonCode::TOPIC_FILTER_INVALID);
                continue;
            };
            if !acl.can_subscribe(&key.filter) {
                Metrics::add(&self.services.metrics.subscribe_denied, 1);
                tracing::warn!(
                    client_id = self.client_id().as_str(),
                    filter = raw.as_str(),
                    "subscribe denied"
                );
                reasons.push(ReasonCode::NOT_AUTHORIZED);
                continue;
            }
            if key.group.is_some() && options.no_local {
                return Err(Close::error(ReasonCode::PROTOCOL_ERROR));
            }
            let existed =
                self.services
                    .router
                    .subscribe(&key, &self.mailbox, options, id, overlapped);
            let send_retained = key.group.is_none()
                && match options.retain_handling {
                    0 => true,
                    1 => !existed,
                    _ => false,
                };
            if send_retained {
                for message in self.services.router.retained().matching(&key.filter) {
                    self.mailbox.push(Delivery {
                        qos: message.qos.min(options.qos),
                        message,
                        retain: true,
                        subscription_ids: SubscriptionIds::from_option(id),
                        shared: None,
                        seq: 0,
                    });
                }
            }
            self.attached()
                .state
                .subscriptions
                .insert(raw.to_string(), SubscriptionEntry { key, options, id });
            reasons.push(ReasonCode(options.qos as u8));
        }
        self.sync_overlaps(overlapped);
        self.persist_session();
        let ack = SubAck {
            packet_id: subscribe.packet_id,
            reasons,
            properties: Properties::default(),
        };
        self.write(&Packet::SubAck(ack), out);
        Ok(())
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe, out: &mut BytesMut) {
        let overlapped = self.attached().state.overlapping();
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for raw in unsubscribe.filters {
            let removed = self.attached().state.subscriptions.remove(raw.as_str());
            let reason = match removed {
                Some(entry) => {
                    self.services
                        .router
                        .unsubscribe(&entry.key, self.client_id());
                    ReasonCode::SUCCESS
                }
                None => ReasonCode::NO_SUBSCRIPTION_EXISTED,
            };
            reasons.push(reason);
        }
        self.sync_overlaps(overlapped);
        self.persist_session();
        let ack = UnsubAck {
            packet_id: unsubscribe.packet_id,
            reasons,
            properties: Properties::default(),
        };
        self.write(&Packet::UnsubAck(ack), out);
    }

    /// Keeps the router's `overlapping` flags true to the client's plain
    /// subscriptions after they changed (`was`: the flag before).
    pub(super) fn sync_overlaps(&mut self, was: bool) {
        let state = &self.attached.as_ref().expect("attached").state;
        let now = state.overlapping();
        if now == was {
            return;
        }
        for entry in state.subscriptions.values() {
            self.services
                .router
                .subscribe(&entry.key, &self.mailbox, entry.options, entry.id, now);
        }
    }

    /// The session outlives the connection (its state is stored).
    pub(super) fn persistent(&self) -> bool {
        self.attached
            .as_ref()
            .is_some_and(|a| a.state.expiry_interval > 0)
    }

    pub(super) fn persist_session(&mut self) {
        let state = &mut self.attached.as_mut().expect("attached").state;
        if state.expiry_interval > 0 {
            self.services.store.put_session(
                self.mailbox.client_id(),
                &state.record(self.identity.acl.username.as_deref()),
            );
            state.stored = true;
        }
    }

    fn complete(&mut self, packet_id: u16, stage: Stage) {
        if let Some(done) = self.attached().state.inflight.complete(packet_id, stage) {
            self.services.store.dequeue(done.delivery.seq);
        }
    }

    /// Ends the connection's hold on the session. Unacknowledged messages
    /// that came through a shared subscription go to another member.
    pub fn finish(mut self, registry: &Arc<Registry>, close: Close) {
        let Some(mut attached) = self.attached.take() else {
            return;
        };
        let router = &self.services.router;
        let inflight = std::mem::take(&mut attached.state.inflight);
        let mut kept = Inflight::default();
        for entry in into_entries(inflight) {
            // A QoS 2 message that reached this member is never sent to
            // another (MQTT 5 §4.8.2); a QoS 1 one may be.
            let shared = entry.delivery.shared.is_some() && entry.delivery.qos == QoS::AtLeastOnce;
            if shared && router.redeliver_shared(entry.delivery.clone(), self.client_id()) {
                self.services.store.dequeue(entry.delivery.seq);
            } else {
                kept.push(entry);
            }
        }
        attached.state.inflight = kept;
        let will = if close.publish_will {
            let acl = self.identity.acl.clone();
            self.will.take().map(|will| (*will, acl))
        } else {
            None
        };
        registry.detach(attached, will);
    }
}

fn into_entries(mut inflight: Inflight) -> Vec<Outgoing> {
    inflight.drain().collect()
}

/// `prefix` + `topic`, if the result is still a valid MQTT string.
fn prefixed(prefix: &MqttStr, topic: &MqttStr) -> Option<MqttStr> {
    let mut joined = BytesMut::with_capacity(prefix.len() + topic.len());
    joined.extend_from_slice(prefix.as_bytes());
    joined.extend_from_slice(topic.as_bytes());
    MqttStr::from_bytes(joined.freeze())
}
