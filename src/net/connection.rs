//! One client connection: read → decode → session → router, and the
//! session's mailbox → encode → write. The connection runs as a task while
//! it has work; a plain-TCP connection with none hibernates (`park`) and
//! comes back here through [`resume`].

use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::connect::{self, write_refusal};
use super::park::{Cell, NotParked, Parker};
use super::{Admission, ByteStream, Shared, Slot};
use crate::identity::LiveAcl;
use crate::metrics::Metrics;
use crate::protocol::{self, DecodeError, Disconnect, Packet, ProtocolVersion, ReasonCode};
use crate::router::{Delivery, Mailbox};
use crate::session::{ClientSession, Close, Listener};
use crate::tls::PeerCertificate;

/// Read buffers grow for large packets but go back to this size when idle.
const READ_CHUNK: usize = 4096;
/// The first read: a CONNECT is usually far smaller, and thousands of them
/// may be in flight at once when a fleet reconnects (each buffer is a
/// hole in the heap once it is freed).
const CONNECT_CHUNK: usize = 256;
const IDLE_BUFFER_LIMIT: usize = 64 * 1024;
const SMALL_WRITE: usize = 512;
/// The keep-alive timer of a client without keep-alive.
const FAR: Duration = Duration::from_secs(86400 * 365);

/// Serves one client until it leaves, misbehaves or the broker stops.
pub async fn run<S>(
    stream: S,
    peer: SocketAddr,
    certificate: Option<Box<PeerCertificate>>,
    slot: Slot,
    admission: Admission,
) where
    S: ByteStream,
{
    // The CONNECT phase runs once: boxed, its state does not widen the
    // future of the connection's task.
    let connecting = admission.during(connect(stream, peer, certificate, slot));
    if let Some(conn) = Box::pin(connecting).await {
        serve(conn, true).await;
    }
}

/// Reads the CONNECT, authenticates and attaches the session; `None`:
/// refused or gone.
async fn connect<S: ByteStream>(
    mut stream: S,
    peer: SocketAddr,
    certificate: Option<Box<PeerCertificate>>,
    slot: Slot,
) -> Option<Conn<S>> {
    let mut rbuf = BytesMut::new();
    let mut out = BytesMut::new();
    let (session, keep_alive, version) = establish(
        &mut stream,
        peer,
        certificate.as_deref(),
        &slot.shared,
        &mut rbuf,
        &mut out,
    )
    .await?;
    tracing::info!(
        client_id = %session.mailbox().client_id(),
        username = session.identity.username().unwrap_or(""),
        address = %peer,
        listener = S::LISTENER.name(),
        protocol = if version == ProtocolVersion::V5 { 5 } else { 4 },
        login = ?session.identity.acl.method,
        "client connected"
    );
    slot.shared
        .registry
        .services()
        .metrics
        .connection(S::LISTENER, true);
    let keep_alive = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
    let mut conn = Conn::new(
        stream,
        peer,
        session,
        slot,
        version,
        keep_alive,
        Instant::now(),
    );
    conn.rbuf = rbuf;
    conn.out = out;
    Some(conn)
}

/// A connected client between two turns of its task.
struct Conn<S> {
    stream: S,
    peer: SocketAddr,
    session: Box<ClientSession>,
    slot: Slot,
    version: ProtocolVersion,
    /// 1.5 × the keep-alive the client asked for; `None` without one.
    keep_alive: Option<Duration>,
    last_read: Instant,
    rbuf: BytesMut,
    out: BytesMut,
    /// Deliveries taken from the mailbox for one write (reused; gone
    /// while the connection hibernates).
    batch: Vec<Delivery>,
    /// May hibernate: plain TCP, hibernation on, and the parker did not
    /// refuse it before.
    hibernate: bool,
}

impl<S: ByteStream> Conn<S> {
    /// With empty buffers, hibernation allowed where the stream permits it.
    fn new(
        stream: S,
        peer: SocketAddr,
        session: Box<ClientSession>,
        slot: Slot,
        version: ProtocolVersion,
        keep_alive: Option<Duration>,
        last_read: Instant,
    ) -> Conn<S> {
        Conn {
            stream,
            peer,
            session,
            slot,
            version,
            keep_alive,
            last_read,
            rbuf: BytesMut::new(),
            out: BytesMut::new(),
            batch: Vec::new(),
            hibernate: S::HIBERNATES,
        }
    }
}

/// A connection while it hibernates: what its task needs to run again.
pub struct Hibernated {
    socket: mio::net::TcpStream,
    /// Its slot in the parker's table.
    pub(super) token: u32,
    /// `Conn::keep_alive` in milliseconds, 0 for none: parked connections
    /// are many, so every field counts.
    keep_alive_ms: u32,
    version: ProtocolVersion,
    /// Inline, not boxed: the cell holding this is the one allocation a
    /// parked connection adds (the task's box is freed while it sleeps).
    session: ClientSession,
    slot: Slot,
    /// The last read, as milliseconds since the parker's epoch.
    last_read_ms: u64,
}

impl Hibernated {
    pub(super) const NO_SLOT: u32 = u32::MAX;

    pub(super) fn socket_mut(&mut self) -> &mut mio::net::TcpStream {
        &mut self.socket
    }

    pub(super) fn parker(&self) -> &Arc<Parker> {
        &self.slot.shared.parker
    }

    /// When the keep-alive runs out unless the client sends something.
    pub(super) fn keep_alive_deadline(&self) -> Option<std::time::Instant> {
        self.keep_alive().map(|limit| self.last_read() + limit)
    }

    fn last_read(&self) -> std::time::Instant {
        self.parker().from_millis(self.last_read_ms)
    }

    fn keep_alive(&self) -> Option<Duration> {
        (self.keep_alive_ms > 0).then(|| Duration::from_millis(self.keep_alive_ms.into()))
    }
}

/// How a run of turns ended.
enum Exit {
    Close(Close),
    /// Nothing to do: park, with `Cell` already the waker of every wait.
    Hibernate(Arc<Cell>),
}

/// Runs a hibernated connection again (its parker woke it). `hibernate`
/// false: the parker refused it, so it stays a task.
pub(super) async fn resume(mut parked: Hibernated, hibernate: bool) {
    if parked.token != Hibernated::NO_SLOT {
        parked.parker().clone().forget(&mut parked);
        let metrics = &parked.slot.shared.registry.services().metrics;
        metrics
            .clients_hibernating
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
    let keep_alive = parked.keep_alive();
    let last_read = Instant::from_std(parked.last_read());
    let Hibernated {
        socket,
        session,
        slot,
        version,
        ..
    } = parked;
    let stream = match tokio::net::TcpStream::from_std(socket.into()) {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!("cannot resume a hibernated connection: {e}");
            let close = Close::error(ReasonCode::UNSPECIFIED_ERROR);
            ended(session, &slot, (None, Listener::Tcp), close);
            return;
        }
    };
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut conn = Conn::new(
        stream,
        peer,
        Box::new(session),
        slot,
        version,
        keep_alive,
        last_read,
    );
    conn.hibernate &= hibernate;
    serve(conn, false).await;
}

/// Turns until the connection closes or hibernates. `fresh`: it has just
/// connected (it hibernates at its first quiet moment).
async fn serve<S: ByteStream>(mut conn: Conn<S>, fresh: bool) {
    let close = match turns(&mut conn, fresh).await {
        Exit::Close(close) => close,
        Exit::Hibernate(cell) => return hibernate(conn, cell),
    };
    if !conn.session.may_write() {
        // Held behind a QoS 2 stage that is not on the disk yet: it must
        // not go out (the stored session resends it on reconnect).
        conn.out.clear();
    }
    // The session goes back first: a takeover waiting for it does not wait
    // for this connection's goodbye.
    let Conn {
        mut stream,
        mut out,
        session,
        slot,
        peer,
        version,
        ..
    } = conn;
    ended(*session, &slot, (Some(peer), S::LISTENER), close);
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
    drop(slot);
}

/// Hands the connection to the parker; its task ends here.
fn hibernate<S: ByteStream>(conn: Conn<S>, cell: Arc<Cell>) {
    let Conn {
        stream,
        peer,
        session,
        slot,
        version,
        keep_alive,
        last_read,
        ..
    } = conn;
    let Some(socket) = stream.into_std() else {
        tracing::warn!(%peer, "cannot hibernate: the socket left tokio with an error");
        ended(
            *session,
            &slot,
            (Some(peer), S::LISTENER),
            Close::error(ReasonCode::UNSPECIFIED_ERROR),
        );
        return;
    };
    let parker = slot.shared.parker.clone();
    // Counted before the hand-over: once parked, it may resume (and count
    // itself out) at any moment.
    Metrics::add(
        &slot.shared.registry.services().metrics.clients_hibernating,
        1,
    );
    let parked = Hibernated {
        socket: mio::net::TcpStream::from_std(socket),
        token: Hibernated::NO_SLOT,
        // At most 1.5 × 65,535 s: it fits.
        keep_alive_ms: keep_alive.map_or(0, |k| k.as_millis() as u32),
        session: *session,
        last_read_ms: parker.to_millis(last_read.into_std()),
        slot,
        version,
    };
    let (parked, hibernate) = match parker.park(cell, parked) {
        Ok(()) => return,
        Err(NotParked::Woken(parked)) => (parked, true),
        Err(NotParked::Refused(parked)) => (parked, false),
    };
    let metrics = &parked.slot.shared.registry.services().metrics;
    metrics
        .clients_hibernating
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    tokio::spawn(resume(parked, hibernate));
}

/// The session ends: it goes back to the registry (will, expiry).
fn ended(
    session: ClientSession,
    slot: &Slot,
    (peer, listener): (Option<SocketAddr>, Listener),
    close: Close,
) {
    tracing::info!(
        client_id = %session.mailbox().client_id(),
        username = session.identity.username().unwrap_or(""),
        address = %peer.map(|p| p.to_string()).unwrap_or_default(),
        reason = format_args!("{:#04x}", close.reason.0),
        "client disconnected"
    );
    let services = slot.shared.registry.services().clone();
    session.finish(&slot.shared.registry, close);
    services.metrics.connection(listener, false);
}

/// The connection's turns: decode what was read, let the session answer,
/// write, then wait for the socket, the mailbox, a kick, an ACL change or
/// a timer. Every wait is on state the connection already holds (no
/// per-wait futures of any size), so the task stays small.
async fn turns<S: ByteStream>(conn: &mut Conn<S>, mut fresh: bool) -> Exit {
    let services = conn.slot.shared.registry.services().clone();
    let max_packet = services.config.limits.max_packet_size as usize;
    let hibernate_after = services
        .config
        .limits
        .hibernate_after()
        .filter(|_| conn.hibernate);
    let mailbox = conn.session.mailbox().clone();
    let client_id = mailbox.client_id();
    let acl = conn.session.identity.acl.clone();
    // Shutdown reaches attached sessions as a kick (`Registry::kick_all`);
    // a connection that attached after that sees the flag here.
    let stopping = *conn.slot.shared.shutdown.borrow();
    let mut last_active = Instant::now();
    let mut woken_during_write = false;
    let sleep = tokio::time::sleep_until(next_timer(
        conn.last_read,
        conn.keep_alive,
        last_active,
        hibernate_after,
    ));
    tokio::pin!(sleep);
    loop {
        if stopping {
            return Exit::Close(Close::shutdown());
        }
        // Kicks and revocations arrive as a mailbox wake-up (see
        // `Session::kick`, `LiveAcl::revoke`).
        if let Some(reason) = conn.session.kicked() {
            return Exit::Close(kick_close(reason));
        }
        if acl.is_revoked() {
            return Exit::Close(revoked(conn.peer, client_id, &acl));
        }
        // Packets already buffered first: a client may pipeline CONNECT
        // with more packets in one segment. A 3.1.1 client whose
        // acknowledgements wait for the store is not read meanwhile.
        while conn.session.accepts_input() {
            match protocol::decode(&mut conn.rbuf, Some(conn.version), max_packet) {
                Ok(Some(packet)) => {
                    if let Err(close) = conn.session.handle(packet, &mut conn.out) {
                        return Exit::Close(close);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    Metrics::add(&services.metrics.protocol_errors, 1);
                    tracing::info!(peer = %conn.peer, %client_id, "closing connection: {e}");
                    return Exit::Close(Close::error(e.reason_code()));
                }
            }
        }
        reserve_or_shrink(&mut conn.rbuf);
        let more = conn.session.pump(&mut conn.out, &mut conn.batch);
        if !conn.out.is_empty() && conn.session.may_write() {
            Metrics::add(&services.metrics.bytes_sent, conn.out.len() as u64);
            // Most writes complete at once; only one that has to wait pays
            // for the deadline and the watch (boxed, off the task's size).
            let at_once = {
                let write = write_out(&mut conn.stream, &mut conn.out);
                tokio::pin!(write);
                futures_util::poll!(write)
            };
            match at_once {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Exit::Close(Close::lost()),
                Poll::Pending => {
                    match Box::pin(write_or_leave(conn, &mailbox, &acl, &mut sleep)).await {
                        Ok(woken) => woken_during_write |= woken,
                        Err(close) => return Exit::Close(close),
                    }
                }
            }
            last_active = Instant::now();
        }
        if let Some(after) = hibernate_after {
            let quiet = !more
                && !woken_during_write
                && conn.rbuf.is_empty()
                && conn.out.is_empty()
                && !conn.session.awaits_commit();
            if quiet && (fresh || last_active.elapsed() >= after) {
                let cell = Cell::preparing();
                match interruption(&mailbox, &acl, &cell) {
                    None => return Exit::Hibernate(cell),
                    Some(Interruption::Revoked) => {
                        let close = revoked(conn.peer, client_id, &acl);
                        return Exit::Close(close);
                    }
                    // Mail or a kick came first: one more turn.
                    Some(Interruption::Work) => continue,
                }
            }
        }
        fresh = false;
        let reading = conn.session.accepts_input();
        let woken = std::mem::take(&mut woken_during_write);
        tokio::select! {
            biased;
            read = read_when_ready(&mut conn.stream, &mut conn.rbuf, READ_CHUNK), if reading => {
                match read {
                    Ok(0) | Err(_) => return Exit::Close(Close::lost()),
                    Ok(n) => Metrics::add(&services.metrics.bytes_received, n as u64),
                }
                conn.last_read = Instant::now();
                last_active = conn.last_read;
            }
            // Only what waits for the store waits here; the wait is boxed
            // so that it costs nothing on connections that never do.
            _ = async {
                if conn.session.awaits_commit() {
                    Box::pin(conn.session.commit_done()).await
                } else {
                    std::future::pending().await
                }
            } => {
                if let Err(close) = conn.session.flush_acks(&mut conn.out) {
                    tracing::error!(%client_id, "store commit failed; closing without acknowledgement");
                    return Exit::Close(close);
                }
            }
            _ = std::future::poll_fn(|cx| mailbox.poll_ready(cx)) => {}
            _ = &mut sleep => {
                if conn.keep_alive.is_some_and(|limit| conn.last_read.elapsed() >= limit) {
                    tracing::info!(peer = %conn.peer, %client_id, "keep alive timeout");
                    return Exit::Close(Close::error(ReasonCode::KEEP_ALIVE_TIMEOUT));
                }
                // Otherwise hibernation may be due: the next turn checks.
                sleep.as_mut().reset(next_timer(conn.last_read, conn.keep_alive, last_active, hibernate_after));
            }
            // More queued than one write holds, or a wake-up came during
            // the last write: go round again at once.
            _ = std::future::ready(()), if more || woken => {}
        }
    }
}

/// Writes the output buffer, unless something that ends the connection
/// comes first: a kick or revocation (shutdown is a kick), the keep-alive
/// deadline, or the write deadline (a peer that stopped reading must not
/// hold its connection, or a takeover waiting for it, forever). Returns
/// whether the mailbox was woken meanwhile (its wake-up was consumed).
async fn write_or_leave<S: ByteStream>(
    conn: &mut Conn<S>,
    mailbox: &Mailbox,
    acl: &LiveAcl,
    keep_alive: &mut std::pin::Pin<&mut tokio::time::Sleep>,
) -> Result<bool, Close> {
    let limit = conn
        .slot
        .shared
        .registry
        .services()
        .config
        .limits
        .write_timeout();
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    let mut woken = false;
    let started = conn.out.len();
    let mut unacknowledged = conn.stream.unacknowledged();
    // One write call at a time, so that progress is seen: a slow reader
    // that keeps taking bytes is not cut off, and is alive for keep-alive.
    while !conn.out.is_empty() {
        tokio::select! {
            biased;
            written = conn.stream.write_buf(&mut conn.out) => match written {
                Ok(0) | Err(_) => return Err(Close::lost()),
                Ok(_) => {
                    conn.last_read = Instant::now();
                    unacknowledged = conn.stream.unacknowledged();
                    deadline.as_mut().reset(Instant::now() + limit);
                }
            },
            _ = std::future::poll_fn(|cx| mailbox.poll_ready(cx)) => {
                woken = true;
                if let Some(reason) = conn.session.kicked() {
                    return Err(kick_close(reason));
                }
                if acl.is_revoked() {
                    return Err(revoked(conn.peer, mailbox.client_id(), acl));
                }
            }
            _ = keep_alive.as_mut() => {
                if conn.keep_alive.is_some_and(|limit| conn.last_read.elapsed() >= limit) {
                    tracing::info!(peer = %conn.peer, client_id = %mailbox.client_id(), "keep alive timeout while writing");
                    return Err(Close::error(ReasonCode::KEEP_ALIVE_TIMEOUT));
                }
                let far = Instant::now() + FAR;
                keep_alive.as_mut().reset(conn.keep_alive.map_or(far, |k| conn.last_read + k));
            }
            _ = &mut deadline => {
                // The socket may stay unwritable for long while the peer
                // does read (the kernel wakes writers only once much of
                // its buffer is free): what the peer acknowledged counts.
                let now = conn.stream.unacknowledged();
                if now.is_some_and(|n| unacknowledged.is_some_and(|before| n < before)) {
                    unacknowledged = now;
                    conn.last_read = Instant::now();
                    deadline.as_mut().reset(Instant::now() + limit);
                    continue;
                }
                tracing::info!(peer = %conn.peer, client_id = %mailbox.client_id(), "closing: the client stopped reading ({limit:?} write deadline)");
                return Err(Close::lost());
            }
        }
    }
    match tokio::time::timeout(limit, conn.stream.flush()).await {
        Ok(Ok(())) => {
            give_back(&mut conn.out, started);
            Ok(woken)
        }
        _ => Err(Close::lost()),
    }
}

/// The next keep-alive check or hibernation point, whichever is first
/// (never in the past: a connection that cannot hibernate yet, e.g. with
/// half a packet read, checks again one `hibernate_after` later).
fn next_timer(
    last_read: Instant,
    keep_alive: Option<Duration>,
    last_active: Instant,
    hibernate_after: Option<Duration>,
) -> Instant {
    let keep_alive_at = last_read + keep_alive.unwrap_or(FAR);
    match hibernate_after {
        Some(after) => {
            let now = Instant::now();
            let due = last_active + after;
            keep_alive_at.min(if due > now { due } else { now + after })
        }
        None => keep_alive_at,
    }
}

fn kick_close(reason: ReasonCode) -> Close {
    match reason {
        ReasonCode::SERVER_SHUTTING_DOWN => Close::shutdown(),
        reason => Close::error(reason),
    }
}

fn revoked(peer: SocketAddr, client_id: &str, acl: &LiveAcl) -> Close {
    if acl.is_expired() {
        tracing::info!(%peer, %client_id, "login token expired: closing");
        return Close::error(ReasonCode::MAXIMUM_CONNECT_TIME);
    }
    tracing::info!(%peer, %client_id, "user disabled or deleted, or token revoked: closing");
    Close::error(ReasonCode::ADMINISTRATIVE_ACTION)
}

/// What was already due when a connection was about to hibernate.
enum Interruption {
    Revoked,
    /// Mail or a kick: another turn.
    Work,
}

/// Makes `cell` the waker of every wait of a connection about to
/// hibernate, and reports a wait that is already due (its wake-up is
/// consumed, so the caller acts on it).
fn interruption(mailbox: &Mailbox, acl: &LiveAcl, cell: &Arc<Cell>) -> Option<Interruption> {
    let waker = Waker::from(cell.clone());
    let mut cx = Context::from_waker(&waker);
    let mail = mailbox.poll_ready(&mut cx).is_ready();
    if acl.is_revoked() {
        Some(Interruption::Revoked)
    } else if mail {
        Some(Interruption::Work)
    } else {
        None
    }
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
            goodbye(stream, out).await;
            return None;
        }
        // Only a v5 will carries a payload format indicator; MQTT 5.0
        // 3.1.3.2.3 names CONNACK 0x99 for a will that breaks it.
        Ok(Err(ReadError::Decode(e @ DecodeError::PayloadFormatInvalid))) => {
            Metrics::add(&services.metrics.protocol_errors, 1);
            tracing::info!(%peer, "bad CONNECT: {e}");
            write_refusal(ProtocolVersion::V5, e.reason_code(), out);
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
    let username = connect.username.clone();
    match connect::accept(shared, connect, (peer, S::LISTENER), certificate, out).await {
        // Boxed: moved through the CONNECT phase's result into the
        // connection's own state, inline it took twice its size there.
        Ok((session, keep_alive)) => Some((Box::new(session), keep_alive, version)),
        Err(refused) => {
            let username = username.as_deref().unwrap_or("");
            let reason = refused.reason.0;
            if refused.detail == connect::AUTH_REFUSED {
                tracing::warn!(%client_id, username, address = %peer, reason = format_args!("{reason:#04x}"), "authentication failed");
            } else {
                tracing::info!(%client_id, username, address = %peer, reason = format_args!("{reason:#04x}"), "connection refused: {}", refused.detail);
            }
            write_refusal(version, refused.reason, out);
            goodbye(stream, out).await;
            None
        }
    }
}

/// Flushes what is left and closes gracefully: shuts down writing, then
/// discards input until the client closes too (at most a second), so
/// that unread input does not turn the close into a reset that would
/// discard a DISCONNECT or CONNACK carrying the reason.
async fn goodbye<S: ByteStream>(stream: &mut S, out: &mut BytesMut) {
    let second = Duration::from_secs(1);
    if !out.is_empty() {
        let _ = tokio::time::timeout(second, write_out(stream, out)).await;
    }
    let _ = tokio::time::timeout(second, stream.shutdown()).await;
    let _ = tokio::time::timeout(second, async {
        let mut sink = [0u8; 1024];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Writes all of `out`; on an interrupted write, `out` keeps exactly what
/// was not written yet.
async fn write_out<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut BytesMut,
) -> std::io::Result<()> {
    let written = out.len();
    stream.write_all_buf(out).await?;
    stream.flush().await?;
    give_back(out, written);
    Ok(())
}

/// After a write of `written` bytes: a small one (a PINGRESP, an
/// acknowledgement) suggests a quiet connection, so the buffer goes back.
/// Busy ones keep theirs, up to a cap.
fn give_back(out: &mut BytesMut, written: usize) {
    out.clear();
    if written < SMALL_WRITE || out.capacity() > IDLE_BUFFER_LIMIT {
        *out = BytesMut::new();
    }
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
    chunk: usize,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await?;
    if rbuf.capacity() - rbuf.len() < chunk / 4 {
        rbuf.reserve(chunk);
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
        match read_when_ready(stream, rbuf, CONNECT_CHUNK).await {
            Ok(0) | Err(_) => return Err(ReadError::Io),
            Ok(_) => {}
        }
    }
}
