//! `$SYS/broker/...`: version, uptime and traffic counters, published as
//! retained messages every `mqtt.sys_interval_secs` (not persisted). The
//! same tick drops expired retained messages from memory and the store.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::protocol::{MqttStr, Properties, QoS};
use crate::router::Message;
use crate::session::Registry;

pub async fn run(registry: Arc<Registry>, mut shutdown: watch::Receiver<bool>) {
    let services = registry.services().clone();
    let mut ticker =
        tokio::time::interval(Duration::from_secs(services.config.mqtt.sys_interval_secs));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticker.tick() => {
                services.purge_expired_retained();
                publish_all(&registry);
            }
        }
    }
}

fn publish_all(registry: &Registry) {
    let services = registry.services();
    let m = &services.metrics;
    let values = [
        (
            "version",
            format!("gatehouse {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "uptime",
            format!("{} seconds", m.started.elapsed().as_secs()),
        ),
        (
            "clients/connected",
            Metrics::get(&m.clients_connected).to_string(),
        ),
        (
            "clients/hibernating",
            Metrics::get(&m.clients_hibernating).to_string(),
        ),
        ("clients/total", registry.len().to_string()),
        (
            "store/healthy",
            u8::from(services.store.is_healthy()).to_string(),
        ),
        (
            "store/commit failures",
            services.store.commit_failures().to_string(),
        ),
        (
            "messages/received",
            Metrics::sum(&m.messages_received).to_string(),
        ),
        ("messages/sent", Metrics::sum(&m.messages_sent).to_string()),
        ("messages/dropped", registry.dropped_messages().to_string()),
        (
            "messages/refused/denied",
            Metrics::get(&m.deliveries_denied).to_string(),
        ),
        (
            "messages/refused/expired",
            Metrics::get(&m.messages_expired).to_string(),
        ),
        (
            "messages/refused/too large",
            Metrics::get(&m.messages_too_large).to_string(),
        ),
        (
            "bytes/received",
            Metrics::get(&m.bytes_received).to_string(),
        ),
        ("bytes/sent", Metrics::get(&m.bytes_sent).to_string()),
        (
            "subscriptions/count",
            services.router.subscription_count().to_string(),
        ),
        (
            "retained messages/count",
            services.router.retained().len().to_string(),
        ),
    ];
    for (name, value) in values {
        let message = Arc::new(Message {
            topic: MqttStr::from(format!("$SYS/broker/{name}")),
            payload: Bytes::from(value),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Properties::default(),
            expires_at: None,
            origin: None,
        });
        services.router.retained().set(&message);
        services.router.publish(&message);
    }
}
