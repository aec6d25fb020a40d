//! The client registry's memory: whether it is open, and the requests of
//! devices that asked for an identity (pending, or granted and waiting to
//! be fetched). Nothing here survives a restart: the registry starts
//! locked and empty. Bounded in number and age, so an open registry cannot
//! be filled without limit. The flows that use it are beside it: a
//! request's checks (`request.rs`), register, confirm and reject
//! (`service.rs`), and the MQTT implicit flow (`implicit.rs`).

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

mod implicit;
mod request;
mod service;

pub use implicit::ImplicitRegistrations;
pub use request::{MAX_CONTEXT_CHARS, MAX_WISHES, Registered, Registration, RegistryError};

use crate::config::Registry as RegistryConfig;
use crate::identity::model::Permission;
use crate::identity::rate::RateLimiter;
use crate::identity::totp::base32;
use crate::router::now_millis;
use crate::tls::{CaError, CertificateAuthority};

/// Characters of a pairing code (8 base32 characters: 40 bits).
pub const PAIRING_CODE_LEN: usize = 8;

/// What a device offered to prove itself with later.
#[derive(Clone)]
pub enum Credential {
    /// argon2id PHC of the requested password (the password itself is
    /// never kept).
    Password { hash: String },
    /// A CSR whose signature verified: its PEM text (public material) and
    /// SHA-256 of its public key.
    Csr { pem: String, key_digest: [u8; 32] },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.method())
    }
}

impl Credential {
    /// `password` or `csr`, as the API names the method.
    pub fn method(&self) -> &'static str {
        match self {
            Credential::Password { .. } => "password",
            Credential::Csr { .. } => "csr",
        }
    }

    /// The short code an administrator compares with the one the device
    /// shows: base32 of SHA-256 of the CSR's public key (a device computes
    /// it with openssl, `docs/onboarding.md`), or of the user name and the
    /// stored password hash (random salt: it says nothing about the
    /// password; the device prints the code from its 202 answer).
    pub fn pairing_code(&self, username: &str) -> String {
        let digest: [u8; 32] = match self {
            Credential::Csr { key_digest, .. } => *key_digest,
            Credential::Password { hash } => {
                let mut h = Sha256::new();
                h.update(username.as_bytes());
                h.update([0]);
                h.update(hash.as_bytes());
                h.finalize().into()
            }
        };
        let mut code = base32(&digest[..5]);
        code.truncate(PAIRING_CODE_LEN);
        code
    }
}

/// Over HTTP (`register`) or a refused MQTT CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Explicit,
    Implicit,
}

impl Flow {
    pub fn name(self) -> &'static str {
        match self {
            Flow::Explicit => "explicit",
            Flow::Implicit => "implicit",
        }
    }
}

/// What the device asked for besides its credential; granted only as an
/// administrator confirms it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wishes {
    pub roles: Vec<String>,
    pub permissions: Vec<Permission>,
    /// Free text: where the request comes from.
    pub context: Option<String>,
}

/// What a granted explicit request answers with (once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub certificate: Option<String>,
    pub ca_certificate: Option<String>,
}

/// One request, as the administrator lists it.
#[derive(Debug, Clone)]
pub struct PendingRequest {
    pub id: String,
    pub username: String,
    pub credential: Credential,
    pub wishes: Wishes,
    pub flow: Flow,
    pub address: IpAddr,
    /// Unix milliseconds.
    pub first_seen: u64,
    pub last_seen: u64,
    pub attempts: u64,
    /// Requests for the same name with another password or key, refused
    /// while this one is pending: someone else wants this identity too,
    /// so the administrator should find out which device is the real one.
    pub conflicts: u64,
    pub pairing_code: String,
    /// Set when an administrator confirmed it.
    pub granted: Option<Grant>,
    /// Its age counts from here (first seen, then granted).
    since: Instant,
}

/// A new request for [`ClientRegistry::insert`].
#[derive(Debug)]
pub struct NewRequest {
    pub username: String,
    pub credential: Credential,
    pub wishes: Wishes,
    pub flow: Flow,
    pub address: IpAddr,
}

/// Why a request was not added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertRefused {
    /// Another request for this name arrived meanwhile.
    Taken,
    /// `max_pending` requests are held; the oldest frees its place in
    /// this long.
    Full(Duration),
    Locked,
}

/// What a repeated request finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repeat {
    /// Still pending: its pairing code.
    Pending(String),
    /// Granted: the entry is gone now; this is its answer.
    Granted(Grant),
    /// Rejected or expired meanwhile.
    Gone,
}

/// The lock state and requests, as listed.
#[derive(Debug, Clone)]
pub struct RegistryStatus {
    pub locked: bool,
    /// Unix milliseconds; `None` while locked.
    pub unlocked_until: Option<u64>,
    pub requests: Vec<PendingRequest>,
}

pub struct ClientRegistry {
    config: RegistryConfig,
    /// Monotonic zero for `open_until`.
    epoch: Instant,
    /// Milliseconds after `epoch` until which the registry is open; 0 is
    /// locked. Read without a lock on the MQTT unknown-user path.
    open_until: AtomicU64,
    /// Requests by user name (one per name).
    requests: Mutex<BTreeMap<String, PendingRequest>>,
    /// Registrations per address (keys `register:` and `mqtt:`).
    pub(super) per_address: RateLimiter,
    /// argon2 runs for the implicit flow, at most one per core; a CONNECT
    /// that finds none free is not recorded (it is refused anyway).
    pub(super) implicit_hashing: Arc<Semaphore>,
    /// Serialises confirm and reject (each creates or drops one user).
    pub(super) decisions: Mutex<()>,
    ca_dir: PathBuf,
    ca: Mutex<Option<Arc<CertificateAuthority>>>,
    pub(super) device_cert_days: u32,
}

fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl ClientRegistry {
    /// Locked and empty. The CA in `ca_dir` is loaded at the first CSR
    /// confirmed (created there if the broker has no TLS listener).
    pub fn new(config: &RegistryConfig, ca_dir: PathBuf, device_cert_days: u32) -> ClientRegistry {
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        ClientRegistry {
            config: config.clone(),
            epoch: Instant::now(),
            open_until: AtomicU64::new(0),
            requests: Mutex::new(BTreeMap::new()),
            per_address: RateLimiter::new(config.rate_per_address_per_minute),
            implicit_hashing: Arc::new(Semaphore::new(parallel)),
            decisions: Mutex::new(()),
            ca_dir,
            ca: Mutex::new(None),
            device_cert_days,
        }
    }

    pub fn implicit_flow(&self) -> bool {
        self.config.implicit_flow
    }

    fn now_ms(&self) -> u64 {
        // +1: 0 means locked, so "now" is never 0.
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Open now? Lock-free; the registry relocks when its time is up.
    pub fn is_open(&self) -> bool {
        self.now_ms() < self.open_until.load(Ordering::Acquire)
    }

    /// Opens for `duration` (default `default_unlock_minutes`, cut to
    /// `max_unlock_minutes`); returns how long it will be open.
    pub fn unlock(&self, duration: Option<Duration>) -> Duration {
        let max = Duration::from_secs(self.config.max_unlock_minutes * 60);
        let duration = duration
            .unwrap_or(Duration::from_secs(self.config.default_unlock_minutes * 60))
            .min(max);
        let until = self.now_ms() + duration.as_millis() as u64;
        self.open_until.store(until, Ordering::Release);
        duration
    }

    pub fn lock(&self) {
        self.open_until.store(0, Ordering::Release);
    }

    /// Unix milliseconds until which it is open.
    fn unlocked_until(&self) -> Option<u64> {
        let until = self.open_until.load(Ordering::Acquire);
        let now = self.now_ms();
        (now < until).then(|| now_millis() + (until - now))
    }

    fn max_age(&self) -> Duration {
        Duration::from_secs(self.config.pending_max_age_secs)
    }

    /// Drops requests older than `pending_max_age_secs`.
    fn prune(&self, requests: &mut BTreeMap<String, PendingRequest>) {
        let max_age = self.max_age();
        requests.retain(|_, r| r.since.elapsed() < max_age);
    }

    pub fn status(&self) -> RegistryStatus {
        let mut requests = self.requests.lock();
        self.prune(&mut requests);
        let unlocked_until = self.unlocked_until();
        RegistryStatus {
            locked: unlocked_until.is_none(),
            unlocked_until,
            requests: requests.values().cloned().collect(),
        }
    }

    /// The request for `username`, if any.
    pub fn get(&self, username: &str) -> Option<PendingRequest> {
        let mut requests = self.requests.lock();
        self.prune(&mut requests);
        requests.get(username).cloned()
    }

    /// Adds a request (only while open, and only while none exists for the
    /// name); returns it.
    pub fn insert(&self, new: NewRequest) -> Result<PendingRequest, InsertRefused> {
        let mut requests = self.requests.lock();
        self.prune(&mut requests);
        if !self.is_open() {
            return Err(InsertRefused::Locked);
        }
        if requests.contains_key(&new.username) {
            return Err(InsertRefused::Taken);
        }
        if requests.len() >= self.config.max_pending {
            let max_age = self.max_age();
            let oldest = requests.values().map(|r| r.since.elapsed()).max();
            let wait = oldest.map_or(max_age, |age| max_age.saturating_sub(age));
            return Err(InsertRefused::Full(wait.max(Duration::from_secs(1))));
        }
        let now = now_millis();
        let request = PendingRequest {
            id: new_id(),
            pairing_code: new.credential.pairing_code(&new.username),
            username: new.username,
            credential: new.credential,
            wishes: new.wishes,
            flow: new.flow,
            address: new.address,
            first_seen: now,
            last_seen: now,
            attempts: 1,
            conflicts: 0,
            granted: None,
            since: Instant::now(),
        };
        requests.insert(request.username.clone(), request.clone());
        Ok(request)
    }

    /// The same request again (request `id`, already matched by its
    /// credential): counted, its wishes and address updated; a granted one
    /// is removed and its answer returned.
    pub fn repeat(&self, id: &str, username: &str, address: IpAddr, wishes: Wishes) -> Repeat {
        let mut requests = self.requests.lock();
        self.prune(&mut requests);
        let Some(request) = requests.get_mut(username).filter(|r| r.id == id) else {
            return Repeat::Gone;
        };
        if let Some(grant) = request.granted.clone() {
            requests.remove(username);
            return Repeat::Granted(grant);
        }
        request.attempts += 1;
        request.last_seen = now_millis();
        request.address = address;
        request.wishes = wishes;
        Repeat::Pending(request.pairing_code.clone())
    }

    /// Counts a refused request of another device for request `id`'s name.
    pub fn note_conflict(&self, id: &str, username: &str) {
        let mut requests = self.requests.lock();
        if let Some(request) = requests.get_mut(username).filter(|r| r.id == id) {
            request.conflicts += 1;
        }
    }

    /// Marks request `id` granted (its age counts again from now), or
    /// drops it when nobody will fetch an answer (`None`: implicit flow).
    /// False when it is gone.
    pub fn settle(&self, id: &str, username: &str, grant: Option<Grant>) -> bool {
        let mut requests = self.requests.lock();
        let Some(request) = requests.get_mut(username).filter(|r| r.id == id) else {
            return false;
        };
        match grant {
            Some(grant) => {
                request.granted = Some(grant);
                request.since = Instant::now();
            }
            None => {
                requests.remove(username);
            }
        }
        true
    }

    /// Removes the request for `username` (rejected); returns it.
    pub fn remove(&self, username: &str) -> Option<PendingRequest> {
        let mut requests = self.requests.lock();
        self.prune(&mut requests);
        requests.remove(username)
    }

    /// The built-in CA, loaded (or created) on first use.
    pub(super) fn ca(&self) -> Result<Arc<CertificateAuthority>, CaError> {
        let mut ca = self.ca.lock();
        if let Some(ca) = ca.as_ref() {
            return Ok(ca.clone());
        }
        let loaded = Arc::new(CertificateAuthority::load_or_create(&self.ca_dir)?);
        *ca = Some(loaded.clone());
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max_pending: usize, max_age_secs: u64) -> ClientRegistry {
        let config = RegistryConfig {
            max_pending,
            pending_max_age_secs: max_age_secs,
            ..RegistryConfig::default()
        };
        ClientRegistry::new(&config, PathBuf::from("unused"), 1)
    }

    fn request(name: &str) -> NewRequest {
        NewRequest {
            username: name.into(),
            credential: Credential::Csr {
                pem: String::new(),
                key_digest: [7; 32],
            },
            wishes: Wishes::default(),
            flow: Flow::Explicit,
            address: IpAddr::from([127, 0, 0, 1]),
        }
    }

    #[test]
    fn locked_by_default_and_relocks() {
        let r = registry(10, 60);
        assert!(!r.is_open());
        assert_eq!(r.insert(request("dev")).unwrap_err(), InsertRefused::Locked);
        r.unlock(Some(Duration::from_millis(50)));
        assert!(r.is_open() && r.status().unlocked_until.is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert!(!r.is_open() && r.status().locked);
        r.unlock(None);
        r.lock();
        assert!(!r.is_open());
    }

    #[test]
    fn unlock_is_capped() {
        let r = registry(10, 60);
        let d = r.unlock(Some(Duration::from_secs(365 * 86_400)));
        assert_eq!(d, Duration::from_secs(60 * 60));
        assert_eq!(r.unlock(None), Duration::from_secs(5 * 60));
    }

    #[test]
    fn bounded_in_number_and_age() {
        let r = registry(2, 1);
        r.unlock(None);
        r.insert(request("a")).unwrap();
        assert_eq!(r.insert(request("a")).unwrap_err(), InsertRefused::Taken);
        r.insert(request("b")).unwrap();
        assert!(matches!(
            r.insert(request("c")),
            Err(InsertRefused::Full(_))
        ));
        std::thread::sleep(Duration::from_millis(1100));
        assert!(r.status().requests.is_empty());
        r.insert(request("c")).unwrap();
    }

    #[test]
    fn repeat_then_grant_then_fetch_once() {
        let r = registry(10, 60);
        r.unlock(None);
        let first = r.insert(request("dev")).unwrap();
        let wishes = Wishes {
            context: Some("line 3".into()),
            ..Wishes::default()
        };
        let addr = IpAddr::from([10, 0, 0, 9]);
        let code = first.pairing_code.clone();
        assert_eq!(
            r.repeat(&first.id, "dev", addr, wishes.clone()),
            Repeat::Pending(code)
        );
        let listed = r.get("dev").unwrap();
        assert_eq!((listed.attempts, listed.address), (2, addr));
        assert_eq!(listed.wishes, wishes);
        assert_eq!(
            r.repeat("other-id", "dev", addr, Wishes::default()),
            Repeat::Gone
        );
        let grant = Grant {
            certificate: Some("c".into()),
            ca_certificate: Some("ca".into()),
        };
        assert!(r.settle(&first.id, "dev", Some(grant.clone())));
        r.lock();
        assert_eq!(
            r.repeat(&first.id, "dev", addr, Wishes::default()),
            Repeat::Granted(grant)
        );
        assert!(r.get("dev").is_none());
    }

    #[test]
    fn pairing_codes() {
        let csr = Credential::Csr {
            pem: String::new(),
            key_digest: [0; 32],
        };
        // base32 of five zero bytes.
        assert_eq!(csr.pairing_code("x"), "AAAAAAAA");
        let a = Credential::Password { hash: "h1".into() };
        let b = Credential::Password { hash: "h2".into() };
        assert_eq!(a.pairing_code("dev").len(), PAIRING_CODE_LEN);
        assert_ne!(a.pairing_code("dev"), b.pairing_code("dev"));
        assert_ne!(a.pairing_code("dev"), a.pairing_code("dev2"));
        assert_eq!(format!("{a:?}"), "password");
    }
}
