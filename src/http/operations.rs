//! Operations routes (Gatehouse extensions): `GET /metrics` (Prometheus
//! text; public with `[http] metrics_public`) and `GET /api/backup` (the
//! whole store and its keys, streamed from one read transaction).

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::io::Write;
use tokio::sync::mpsc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::Caller;
use crate::identity::Operation;
use crate::identity::http_access::{AccessError, permits};

pub fn metrics_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

pub fn backup_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(backup))
}

/// Prometheus text format (every metric is listed in docs/operations.md).
/// Needs `read` on `/metrics`, unless `[http] metrics_public = true`
/// (Gatehouse extension).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String,
        description = "Prometheus text exposition format 0.0.4")))]
async fn metrics(State(state): State<AppState>) -> Response {
    let registry = state.registry.clone();
    let text =
        tokio::task::spawn_blocking(move || registry.services().metrics.exporter.render(&registry))
            .await
            .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Hands the writer's chunks to the response body; fails once the client
/// has gone, which stops the backup.
struct Chunks {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl Chunks {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// A consistent backup of the whole store (users, roles, tokens, MFA
/// state, certificate records, sessions, queues, retained messages, every
/// table) with the token-signing and MFA keys and the CA: restore it with
/// `gatehouse restore`. It carries keys and password hashes, so besides
/// `read` it needs `write` on `/api/backup` (the admin role has both).
/// Gatehouse extension.
#[utoipa::path(get, path = "/api/backup", tag = "operations",
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>,
        description = "The backup file (format in docs/operations.md)")))]
async fn backup(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let services = &state.services;
    if !permits(
        &services.directory,
        &caller.user,
        "/api/backup",
        Operation::Write,
    ) {
        return Err(AccessError::Forbidden {
            operation: "write",
            resource: "/api/backup".into(),
        }
        .into());
    }
    let actor = caller.actor();
    super::blocking(&state, move |s| {
        s.audit
            .record(&actor, "store.backup", "store", serde_json::json!({}))
            .map_err(Into::into)
    })
    .await?;
    let broker = state.registry.services().clone();
    let (tx, mut rx) = mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let mut out = Chunks {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let config = &broker.config;
        let result = broker
            .store
            .backup(&config.storage.dir, &config.tls.dir, &mut out)
            .map_err(std::io::Error::other)
            .and_then(|_| out.flush());
        if let Err(e) = result {
            tracing::warn!("backup stopped: {e}");
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let name = format!(
        "attachment; filename=\"gatehouse-{}.backup\"",
        crate::router::now_millis() / 1000
    );
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Counts every request by route template, method and status.
pub async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    state.registry.services().metrics.exporter.http_request(
        &route,
        method,
        response.status().as_u16(),
    );
    response
}

/// A fixed set of labels: any token is a valid HTTP method, and a label
/// per invented method would let anyone grow the metrics without bound.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
