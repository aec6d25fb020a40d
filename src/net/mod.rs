//! Listeners and connection tasks (TCP and WebSocket).

mod connect;
mod connection;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::auth::Authenticator;
use crate::session::Registry;
use crate::tls::{PeerCertificate, TlsContext};

/// A byte stream a connection runs on. Plain TCP can report readiness
/// without a buffer, so an idle connection holds no read buffer at all;
/// TLS and WebSocket streams buffer internally and report ready at once.
pub trait ByteStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {
    fn poll_read_ready(
        &self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl ByteStream for tokio::net::TcpStream {
    fn poll_read_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ByteStream
    for tokio_rustls::server::TlsStream<S>
{
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ByteStream
    for ws::WsStream<S>
{
}

/// What every connection task shares.
pub struct Shared {
    pub registry: Arc<Registry>,
    pub auth: Arc<dyn Authenticator>,
    /// Turns `true` when the broker stops.
    pub shutdown: watch::Receiver<bool>,
    /// Present when a TLS listener is configured.
    pub tls: Option<Arc<TlsContext>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    WebSocket,
    Tls,
    WebSocketTls,
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
    let limits = &shared.registry.services().config.limits;
    let max = limits.max_packet_size as usize;
    let upgrade_timeout = Duration::from_secs(limits.connect_timeout_secs);
    match transport {
        Transport::Tcp => connection::run(socket, peer, None, shared).await,
        Transport::WebSocket => {
            if let Some(stream) = websocket(socket, peer, max, upgrade_timeout).await {
                connection::run(stream, peer, None, shared).await;
            }
        }
        Transport::Tls | Transport::WebSocketTls => {
            let Some(tls) = &shared.tls else { return };
            let timeout =
                Duration::from_secs(shared.registry.services().config.tls.handshake_timeout_secs);
            let stream = match tokio::time::timeout(timeout, tls.acceptor().accept(socket)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::info!(%peer, "TLS handshake refused: {e}");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let certificate = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|der| PeerCertificate::from_der(der));
            if tls.is_mutual() && certificate.is_none() {
                tracing::info!(%peer, "mutual TLS: no usable client certificate");
                return;
            }
            if let Some(cert) = &certificate {
                tracing::debug!(%peer, cn = cert.common_name, serial = cert.serial, "client certificate accepted");
            }
            if transport == Transport::Tls {
                connection::run(stream, peer, certificate, shared).await;
            } else if let Some(ws) = websocket(stream, peer, max, upgrade_timeout).await {
                connection::run(ws, peer, certificate, shared).await;
            }
        }
    }
}

async fn websocket<S>(
    stream: S,
    peer: SocketAddr,
    max: usize,
    timeout: Duration,
) -> Option<ws::WsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(timeout, ws::accept(stream, max)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::info!(%peer, "WebSocket handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::info!(%peer, "WebSocket handshake timed out");
            None
        }
    }
}
