//! The HTTP/1.1 server: the accept loop, the per-connection limits, and the
//! graceful shutdown with a deadline. The application (routes, middleware)
//! is [`crate::app`]'s; this module only decides which connections it gets
//! and for how long.
//!
//! `axum::serve` has no header-read timeout, no connection bound and no
//! shutdown deadline, so a client that never finishes its request held a
//! connection, a file descriptor and the shutdown forever. Here:
//!
//! - **Header read timeout** ([`Limits::header_read`]): hyper closes a
//!   connection whose request head is not complete in time. The clock runs
//!   from the moment the connection waits for a request, so an idle
//!   keep-alive connection is closed after the same time.
//! - **Body read timeout** ([`Limits::body_read`]): handed to the request as
//!   a [`BodyReadTimeout`] extension; the JSON extractor answers 408 when the
//!   body is not complete in time (see [`crate::extract`]).
//! - **Write stall** (the same duration): a client that stops reading its
//!   response is disconnected (see the `io` submodule).
//! - **Head size** ([`Limits::max_head_bytes`]): a request line plus headers
//!   larger than this is a 431.
//! - **Connection bound** ([`Limits::max_connections`]): past it, a new
//!   connection is answered 503 with `Retry-After` and closed (after a short,
//!   bounded drain, see `refuse`), so the listener keeps answering and file
//!   descriptors stay bounded.
//! - **Shutdown deadline** ([`Limits::shutdown`]): on shutdown the listener
//!   closes, idle connections close, requests in flight may finish; when the
//!   deadline passes, the connections still open are closed.
//!
//! Protocol errors (a request hyper cannot parse) are answered in
//! problem+json too; the `io` submodule explains how.

mod io;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::config::Config;

/// The limits a client cannot stretch. The defaults are those of
/// [`Config::defaults`]; each is a setting (see [`Config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to receive a request's line and headers (and, on a kept-alive
    /// connection, the next request). Default 10 s.
    pub header_read: Duration,
    /// Time to receive a request body once its headers are in, and the time
    /// a response write may stay blocked. Default 10 s.
    pub body_read: Duration,
    /// The largest request line plus headers. Default 16 KiB: far above any
    /// request of this API, far below hyper's 400 KiB.
    pub max_head_bytes: usize,
    /// Connections served at once. Default 1,024.
    pub max_connections: usize,
    /// How long a shutdown waits for requests in flight. Default 20 s, under
    /// the 30 s that Docker and Kubernetes wait before killing the process.
    pub shutdown: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_config(&Config::defaults())
    }
}

impl Limits {
    /// The limits `config` sets.
    pub fn from_config(config: &Config) -> Self {
        Self {
            header_read: Duration::from_millis(config.header_timeout_ms.max(1)),
            body_read: Duration::from_millis(config.body_timeout_ms.max(1)),
            max_head_bytes: MAX_HEAD_BYTES,
            max_connections: config.max_connections.max(1),
            shutdown: Duration::from_millis(config.shutdown_timeout_ms),
        }
    }
}

/// The default and only head size limit: see [`Limits::max_head_bytes`].
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The body-read deadline of a request, in its extensions.
#[derive(Debug, Clone, Copy)]
pub struct BodyReadTimeout(pub Duration);

/// Serves `app` on `listener` under `limits` until `shutdown` completes, then
/// shuts down gracefully within [`Limits::shutdown`].
///
/// # Errors
///
/// None today: accept errors (a client gone, the file limit reached) are
/// logged and retried. The `Result` leaves room for start-up errors.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_header_size(limits.max_head_bytes);
    let http = Arc::new(http);
    let body_read = BodyReadTimeout(limits.body_read);
    let app = app.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(body_read);
        request
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let lingering = Arc::new(Semaphore::new(REFUSALS_LINGERING));
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    // Refusals are logged at most once a second, with their count: a flood
    // of connections must not become a flood of log lines.
    let mut refused = 0u64;
    let mut last_refusal_log: Option<Instant> = None;
    loop {
        let (stream, _peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it
                    // was accepted: wait a little instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Reap finished connections so the set stays as large as the load.
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(stream, &limits, &lingering);
            refused += 1;
            if last_refusal_log.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                tracing::warn!(
                    refused,
                    max_connections = limits.max_connections,
                    "connection limit reached; refusing connections with 503"
                );
                refused = 0;
                last_refusal_log = Some(Instant::now());
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(io::ConnIo::new(
            stream,
            limits.body_read,
            limits.max_head_bytes,
        ));
        let service = TowerToHyperService::new(app.clone());
        let http = http.clone();
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            let connection = http.serve_connection(io, service);
            let mut connection = std::pin::pin!(connection);
            // `wait_for` returns a guard that is not `Send`: drop it inside.
            let stop = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stop => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "connection closed on an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let open = connections.len();
    tracing::info!(open, "listener closed; finishing requests in flight");
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            deadline = ?limits.shutdown,
            "shutdown deadline passed; closing the connections still open"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Answers a connection over the bound with a 503 problem, without waiting:
/// the response is a few hundred bytes into an empty socket buffer.
///
/// Closing a socket whose client is still sending makes the kernel reset
/// it, and a reset can reach the client before it reads the 503. So the
/// answer is followed by a FIN, and the client's request is read and dropped
/// for up to [`REFUSAL_LINGER`] before the socket closes, when one of the
/// [`REFUSALS_LINGERING`] slots is free; past that the socket closes at once.
fn refuse(stream: TcpStream, limits: &Limits, lingering: &Arc<Semaphore>) {
    let _ = stream.try_write(&io::problem_response(
        StatusCode::SERVICE_UNAVAILABLE,
        limits.max_head_bytes,
    ));
    let Ok(slot) = lingering.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let mut stream = stream;
        let drain = async {
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            while let Ok(1..) = stream.read(&mut sink).await {}
        };
        let _ = tokio::time::timeout(REFUSAL_LINGER, drain).await;
        drop(slot);
    });
}

/// How long a refused connection is drained before it closes.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Refused connections drained at once; the file descriptors they hold stay
/// bounded however many connections arrive over the bound.
const REFUSALS_LINGERING: usize = 64;
