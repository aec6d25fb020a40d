//! Outbound QoS 1/2 messages awaiting acknowledgement, and packet ids.

use std::collections::VecDeque;

use crate::router::Delivery;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// QoS 1 sent, waiting for PUBACK.
    AwaitPubAck,
    /// QoS 2 sent, waiting for PUBREC.
    AwaitPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitPubComp,
}

#[derive(Debug, Clone)]
pub struct Outgoing {
    pub packet_id: u16,
    pub delivery: Delivery,
    pub stage: Stage,
}

/// In send order, so a reconnecting client gets resends in the original
/// order. Bounded by the client's receive maximum, so scans are short.
#[derive(Debug, Default)]
pub struct Inflight {
    entries: VecDeque<Outgoing>,
    last_id: u16,
}

impl Inflight {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Outgoing> {
        self.entries.iter()
    }

    /// Allocates the next free packet id (1..=65535).
    pub fn next_packet_id(&mut self) -> u16 {
        loop {
            self.last_id = self.last_id.wrapping_add(1).max(1);
            let id = self.last_id;
            if !self.entries.iter().any(|e| e.packet_id == id) {
                return id;
            }
        }
    }

    pub fn push(&mut self, outgoing: Outgoing) {
        self.entries.push_back(outgoing);
    }

    fn position(&self, packet_id: u16, stage: Stage) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.packet_id == packet_id && e.stage == stage)
    }

    /// Removes the entry acknowledged by PUBACK or PUBCOMP.
    pub fn complete(&mut self, packet_id: u16, stage: Stage) -> Option<Outgoing> {
        let index = self.position(packet_id, stage)?;
        self.entries.remove(index)
    }

    /// PUBREC received: the entry moves on to waiting for PUBCOMP.
    pub fn released(&mut self, packet_id: u16) -> bool {
        match self.position(packet_id, Stage::AwaitPubRec) {
            Some(index) => {
                self.entries[index].stage = Stage::AwaitPubComp;
                true
            }
            None => false,
        }
    }

    /// Everything, for redelivery elsewhere or persistence.
    pub fn drain(&mut self) -> impl Iterator<Item = Outgoing> + '_ {
        self.entries.drain(..)
    }
}
