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
    /// Sent on an earlier connection and not yet again on this one (it
    /// waits for room in this client's receive maximum).
    pub resend: bool,
}

/// In send order, so a reconnecting client gets resends in the original
/// order. Bounded by the client's receive maximum, so scans are short.
#[derive(Debug, Default)]
pub struct Inflight {
    entries: VecDeque<Outgoing>,
    last_id: u16,
    /// Entries waiting to be resent.
    resends: u16,
}

impl Inflight {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entries the client counts against its receive maximum: everything
    /// sent on this connection.
    pub fn in_window(&self) -> usize {
        self.entries.len() - usize::from(self.resends)
    }

    /// A new connection: everything must be sent again.
    pub fn mark_for_resend(&mut self) {
        for entry in &mut self.entries {
            entry.resend = true;
        }
        self.resends = u16::try_from(self.entries.len()).unwrap_or(u16::MAX);
    }

    pub fn has_resends(&self) -> bool {
        self.resends > 0
    }

    /// The oldest entry still to be resent, with its position.
    pub fn next_resend(&self) -> Option<(usize, &Outgoing)> {
        if self.resends == 0 {
            return None;
        }
        self.entries.iter().enumerate().find(|(_, e)| e.resend)
    }

    /// The entry at `index` was resent.
    pub fn resent(&mut self, index: usize) {
        if let Some(entry) = self.entries.get_mut(index).filter(|e| e.resend) {
            entry.resend = false;
            self.resends -= 1;
        }
    }

    /// Removes the entry at `index` (refused on resend).
    pub fn remove_at(&mut self, index: usize) -> Option<Outgoing> {
        let entry = self.entries.remove(index)?;
        if entry.resend {
            self.resends -= 1;
        }
        Some(entry)
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
        self.remove_at(index)
    }

    /// PUBREC received: the entry moves on to waiting for PUBCOMP.
    /// Returns its store sequence (0: not persisted), `None` if unknown.
    pub fn released(&mut self, packet_id: u16) -> Option<u64> {
        let index = self.position(packet_id, Stage::AwaitPubRec)?;
        let entry = &mut self.entries[index];
        entry.stage = Stage::AwaitPubComp;
        Some(entry.delivery.seq)
    }

    /// Everything, for redelivery elsewhere or persistence.
    pub fn drain(&mut self) -> impl Iterator<Item = Outgoing> + '_ {
        self.resends = 0;
        self.entries.drain(..)
    }
}
