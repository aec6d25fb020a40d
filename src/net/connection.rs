//! One client connection: read → decode → session → router, and the
//! session's mailbox → encode → write, in one task per connection.

use bytes::BytesMut;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::connect::{self, write_refusal};
use super::{ByteStream, Shared, Slot};
use crate::metrics::Metrics;
use crate::protocol::{self, DecodeError, Disconnect, Packet, ProtocolVersion, ReasonCode};
use crate::session::{ClientSession, Close};
use crate::tls::PeerCertificate;

/// Read buffers grow for large packets but go back to this size when idle.
const READ_CHUNK: usize = 4096;
const IDLE_BUFFER_LIMIT: usize = 64 * 1024;
const SMALL_WRITE: usize = 512;
/// The keep-alive timer of a client without keep-alive.
const FAR: Duration = Duration::from_secs(86400 * 365);

/// Serves one client until it leaves, misbehaves or the broker stops.
pub async fn run<S>(
    mut stream: S,
    peer: SocketAddr,
    certificate: Option<Box<PeerCertificate>>,
    slot: Slot,
) where
    S: ByteStream,
{
    let shared = &*slot.shared;
    let services = shared.registry.services().clone();
    let max_packet = services.config.limits.max_packet_size as usize;
    let mut rbuf = BytesMut::new();
    let mut out = BytesMut::new();
    // The CONNECT phase runs once: boxed, its state does not widen the
    // future every connection keeps for its whole life.
    let established = Box::pin(establish(
        &mut stream,
        peer,
        certificate.as_deref(),
        shared,
        &mut rbuf,
        &mut out,
    ))
    .await;
    let Some((mut session, keep_alive, version)) = established else {
        return;
    };
    let mailbox = session.mailbox().clone();
    let client_id = mailbox.client_id();
    tracing::debug!(%peer, %client_id, ?version, "client connected");
    Metrics::add(&services.metrics.clients_connected, 1);

    let acl = session.identity.acl.clone();
    let mut kicked = session.take_kicked();
    // Shutdown reaches attached sessions as a kick (`Registry::kick_all`);
    // a connection that attached after that sees the flag here.
    let stopping = *shared.shutdown.borrow();
    let keep_alive = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
    let mut last_read = Instant::now();
    let sleep = tokio::time::sleep(keep_alive.unwrap_or(FAR));
    tokio::pin!(sleep);
    // Every branch below waits on state the connection already holds (no
    // per-wait futures of any size): the future each idle connection keeps
    // stays small. See `connection_task_size`.
    let close = 'conn: loop {
        if stopping {
            break Close::shutdown();
        }
        // Packets already buffered first: a client may pipeline CONNECT
        // with more packets in one segment.
        loop {
            match protocol::decode(&mut rbuf, Some(version), max_packet) {
                Ok(Some(packet)) => {
                    if let Err(close) = session.handle(packet, &mut out) {
                        break 'conn close;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    Metrics::add(&services.metrics.protocol_errors, 1);
                    tracing::info!(%peer, %client_id, "closing connection: {e}");
                    break 'conn Close::error(e.reason_code());
                }
            }
        }
        reserve_or_shrink(&mut rbuf);
        let more = session.pump(&mut out);
        if !out.is_empty() {
            Metrics::add(&services.metrics.bytes_sent, out.len() as u64);
            if write_out(&mut stream, &mut out).await.is_err() {
                break Close::error(ReasonCode::UNSPECIFIED_ERROR);
            }
        }
        tokio::select! {
            biased;
            reason = &mut kicked => {
                break match reason.unwrap_or(ReasonCode::SESSION_TAKEN_OVER) {
                    ReasonCode::SERVER_SHUTTING_DOWN => Close::shutdown(),
                    reason => Close::error(reason),
                };
            }
            read = read_when_ready(&mut stream, &mut rbuf) => {
                match read {
                    Ok(0) | Err(_) => break Close { reason: ReasonCode::UNSPECIFIED_ERROR, publish_will: true, notify: false },
                    Ok(n) => Metrics::add(&services.metrics.bytes_received, n as u64),
                }
                last_read = Instant::now();
            }
            // Only sync durability waits for commits; the wait is boxed so
            // that it costs nothing on connections that never do.
            committed = async {
                if session.awaits_commit() {
                    Box::pin(session.commit_done()).await
                } else {
                    std::future::pending().await
                }
            } => {
                if !committed {
                    tracing::error!(%client_id, "store commit failed; closing without acknowledgement");
                    break Close::error(ReasonCode::UNSPECIFIED_ERROR);
                }
                session.flush_acks(&mut out);
            }
            _ = std::future::poll_fn(|cx| mailbox.poll_ready(cx)) => {}
            _ = std::future::poll_fn(|cx| acl.poll_changed(cx)) => {
                if acl.is_revoked() {
                    tracing::info!(%peer, %client_id, "user disabled or deleted: closing");
                    break Close::error(ReasonCode::ADMINISTRATIVE_ACTION);
                }
            }
            _ = &mut sleep => {
                let limit = keep_alive.unwrap_or(FAR);
                if last_read.elapsed() >= limit {
                    tracing::info!(%peer, %client_id, "keep alive timeout");
                    break Close::error(ReasonCode::KEEP_ALIVE_TIMEOUT);
                }
                sleep.as_mut().reset(last_read + limit);
            }
            // More queued than one write holds: go round again at once.
            _ = std::future::ready(()), if more => {}
        }
    };

    if close.notify && version == ProtocolVersion::V5 {
        protocol::encode(
            &Packet::Disconnect(Disconnect::new(close.reason)),
            version,
            &mut out,
        );
    }
    // Boxed: the goodbye runs once, and its timers would otherwise widen
    // the future of every connection.
    Box::pin(goodbye(&mut stream, &mut out)).await;
    tracing::debug!(%peer, %client_id, reason = close.reason.0, "client disconnected");
    session.finish(&shared.registry, close);
    services
        .metrics
        .clients_connected
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

/// Reads the CONNECT (within the connect timeout), authenticates and
/// attaches the session; the CONNACK is left in `out`. `None`: refused or
/// gone (a refusal CONNACK has already been written).
async fn establish<S: ByteStream>(
    stream: &mut S,
    peer: SocketAddr,
    certificate: Option<&PeerCertificate>,
    shared: &Shared,
    rbuf: &mut BytesMut,
    out: &mut BytesMut,
) -> Option<(Box<ClientSession>, u16, ProtocolVersion)> {
    let services = shared.registry.services();
    let limits = &services.config.limits;
    let connect_timeout = Duration::from_secs(limits.connect_timeout_secs);
    let max_packet = limits.max_packet_size as usize;
    let first = tokio::time::timeout(connect_timeout, read_first(stream, rbuf, max_packet)).await;
    let connect = match first {
        Ok(Ok(Packet::Connect(connect))) => *connect,
        Ok(Ok(_)) => return None, // unreachable: the decoder only accepts CONNECT first
        Ok(Err(ReadError::Decode(DecodeError::UnsupportedVersion(level)))) => {
            tracing::info!(%peer, level, "unsupported protocol version");
            write_refusal(
                ProtocolVersion::V311,
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                out,
            );
            let _ = stream.write_all(out).await;
            return None;
        }
        Ok(Err(ReadError::Decode(e))) => {
            Metrics::add(&services.metrics.protocol_errors, 1);
            tracing::info!(%peer, "bad CONNECT: {e}");
            return None;
        }
        Ok(Err(ReadError::Io)) => return None,
        Err(_) => {
            tracing::debug!(%peer, "no CONNECT within {connect_timeout:?}");
            return None;
        }
    };
    let version = connect.protocol_version;
    let client_id = connect.client_id.clone();
    match connect::accept(shared, connect, peer, certificate, out).await {
        // Boxed: moved through the CONNECT phase's result into the
        // connection's own state, inline it took twice its size there.
        Ok((session, keep_alive)) => Some((Box::new(session), keep_alive, version)),
        Err(refused) => {
            tracing::info!(%peer, %client_id, reason = refused.reason.0, "connection refused: {}", refused.detail);
            write_refusal(version, refused.reason, out);
            let _ = stream.write_all(out).await;
            None
        }
    }
}

/// Flushes what is left and closes the stream, each within a second.
async fn goodbye<S: ByteStream>(stream: &mut S, out: &mut BytesMut) {
    if !out.is_empty() {
        let _ = tokio::time::timeout(Duration::from_secs(1), write_out(stream, out)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
}

async fn write_out<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut BytesMut,
) -> std::io::Result<()> {
    stream.write_all(out).await?;
    stream.flush().await?;
    // A small write (a PINGRESP, an acknowledgement) suggests a quiet
    // connection: give the buffer back. Busy ones keep theirs, up to a cap.
    let written = out.len();
    out.clear();
    if written < SMALL_WRITE || out.capacity() > IDLE_BUFFER_LIMIT {
        *out = BytesMut::new();
    }
    Ok(())
}

/// Keeps room for the next read, and drops the buffer once it is empty:
/// an idle connection holds no read buffer (decoded packets keep their
/// own slices of the old one alive for as long as they need it).
fn reserve_or_shrink(rbuf: &mut BytesMut) {
    if rbuf.is_empty() {
        if rbuf.capacity() > 0 {
            *rbuf = BytesMut::new();
        }
    } else if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
        rbuf.reserve(READ_CHUNK);
    }
}

/// Waits until the stream has data, only then takes a read buffer.
async fn read_when_ready<S: ByteStream>(
    stream: &mut S,
    rbuf: &mut BytesMut,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await?;
    if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
        rbuf.reserve(READ_CHUNK);
    }
    stream.read_buf(rbuf).await
}

enum ReadError {
    Decode(DecodeError),
    Io,
}

/// Reads until the first packet is complete (it must be CONNECT).
async fn read_first<S: ByteStream>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    max_packet: usize,
) -> Result<Packet, ReadError> {
    loop {
        if let Some(packet) = protocol::decode(rbuf, None, max_packet).map_err(ReadError::Decode)? {
            return Ok(packet);
        }
        match read_when_ready(stream, rbuf).await {
            Ok(0) | Err(_) => return Err(ReadError::Io),
            Ok(_) => {}
        }
    }
}
