//! Listeners and connection tasks (TCP and WebSocket).

mod connect;
mod connection;
mod park;
mod ws;

pub use park::Parker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::auth::Authenticator;
use crate::session::{Listener, Registry};
use crate::tls::{PeerCertificate, TlsContext};

/// A byte stream a connection runs on. Plain TCP can report readiness
/// without a buffer, so an idle connection holds no read buffer at all;
/// TLS and WebSocket streams buffer internally and report ready at once.
pub trait ByteStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {
    /// Connections on this stream may hibernate (`park`): plain TCP only;
    /// TLS and WebSocket state lives in user space with the stream.
    const HIBERNATES: bool = false;

    /// The kind of listener such streams come from.
    const LISTENER: Listener;

    /// The socket without tokio's registration, for hibernation.
    fn into_std(self) -> Option<std::net::TcpStream>
    where
        Self: Sized,
    {
        None
    }

    fn poll_read_ready(
        &self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    /// Bytes the kernel still holds for the peer (not yet sent, or not
    /// acknowledged): when it shrinks, the peer is reading, even while the
    /// socket is not writable yet. `None` where it cannot be read.
    fn unacknowledged(&self) -> Option<usize> {
        None
    }
}

/// `SIOCOUTQ` of a TCP socket.
fn tcp_unacknowledged(socket: &tokio::net::TcpStream) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ on a TCP socket) writes one int.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    (rc == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

impl ByteStream for tokio::net::TcpStream {
    const HIBERNATES: bool = true;
    const LISTENER: Listener = Listener::Tcp;

    fn into_std(self) -> Option<std::net::TcpStream> {
        tokio::net::TcpStream::into_std(self).ok()
    }

    fn poll_read_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }

    fn unacknowledged(&self) -> Option<usize> {
        tcp_unacknowledged(self)
    }
}

impl<S: ByteStream> ByteStream for tokio_rustls::server::TlsStream<S> {
    const LISTENER: Listener = Listener::Tls;

    fn unacknowledged(&self) -> Option<usize> {
        self.get_ref().0.unacknowledged()
    }
}

impl<S: ByteStream> ByteStream for ws::WsStream<S> {
    const LISTENER: Listener = match S::LISTENER {
        Listener::Tls => Listener::WebSocketTls,
        _ => Listener::WebSocket,
    };

    fn unacknowledged(&self) -> Option<usize> {
        self.get_ref().unacknowledged()
    }
}

/// What every connection task shares.
pub struct Shared {
    pub registry: Arc<Registry>,
    pub auth: Arc<dyn Authenticator>,
    /// Turns `true` when the broker stops.
    pub shutdown: watch::Receiver<bool>,
    /// Present when a TLS listener is configured.
    pub tls: Option<Arc<TlsContext>>,
    /// Where idle plain-TCP connections hibernate.
    pub parker: Arc<Parker>,
    /// Places for connections being admitted (see [`Admission`]); `None`:
    /// no limit.
    pub admission: Option<Arc<Semaphore>>,
}

/// How long a connection may keep its place among those being admitted
/// (TLS handshake, WebSocket upgrade, CONNECT): a client that does not
/// get through by then goes on without it, so a few slow or silent
/// sockets cannot keep the listeners from accepting.
const ADMISSION_WINDOW: Duration = Duration::from_millis(500);

/// A place among the connections being admitted. A fleet reconnecting at
/// once (after a restart, a network outage) would otherwise have every
/// connection's task, read buffer and CONNECT in memory together; glibc
/// keeps the holes they leave among the connections that stay, and the
/// broker's memory would stay at the peak of the burst (measured: 7.6 KB
/// per idle connection with 10,000 opened at once, against 0.65 KB with
/// admissions limited; `docs/performance.md`). Beyond the limit new
/// connections wait in the kernel's listen queue.
pub struct Admission(Option<OwnedSemaphorePermit>);

impl Admission {
    pub fn none() -> Admission {
        Admission(None)
    }

    /// Runs `phase` holding the place, for at most [`ADMISSION_WINDOW`].
    pub async fn during<F: std::future::Future>(self, phase: F) -> F::Output {
        let Some(permit) = self.0 else {
            return phase.await;
        };
        let mut phase = std::pin::pin!(phase);
        tokio::select! {
            done = &mut phase => done,
            _ = tokio::time::sleep(ADMISSION_WINDOW) => {
                drop(permit);
                phase.await
            }
        }
    }
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
        let admission = match &shared.admission {
            Some(places) => tokio::select! {
                _ = shutdown.changed() => break,
                place = places.clone().acquire_owned() => Admission(place.ok()),
            },
            None => Admission::none(),
        };
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
        let slot = Slot {
            shared: shared.clone(),
            _permit: permit,
        };
        if transport == Transport::Tcp {
            // The common case: the task is the connection future itself
            // (one allocation), not a task that holds a box.
            tokio::spawn(connection::run(socket, peer, None, slot, admission));
        } else {
            tokio::spawn(handle(socket, peer, transport, slot, admission));
        }
    }
}

/// What a connection holds for its whole life: the listener's shared state
/// and its place under `max_connections`.
pub struct Slot {
    pub shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

async fn handle(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    transport: Transport,
    slot: Slot,
    admission: Admission,
) {
    let shared = &*slot.shared;
    let limits = &shared.registry.services().config.limits;
    let max = limits.max_packet_size as usize;
    let upgrade_timeout = Duration::from_secs(limits.connect_timeout_secs);
    match transport {
        // Each transport's connection future is boxed: the enclosing future
        // would otherwise be as large as the largest variant, for every
        // connection.
        Transport::Tcp => Box::pin(connection::run(socket, peer, None, slot, admission)).await,
        Transport::WebSocket => {
            let upgrade = admission.during(websocket(socket, peer, max, upgrade_timeout));
            if let Some(stream) = Box::pin(upgrade).await {
                Box::pin(connection::run(stream, peer, None, slot, Admission::none())).await;
            }
        }
        // Separate and boxed, so plain connections do not carry TLS state.
        Transport::Tls | Transport::WebSocketTls => {
            Box::pin(handle_tls(
                socket,
                peer,
                transport,
                slot,
                (max, upgrade_timeout),
                admission,
            ))
            .await
        }
    }
}

/// The TLS handshake (cut off after the handshake timeout) and the
/// connection over it; with mutual TLS the verified client certificate
/// goes along to authentication.
async fn handle_tls(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    transport: Transport,
    slot: Slot,
    (max, upgrade_timeout): (usize, Duration),
    admission: Admission,
) {
    let shared = &*slot.shared;
    let Some(tls) = &shared.tls else {
        return;
    };
    let timeout = Duration::from_secs(shared.registry.services().config.tls.handshake_timeout_secs);
    let accept = Box::pin(tls.acceptor().accept(socket));
    let stream = match admission
        .during(tokio::time::timeout(timeout, accept))
        .await
    {
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
        .and_then(|der| PeerCertificate::from_der(der))
        .map(Box::new);
    if tls.is_mutual() && certificate.is_none() {
        tracing::info!(%peer, "mutual TLS: no usable client certificate");
        return;
    }
    if let Some(cert) = &certificate {
        tracing::debug!(%peer, cn = cert.common_name, serial = cert.serial, "client certificate accepted");
    }
    let none = Admission::none();
    if transport == Transport::Tls {
        Box::pin(connection::run(stream, peer, certificate, slot, none)).await;
    } else if let Some(ws) = Box::pin(websocket(stream, peer, max, upgrade_timeout)).await {
        Box::pin(connection::run(ws, peer, certificate, slot, none)).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AnonymousOnly;

    /// Every busy connection costs its task's future; keep it small.
    #[tokio::test]
    async fn connection_task_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::Config::default();
        config.storage.dir = dir.path().join("data");
        config.listeners.mqtt = Some("127.0.0.1:0".parse().unwrap());
        config.listeners.ws = None;
        config.listeners.mqtts = None;
        config.listeners.wss = None;
        let broker = crate::broker::start_core(config).await.unwrap();
        let (_stop, stop) = watch::channel(false);
        let shared = Arc::new(Shared {
            registry: broker.registry().clone(),
            auth: Arc::new(AnonymousOnly {
                allow_anonymous: true,
            }),
            shutdown: watch::channel(false).1,
            tls: None,
            parker: Parker::start(stop).unwrap(),
            admission: None,
        });
        let limit = Arc::new(Semaphore::new(2));
        let slot = || Slot {
            shared: shared.clone(),
            _permit: limit.clone().try_acquire_owned().unwrap(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (socket, peer) = listener.accept().await.unwrap();
        let handle_size = std::mem::size_of_val(&handle(
            socket,
            peer,
            Transport::Tcp,
            slot(),
            Admission::none(),
        ));
        let (socket, peer) = {
            let _c = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            listener.accept().await.unwrap()
        };
        let run_size = std::mem::size_of_val(&connection::run(
            socket,
            peer,
            None,
            slot(),
            Admission::none(),
        ));
        println!("handle future: {handle_size} bytes, tcp connection future: {run_size} bytes");
        // Measured 504 and 1,120 bytes (release; 1,168 in debug builds). A
        // plain TCP connection's task is the connection future while it has
        // work; an idle one hibernates (`park`) and has no task at all, so
        // this is the cost of a busy connection.
        assert!(
            handle_size <= 1024,
            "handle future grew to {handle_size} bytes"
        );
        assert!(
            run_size <= 1216,
            "connection future grew to {run_size} bytes"
        );
        broker.shutdown().await;
    }
}
