//! What a connection holds back until the store has caught up:
//! acknowledgements of persisted publishes (sync durability), and output
//! that follows a QoS 2 delivery's stage record (the stage must be on the
//! disk before its packet is on the wire, so a restart resends the same
//! packet and never a fresh one).

use bytes::BytesMut;
use std::collections::VecDeque;
use tokio::sync::watch;

use super::{ClientSession, Close, Persisted};
use crate::config::Durability;
use crate::metrics::Metrics;
use crate::protocol::{self, Packet, ProtocolVersion, PubResponse, QoS, ReasonCode};
use crate::store::{Committed, Outcome};

/// An acknowledgement waiting for its commit: 4 bytes, not a `Packet`, in
/// the queue every sync-mode publish passes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeldAck {
    PubAck(u16),
    PubRec(u16),
    /// After PUBREL, once the packet id's release is on the disk (a
    /// restart must not take a reused id for a duplicate).
    PubComp(u16),
    /// A publish refused because the store could not take it: 0x80 in
    /// its turn (acknowledgements keep the order of the publishes).
    RefusedPubAck(u16),
    RefusedPubRec(u16),
}

impl HeldAck {
    fn packet(self, reason: ReasonCode) -> Packet {
        match self {
            HeldAck::PubAck(id) | HeldAck::RefusedPubAck(id) => {
                Packet::PubAck(PubResponse::new(id, reason))
            }
            HeldAck::PubRec(id) | HeldAck::RefusedPubRec(id) => {
                Packet::PubRec(PubResponse::new(id, reason))
            }
            HeldAck::PubComp(id) => Packet::PubComp(PubResponse::new(id, reason)),
        }
    }

    /// Counted against our receive maximum apart from the QoS 2 ids.
    fn counted(self) -> bool {
        matches!(
            self,
            HeldAck::PubAck(_) | HeldAck::PubComp(_) | HeldAck::RefusedPubAck(_)
        )
    }
}

/// Boxed while anything waits, dropped once nothing does.
pub(super) struct Held {
    /// In order: acknowledgements never overtake each other.
    queue: VecDeque<(u64, HeldAck)>,
    /// Held PUBACKs and PUBCOMPs: publishes the client still counts
    /// against our receive maximum, beside the QoS 2 ids awaiting PUBREL.
    counted: u16,
    /// Output may be written once this ticket is on the disk (0: now).
    out_until: u64,
    committed: watch::Receiver<Committed>,
}

impl ClientSession {
    fn held(&mut self) -> &mut Held {
        let store = &self.services.store;
        self.held.get_or_insert_with(|| {
            Box::new(Held {
                queue: VecDeque::new(),
                counted: 0,
                out_until: 0,
                committed: store.committed(),
            })
        })
    }

    /// Sends `ack` now, or queues it behind its commit (sync durability)
    /// and behind any acknowledgement that still waits.
    pub(super) fn acknowledge(&mut self, ack: HeldAck, persisted: Persisted, out: &mut BytesMut) {
        let sync = self.services.config.storage.durability == Durability::Sync;
        let waiting = self.held.as_ref().and_then(|h| h.queue.back());
        let ticket = match (persisted, waiting) {
            (Persisted::AwaitCommit(ticket), _) if sync => ticket,
            (_, Some(&(ticket, _))) => ticket,
            _ => {
                protocol::encode(&ack.packet(ReasonCode::SUCCESS), self.version, out);
                return;
            }
        };
        self.hold_ack(ticket, ack);
    }

    fn hold_ack(&mut self, ticket: u64, ack: HeldAck) {
        let held = self.held();
        if ack.counted() {
            held.counted += 1;
        }
        held.queue.push_back((ticket, ack));
    }

    /// Holds every later output until the operations submitted so far are
    /// on the disk.
    pub(super) fn hold_output(&mut self) {
        let ticket = self.services.store.submitted();
        self.held().out_until = ticket;
    }

    /// Publishes counted against our receive maximum: held PUBACKs and
    /// PUBCOMPs, and QoS 2 ids awaiting PUBREL (each publish once).
    pub(super) fn inbound_in_flight(&self) -> usize {
        let held = self.held.as_ref().map_or(0, |h| usize::from(h.counted));
        held + self
            .attached
            .as_ref()
            .map_or(0, |a| a.state.inbound_qos2.len())
    }

    /// A 3.1.1 client has no receive maximum to be told about: instead of
    /// disconnecting it, the connection stops reading while this many
    /// acknowledgements wait for the store.
    pub fn accepts_input(&self) -> bool {
        self.version == ProtocolVersion::V5
            || self.held.as_ref().is_none_or(|h| {
                h.queue.len() < usize::from(self.services.config.limits.receive_maximum)
            })
    }

    /// Something waits for the store.
    pub fn awaits_commit(&self) -> bool {
        self.held.is_some()
    }

    /// The output buffer may go on the wire.
    pub fn may_write(&self) -> bool {
        self.held.as_ref().is_none_or(|h| h.out_until == 0)
    }

    /// Waits until the store has moved far enough for something held to
    /// go (or to be refused).
    pub async fn commit_done(&mut self) {
        let Some(held) = self.held.as_mut() else {
            return std::future::pending().await;
        };
        let front = held.queue.front().map(|&(ticket, ack)| (ticket, ack));
        let out_until = held.out_until;
        let _ = held
            .committed
            .wait_for(|c| {
                let ack_ready = front.is_some_and(|(ticket, ack)| match c.outcome(ticket) {
                    Outcome::Pending => false,
                    Outcome::Failed => !matches!(ack, HeldAck::PubComp(_)),
                    Outcome::Durable => true,
                });
                ack_ready || (out_until != 0 && c.durable >= out_until)
            })
            .await;
    }

    /// Sends every acknowledgement whose commit is done, in order, and
    /// releases held output once it may go. A publish whose commit failed
    /// gets 0x80 (v5); a 3.1.1 client, which cannot be told, is closed
    /// without acknowledgement.
    pub fn flush_acks(&mut self, out: &mut BytesMut) -> Result<(), Close> {
        let Some(held) = self.held.as_mut() else {
            return Ok(());
        };
        let committed = *held.committed.borrow();
        if held.out_until != 0 && committed.durable >= held.out_until {
            held.out_until = 0;
        }
        let mut released = Vec::new();
        while let Some(&(ticket, ack)) = held.queue.front() {
            let reason = match (committed.outcome(ticket), ack) {
                (Outcome::Pending, _) | (Outcome::Failed, HeldAck::PubComp(_)) => break,
                (_, HeldAck::RefusedPubAck(_) | HeldAck::RefusedPubRec(_)) => {
                    ReasonCode::UNSPECIFIED_ERROR
                }
                (Outcome::Durable, _) => ReasonCode::SUCCESS,
                (Outcome::Failed, _) if self.version == ProtocolVersion::V311 => {
                    return Err(Close::error(ReasonCode::UNSPECIFIED_ERROR));
                }
                (Outcome::Failed, _) => ReasonCode::UNSPECIFIED_ERROR,
            };
            held.queue.pop_front();
            if ack.counted() {
                held.counted -= 1;
            }
            if let (HeldAck::PubRec(id), true) = (ack, reason.is_error()) {
                // Refused: the QoS 2 flow ends here (MQTT 5 §4.3.3).
                released.push(id);
            }
            protocol::encode(&ack.packet(reason), self.version, out);
        }
        if held.queue.is_empty() && held.out_until == 0 {
            self.held = None;
        }
        let persistent = self.persistent();
        for id in released {
            if let Some(attached) = self.attached.as_mut() {
                attached.state.inbound_qos2.remove(&id);
            }
            if persistent {
                // The failed batch is retried and will store the id: take
                // it back, or a restart would take the id's next use for a
                // duplicate.
                self.services
                    .store
                    .inbound_qos2(self.mailbox.client_id(), id, false);
            }
        }
        Ok(())
    }

    /// A QoS 1/2 publish that would have to be stored while the store
    /// cannot take it: v5 hears 0x80 (the publisher may retry later), a
    /// 3.1.1 client is closed unacknowledged (it resends on reconnect).
    pub(super) fn refuse_unstored(
        &mut self,
        qos: QoS,
        packet_id: u16,
        out: &mut BytesMut,
    ) -> Result<(), Close> {
        Metrics::add(&self.services.metrics.publish_unstored, 1);
        if self.services.store.is_closed() {
            return Err(Close::shutdown());
        }
        if self.version == ProtocolVersion::V311 {
            return Err(Close::error(ReasonCode::UNSPECIFIED_ERROR));
        }
        let ack = match qos {
            QoS::ExactlyOnce => HeldAck::RefusedPubRec(packet_id),
            _ => HeldAck::RefusedPubAck(packet_id),
        };
        // In its turn, behind any acknowledgement that still waits.
        match self.held.as_ref().and_then(|h| h.queue.back()) {
            Some(&(ticket, _)) => self.hold_ack(ticket, ack),
            None => protocol::encode(
                &ack.packet(ReasonCode::UNSPECIFIED_ERROR),
                self.version,
                out,
            ),
        }
        Ok(())
    }
}
