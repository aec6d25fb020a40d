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
//!
//! A failed commit is retried with what arrived meanwhile (backing off up
//! to a few seconds), so the disk ends up with every change in order; the
//! index's changes are undone until then, so it always describes the disk.
//! Publishers whose batch failed are told (see [`Committed`]).

use bytes::BytesMut;
use redb::{Database, ReadableTable, Table};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::watch;

use super::index::{QueueIndex, Undo};
use super::{Committed, Fault, INBOUND, INFLIGHT, QUEUE, RETAINED, SESSIONS, WriterShared, record};
use crate::config::Durability;
use crate::protocol::{MqttStr, QoS};
use crate::router::Delivery;

/// A record is closed at this size; later deliveries of the batch start
/// another (a huge record would be rewritten on every partial replay).
const RECORD_LIMIT: usize = 64 * 1024;
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(5);

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
    /// A QoS 2 delivery's packet id and stage (1: PUBLISH sent, 2: PUBREL
    /// sent), so a restart resends the same packet.
    Stage(MqttStr, u64, u16, u8),
    /// A QoS 2 packet id received and not yet released (true), or released.
    Inbound(MqttStr, u16, bool),
    /// Operations that must reach the disk in one transaction (a publish
    /// and everything it wrote).
    Group(Vec<Op>),
}

/// The deliveries of one client being gathered into a record.
struct Gathering {
    client_id: MqttStr,
    key: u64,
    seqs: Vec<u64>,
    value: BytesMut,
    qos2: bool,
}

/// Records being gathered in a batch, one per client (QoS 2 deliveries
/// are written at once).
#[derive(Default)]
struct Groups {
    open: Vec<Gathering>,
    by_client: HashMap<MqttStr, usize, Hasher>,
}

impl Groups {
    fn clear(&mut self) {
        self.open.clear();
        self.by_client.clear();
    }

    fn take(&mut self, at: usize) -> Gathering {
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
    undo: Vec<Undo>,
}

pub(super) struct Writer<'a> {
    pub(super) db: &'a Database,
    pub(super) rx: mpsc::Receiver<Op>,
    pub(super) committed: &'a watch::Sender<Committed>,
    pub(super) shared: &'a WriterShared,
    pub(super) durability: Durability,
    pub(super) interval: Duration,
    pub(super) index: QueueIndex,
}

impl Writer<'_> {
    pub(super) fn run(mut self) {
        // Operations to commit: what arrived, plus a failed batch's.
        let mut batch = Vec::new();
        let mut scratch = Scratch::default();
        // Channel items taken (tickets count these).
        let mut received = 0u64;
        let mut retry = FIRST_RETRY;
        let mut open = true;
        while open {
            let retrying = !batch.is_empty();
            let first = if retrying {
                self.rx.recv_timeout(retry)
            } else {
                match self.durability {
                    Durability::Sync => self
                        .rx
                        .recv()
                        .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                    Durability::Periodic => self.rx.recv_timeout(self.interval),
                }
            };
            match first {
                Ok(op) => {
                    push(&mut batch, op);
                    received += 1;
                    if self.durability == Durability::Periodic && !retrying {
                        std::thread::sleep(self.interval);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !retrying => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
            }
            for op in self.rx.try_iter().take(100_000) {
                push(&mut batch, op);
                received += 1;
            }
            while self.shared.fault() == Some(Fault::Stall) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let started = std::time::Instant::now();
            let committed = self.commit(&batch, &mut scratch);
            if let Some(histogram) = self.shared.commit_seconds.get() {
                histogram.record(started.elapsed());
            }
            match committed {
                Ok(()) => {
                    batch.clear();
                    retry = FIRST_RETRY;
                    self.report(received, true);
                }
                Err(e) => {
                    self.index.undo(&mut scratch.undo);
                    self.shared.failures.fetch_add(1, Ordering::Relaxed);
                    if self.shared.healthy.swap(false, Ordering::AcqRel) {
                        tracing::error!(
                            "store commit failed: {e}; persisted QoS 1/2 publishes are refused until commits succeed again (retrying)"
                        );
                    }
                    self.report(received, false);
                    if open {
                        retry = (retry * 2).min(LAST_RETRY);
                    }
                }
            }
        }
        if !batch.is_empty() {
            tracing::error!(
                operations = batch.len(),
                "store closed with uncommitted changes: the disk keeps its last committed state"
            );
        }
        if let Err(e) = trim_partly_acknowledged(self.db, &self.index) {
            tracing::warn!("could not trim acknowledged deliveries from the queue: {e}");
        }
    }

    /// Every channel item up to `received` was processed; `durable`: the
    /// commit holding them succeeded (with any retried before them).
    fn report(&self, received: u64, durable: bool) {
        self.committed.send_modify(|c| {
            if durable {
                c.durable = received;
            }
            c.ops = received;
        });
        if durable && !self.shared.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!("store commits succeed again; persisted publishes are accepted");
        }
    }

    /// Applies `batch` in one transaction.
    fn commit(&mut self, batch: &[Op], scratch: &mut Scratch) -> Result<(), redb::Error> {
        scratch.undo.clear();
        if batch.is_empty() {
            return Ok(());
        }
        if self.shared.fault() == Some(Fault::FailCommits) {
            return Err(redb::Error::Corrupted("injected write fault".into()));
        }
        // A delivery queued and acknowledged within the same batch never
        // needs to reach the disk: skip both (sequence numbers are unique).
        let Scratch {
            queued,
            settled,
            groups,
            undo,
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
            Op::Enqueue(_, Delivery { seq, .. }) | Op::Dequeue(seq) | Op::Stage(_, seq, ..) => {
                !settled.contains(seq)
            }
            _ => true,
        });
        if !effective {
            // Everything cancelled out: nothing to write, no fsync.
            return Ok(());
        }
        let index = &mut self.index;
        let txn = self.db.begin_write()?;
        {
            let mut t = Tables {
                txn: &txn,
                retained: txn.open_table(RETAINED)?,
                sessions: txn.open_table(SESSIONS)?,
                queue: txn.open_table(QUEUE)?,
                inflight: None,
                inbound: None,
            };
            for op in batch {
                apply(op, &mut t, index, groups, settled, undo)?;
            }
            for group in groups.open.drain(..) {
                write_group(&mut t.queue, index, group, undo)?;
            }
            groups.by_client.clear();
        }
        txn.commit()?;
        Ok(())
    }
}

/// Adds a channel item to the batch (a group's operations one by one).
fn push(batch: &mut Vec<Op>, op: Op) {
    match op {
        Op::Group(ops) => batch.extend(ops),
        op => batch.push(op),
    }
}

type QueueTable<'t> = Table<'t, (&'static str, u64), &'static [u8]>;

struct Tables<'t> {
    txn: &'t redb::WriteTransaction,
    retained: Table<'t, &'static str, &'static [u8]>,
    sessions: Table<'t, &'static str, &'static [u8]>,
    queue: QueueTable<'t>,
    /// Opened on first use: most batches carry QoS 1 traffic only.
    inflight: Option<QueueTable<'t>>,
    inbound: Option<QueueTable<'t>>,
}

impl<'t> Tables<'t> {
    fn inflight(&mut self) -> Result<&mut QueueTable<'t>, redb::Error> {
        if self.inflight.is_none() {
            self.inflight = Some(self.txn.open_table(INFLIGHT)?);
        }
        Ok(self.inflight.as_mut().expect("opened"))
    }

    fn inbound(&mut self) -> Result<&mut QueueTable<'t>, redb::Error> {
        if self.inbound.is_none() {
            self.inbound = Some(self.txn.open_table(INBOUND)?);
        }
        Ok(self.inbound.as_mut().expect("opened"))
    }
}

fn apply(
    op: &Op,
    t: &mut Tables<'_>,
    index: &mut QueueIndex,
    groups: &mut Groups,
    settled: &HashSet<u64, Hasher>,
    undo: &mut Vec<Undo>,
) -> Result<(), redb::Error> {
    match op {
        Op::PutRetained(topic, value) => {
            t.retained.insert(topic.as_str(), value.as_slice())?;
        }
        Op::DelRetained(topic) => {
            t.retained.remove(topic.as_str())?;
        }
        Op::PutSession(id, value) => {
            t.sessions.insert(id.as_str(), value.as_slice())?;
        }
        Op::DelSession(id) => {
            groups.drop_client(id);
            index.forget_client(id, undo);
            t.sessions.remove(id.as_str())?;
            let range = (id.as_str(), 0u64)..=(id.as_str(), u64::MAX);
            t.queue.retain_in(range.clone(), |_, _| false)?;
            t.inflight()?.retain_in(range.clone(), |_, _| false)?;
            t.inbound()?.retain_in(range, |_, _| false)?;
        }
        Op::Enqueue(_, Delivery { seq, .. }) | Op::Dequeue(seq) | Op::Stage(_, seq, ..)
            if settled.contains(seq) => {}
        Op::Enqueue(id, delivery) => {
            gather(groups, &mut t.queue, index, id.clone(), delivery, undo)?;
        }
        Op::Dequeue(seq) => {
            if let Some(gone) = index.acknowledge(*seq, undo) {
                t.queue.remove((&*gone.client_id, gone.key))?;
                if gone.qos2 {
                    t.inflight()?.remove((&*gone.client_id, gone.key))?;
                }
            }
        }
        Op::Stage(id, seq, packet_id, stage) => {
            // Only for a delivery still on the disk (or on its way there
            // in this batch): a stage must not outlive its record.
            if index.record_of.contains_key(seq) || groups_hold(groups, *seq) {
                let mut value = packet_id.to_be_bytes().to_vec();
                value.push(*stage);
                t.inflight()?
                    .insert((id.as_str(), *seq), value.as_slice())?;
            }
        }
        Op::Inbound(id, packet_id, present) => {
            let key = (id.as_str(), u64::from(*packet_id));
            if *present {
                t.inbound()?.insert(key, &[][..])?;
            } else {
                t.inbound()?.remove(key)?;
            }
        }
        Op::Group(ops) => {
            for op in ops {
                apply(op, t, index, groups, settled, undo)?;
            }
        }
    }
    Ok(())
}

/// Whether a record being gathered holds `seq` (QoS 2 deliveries are
/// written at once, so this is rarely reached).
fn groups_hold(groups: &Groups, seq: u64) -> bool {
    groups.open.iter().any(|g| g.seqs.contains(&seq))
}

/// At a clean stop, rewrites each record that still holds acknowledged
/// deliveries without them, so that a restart does not deliver them again
/// (only a crash may, for QoS 1).
fn trim_partly_acknowledged(db: &Database, index: &QueueIndex) -> Result<(), redb::Error> {
    let partly = index.partly_acknowledged();
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

/// Adds `delivery` to its client's record of this batch (QoS 2: a record
/// of its own, see the module comment).
fn gather(
    groups: &mut Groups,
    queue: &mut QueueTable<'_>,
    index: &mut QueueIndex,
    client_id: MqttStr,
    delivery: &Delivery,
    undo: &mut Vec<Undo>,
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
        groups.open.push(Gathering {
            client_id,
            key: delivery.seq,
            seqs: Vec::new(),
            value,
            qos2: own_record,
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
        write_group(queue, index, group, undo)?;
    }
    Ok(())
}

fn write_group(
    queue: &mut QueueTable<'_>,
    index: &mut QueueIndex,
    group: Gathering,
    undo: &mut Vec<Undo>,
) -> Result<(), redb::Error> {
    queue.insert((&*group.client_id, group.key), &group.value[..])?;
    index.register(&group.client_id, group.key, group.seqs, group.qos2, undo);
    Ok(())
}
