//! Broker-wide counters, published under `$SYS/broker/...`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub struct Metrics {
    pub started: Instant,
    pub clients_connected: AtomicU64,
    /// Connected clients whose connection hibernates (no task; `net::park`).
    pub clients_hibernating: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub publish_denied: AtomicU64,
    pub subscribe_denied: AtomicU64,
    /// Deliveries dropped because the subscriber may no longer read them.
    pub deliveries_denied: AtomicU64,
    /// Deliveries dropped because their message expired on the way.
    pub messages_expired: AtomicU64,
    /// Deliveries dropped as larger than the client's maximum packet size.
    pub messages_too_large: AtomicU64,
    /// QoS 1/2 publishes refused because the store could not take them.
    pub publish_unstored: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            started: Instant::now(),
            clients_connected: AtomicU64::new(0),
            clients_hibernating: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            publish_denied: AtomicU64::new(0),
            subscribe_denied: AtomicU64::new(0),
            deliveries_denied: AtomicU64::new(0),
            messages_expired: AtomicU64::new(0),
            messages_too_large: AtomicU64::new(0),
            publish_unstored: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
