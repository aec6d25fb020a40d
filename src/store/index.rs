//! Which queue record holds each unacknowledged delivery, kept by the
//! writer thread in memory, with an undo log so that a failed commit
//! leaves it exactly as the disk is.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

type Hasher = foldhash::fast::RandomState;

#[derive(Default)]
pub(super) struct QueueIndex {
    /// Record key sequence → the record.
    records: HashMap<u64, Record, Hasher>,
    /// Delivery sequence → its record's key sequence, while unacknowledged.
    pub(super) record_of: HashMap<u64, u64, Hasher>,
    /// Each client's record keys, oldest first (acknowledged in order, so
    /// removals are mostly at the front).
    by_client: HashMap<Arc<str>, VecDeque<u64>, Hasher>,
}

pub(super) struct Record {
    pub(super) client_id: Arc<str>,
    /// Deliveries still unacknowledged.
    left: u32,
    /// Every delivery written into the record.
    pub(super) seqs: Vec<u64>,
    /// A QoS 2 delivery's own record: it may have an in-flight row (packet
    /// id and stage) to delete with it.
    pub(super) qos2: bool,
}

/// How to take back one change of the index.
pub(super) enum Undo {
    Registered(u64),
    Acknowledged {
        seq: u64,
        key: u64,
        /// The record, when this acknowledgement removed it.
        removed: Option<Record>,
    },
    Forgot {
        client_id: Arc<str>,
        keys: VecDeque<u64>,
        records: Vec<(u64, Record)>,
        unacknowledged: Vec<(u64, u64)>,
    },
}

/// A record the index no longer needs: delete it from the disk.
pub(super) struct Gone {
    pub(super) client_id: Arc<str>,
    pub(super) key: u64,
    pub(super) qos2: bool,
}

impl QueueIndex {
    pub(super) fn register(
        &mut self,
        client_id: &str,
        key: u64,
        seqs: Vec<u64>,
        qos2: bool,
        undo: &mut Vec<Undo>,
    ) {
        if seqs.is_empty() {
            return;
        }
        for &seq in &seqs {
            self.record_of.insert(seq, key);
        }
        let client_id = match self.by_client.get_key_value(client_id) {
            Some((shared, _)) => shared.clone(),
            None => Arc::from(client_id),
        };
        self.by_client
            .entry(client_id.clone())
            .or_default()
            .push_back(key);
        let left = seqs.len() as u32;
        self.records.insert(
            key,
            Record {
                client_id,
                left,
                seqs,
                qos2,
            },
        );
        undo.push(Undo::Registered(key));
    }

    /// Marks `seq` acknowledged; returns the record to delete once it
    /// holds no unacknowledged delivery.
    pub(super) fn acknowledge(&mut self, seq: u64, undo: &mut Vec<Undo>) -> Option<Gone> {
        let key = *self.record_of.get(&seq)?;
        let record = self.records.get_mut(&key)?;
        self.record_of.remove(&seq);
        record.left -= 1;
        if record.left > 0 {
            undo.push(Undo::Acknowledged {
                seq,
                key,
                removed: None,
            });
            return None;
        }
        let record = self.records.remove(&key)?;
        self.unlist(&record.client_id, key);
        let gone = Gone {
            client_id: record.client_id.clone(),
            key,
            qos2: record.qos2,
        };
        undo.push(Undo::Acknowledged {
            seq,
            key,
            removed: Some(record),
        });
        Some(gone)
    }

    fn unlist(&mut self, client_id: &str, key: u64) {
        if let Some(keys) = self.by_client.get_mut(client_id) {
            if let Some(at) = keys.iter().position(|&k| k == key) {
                keys.remove(at);
            }
            if keys.is_empty() {
                self.by_client.remove(client_id);
            }
        }
    }

    /// The client's session is gone, and its records with it.
    pub(super) fn forget_client(&mut self, client_id: &str, undo: &mut Vec<Undo>) {
        let Some((client_id, keys)) = self.by_client.remove_entry(client_id) else {
            return;
        };
        let mut records = Vec::new();
        let mut unacknowledged = Vec::new();
        for &key in &keys {
            if let Some(record) = self.records.remove(&key) {
                for seq in &record.seqs {
                    if let Some(k) = self.record_of.remove(seq) {
                        unacknowledged.push((*seq, k));
                    }
                }
                records.push((key, record));
            }
        }
        undo.push(Undo::Forgot {
            client_id,
            keys,
            records,
            unacknowledged,
        });
    }

    /// Takes back `undo`'s changes, newest first (the commit that made
    /// them failed).
    pub(super) fn undo(&mut self, undo: &mut Vec<Undo>) {
        while let Some(change) = undo.pop() {
            match change {
                Undo::Registered(key) => {
                    if let Some(record) = self.records.remove(&key) {
                        for seq in &record.seqs {
                            self.record_of.remove(seq);
                        }
                        self.unlist(&record.client_id, key);
                    }
                }
                Undo::Acknowledged { seq, key, removed } => {
                    self.record_of.insert(seq, key);
                    match removed {
                        Some(mut record) => {
                            record.left = 1;
                            let keys = self.by_client.entry(record.client_id.clone()).or_default();
                            let at = keys.partition_point(|&k| k < key);
                            keys.insert(at, key);
                            self.records.insert(key, record);
                        }
                        None => {
                            if let Some(record) = self.records.get_mut(&key) {
                                record.left += 1;
                            }
                        }
                    }
                }
                Undo::Forgot {
                    client_id,
                    keys,
                    records,
                    unacknowledged,
                } => {
                    self.by_client.insert(client_id, keys);
                    self.records.extend(records);
                    self.record_of.extend(unacknowledged);
                }
            }
        }
    }

    /// Records that still hold acknowledged deliveries.
    pub(super) fn partly_acknowledged(&self) -> Vec<(&str, u64)> {
        self.records
            .iter()
            .filter(|(_, record)| (record.left as usize) < record.seqs.len())
            .map(|(&key, record)| (&*record.client_id, key))
            .collect()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.records.is_empty() && self.record_of.is_empty() && self.by_client.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_goes_once_all_its_deliveries_are_acknowledged() {
        let mut index = QueueIndex::default();
        let undo = &mut Vec::new();
        index.register("c", 10, vec![10, 12, 15], false, undo);
        index.register("d", 11, vec![11], true, undo);
        let key = |gone: Option<Gone>| gone.map(|g| (g.client_id.to_string(), g.key, g.qos2));
        assert_eq!(key(index.acknowledge(12, undo)), None);
        assert_eq!(
            key(index.acknowledge(11, undo)),
            Some(("d".into(), 11, true))
        );
        assert_eq!(key(index.acknowledge(10, undo)), None);
        assert_eq!(key(index.acknowledge(10, undo)), None, "twice counts once");
        assert_eq!(
            key(index.acknowledge(15, undo)),
            Some(("c".into(), 10, false))
        );
        assert_eq!(key(index.acknowledge(99, undo)), None);
    }

    #[test]
    fn forgetting_a_client_drops_its_records_only() {
        let mut index = QueueIndex::default();
        let undo = &mut Vec::new();
        index.register("c", 1, vec![1, 2], false, undo);
        index.register("c", 4, vec![4], false, undo);
        index.register("d", 3, vec![3], false, undo);
        index.forget_client("c", undo);
        assert!(index.acknowledge(1, undo).is_none());
        assert!(index.acknowledge(4, undo).is_none());
        assert!(
            index.record_of.keys().all(|&seq| seq == 3),
            "no entry left behind"
        );
        assert_eq!(index.acknowledge(3, undo).map(|g| g.key), Some(3));
        assert!(index.is_empty());
    }

    /// Undoing a batch's changes gives back the index as it was.
    #[test]
    fn undo_restores_the_index() {
        let mut index = QueueIndex::default();
        let before = &mut Vec::new();
        index.register("c", 1, vec![1, 2, 3], false, before);
        index.register("c", 5, vec![5], true, before);
        index.register("d", 4, vec![4], false, before);
        index.acknowledge(2, before);
        let snapshot = |i: &QueueIndex| {
            let mut of: Vec<_> = i.record_of.iter().map(|(a, b)| (*a, *b)).collect();
            of.sort();
            let mut records: Vec<_> = i.records.iter().map(|(k, r)| (*k, r.left)).collect();
            records.sort();
            let mut clients: Vec<_> = i
                .by_client
                .iter()
                .map(|(c, k)| (c.to_string(), k.clone()))
                .collect();
            clients.sort();
            (of, records, clients)
        };
        let was = snapshot(&index);
        let undo = &mut Vec::new();
        index.acknowledge(1, undo);
        index.acknowledge(3, undo);
        index.acknowledge(5, undo);
        index.register("d", 9, vec![9, 10], false, undo);
        index.forget_client("d", undo);
        index.register("e", 11, vec![11], false, undo);
        index.undo(undo);
        assert_eq!(snapshot(&index), was);
    }
}
