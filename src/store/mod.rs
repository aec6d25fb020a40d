//! Persistence on `redb`: retained messages, persistent sessions and their
//! queued QoS 1/2 deliveries.
//!
//! All writes go through one writer thread that applies every operation
//! waiting in its channel in one transaction (group commit). In `sync`
//! durability a publisher notes the operation count after routing (its
//! ticket) and acknowledges only once [`Store::committed`] reaches it, i.e.
//! after the commit that holds its message. Tickets are handed out in
//! channel order, so one counter serves every publisher.

pub mod backup;
mod index;
mod record;
mod writer;

pub use record::{RecordError, SessionRecord};

use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::watch;

use crate::config::Durability;
use crate::protocol::MqttStr;
use crate::router::{Delivery, DeliveryLog, Logged, Message};
use index::QueueIndex;
use writer::{Op, Writer};

const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue");
/// (client id, delivery sequence) → a QoS 2 delivery's packet id and stage.
const INFLIGHT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inflight");
/// (client id, packet id) → (): QoS 2 packet ids received, not released.
const INBOUND: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbound");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("roles");
const CERTIFICATES: TableDefinition<&str, &[u8]> = TableDefinition::new("certificates");
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
const AUDIT: TableDefinition<&str, &[u8]> = TableDefinition::new("audit");
const OAUTH_CLIENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("oauth_clients");
const OAUTH_GRANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("oauth_grants");

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
    /// Registered OAuth clients, by client id (secrets only as keyed hashes).
    OAuthClients,
    /// OAuth refresh-token families, by family id (never a token).
    OAuthGrants,
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
            IdentityTable::OAuthClients => OAUTH_CLIENTS,
            IdentityTable::OAuthGrants => OAUTH_GRANTS,
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

/// How far the writer has got, in submission order (tickets count
/// submitted operations, see [`Store::submitted`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Operations processed: committed, or in a commit that failed.
    pub ops: u64,
    /// Operations on the disk. A failed batch is retried with what came
    /// after it, so this catches up with `ops` once commits succeed again.
    pub durable: u64,
}

/// What became of the operations up to a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    /// On the disk.
    Durable,
    /// Its commit failed (it is being retried): the publisher must not be
    /// told it was stored.
    Failed,
}

impl Committed {
    pub fn outcome(&self, ticket: u64) -> Outcome {
        if self.durable >= ticket {
            Outcome::Durable
        } else if self.ops >= ticket {
            Outcome::Failed
        } else {
            Outcome::Pending
        }
    }
}

/// A QoS 2 delivery's progress as stored: its packet id, and whether its
/// PUBREL was sent (`true`) or only its PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredStage {
    pub packet_id: u16,
    pub released: bool,
}

/// One persistent session as the store held it at start-up.
#[derive(Default)]
pub struct LoadedSession {
    pub client_id: String,
    pub record: SessionRecord,
    /// Queued deliveries in order, each with its stage if it was in flight.
    pub deliveries: Vec<(Delivery, Option<StoredStage>)>,
    /// QoS 2 packet ids received from the client and not yet released.
    pub inbound_qos2: Vec<u16>,
}

/// What the store held at start-up.
#[derive(Default)]
pub struct Loaded {
    pub retained: Vec<Message>,
    pub sessions: Vec<LoadedSession>,
}

/// A write fault to inject (tests of the failure paths).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Every commit fails.
    FailCommits = 1,
    /// The writer waits before committing, so acknowledgements are held.
    Stall = 2,
}

/// What the writer thread shares with the rest of the store.
#[derive(Default)]
pub(super) struct WriterShared {
    healthy: AtomicBool,
    /// Set by [`Store::close`]; read on every persisted publish, so it is
    /// not the channel's lock.
    closed: AtomicBool,
    failures: AtomicU64,
    fault: AtomicU8,
    /// Where the writer records each commit's duration (`/metrics`).
    commit_seconds: std::sync::OnceLock<metrics::Histogram>,
}

impl WriterShared {
    fn fault(&self) -> Option<Fault> {
        match self.fault.load(Ordering::Relaxed) {
            1 => Some(Fault::FailCommits),
            2 => Some(Fault::Stall),
            _ => None,
        }
    }
}

/// Operations gathered by [`Store::atomically`] on one thread. The buffer
/// is kept, so a publish that writes one operation allocates nothing.
struct Gathering {
    /// Nested `atomically` calls: the outermost one sends.
    depth: u32,
    ops: Vec<Op>,
    /// What the scope has written so far (operations sent at once, such as
    /// retained messages, count too).
    written: Written,
}

thread_local! {
    static GATHERED: RefCell<Gathering> = const {
        RefCell::new(Gathering {
            depth: 0,
            ops: Vec::new(),
            written: Written::Nothing,
        })
    };
}

/// What a scope of [`Store::atomically`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Nothing,
    /// Operations up to this ticket (its own are the last of them).
    Upto(u64),
    /// The store was closed: nothing could be written.
    Closed,
}

impl Written {
    fn and(self, sent: Option<u64>) -> Written {
        match (self, sent) {
            (Written::Closed, _) | (_, None) => Written::Closed,
            (Written::Upto(a), Some(b)) => Written::Upto(a.max(b)),
            (Written::Nothing, Some(b)) => Written::Upto(b),
        }
    }
}

/// Resets the gathering if a scope unwinds, so the thread does not go on
/// gathering forever.
struct Unwinding;

impl Drop for Unwinding {
    fn drop(&mut self) {
        if std::thread::panicking() {
            GATHERED.with_borrow_mut(|g| {
                g.depth = 0;
                g.ops.clear();
                g.written = Written::Nothing;
            });
        }
    }
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
    shared: Arc<WriterShared>,
}

impl Store {
    /// Opens (or creates) `dir/gatehouse.redb`, compacts it, loads its
    /// contents and starts the writer thread.
    pub fn open(
        dir: &Path,
        durability: Durability,
        interval: Duration,
    ) -> Result<Store, StoreError> {
        let path =
            create_private(dir).map_err(|e| StoreError::Dir(dir.display().to_string(), e))?;
        let mut db = match Database::create(path) {
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
            OAUTH_CLIENTS,
            OAUTH_GRANTS,
        ] {
            txn.open_table(table).map_err(db_err)?;
        }
        for table in [QUEUE, INFLIGHT, INBOUND] {
            txn.open_table(table).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        let (loaded, index, max_seq) = load(&db)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let (committed_tx, committed) = watch::channel(Committed::default());
        let shared = Arc::new(WriterShared {
            healthy: AtomicBool::new(true),
            ..WriterShared::default()
        });
        let (writer_db, writer_shared) = (db.clone(), shared.clone());
        let writer = std::thread::Builder::new()
            .name("gatehouse-store".into())
            .spawn(move || {
                Writer {
                    db: &writer_db,
                    rx,
                    committed: &committed_tx,
                    shared: &writer_shared,
                    durability,
                    interval,
                    index,
                }
                .run()
            })
            .map_err(|e| StoreError::Dir(dir.display().to_string(), e))?;
        Ok(Store {
            db: parking_lot::RwLock::new(Some(db)),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            next_seq: AtomicU64::new(max_seq + 1),
            submitted: AtomicU64::new(0),
            committed,
            loaded: Mutex::new(Some(loaded)),
            shared,
        })
    }

    /// The contents found at start-up (once).
    pub fn take_loaded(&self) -> Option<Loaded> {
        self.loaded.lock().take()
    }

    /// Counting and sending under one lock keeps tickets in channel order.
    /// Inside [`atomically`](Self::atomically) the operation is gathered
    /// instead.
    /// Returns whether the operation was gathered (not sent yet).
    fn send(&self, op: Op) -> bool {
        let op = GATHERED.with_borrow_mut(|g| {
            if g.depth == 0 {
                return Some(op);
            }
            g.ops.push(op);
            None
        });
        match op {
            Some(op) => {
                self.send_now(op);
                false
            }
            None => true,
        }
    }

    /// Sends at once, even inside [`atomically`](Self::atomically) (whose
    /// scope still counts it). Returns the operation's ticket; `None` when
    /// the store is closed.
    fn send_now(&self, op: Op) -> Option<u64> {
        let ticket = match self.tx.lock().as_ref() {
            Some(tx) => {
                let ticket = self.submitted.fetch_add(1, Ordering::Relaxed) + 1;
                let _ = tx.send(op);
                Some(ticket)
            }
            None => None,
        };
        GATHERED.with_borrow_mut(|g| {
            if g.depth > 0 {
                g.written = g.written.and(ticket);
            }
        });
        ticket
    }

    /// Runs `f`; every store operation it submits reaches the disk in one
    /// transaction (a publish, the copies it queued for persistent
    /// sessions, its retained message and its QoS 2 packet id: a crash
    /// keeps all or none of them).
    ///
    /// Returns what the scope wrote, so that a publish waits for its own
    /// operations only. Deliveries routed meanwhile become visible when the
    /// caller runs `router::flush_deferred` after this.
    pub fn atomically<R>(&self, f: impl FnOnce() -> R) -> (R, Written) {
        let unwinding = Unwinding;
        GATHERED.with_borrow_mut(|g| g.depth += 1);
        let result = f();
        let gathered = GATHERED.with_borrow_mut(|g| {
            g.depth -= 1;
            match (g.depth, g.ops.len()) {
                (0, 1) => g.ops.pop(),
                (0, n) if n > 1 => Some(Op::Group(std::mem::take(&mut g.ops))),
                _ => None,
            }
        });
        let mut written = GATHERED.with_borrow(|g| g.written);
        if let Some(op) = gathered {
            written = written.and(self.send_now(op));
        }
        GATHERED.with_borrow_mut(|g| {
            if g.depth == 0 {
                g.written = Written::Nothing;
            }
        });
        drop(unwinding);
        (result, written)
    }

    /// The store is not closed and its last commit succeeded: persisted
    /// publishes may be accepted.
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed) && !self.is_closed()
    }

    /// Records every commit's duration into `histogram` from now on.
    pub fn set_commit_histogram(&self, histogram: metrics::Histogram) {
        let _ = self.shared.commit_seconds.set(histogram);
    }

    /// Commits that failed since start.
    pub fn commit_failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// Closed by shutdown: nothing more can be stored.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Injects a write fault (`None` clears it). For tests of the failure
    /// paths; nothing else calls it.
    #[doc(hidden)]
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.shared
            .fault
            .store(fault.map_or(0, |f| f as u8), Ordering::Relaxed);
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

    /// Sent at once, never gathered: the caller holds the retained map's
    /// lock, so the disk gets changes in the order memory did.
    pub fn put_retained(&self, message: &Message) {
        if message.payload.is_empty() {
            self.send_now(Op::DelRetained(message.topic.to_string()));
        } else {
            self.send_now(Op::PutRetained(
                message.topic.to_string(),
                record::encode_message(message),
            ));
        }
    }

    pub fn delete_retained(&self, topic: &str) {
        self.send_now(Op::DelRetained(topic.to_owned()));
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

    /// Records a persisted QoS 2 delivery's packet id and stage; the
    /// packet may go on the wire once this is durable.
    pub fn stage(&self, client_id: &MqttStr, seq: u64, stage: StoredStage) {
        if seq != 0 {
            let released = u8::from(stage.released) + 1;
            self.send(Op::Stage(client_id.clone(), seq, stage.packet_id, released));
        }
    }

    /// Records a QoS 2 packet id received from a persistent session's
    /// client (`true`), or its release by PUBREL (`false`).
    pub fn inbound_qos2(&self, client_id: &MqttStr, packet_id: u16, present: bool) {
        self.send(Op::Inbound(client_id.clone(), packet_id, present));
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
        self.shared.closed.store(true, Ordering::Release);
        drop(self.tx.lock().take());
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
        self.db.write().take();
    }
}

impl DeliveryLog for Store {
    fn enqueued(&self, client_id: &MqttStr, delivery: &Delivery) -> Logged {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut delivery = delivery.clone();
        delivery.seq = seq;
        let deferred = self.send(Op::Enqueue(client_id.clone(), delivery));
        Logged { seq, deferred }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// Creates `dir` (0700) and the database file (0600) when missing, and
/// narrows an existing file to 0600: it holds password hashes and payloads.
fn create_private(dir: &Path) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    } else if std::fs::metadata(dir)?.permissions().mode() & 0o077 != 0 {
        // Not narrowed: the operator may share it on purpose; the file
        // itself is 0600 in any case.
        tracing::warn!(dir = %dir.display(), "the data directory is open to other users; 0700 is recommended");
    }
    let path = dir.join("gatehouse.redb");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
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
    let inflight = txn.open_table(INFLIGHT).map_err(db_err)?;
    let inbound = txn.open_table(INBOUND).map_err(db_err)?;
    let mut index = QueueIndex::default();
    let undo = &mut Vec::new();
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
        let range = (client_id.as_str(), 0u64)..=(client_id.as_str(), u64::MAX);
        let mut stages = HashMap::new();
        for entry in inflight.range(range.clone()).map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            if let [hi, lo, stage] = *value.value() {
                let stage = StoredStage {
                    packet_id: u16::from_be_bytes([hi, lo]),
                    released: stage == 2,
                };
                stages.insert(key.value().1, stage);
            }
        }
        let mut deliveries = Vec::new();
        for entry in queue.range(range.clone()).map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            let key = key.value().1;
            max_seq = max_seq.max(key);
            match record::decode_queue_record(value.value(), key) {
                Ok(found) => {
                    let qos2 =
                        found.len() == 1 && found[0].qos == crate::protocol::QoS::ExactlyOnce;
                    index.register(
                        &client_id,
                        key,
                        found.iter().map(|d| d.seq).collect(),
                        qos2,
                        undo,
                    );
                    max_seq = found.iter().map(|d| d.seq).fold(max_seq, u64::max);
                    deliveries.extend(found.into_iter().map(|d| {
                        let stage = stages.get(&d.seq).copied();
                        (d, stage)
                    }));
                }
                Err(e) => tracing::warn!(client_id, key, "skipping queued messages: {e}"),
            }
        }
        let mut inbound_qos2 = Vec::new();
        for entry in inbound.range(range).map_err(db_err)? {
            let (key, _) = entry.map_err(db_err)?;
            if let Ok(id) = u16::try_from(key.value().1) {
                inbound_qos2.push(id);
            }
        }
        sessions.push(LoadedSession {
            client_id,
            record,
            deliveries,
            inbound_qos2,
        });
    }
    Ok((Loaded { retained, sessions }, index, max_seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::QoS;
    use crate::router::{Mailbox, MailboxLimits, SubscriptionIds};

    fn delivery() -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: "t".into(),
                payload: bytes::Bytes::from_static(b"p"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
                expires_at: None,
                origin: None,
            }),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: SubscriptionIds::None,
            shared: None,
            seq: 0,
        }
    }

    /// A delivery queued inside a publish's transaction stays invisible
    /// until that transaction is on its way to the store: the
    /// subscriber's acknowledgement (or QoS 2 stage) can then never reach
    /// the writer before the record it refers to.
    #[test]
    fn a_gathered_delivery_is_seen_only_after_its_transaction_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(dir.path(), Durability::Sync, Duration::from_millis(10)).unwrap());
        let limits = MailboxLimits {
            max_messages: 10,
            max_bytes: 1 << 20,
        };
        let mailbox = Arc::new(Mailbox::new("sub".into(), limits));
        mailbox.set_log(Some(store.clone() as Arc<dyn DeliveryLog>));
        mailbox.set_online(true);
        let before = store.submitted();
        let (pushed, written) = store.atomically(|| {
            assert!(mailbox.push(delivery()));
            assert_eq!(store.submitted(), before, "gathered, not sent");
            mailbox.len()
        });
        assert_eq!(pushed, 0, "not visible while gathered");
        assert_eq!(written, Written::Upto(before + 1));
        assert_eq!(mailbox.len(), 0, "not visible before the flush");
        crate::router::flush_deferred();
        assert_eq!(mailbox.len(), 1);
        // Outside a publish, a delivery is sent and visible at once.
        assert!(mailbox.push(delivery()));
        assert_eq!((mailbox.len(), store.submitted()), (2, before + 2));
        store.close();
    }
}
