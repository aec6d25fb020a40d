//! Broker-wide counters: relaxed atomics bumped on the message path (no
//! lock, no allocation), published under `$SYS/broker/...` and read into
//! the Prometheus exporter (`crate::prometheus`) only when it is scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::identity::LoginMethod;
use crate::protocol::QoS;
use crate::session::Listener;

/// Per QoS 0, 1, 2.
pub type ByQos = [AtomicU64; 3];

pub struct Metrics {
    pub started: Instant,
    pub clients_connected: AtomicU64,
    /// Connected clients by listener (`Metrics::listener_index`).
    pub connections: [AtomicU64; 4],
    /// Successful CONNECTs by listener, since start.
    pub connections_total: [AtomicU64; 4],
    /// Connected clients whose connection hibernates (no task; `net::park`).
    pub clients_hibernating: AtomicU64,
    /// PUBLISH packets routed, by QoS.
    pub messages_received: ByQos,
    pub payload_received: ByQos,
    /// PUBLISH packets written to subscribers, by QoS.
    pub messages_sent: ByQos,
    pub payload_sent: ByQos,
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
    /// CONNECT authentications by `LoginMethod` (`Metrics::method_index`).
    pub auth_success: [AtomicU64; 4],
    pub auth_failure: [AtomicU64; 4],
    /// The Prometheus recorder these are read into when scraped.
    pub exporter: crate::prometheus::Exporter,
}

/// What one turn of a connection wrote, summed there and added once.
#[derive(Default)]
pub struct Sent {
    count: [u64; 3],
    bytes: [u64; 3],
}

impl Sent {
    pub fn add(&mut self, qos: QoS, payload: usize) {
        let i = Metrics::qos_index(qos);
        self.count[i] += 1;
        self.bytes[i] += payload as u64;
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            started: Instant::now(),
            clients_connected: AtomicU64::new(0),
            connections: Default::default(),
            connections_total: Default::default(),
            clients_hibernating: AtomicU64::new(0),
            messages_received: Default::default(),
            payload_received: Default::default(),
            messages_sent: Default::default(),
            payload_sent: Default::default(),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            publish_denied: AtomicU64::new(0),
            subscribe_denied: AtomicU64::new(0),
            deliveries_denied: AtomicU64::new(0),
            messages_expired: AtomicU64::new(0),
            messages_too_large: AtomicU64::new(0),
            publish_unstored: AtomicU64::new(0),
            auth_success: Default::default(),
            auth_failure: Default::default(),
            exporter: crate::prometheus::Exporter::new(),
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

    pub fn sum(counters: &[AtomicU64]) -> u64 {
        counters.iter().map(Metrics::get).sum()
    }

    pub fn qos_index(qos: QoS) -> usize {
        match qos {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
            QoS::ExactlyOnce => 2,
        }
    }

    pub fn listener_index(listener: Listener) -> usize {
        match listener {
            Listener::Tcp => 0,
            Listener::WebSocket => 1,
            Listener::Tls => 2,
            Listener::WebSocketTls => 3,
        }
    }

    pub fn method_index(method: LoginMethod) -> usize {
        match method {
            LoginMethod::Anonymous => 0,
            LoginMethod::Password => 1,
            LoginMethod::Certificate => 2,
            LoginMethod::Token => 3,
        }
    }

    /// A PUBLISH was routed.
    pub fn received(&self, qos: QoS, payload: usize) {
        let i = Metrics::qos_index(qos);
        self.messages_received[i].fetch_add(1, Ordering::Relaxed);
        Metrics::add(&self.payload_received[i], payload as u64);
    }

    /// What a connection's turn wrote to its client.
    pub fn sent(&self, sent: &Sent) {
        for i in 0..3 {
            Metrics::add(&self.messages_sent[i], sent.count[i]);
            Metrics::add(&self.payload_sent[i], sent.bytes[i]);
        }
    }

    /// A client connected on `listener` (`up`) or went away.
    pub fn connection(&self, listener: Listener, up: bool) {
        let i = Metrics::listener_index(listener);
        if up {
            self.clients_connected.fetch_add(1, Ordering::Relaxed);
            self.connections[i].fetch_add(1, Ordering::Relaxed);
            self.connections_total[i].fetch_add(1, Ordering::Relaxed);
        } else {
            self.clients_connected.fetch_sub(1, Ordering::Relaxed);
            self.connections[i].fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The outcome of one CONNECT's authentication.
    pub fn authenticated(&self, method: LoginMethod, success: bool) {
        let list = if success {
            &self.auth_success
        } else {
            &self.auth_failure
        };
        list[Metrics::method_index(method)].fetch_add(1, Ordering::Relaxed);
    }
}
