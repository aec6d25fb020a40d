//! Gatehouse: an MQTT 3.1.1 / 5.0 broker with identity built in.
//!
//! Data flows one way: [`net`] (connection task) → [`session`] (per-client
//! MQTT state) → [`router`] (subscription trie, retained, shared groups) →
//! subscriber mailboxes, drained by their own connection tasks.
//! [`protocol`] is the pure codec; [`store`] persists on `redb`.

pub mod auth;
pub mod broker;
pub mod config;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod net;
pub mod prometheus;
pub mod protocol;
pub mod router;
pub mod session;
mod signal;
pub mod store;
mod sys;
pub mod systemd;
pub mod tls;
mod trim;

pub use broker::{RunningBroker, StartError, start, start_core};
pub use config::Config;
