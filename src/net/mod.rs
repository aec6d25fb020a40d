//! Listeners and connection tasks (TCP and WebSocket).

mod connect;
mod connection;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::auth::Authenticator;
use crate::session::Registry;

/// What every connection task shares.
pub struct Shared {
    pub registry: Arc<Registry>,
    pub auth: Arc<dyn Authenticator>,
    /// Turns `true` when the broker stops.
    pub shutdown: watch::Receiver<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    WebSocket,
}

/// Accepts connections until shutdown. Each connection holds a permit of
/// `connections`; beyond the limit new sockets are closed at once.
pub async fn serve(
    listener: TcpListener,
    transport: Transport,
    shared: Arc<Shared>,
    connections: Arc<Semaphore>,
) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; refusing");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            handle(socket, peer, transport, &shared).await;
            drop(permit);
        });
    }
}

async fn handle(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    transport: Transport,
    shared: &Shared,
) {
    match transport {
        Transport::Tcp => connection::run(socket, peer, shared).await,
        Transport::WebSocket => {
            let max = shared.registry.services().config.limits.max_packet_size as usize;
            let timeout = std::time::Duration::from_secs(
                shared
                    .registry
                    .services()
                    .config
                    .limits
                    .connect_timeout_secs,
            );
            match tokio::time::timeout(timeout, ws::accept(socket, max)).await {
                Ok(Ok(stream)) => connection::run(stream, peer, shared).await,
                Ok(Err(e)) => tracing::info!(%peer, "WebSocket handshake failed: {e}"),
                Err(_) => tracing::info!(%peer, "WebSocket handshake timed out"),
            }
        }
    }
}
