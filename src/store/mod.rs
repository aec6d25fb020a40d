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
mod writer;

pub use record::{RecordError, SessionRecord};

use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
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
use writer::{Op, QueueIndex};

const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("roles");
const CERTIFICATES: TableDefinition<&str, &[u8]> = TableDefinition::new("certificates");
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
const AUDIT: TableDefinition<&str, &[u8]> = TableDefinition::new("audit");

/// The identity tables (users and roles, stored as JSON by `identity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityTable {
    Users,
    Roles,
    Certificates,
    /// Issued API tokens (fingerprint, label, times; never the token).
    Tokens,
    /// Per-user MFA state and account flags, by user id.
    Accounts,
    /// The admin audit log, by zero-padded sequence number.
    Audit,
}

impl IdentityTable {
    fn definition(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            IdentityTable::Users => USERS,
            IdentityTable::Roles => ROLES,
            IdentityTable::Certificates => CERTIFICATES,
            IdentityTable::Tokens => TOKENS,
            IdentityTable::Accounts => ACCOUNTS,
            IdentityTable::Audit => AUDIT,
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
        for table in [
            RETAINED,
            SESSIONS,
            USERS,
            ROLES,
            CERTIFICATES,
            TOKENS,
            ACCOUNTS,
            AUDIT,
        ] {
            txn.open_table(table).map_err(db_err)?;
        }
        txn.open_table(QUEUE).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        let (loaded, index, max_seq) = load(&db)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let (committed_tx, committed) = watch::channel(Committed::default());
        let writer_db = db.clone();
        let writer = std::thread::Builder::new()
            .name("gatehouse-store".into())
            .spawn(move || writer::run(&writer_db, rx, &committed_tx, durability, interval, index))
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
    pub fn dequeue(&self, seq: u64) {
        if seq != 0 {
            self.send(Op::Dequeue(seq));
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

    /// Several identity writes (or deletes) in one durable transaction:
    /// one commit instead of one per record (e.g. a token record and its
    /// audit entry).
    pub fn put_identity_batch(
        &self,
        writes: &[(IdentityTable, &str, Option<&[u8]>)],
    ) -> Result<(), StoreError> {
        let txn = self.db()?.begin_write().map_err(db_err)?;
        for (table, id, value) in writes {
            let mut t = txn.open_table(table.definition()).map_err(db_err)?;
            match value {
                Some(value) => t.insert(*id, *value).map(drop),
                None => t.remove(*id).map(drop),
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

fn load(db: &Database) -> Result<(Loaded, QueueIndex, u64), StoreError> {
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
    let mut index = QueueIndex::default();
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
            let key = key.value().1;
            max_seq = max_seq.max(key);
            match record::decode_queue_record(value.value(), key) {
                Ok(found) => {
                    index.register(&client_id, key, found.iter().map(|d| d.seq).collect());
                    max_seq = found.iter().map(|d| d.seq).fold(max_seq, u64::max);
                    deliveries.extend(found);
                }
                Err(e) => tracing::warn!(client_id, key, "skipping queued messages: {e}"),
            }
        }
        sessions.push((client_id, record, deliveries));
    }
    Ok((Loaded { retained, sessions }, index, max_seq))
}
