//! `GET /metrics`: the broker's figures in Prometheus text format, through
//! the `metrics` facade and its Prometheus exporter. Each broker has its
//! own recorder (no global one: tests run several brokers in a process).
//! The message path only bumps atomics (`crate::metrics`); they are read
//! into the recorder when it is scraped. The store's commit latency is a
//! histogram recorded once per commit, by the writer thread.

use metrics::{Histogram, Unit, counter, gauge};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::sync::atomic::AtomicU64;

use crate::metrics::Metrics;
use crate::session::Registry;

pub const COMMIT_SECONDS: &str = "gatehouse_store_commit_seconds";
const BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const QOS: [&str; 3] = ["0", "1", "2"];
const LISTENERS: [&str; 4] = ["mqtt", "ws", "mqtts", "wss"];
const METHODS: [&str; 4] = ["anonymous", "password", "certificate", "token"];

/// Every metric with its help text (also the list in docs/operations.md).
pub const DESCRIPTIONS: &[(&str, &str)] = &[
    ("gatehouse_build_info", "Always 1; the version is a label"),
    (
        "gatehouse_uptime_seconds",
        "Seconds since the broker started",
    ),
    (
        "gatehouse_connections",
        "Connected MQTT clients by listener",
    ),
    (
        "gatehouse_connections_total",
        "MQTT connections accepted (CONNACK success) by listener",
    ),
    (
        "gatehouse_connections_hibernating",
        "Connected plain-TCP clients without a task (hibernating)",
    ),
    ("gatehouse_sessions", "Sessions, connected or stored"),
    (
        "gatehouse_messages_received_total",
        "PUBLISH packets received and routed, by QoS",
    ),
    (
        "gatehouse_messages_sent_total",
        "PUBLISH packets sent to subscribers, by QoS",
    ),
    (
        "gatehouse_payload_received_bytes_total",
        "Payload bytes of routed PUBLISH packets, by QoS",
    ),
    (
        "gatehouse_payload_sent_bytes_total",
        "Payload bytes of PUBLISH packets sent, by QoS",
    ),
    (
        "gatehouse_network_received_bytes_total",
        "Bytes read from MQTT connections",
    ),
    (
        "gatehouse_network_sent_bytes_total",
        "Bytes written to MQTT connections",
    ),
    (
        "gatehouse_messages_dropped_total",
        "Messages not delivered, by reason: queue_full, expired, too_large, not_authorized, store_unavailable",
    ),
    (
        "gatehouse_auth_total",
        "MQTT authentications by method (anonymous, password, certificate, token) and result (success, failure)",
    ),
    (
        "gatehouse_acl_denied_total",
        "Operations refused by permissions: publish, subscribe",
    ),
    (
        "gatehouse_protocol_errors_total",
        "Connections closed for a protocol violation",
    ),
    (
        "gatehouse_queued_messages",
        "Messages waiting in session queues",
    ),
    (
        "gatehouse_queued_messages_max",
        "Messages waiting in the deepest session queue",
    ),
    ("gatehouse_retained_messages", "Retained messages"),
    ("gatehouse_subscriptions", "Subscriptions"),
    (
        "gatehouse_store_healthy",
        "1 while store commits succeed, 0 while they fail",
    ),
    (
        "gatehouse_store_commit_failures_total",
        "Store commits that failed",
    ),
    (
        COMMIT_SECONDS,
        "Time of one store commit (a group of writes)",
    ),
    (
        "gatehouse_http_requests_total",
        "Admin API requests by route, method and status",
    ),
];

pub struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    commit: Histogram,
}

impl Exporter {
    pub fn new() -> Exporter {
        let builder = PrometheusBuilder::new();
        let builder =
            match builder.set_buckets_for_metric(Matcher::Full(COMMIT_SECONDS.into()), BUCKETS) {
                Ok(builder) => builder,
                Err(_) => PrometheusBuilder::new(),
            };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let commit = metrics::with_local_recorder(&recorder, || {
            for (name, help) in DESCRIPTIONS {
                if *name == COMMIT_SECONDS {
                    metrics::describe_histogram!(*name, Unit::Seconds, *help);
                } else if name.ends_with("_total") {
                    metrics::describe_counter!(*name, *help);
                } else {
                    metrics::describe_gauge!(*name, *help);
                }
            }
            metrics::histogram!(COMMIT_SECONDS)
        });
        Exporter {
            recorder,
            handle,
            commit,
        }
    }

    /// The commit-latency histogram (its handle records without a lock).
    pub fn commit_histogram(&self) -> Histogram {
        self.commit.clone()
    }

    /// One admin API request (`route` is the matched template, never the
    /// raw path, so the label set stays small).
    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        metrics::with_local_recorder(&self.recorder, || {
            counter!("gatehouse_http_requests_total",
                "route" => route.to_owned(), "method" => method.to_owned(), "status" => status.to_string())
            .increment(1);
        });
    }

    /// Reads the broker's counters into the recorder and renders the text.
    pub fn render(&self, registry: &Registry) -> String {
        let services = registry.services();
        let m = &services.metrics;
        let get = Metrics::get;
        let absolute =
            |name: &'static str, labels: &[(&'static str, &'static str)], v: &AtomicU64| {
                let labels: Vec<(&'static str, &'static str)> = labels.to_vec();
                counter!(name, &labels).absolute(get(v));
            };
        metrics::with_local_recorder(&self.recorder, || {
            gauge!("gatehouse_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            gauge!("gatehouse_uptime_seconds").set(m.started.elapsed().as_secs_f64());
            for (i, listener) in LISTENERS.iter().enumerate() {
                gauge!("gatehouse_connections", "listener" => *listener)
                    .set(get(&m.connections[i]) as f64);
                absolute(
                    "gatehouse_connections_total",
                    &[("listener", listener)],
                    &m.connections_total[i],
                );
            }
            gauge!("gatehouse_connections_hibernating").set(get(&m.clients_hibernating) as f64);
            gauge!("gatehouse_sessions").set(registry.len() as f64);
            for (i, qos) in QOS.iter().enumerate() {
                let l = [("qos", *qos)];
                absolute(
                    "gatehouse_messages_received_total",
                    &l,
                    &m.messages_received[i],
                );
                absolute("gatehouse_messages_sent_total", &l, &m.messages_sent[i]);
                absolute(
                    "gatehouse_payload_received_bytes_total",
                    &l,
                    &m.payload_received[i],
                );
                absolute("gatehouse_payload_sent_bytes_total", &l, &m.payload_sent[i]);
            }
            absolute(
                "gatehouse_network_received_bytes_total",
                &[],
                &m.bytes_received,
            );
            absolute("gatehouse_network_sent_bytes_total", &[], &m.bytes_sent);
            counter!("gatehouse_messages_dropped_total", "reason" => "queue_full")
                .absolute(registry.dropped_messages());
            for (reason, v) in [
                ("expired", &m.messages_expired),
                ("too_large", &m.messages_too_large),
                ("not_authorized", &m.deliveries_denied),
                ("store_unavailable", &m.publish_unstored),
            ] {
                absolute("gatehouse_messages_dropped_total", &[("reason", reason)], v);
            }
            for (i, method) in METHODS.iter().enumerate() {
                let ok = [("method", *method), ("result", "success")];
                absolute("gatehouse_auth_total", &ok, &m.auth_success[i]);
                let failed = [("method", *method), ("result", "failure")];
                absolute("gatehouse_auth_total", &failed, &m.auth_failure[i]);
            }
            absolute(
                "gatehouse_acl_denied_total",
                &[("operation", "publish")],
                &m.publish_denied,
            );
            absolute(
                "gatehouse_acl_denied_total",
                &[("operation", "subscribe")],
                &m.subscribe_denied,
            );
            absolute("gatehouse_protocol_errors_total", &[], &m.protocol_errors);
            let (queued, deepest) = registry.queue_depths();
            gauge!("gatehouse_queued_messages").set(queued as f64);
            gauge!("gatehouse_queued_messages_max").set(deepest as f64);
            gauge!("gatehouse_retained_messages").set(services.router.retained().len() as f64);
            gauge!("gatehouse_subscriptions").set(services.router.subscription_count() as f64);
            gauge!("gatehouse_store_healthy").set(f64::from(u8::from(services.store.is_healthy())));
            counter!("gatehouse_store_commit_failures_total")
                .absolute(services.store.commit_failures());
        });
        self.handle.render()
    }
}

impl Default for Exporter {
    fn default() -> Exporter {
        Exporter::new()
    }
}
