//! One MQTT client connection: TCP_NODELAY, a big read buffer, one write
//! buffer flushed in batches, and a timeout on every await.

use anyhow::{Context as _, anyhow, bail};
use bytes::{Buf, BytesMut};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::mqtt::{self, Frame, Malformed};

/// Upper bound for any single network wait that should complete quickly.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer size of busy connections.
pub const BIG_READ: usize = 256 * 1024;

/// Where to connect and with which credentials.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive: u16,
}

impl Target {
    /// The same broker with another username (same password).
    pub fn with_username(&self, username: String) -> Target {
        Target {
            username: Some(username),
            ..self.clone()
        }
    }
}

pub struct Conn {
    pub stream: TcpStream,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    read_chunk: usize,
}

impl Conn {
    /// TCP connect, CONNECT, and wait for a successful CONNACK.
    /// `read_chunk` is how much room each read reserves (small for idle
    /// connections, [`BIG_READ`] for busy ones).
    pub async fn open(
        target: &Target,
        client_id: &str,
        clean_session: bool,
        read_chunk: usize,
    ) -> anyhow::Result<Conn> {
        let stream = timeout(IO_TIMEOUT, TcpStream::connect(target.addr))
            .await
            .map_err(|_| anyhow!("TCP connect to {} timed out", target.addr))?
            .with_context(|| format!("TCP connect to {}", target.addr))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::with_capacity(read_chunk.max(64)),
            wbuf: BytesMut::with_capacity(256),
            read_chunk: read_chunk.max(64),
        };
        mqtt::connect(
            &mut conn.wbuf,
            &mqtt::ConnectFields {
                client_id,
                username: target.username.as_deref(),
                password: target.password.as_deref(),
                clean_session,
                keep_alive: target.keep_alive,
            },
        );
        conn.flush().await?;
        let rc = conn
            .expect(mqtt::CONNACK, |f| Ok(f.body.get(1).copied().unwrap_or(255)))
            .await
            .context("waiting for CONNACK")?;
        if rc != 0 {
            bail!("CONNACK return code {rc} for client {client_id}");
        }
        Ok(conn)
    }

    /// Writes the whole write buffer.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        timeout(IO_TIMEOUT, self.stream.write_all(&self.wbuf))
            .await
            .map_err(|_| anyhow!("write timed out"))??;
        self.wbuf.clear();
        Ok(())
    }

    /// One read of up to the buffer's room, waiting at most `limit`.
    /// `Ok(None)`: nothing arrived in time; `Ok(Some(0))`: end of stream.
    pub async fn read_for(&mut self, limit: Duration) -> anyhow::Result<Option<usize>> {
        if self.rbuf.capacity() - self.rbuf.len() < self.read_chunk / 4 {
            self.rbuf.reserve(self.read_chunk);
        }
        match timeout(limit, self.stream.read_buf(&mut self.rbuf)).await {
            Err(_) => Ok(None),
            Ok(Ok(n)) => Ok(Some(n)),
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// Parses every complete frame in the read buffer. `f` may append
    /// replies to the write buffer (its second argument).
    pub fn frames(
        &mut self,
        mut f: impl FnMut(Frame<'_>, &mut BytesMut) -> Result<(), Malformed>,
    ) -> anyhow::Result<()> {
        let wbuf = &mut self.wbuf;
        let used = mqtt::for_each_frame(&self.rbuf, |frame| f(frame, wbuf))?;
        self.rbuf.advance(used);
        Ok(())
    }

    /// Reads until a frame of type `kind` arrives (others are skipped) and
    /// maps it with `f`; fails after [`IO_TIMEOUT`].
    pub async fn expect<T>(
        &mut self,
        kind: u8,
        mut f: impl FnMut(&Frame<'_>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        loop {
            let mut found = None;
            let used = mqtt::for_each_frame(&self.rbuf, |frame| {
                if found.is_none() && frame.kind() == kind {
                    found = Some(f(&frame));
                }
                Ok(())
            })?;
            // Skipped frames are dropped: nothing else is expected here.
            self.rbuf.advance(used);
            if let Some(result) = found {
                return result;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_for(left).await? {
                None => bail!("timed out waiting for packet type {kind}"),
                Some(0) => bail!("connection closed while waiting for packet type {kind}"),
                Some(_) => {}
            }
        }
    }

    /// SUBSCRIBE to one filter and check the SUBACK grants it.
    pub async fn subscribe(&mut self, filter: &str, qos: u8) -> anyhow::Result<()> {
        mqtt::subscribe(&mut self.wbuf, 1, filter, qos);
        self.flush().await?;
        let granted = self
            .expect(mqtt::SUBACK, |f| match f.packet_id() {
                Some(1) => Ok(f.body.get(2).copied().unwrap_or(0x80)),
                other => bail!("SUBACK for packet id {other:?}, expected 1"),
            })
            .await
            .context("waiting for SUBACK")?;
        if granted == 0x80 {
            bail!("subscription to {filter} refused (SUBACK 0x80)");
        }
        Ok(())
    }

    /// PINGREQ → PINGRESP round trip (checks the connection is alive).
    pub async fn ping(&mut self) -> anyhow::Result<()> {
        mqtt::pingreq(&mut self.wbuf);
        self.flush().await?;
        self.expect(mqtt::PINGRESP, |_| Ok(())).await
    }

    /// DISCONNECT, then wait (bounded) for the broker to close, so the
    /// broker has really processed the disconnect when this returns.
    pub async fn disconnect(mut self, wait: Duration) {
        self.rbuf.clear();
        mqtt::disconnect(&mut self.wbuf);
        if self.flush().await.is_err() {
            return;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.rbuf.clear();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_for(left).await {
                Ok(Some(n)) if n > 0 => continue,
                _ => return,
            }
        }
    }
}
