//! Gives memory freed after a burst of connections back to the system.
//!
//! A fleet reconnecting at once (after a restart, a network outage) has
//! thousands of CONNECTs in flight together: each holds a task, a read
//! buffer and its CONNECT while it authenticates. Once they are through,
//! most of that is free again, but glibc keeps free chunks that sit among
//! live ones resident, spread over its per-thread arenas: the broker's RSS
//! would stay at the peak of the burst. `malloc_trim(0)` returns every
//! free page of every arena; it runs once a burst is over, off the async
//! workers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

use crate::session::Services;

/// Connections opened or closed since the last trim before one is due.
const CHURN: u64 = 1024;
/// A burst is over when fewer than this many came or went in a second.
const QUIET: u64 = 64;

pub async fn run(services: Arc<Services>, mut shutdown: watch::Receiver<bool>) {
    let metrics = &services.metrics;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut last = metrics.clients_connected.load(Ordering::Relaxed);
    let mut churn = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticker.tick() => {}
        }
        let now = metrics.clients_connected.load(Ordering::Relaxed);
        let moved = now.abs_diff(last);
        last = now;
        churn += moved;
        if churn >= CHURN && moved < QUIET {
            churn = 0;
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}
