//! The outbound half of a client session: mailbox deliveries onto the
//! wire within the client's receive maximum, resends after a reconnect,
//! outgoing topic aliases, and pruning subscriptions after a revoke.

use bytes::BytesMut;

use super::{ClientSession, Outgoing, Stage};
use crate::identity::Acl;
use crate::metrics::{Metrics, Sent};
use crate::protocol::{
    self, MqttStr, Packet, Properties, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode,
};
use crate::router::{Delivery, now_millis};
use crate::store::StoredStage;

/// Bytes encoded per turn of the connection loop before it writes.
const PUMP_BUDGET: usize = 64 * 1024;

/// Why a delivery was not written to this client (it is dropped for this
/// session only, and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The message expired on its way (MQTT 5 §3.3.2.3.3).
    Expired,
    /// The subscriber may no longer read the topic.
    Denied,
    /// Larger than the client's maximum packet size (MQTT 5 §3.1.2.11.4).
    TooLarge,
}

impl ClientSession {
    /// Re-sends what was in flight when the client last left (DUP set),
    /// as far as this connection's receive maximum allows; the rest goes
    /// out from [`pump`](Self::pump) as acknowledgements make room.
    pub fn resend_inflight(&mut self, out: &mut BytesMut) {
        self.attached().state.inflight.mark_for_resend();
        self.resend_pending(out, &self.identity.acl.load_full(), now_millis());
    }

    /// Room in the client's receive maximum for another PUBLISH.
    fn room(&self) -> usize {
        let inflight = &self.attached.as_ref().expect("attached").state.inflight;
        usize::from(self.window).saturating_sub(inflight.in_window())
    }

    /// Resends waiting entries in order while there is room: a PUBREL
    /// always (it adds nothing to the client's count), a PUBLISH when it
    /// fits the window and still passes the delivery checks.
    fn resend_pending(&mut self, out: &mut BytesMut, acl: &Acl, now: u64) {
        loop {
            let room = self.room();
            let inflight = &self.attached.as_ref().expect("attached").state.inflight;
            let Some((index, entry)) = inflight.next_resend() else {
                return;
            };
            let packet = match entry.stage {
                Stage::AwaitPubComp => {
                    Packet::PubRel(PubResponse::new(entry.packet_id, ReasonCode::SUCCESS))
                }
                _ if room == 0 => return,
                _ => {
                    let publish =
                        self.outgoing_publish(&entry.delivery, entry.packet_id, true, None);
                    let packet = Packet::Publish(publish);
                    if let Err(why) = self.deliverable(&entry.delivery, &packet, acl, now) {
                        let entry = self.attached().state.inflight.remove_at(index);
                        if let Some(entry) = entry {
                            self.refused(&entry.delivery, why);
                        }
                        continue;
                    }
                    packet
                }
            };
            protocol::encode(&packet, self.version, out);
            self.attached().state.inflight.resent(index);
        }
    }

    /// The checks every PUBLISH to the client passes, whichever path
    /// writes it: not expired, readable under the live ACL, and within
    /// the client's maximum packet size.
    fn deliverable(
        &self,
        delivery: &Delivery,
        packet: &Packet,
        acl: &Acl,
        now: u64,
    ) -> Result<(), Refusal> {
        let message = &delivery.message;
        if message.is_expired(now) {
            Err(Refusal::Expired)
        } else if !acl.can_receive(&message.topic) {
            Err(Refusal::Denied)
        } else if protocol::encoded_len(packet, self.version) > self.max_packet_out as usize {
            Err(Refusal::TooLarge)
        } else {
            Ok(())
        }
    }

    /// Drops a refused delivery for this session: off the store, counted.
    fn refused(&self, delivery: &Delivery, why: Refusal) {
        self.services.store.dequeue(delivery.seq);
        let metrics = &self.services.metrics;
        let counter = match why {
            Refusal::Expired => &metrics.messages_expired,
            Refusal::Denied => &metrics.deliveries_denied,
            Refusal::TooLarge => &metrics.messages_too_large,
        };
        Metrics::add(counter, 1);
        tracing::debug!(client_id = %self.client_id(), topic = %delivery.message.topic, ?why, "delivery dropped");
    }

    /// Moves deliveries from the mailbox onto the wire, within the client's
    /// receive maximum (resends first).
    /// Returns true when it stopped at its write budget with more to send:
    /// the connection then writes and comes back without waiting, so a deep
    /// backlog drains in bounded, reusable buffers rather than one huge one.
    pub fn pump(&mut self, out: &mut BytesMut, batch: &mut Vec<Delivery>) -> bool {
        let mut sent = Sent::default();
        let mut more = false;
        let now = now_millis();
        if self.identity.acl.version() != self.acl_version {
            self.prune_subscriptions();
        }
        let acl = self.identity.acl.load_full();
        if self.attached().state.inflight.has_resends() {
            self.resend_pending(out, &acl, now);
            if self.attached().state.inflight.has_resends() {
                return false; // no room: new messages wait behind the resends
            }
        }
        loop {
            let room = self.room();
            if out.len() >= PUMP_BUDGET {
                more = room > 0 && !self.mailbox.is_empty();
                break;
            }
            self.mailbox.pop_into(room.min(64), batch);
            if batch.is_empty() {
                break;
            }
            for delivery in batch.drain(..) {
                let packet_id = match delivery.qos {
                    QoS::AtMostOnce => 0,
                    _ => self.attached().state.inflight.next_packet_id(),
                };
                let alias = self.topic_alias_for(&delivery.message.topic);
                let publish =
                    Packet::Publish(self.outgoing_publish(&delivery, packet_id, false, alias));
                if let Err(why) = self.deliverable(&delivery, &publish, &acl, now) {
                    self.refused(&delivery, why);
                    continue;
                }
                if let Some((alias, true)) = alias {
                    // Assigned only now that the message is sent: a client
                    // must learn an alias from the message that sets it.
                    self.aliases
                        .get_or_insert_default()
                        .outbound
                        .insert(delivery.message.topic.clone(), alias);
                }
                if delivery.qos == QoS::ExactlyOnce && delivery.seq != 0 {
                    // Its packet id goes to the disk before the packet goes
                    // on the wire: a restart resends this very packet.
                    let stage = StoredStage {
                        packet_id,
                        released: false,
                    };
                    self.services
                        .store
                        .stage(self.client_id(), delivery.seq, stage);
                    self.hold_output();
                }
                protocol::encode(&publish, self.version, out);
                sent.add(delivery.qos, delivery.message.payload.len());
                if delivery.qos != QoS::AtMostOnce {
                    let stage = match delivery.qos {
                        QoS::AtLeastOnce => Stage::AwaitPubAck,
                        _ => Stage::AwaitPubRec,
                    };
                    self.attached().state.inflight.push(Outgoing {
                        packet_id,
                        delivery,
                        stage,
                        resend: false,
                    });
                }
            }
        }
        self.services.metrics.sent(&sent);
        more
    }

    /// After a permission change: drops subscriptions the client may no
    /// longer hold (deliveries are checked one by one in any case).
    fn prune_subscriptions(&mut self) {
        self.acl_version = self.identity.acl.version();
        let overlapped = self.attached().state.overlapping();
        let acl = self.identity.acl.load_full();
        let router = &self.services.router;
        let client_id = self.mailbox.client_id();
        let state = &mut self.attached.as_mut().expect("attached").state;
        let before = state.subscriptions.len();
        state.subscriptions.retain(|raw, entry| {
            let keep = acl.can_subscribe(&entry.key.filter);
            if !keep {
                tracing::info!(%client_id, filter = %raw, "subscription removed: permission revoked");
                router.unsubscribe(&entry.key, client_id);
            }
            keep
        });
        if state.subscriptions.len() != before {
            self.sync_overlaps(overlapped);
            self.persist_session();
        }
    }

    /// (alias, new: send the topic too and record the alias once sent)
    /// for an outgoing topic, when the client accepts aliases.
    fn topic_alias_for(&mut self, topic: &MqttStr) -> Option<(u16, bool)> {
        if self.alias_out_max == 0 {
            return None;
        }
        let outbound = &self.aliases.get_or_insert_default().outbound;
        if let Some(&alias) = outbound.get(topic) {
            return Some((alias, false));
        }
        if outbound.len() < usize::from(self.alias_out_max) {
            let alias = outbound.len() as u16 + 1;
            return Some((alias, true));
        }
        None
    }

    fn outgoing_publish(
        &self,
        delivery: &Delivery,
        packet_id: u16,
        dup: bool,
        alias: Option<(u16, bool)>,
    ) -> Publish {
        let message = &delivery.message;
        let mut properties = Properties::default();
        if self.version == ProtocolVersion::V5 {
            properties = message.properties.clone();
            properties.message_expiry_interval = message.remaining_expiry(now_millis());
            properties
                .subscription_identifiers
                .extend(delivery.subscription_ids.iter());
            properties.topic_alias = alias.map(|(a, _)| a);
        }
        let topic = match alias {
            Some((_, false)) => MqttStr::default(),
            _ => message.topic.clone(),
        };
        Publish {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic,
            packet_id,
            properties,
            payload: message.payload.clone(),
        }
    }
}
