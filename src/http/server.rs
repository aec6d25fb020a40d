//! The `http` and `https` listeners: hyper's HTTP/1.1 server over the
//! app, with the client's address handed to it, a limit on connections,
//! a header read timeout, TLS with the broker's server certificate, and
//! a graceful stop.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::tls::TlsContext;

/// Marks requests that came in over TLS (secure cookies, URLs in the
/// OAuth metadata).
#[derive(Debug, Clone, Copy)]
pub struct Https;

/// The local address a request's connection was accepted on (the OAuth
/// metadata's URLs when `[oauth] base_url` is empty; never the `Host`
/// header, which the client chooses).
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub SocketAddr);

/// Time allowed for a request's headers (and a TLS handshake).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts until `shutdown`; `tls` makes it the HTTPS listener.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<TlsContext>>,
    max_connections: usize,
    shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)));
    let mut stop = shutdown.clone();
    loop {
        let (socket, peer) = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "HTTP connection limit reached; refusing");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let Ok(local) = socket.local_addr() else {
            continue;
        };
        let (app, tls, shutdown) = (app.clone(), tls.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let ends = (peer, local);
            match tls {
                None => connection(socket, ends, false, app, shutdown).await,
                Some(tls) => {
                    let accept = tls.http_acceptor().accept(socket);
                    match tokio::time::timeout(HEADER_TIMEOUT, accept).await {
                        Ok(Ok(stream)) => connection(stream, ends, true, app, shutdown).await,
                        Ok(Err(e)) => tracing::debug!(%peer, "HTTPS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn connection<S>(
    stream: S,
    (peer, local): (SocketAddr, SocketAddr),
    https: bool,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(LocalAddr(local));
        if https {
            request.extensions_mut().insert(Https);
        }
        app.clone().oneshot(request)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, "HTTP connection ended: {e}");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}
