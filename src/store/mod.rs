//! Persistence on `redb`: retained messages, persistent sessions and their
//! queued QoS 1/2 deliveries.
//!
//! All writes go through one writer thread that applies every operation
//! waiting in its channel in one transaction (group commit). In `sync`
//! durability a publisher notes the operation count after routing (its
//! ticket) and acknowledges only once [`Store::committed`] reaches it, i.e.
//! after the commit that holds its message. Tickets are handed out in
//! channel order, so one counter serves every publisher.

mod record;

pub use record::{RecordError, SessionRecord};

use bytes::BytesMut;
use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::watch;

use crate::config::Durability;
use crate::protocol::MqttStr;
use crate::router::{Delivery, DeliveryLog, Message};

const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("roles");
const CERTIFICATES: TableDefinition<&str, &[u8]> = TableDefinition::new("certificates");

/// The identity tables (users and roles, stored as JSON by `identity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityTable {
    Users,
    Roles,
    Certificates,
}

impl IdentityTable {
    fn definition(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            IdentityTable::Users => USERS,
            IdentityTable::Roles => ROLES,
            IdentityTable::Certificates => CERTIFICATES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create storage directory {0}: {1}")]
    Dir(String, std::io::Error),
    #[error(
        "the store in {0} is in use by another process (is the broker running? use the admin API)"
    )]
    InUse(String),
    #[error("the store is closed")]
    Closed,
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    #[error(transparent)]
    Record(#[from] RecordError),
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db(e.into())
}

/// One change for the writer thread. Queue operations, the hot ones, carry
/// reference-counted values (no allocation to submit one) and are encoded
/// on the writer thread, and only when they reach the disk: most deliveries
/// are acknowledged within the batch that queued them.
enum Op {
    PutRetained(String, Vec<u8>),
    DelRetained(String),
    PutSession(String, Vec<u8>),
    /// Deletes the session record and all its queued deliveries.
    DelSession(String),
    Enqueue(MqttStr, Delivery),
    Dequeue(MqttStr, u64),
}

/// How far the writer has got: operations committed, in submission order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    pub ops: u64,
    /// A commit failed: nothing after it will be acknowledged.
    pub failed: bool,
}

/// What the store held at start-up.
pub struct Loaded {
    pub retained: Vec<Message>,
    pub sessions: Vec<(String, SessionRecord, Vec<Delivery>)>,
}

pub struct Store {
    /// Dropped by [`Store::close`], which releases the file even while
    /// other parts of a stopped broker still hold the `Store`.
    db: parking_lot::RwLock<Option<Arc<Database>>>,
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    next_seq: AtomicU64,
    submitted: AtomicU64,
    committed: watch::Receiver<Committed>,
    loaded: Mutex<Option<Loaded>>,
}

impl Store {
    /// Opens (or creates) `dir/gatehouse.redb`, compacts it, loads its
    /// contents and starts the writer thread.
    pub fn open(
        dir: &Path,
        durability: Durability,
        interval: Duration,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Dir(dir.display().to_string(), e))?;
        let mut db = match Database::create(dir.join("gatehouse.redb")) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::InUse(dir.display().to_string()));
            }
            Err(e) => return Err(db_err(e)),
        };
        // redb files never shrink by themselves.
        db.compact().map_err(db_err)?;
        let txn = db.begin_write().map_err(db_err)?;
        for table in [RETAINED, SESSIONS, USERS, ROLES, CERTIFICATES] {
            txn.open_table(table).map_err(db_err)?;
        }
        txn.open_table(QUEUE).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        let (loaded, max_seq) = load(&db)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let (committed_tx, committed) = watch::channel(Committed::default());
        let writer_db = db.clone();
        let writer = std::thread::Builder::new()
            .name("gatehouse-store".into())
            .spawn(move || writer_loop(&writer_db, rx, &committed_tx, durability, interval))
            .map_err(|e| StoreError::Dir(dir.display().to_string(), e))?;
        Ok(Store {
            db: parking_lot::RwLock::new(Some(db)),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            next_seq: AtomicU64::new(max_seq + 1),
            submitted: AtomicU64::new(0),
            committed,
            loaded: Mutex::new(Some(loaded)),
        })
    }

    /// The contents found at start-up (once).
    pub fn take_loaded(&self) -> Option<Loaded> {
        self.loaded.lock().take()
    }

    /// Counting and sending under one lock keeps tickets in channel order.
    fn send(&self, op: Op) {
        if let Some(tx) = self.tx.lock().as_ref() {
            self.submitted.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(op);
        }
    }

    /// Count of operations submitted so far; a publisher compares it
    /// before and after routing to know whether it must wait for a commit.
    pub fn submitted(&self) -> u64 {
        self.submitted.load(Ordering::Relaxed)
    }

    /// Follows the writer's progress (see [`Committed`]).
    pub fn committed(&self) -> watch::Receiver<Committed> {
        self.committed.clone()
    }

    pub fn put_retained(&self, message: &Message) {
        if message.payload.is_empty() {
            self.send(Op::DelRetained(message.topic.to_string()));
        } else {
            self.send(Op::PutRetained(
                message.topic.to_string(),
                record::encode_message(message),
            ));
        }
    }

    pub fn delete_retained(&self, topic: &str) {
        self.send(Op::DelRetained(topic.to_owned()));
    }

    pub fn put_session(&self, client_id: &str, record: &SessionRecord) {
        self.send(Op::PutSession(client_id.to_owned(), record.encode()));
    }

    pub fn delete_session(&self, client_id: &str) {
        self.send(Op::DelSession(client_id.to_owned()));
    }

    /// A persisted delivery was acknowledged by its subscriber.
    pub fn dequeue(&self, client_id: &MqttStr, seq: u64) {
        if seq != 0 {
            self.send(Op::Dequeue(client_id.clone(), seq));
        }
    }

    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db.read().clone().ok_or(StoreError::Closed)
    }

    /// All records of an identity table.
    pub fn load_identity(&self, table: IdentityTable) -> Result<Vec<Vec<u8>>, StoreError> {
        let txn = self.db()?.begin_read().map_err(db_err)?;
        let table = txn.open_table(table.definition()).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_err)? {
            let (_, value) = entry.map_err(db_err)?;
            out.push(value.value().to_vec());
        }
        Ok(out)
    }

    /// Writes (or with `None` deletes) an identity record, durably, now.
    /// Identity changes are rare and must not be lost, so they bypass the
    /// group-commit queue.
    pub fn put_identity(
        &self,
        table: IdentityTable,
        id: &str,
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let txn = self.db()?.begin_write().map_err(db_err)?;
        {
            let mut t = txn.open_table(table.definition()).map_err(db_err)?;
            match value {
                Some(value) => t.insert(id, value).map(drop),
                None => t.remove(id).map(drop),
            }
            .map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    /// Commits what is pending and stops the writer thread.
    pub fn close(&self) {
        drop(self.tx.lock().take());
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
        self.db.write().take();
    }
}

impl DeliveryLog for Store {
    fn enqueued(&self, client_id: &MqttStr, delivery: &Delivery) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut delivery = delivery.clone();
        delivery.seq = seq;
        self.send(Op::Enqueue(client_id.clone(), delivery));
        seq
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn load(db: &Database) -> Result<(Loaded, u64), StoreError> {
    let txn = db.begin_read().map_err(db_err)?;
    let mut retained = Vec::new();
    for entry in txn
        .open_table(RETAINED)
        .map_err(db_err)?
        .iter()
        .map_err(db_err)?
    {
        let (_, value) = entry.map_err(db_err)?;
        match record::decode_message(value.value()) {
            Ok(message) => retained.push(message),
            Err(e) => tracing::warn!("skipping retained message: {e}"),
        }
    }
    let queue = txn.open_table(QUEUE).map_err(db_err)?;
    let mut max_seq = 0;
    let mut sessions = Vec::new();
    for entry in txn
        .open_table(SESSIONS)
        .map_err(db_err)?
        .iter()
        .map_err(db_err)?
    {
        let (key, value) = entry.map_err(db_err)?;
        let client_id = key.value().to_owned();
        let record = match SessionRecord::decode(value.value()) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(client_id, "skipping session: {e}");
                continue;
            }
        };
        let mut deliveries = Vec::new();
        let range = (client_id.as_str(), 0u64)..=(client_id.as_str(), u64::MAX);
        for entry in queue.range(range).map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            let seq = key.value().1;
            max_seq = max_seq.max(seq);
            match record::decode_delivery(value.value(), seq) {
                Ok(delivery) => deliveries.push(delivery),
                Err(e) => tracing::warn!(client_id, seq, "skipping queued message: {e}"),
            }
        }
        sessions.push((client_id, record, deliveries));
    }
    Ok((Loaded { retained, sessions }, max_seq))
}

fn writer_loop(
    db: &Database,
    rx: mpsc::Receiver<Op>,
    committed: &watch::Sender<Committed>,
    durability: Durability,
    interval: Duration,
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
        publish_progress(committed, received, commit(db, &mut batch, &mut scratch));
    }
    batch.extend(rx.try_iter());
    received += batch.len() as u64;
    publish_progress(committed, received, commit(db, &mut batch, &mut scratch));
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

/// The writer's reusable working memory: a batch allocates nothing once
/// these have grown to the batch size.
#[derive(Default)]
struct Scratch {
    queued: HashSet<u64, foldhash::fast::RandomState>,
    settled: HashSet<u64, foldhash::fast::RandomState>,
    record: BytesMut,
}

/// Applies `batch` in one transaction; returns whether it committed.
fn commit(db: &Database, batch: &mut Vec<Op>, scratch: &mut Scratch) -> bool {
    if batch.is_empty() {
        return true;
    }
    // A delivery queued and acknowledged within the same batch never
    // needs to reach the disk: skip both (sequence numbers are unique).
    let Scratch {
        queued,
        settled,
        record,
    } = scratch;
    queued.clear();
    settled.clear();
    queued.extend(batch.iter().filter_map(|op| match op {
        Op::Enqueue(_, delivery) => Some(delivery.seq),
        _ => None,
    }));
    settled.extend(batch.iter().filter_map(|op| match op {
        Op::Dequeue(_, seq) if queued.contains(seq) => Some(*seq),
        _ => None,
    }));
    let effective = batch.iter().any(|op| match op {
        Op::Enqueue(_, Delivery { seq, .. }) | Op::Dequeue(_, seq) => !settled.contains(seq),
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
                        sessions.remove(id.as_str())?;
                        let range = (id.as_str(), 0u64)..=(id.as_str(), u64::MAX);
                        queue.retain_in(range, |_, _| false)?;
                    }
                    Op::Enqueue(_, Delivery { seq, .. }) | Op::Dequeue(_, seq)
                        if settled.contains(&seq) => {}
                    Op::Enqueue(id, delivery) => {
                        record.clear();
                        record::encode_delivery(&delivery, record);
                        queue.insert((id.as_str(), delivery.seq), &record[..])?;
                    }
                    Op::Dequeue(id, seq) => {
                        queue.remove((id.as_str(), seq))?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    })();
    match result {
        Ok(()) => true,
        Err(e) => {
            batch.clear();
            tracing::error!("store commit failed: {e}");
            false
        }
    }
}
