//! The outbound half of a client session: mailbox deliveries onto the
//! wire within the client's receive maximum, resends after a reconnect,
//! outgoing topic aliases, and pruning subscriptions after a revoke.

use bytes::BytesMut;

use super::{ClientSession, Outgoing, Stage};
use crate::metrics::Metrics;
use crate::protocol::{
    self, MqttStr, Packet, Properties, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode,
};
use crate::router::{Delivery, now_millis};

/// Bytes encoded per turn of the connection loop before it writes.
const PUMP_BUDGET: usize = 64 * 1024;

impl ClientSession {
    /// Re-sends what was in flight when the client last left (DUP set).
    pub fn resend_inflight(&mut self, out: &mut BytesMut) {
        let attached = self.attached.as_ref().expect("attached");
        for entry in attached.state.inflight.iter() {
            let packet = match entry.stage {
                Stage::AwaitPubComp => {
                    Packet::PubRel(PubResponse::new(entry.packet_id, ReasonCode::SUCCESS))
                }
                _ => Packet::Publish(self.outgoing_publish(
                    &entry.delivery,
                    entry.packet_id,
                    true,
                    None,
                )),
            };
            protocol::encode(&packet, self.version, out);
        }
    }

    /// Moves deliveries from the mailbox onto the wire, within the client's
    /// receive maximum. Returns how many were written.
    /// Returns true when it stopped at its write budget with more to send:
    /// the connection then writes and comes back without waiting, so a deep
    /// backlog drains in bounded, reusable buffers rather than one huge one.
    pub fn pump(&mut self, out: &mut BytesMut, batch: &mut Vec<Delivery>) -> bool {
        let mut written = 0;
        let mut more = false;
        let now = now_millis();
        if self.identity.acl.version() != self.acl_version {
            self.prune_subscriptions();
        }
        let acl = self.identity.acl.load_full();
        loop {
            let room =
                usize::from(self.window).saturating_sub(self.attached().state.inflight.len());
            if out.len() >= PUMP_BUDGET {
                more = room > 0 && !self.mailbox.is_empty();
                break;
            }
            self.mailbox.pop_into(room.min(64), batch);
            if batch.is_empty() {
                break;
            }
            for delivery in batch.drain(..) {
                if delivery.message.is_expired(now) || !acl.can_receive(&delivery.message.topic) {
                    self.services.store.dequeue(delivery.seq);
                    continue;
                }
                let packet_id = match delivery.qos {
                    QoS::AtMostOnce => 0,
                    _ => self.attached().state.inflight.next_packet_id(),
                };
                let alias = self.topic_alias_for(&delivery.message.topic);
                let publish =
                    Packet::Publish(self.outgoing_publish(&delivery, packet_id, false, alias));
                if protocol::encoded_len(&publish, self.version) > self.max_packet_out as usize {
                    // MQTT 5 3.1.2.11.4: too large for the client, discard.
                    self.services.store.dequeue(delivery.seq);
                    continue;
                }
                protocol::encode(&publish, self.version, out);
                written += 1;
                if delivery.qos != QoS::AtMostOnce {
                    let stage = match delivery.qos {
                        QoS::AtLeastOnce => Stage::AwaitPubAck,
                        _ => Stage::AwaitPubRec,
                    };
                    self.attached().state.inflight.push(Outgoing {
                        packet_id,
                        delivery,
                        stage,
                    });
                }
            }
        }
        Metrics::add(&self.services.metrics.messages_sent, written as u64);
        more
    }

    /// After a permission change: drops subscriptions the client may no
    /// longer hold (deliveries are checked one by one in any case).
    fn prune_subscriptions(&mut self) {
        self.acl_version = self.identity.acl.version();
        let acl = self.identity.acl.load_full();
        let router = &self.services.router;
        let client_id = self.mailbox.client_id();
        let state = &mut self.attached.as_mut().expect("attached").state;
        state.subscriptions.retain(|raw, entry| {
            let keep = acl.can_subscribe(&entry.key.filter);
            if !keep {
                tracing::info!(%client_id, filter = %raw, "subscription removed: permission revoked");
                router.unsubscribe(&entry.key, client_id);
            }
            keep
        });
        self.persist_session();
    }

    /// (alias, send topic too?) for an outgoing topic, when the client
    /// accepts aliases.
    fn topic_alias_for(&mut self, topic: &MqttStr) -> Option<(u16, bool)> {
        if self.alias_out_max == 0 {
            return None;
        }
        let outbound = &mut self.aliases.get_or_insert_default().outbound;
        if let Some(&alias) = outbound.get(topic) {
            return Some((alias, false));
        }
        if outbound.len() < usize::from(self.alias_out_max) {
            let alias = outbound.len() as u16 + 1;
            outbound.insert(topic.clone(), alias);
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
                .extend(delivery.subscription_id);
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
