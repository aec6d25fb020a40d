//! The store's writer thread: group commit of everything waiting in its
//! channel, one redb transaction per batch.
//!
//! Queued deliveries are written as one record per client and batch (key:
//! client id and the first delivery's sequence number), not one per
//! delivery: a B-tree insert and, once every delivery in it is
//! acknowledged, one delete per batch instead of one of each per message.
//! The writer keeps in memory which record holds each unacknowledged
//! delivery ([`QueueIndex`]). After a crash, a record's acknowledged
//! deliveries come back with its unacknowledged ones: QoS 1 allows the
//! duplicate; QoS 2 deliveries get a record of their own, which is deleted
//! at PUBCOMP, so none is delivered twice.

use bytes::BytesMut;
use redb::{Database, ReadableTable, Table};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::watch;

use super::{Committed, QUEUE, RETAINED, SESSIONS, record};
use crate::config::Durability;
use crate::protocol::{MqttStr, QoS};
use crate::router::Delivery;

/// A record is closed at this size; later deliveries of the batch start
/// another (a huge record would be rewritten on every partial replay).
const RECORD_LIMIT: usize = 64 * 1024;

type Hasher = foldhash::fast::RandomState;

/// One change for the writer thread. Queue operations, the hot ones, carry
/// reference-counted values (no allocation to submit one) and are encoded
/// on the writer thread, and only when they reach the disk: most deliveries
/// are acknowledged within the batch that queued them.
pub(super) enum Op {
    PutRetained(String, Vec<u8>),
    DelRetained(String),
    PutSession(String, Vec<u8>),
    /// Deletes the session record and all its queued deliveries.
    DelSession(String),
    Enqueue(MqttStr, Delivery),
    Dequeue(u64),
}

/// Which queue record holds each unacknowledged delivery.
#[derive(Default)]
pub(super) struct QueueIndex {
    /// Record key sequence → the record.
    records: HashMap<u64, Record, Hasher>,
    /// Delivery sequence → its record's key sequence, while unacknowledged.
    record_of: HashMap<u64, u64, Hasher>,
    /// Each client's record keys, oldest first (acknowledged in order, so
    /// removals are mostly at the front).
    by_client: HashMap<Arc<str>, VecDeque<u64>, Hasher>,
}

struct Record {
    client_id: Arc<str>,
    /// Deliveries still unacknowledged.
    left: u32,
    /// Every delivery written into the record.
    seqs: Vec<u64>,
}

impl QueueIndex {
    pub fn register(&mut self, client_id: &str, key: u64, seqs: Vec<u64>) {
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
            },
        );
    }

    /// Marks `seq` acknowledged; returns the record key to delete once the
    /// record holds no unacknowledged delivery.
    fn acknowledge(&mut self, seq: u64) -> Option<(Arc<str>, u64)> {
        let key = self.record_of.remove(&seq)?;
        let record = self.records.get_mut(&key)?;
        record.left -= 1;
        if record.left > 0 {
            return None;
        }
        let record = self.records.remove(&key)?;
        if let Some(keys) = self.by_client.get_mut(&record.client_id) {
            if let Some(at) = keys.iter().position(|&k| k == key) {
                keys.remove(at);
            }
            if keys.is_empty() {
                self.by_client.remove(&record.client_id);
            }
        }
        Some((record.client_id, key))
    }

    /// The client's session is gone, and its records with it.
    fn forget_client(&mut self, client_id: &str) {
        for key in self.by_client.remove(client_id).unwrap_or_default() {
            if let Some(record) = self.records.remove(&key) {
                for seq in record.seqs {
                    self.record_of.remove(&seq);
                }
            }
        }
    }
}

/// The deliveries of one client being gathered into a record.
struct Group {
    client_id: MqttStr,
    key: u64,
    seqs: Vec<u64>,
    value: BytesMut,
}

/// Records being gathered in a batch, one per client (QoS 2 deliveries
/// are written at once).
#[derive(Default)]
struct Groups {
    open: Vec<Group>,
    by_client: HashMap<MqttStr, usize, Hasher>,
}

impl Groups {
    fn clear(&mut self) {
        self.open.clear();
        self.by_client.clear();
    }

    fn take(&mut self, at: usize) -> Group {
        let group = self.open.swap_remove(at);
        self.by_client.remove(&group.client_id);
        if let Some(moved) = self.open.get(at) {
            self.by_client.insert(moved.client_id.clone(), at);
        }
        group
    }

    fn drop_client(&mut self, client_id: &str) {
        if let Some(at) = self.by_client.get(client_id).copied() {
            self.take(at);
        }
    }
}

/// The writer's reusable working memory.
#[derive(Default)]
struct Scratch {
    queued: HashSet<u64, Hasher>,
    settled: HashSet<u64, Hasher>,
    groups: Groups,
}

pub(super) fn run(
    db: &Database,
    rx: mpsc::Receiver<Op>,
    committed: &watch::Sender<Committed>,
    durability: Durability,
    interval: Duration,
    mut index: QueueIndex,
) {
    let mut batch = Vec::new();
    let mut scratch = Scratch::default();
    let mut received = 0u64;
    loop {
        match durability {
            Durability::Sync => match rx.recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            },
            Durability::Periodic => match rx.recv_timeout(interval) {
                Ok(op) => {
                    batch.push(op);
                    std::thread::sleep(interval);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
        }
        batch.extend(rx.try_iter().take(100_000));
        received += batch.len() as u64;
        let ok = commit(db, &mut batch, &mut scratch, &mut index);
        publish_progress(committed, received, ok);
    }
    batch.extend(rx.try_iter());
    received += batch.len() as u64;
    let ok = commit(db, &mut batch, &mut scratch, &mut index);
    publish_progress(committed, received, ok);
    if let Err(e) = trim_partly_acknowledged(db, &index) {
        tracing::warn!("could not trim acknowledged deliveries from the queue: {e}");
    }
}

/// At a clean stop, rewrites each record that still holds acknowledged
/// deliveries without them, so that a restart does not deliver them again
/// (only a crash may, for QoS 1).
fn trim_partly_acknowledged(db: &Database, index: &QueueIndex) -> Result<(), redb::Error> {
    let partly: Vec<(&str, u64)> = index
        .records
        .iter()
        .filter(|(_, record)| (record.left as usize) < record.seqs.len())
        .map(|(&key, record)| (&*record.client_id, key))
        .collect();
    if partly.is_empty() {
        return Ok(());
    }
    let txn = db.begin_write()?;
    {
        let mut queue = txn.open_table(QUEUE)?;
        for key in partly {
            let trimmed = match queue.get(key)? {
                Some(value) => record::retain_batch(value.value(), |seq| {
                    index.record_of.get(&seq) == Some(&key.1)
                }),
                None => None,
            };
            if let Some(trimmed) = trimmed {
                queue.insert(key, trimmed.as_slice())?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

fn publish_progress(committed: &watch::Sender<Committed>, received: u64, ok: bool) {
    committed.send_modify(|c| {
        if ok && !c.failed {
            c.ops = received;
        } else {
            c.failed = true;
        }
    });
}

/// Applies `batch` in one transaction; returns whether it committed.
fn commit(
    db: &Database,
    batch: &mut Vec<Op>,
    scratch: &mut Scratch,
    index: &mut QueueIndex,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    // A delivery queued and acknowledged within the same batch never
    // needs to reach the disk: skip both (sequence numbers are unique).
    let Scratch {
        queued,
        settled,
        groups,
    } = scratch;
    queued.clear();
    settled.clear();
    groups.clear();
    queued.extend(batch.iter().filter_map(|op| match op {
        Op::Enqueue(_, delivery) => Some(delivery.seq),
        _ => None,
    }));
    settled.extend(batch.iter().filter_map(|op| match op {
        Op::Dequeue(seq) if queued.contains(seq) => Some(*seq),
        _ => None,
    }));
    let effective = batch.iter().any(|op| match op {
        Op::Enqueue(_, Delivery { seq, .. }) | Op::Dequeue(seq) => !settled.contains(seq),
        _ => true,
    });
    if !effective {
        // Everything cancelled out: nothing to write, no fsync.
        batch.clear();
        return true;
    }
    let result = (|| -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        {
            let mut retained = txn.open_table(RETAINED)?;
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut queue = txn.open_table(QUEUE)?;
            for op in batch.drain(..) {
                match op {
                    Op::PutRetained(topic, value) => {
                        retained.insert(topic.as_str(), value.as_slice())?;
                    }
                    Op::DelRetained(topic) => {
                        retained.remove(topic.as_str())?;
                    }
                    Op::PutSession(id, value) => {
                        sessions.insert(id.as_str(), value.as_slice())?;
                    }
                    Op::DelSession(id) => {
                        groups.drop_client(&id);
                        index.forget_client(&id);
                        sessions.remove(id.as_str())?;
                        let range = (id.as_str(), 0u64)..=(id.as_str(), u64::MAX);
                        queue.retain_in(range, |_, _| false)?;
                    }
                    Op::Enqueue(_, Delivery { seq, .. }) | Op::Dequeue(seq)
                        if settled.contains(&seq) => {}
                    Op::Enqueue(id, delivery) => {
                        gather(groups, &mut queue, index, id, &delivery)?;
                    }
                    Op::Dequeue(seq) => {
                        if let Some((client_id, key)) = index.acknowledge(seq) {
                            queue.remove((&*client_id, key))?;
                        }
                    }
                }
            }
            for group in groups.open.drain(..) {
                write_group(&mut queue, index, group)?;
            }
            groups.by_client.clear();
        }
        txn.commit()?;
        Ok(())
    })();
    match result {
        Ok(()) => true,
        Err(e) => {
            // Nothing is acknowledged after a failed commit (`failed`
            // sticks). The index keeps this batch's changes although the
            // disk does not: a record it already counts as acknowledged
            // stays on disk and comes back after a restart, as a lost
            // dequeue did before records were shared.
            batch.clear();
            groups.clear();
            tracing::error!("store commit failed: {e}");
            false
        }
    }
}

type QueueTable<'t> = Table<'t, (&'static str, u64), &'static [u8]>;

/// Adds `delivery` to its client's record of this batch (QoS 2: a record
/// of its own, see the module comment).
fn gather(
    groups: &mut Groups,
    queue: &mut QueueTable<'_>,
    index: &mut QueueIndex,
    client_id: MqttStr,
    delivery: &Delivery,
) -> Result<(), redb::Error> {
    let own_record = delivery.qos == QoS::ExactlyOnce;
    let found = if own_record {
        None
    } else {
        groups.by_client.get(&client_id).copied()
    };
    let at = found.unwrap_or_else(|| {
        let mut value = BytesMut::new();
        record::begin_batch(&mut value);
        if !own_record {
            groups
                .by_client
                .insert(client_id.clone(), groups.open.len());
        }
        groups.open.push(Group {
            client_id,
            key: delivery.seq,
            seqs: Vec::new(),
            value,
        });
        groups.open.len() - 1
    });
    let group = &mut groups.open[at];
    record::put_batch_entry(&mut group.value, delivery);
    group.seqs.push(delivery.seq);
    if group.value.len() >= RECORD_LIMIT || own_record {
        let group = if own_record {
            // Just pushed, and not in `by_client` (which may name the
            // client's QoS 1 record).
            groups.open.pop().expect("just pushed")
        } else {
            groups.take(at)
        };
        write_group(queue, index, group)?;
    }
    Ok(())
}

fn write_group(
    queue: &mut QueueTable<'_>,
    index: &mut QueueIndex,
    group: Group,
) -> Result<(), redb::Error> {
    queue.insert((&*group.client_id, group.key), &group.value[..])?;
    index.register(&group.client_id, group.key, group.seqs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_goes_once_all_its_deliveries_are_acknowledged() {
        let mut index = QueueIndex::default();
        index.register("c", 10, vec![10, 12, 15]);
        index.register("d", 11, vec![11]);
        assert_eq!(index.acknowledge(12), None);
        assert_eq!(index.acknowledge(11), Some(("d".into(), 11)));
        assert_eq!(index.acknowledge(10), None);
        assert_eq!(index.acknowledge(10), None, "twice counts once");
        assert_eq!(index.acknowledge(15), Some(("c".into(), 10)));
        assert_eq!(index.acknowledge(99), None);
    }

    fn delivery(seq: u64, qos: QoS) -> Delivery {
        Delivery {
            message: std::sync::Arc::new(crate::router::Message {
                topic: "t".into(),
                payload: bytes::Bytes::from_static(b"p"),
                qos,
                retain: false,
                properties: Default::default(),
                expires_at: None,
                origin: None,
            }),
            qos,
            retain: false,
            subscription_id: None,
            shared: None,
            seq,
        }
    }

    fn record_keys(db: &Database) -> Vec<u64> {
        use redb::ReadableDatabase;
        let txn = db.begin_read().unwrap();
        let queue = txn.open_table(QUEUE).unwrap();
        queue
            .iter()
            .unwrap()
            .map(|e| e.unwrap().0.value().1)
            .collect()
    }

    /// QoS 1 deliveries of a batch share a record; each QoS 2 delivery has
    /// its own, so acknowledging it removes it from the disk at once.
    #[test]
    fn batches_share_a_record_except_qos2() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("q.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(QUEUE).unwrap();
        txn.commit().unwrap();
        let (mut scratch, mut index) = (Scratch::default(), QueueIndex::default());
        let c = MqttStr::from("c");
        let mut batch = vec![
            Op::Enqueue(c.clone(), delivery(1, QoS::AtLeastOnce)),
            Op::Enqueue(c.clone(), delivery(2, QoS::ExactlyOnce)),
            Op::Enqueue(c.clone(), delivery(3, QoS::AtLeastOnce)),
            Op::Enqueue(c.clone(), delivery(4, QoS::ExactlyOnce)),
            Op::Enqueue(c.clone(), delivery(5, QoS::AtLeastOnce)),
            // Acknowledged within the batch: never written.
            Op::Dequeue(5),
        ];
        assert!(commit(&db, &mut batch, &mut scratch, &mut index));
        assert_eq!(record_keys(&db), [1, 2, 4]);
        let mut batch = vec![Op::Dequeue(4), Op::Dequeue(1)];
        assert!(commit(&db, &mut batch, &mut scratch, &mut index));
        assert_eq!(record_keys(&db), [1, 2], "record 1 still holds 3");
        let mut batch = vec![Op::Dequeue(3), Op::DelSession("c".into())];
        assert!(commit(&db, &mut batch, &mut scratch, &mut index));
        assert!(record_keys(&db).is_empty());
        assert_eq!(index.acknowledge(2), None, "forgotten with the session");
    }

    #[test]
    fn forgetting_a_client_drops_its_records_only() {
        let mut index = QueueIndex::default();
        index.register("c", 1, vec![1, 2]);
        index.register("c", 4, vec![4]);
        index.register("d", 3, vec![3]);
        index.forget_client("c");
        assert_eq!(index.acknowledge(1), None);
        assert_eq!(index.acknowledge(4), None);
        assert!(
            index.record_of.keys().all(|&seq| seq == 3),
            "no entry left behind"
        );
        assert_eq!(index.acknowledge(3), Some(("d".into(), 3)));
        assert!(index.by_client.is_empty() && index.records.is_empty());
    }
}
