//! Wiring: [`AppState`] (what every handler shares), [`build_app`] (the router
//! with its middleware), [`serve`] (a bound listener plus a shutdown future,
//! so tests bind `127.0.0.1:0`) and [`run`] (what `main` does).
//!
//! Middleware, outermost first: request id (a UUID unless the client sent
//! a valid `x-request-id`: at most 128 letters, digits, `-`, `_`, `.` or `:`;
//! any other is replaced, never echoed or logged), a tracing span carrying
//! it (so every log line of the request has it), the id copied to the
//! response, panics turned into a problem, metrics by matched route, problem
//! `instance`/`request_id` filling, and the 64 KiB body limit. Connection
//! limits and timeouts are [`crate::server`]'s.

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::cache::ProductCache;
use crate::config::Config;
use crate::db::{self, ProductRepository};
use crate::error::{ApiError, PROBLEM_JSON, Problem};
use crate::routes;
use crate::server::Limits;

/// The largest accepted request body: 64 KiB, far above any valid product
/// (200 + 2,000 characters) and small enough to bound memory per request.
pub const BODY_LIMIT: usize = 64 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client request id kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// What every handler shares. A cheap `Clone`: handles only.
#[derive(Clone)]
pub struct AppState {
    /// The product store.
    pub repo: Arc<dyn ProductRepository>,
    /// The product cache, whatever the strategy.
    pub cache: ProductCache,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

impl AppState {
    /// A state over an open repository and a built cache.
    pub fn new(repo: Arc<dyn ProductRepository>, cache: ProductCache) -> Self {
        Self {
            repo,
            cache,
            metrics: crate::metrics::recorder(),
        }
    }

    /// Opens the database (migrating and seeding it) and builds the cache
    /// that `config` describes.
    ///
    /// # Errors
    ///
    /// A database that cannot be opened or migrated, or bad cache settings.
    /// Redis being down is not an error: the cache reconnects in the background.
    pub async fn from_config(config: &Config) -> Result<Self, StartError> {
        let cache = ProductCache::from_config(config)?;
        let repo = db::connect(&config.database_url, config.seed).await?;
        Ok(Self::new(repo, cache))
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database.
    #[error(transparent)]
    Database(#[from] db::ConnectError),
    /// The cache settings.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// Binding the port.
    #[error("cannot listen: {0}")]
    Io(#[from] io::Error),
}

/// The whole HTTP application: every resource's router merged, the fallbacks
/// that keep unknown routes and methods in problem+json, and the middleware.
pub fn build_app(state: AppState) -> Router {
    Router::new()
        .merge(routes::products::router())
        .merge(routes::health::router())
        .merge(routes::metrics::router())
        .merge(routes::docs::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::map_request(drop_invalid_request_id))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|request: &Request| {
                            let id = request
                                .headers()
                                .get(REQUEST_ID)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            tracing::info_span!(
                                "request",
                                request_id = %id,
                                method = %request.method(),
                                path = %request.uri().path(),
                            )
                        })
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::Internal("a handler panicked".into()).into_response()
                }))
                .layer(middleware::from_fn(crate::metrics::track_http))
                .layer(middleware::from_fn(complete_problem))
                .layer(DefaultBodyLimit::max(BODY_LIMIT)),
        )
        .with_state(state)
}

/// Removes a client `x-request-id` that is too long or has characters beyond
/// `[A-Za-z0-9._:-]`, so that the next layer gives the request a fresh one:
/// a client's id ends up in every log line and in the response.
async fn drop_invalid_request_id(mut request: Request) -> Request {
    let valid = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID_LEN
            && b.iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
    };
    let headers = request.headers_mut();
    if headers.get_all(REQUEST_ID).iter().count() > 1
        || headers.get(REQUEST_ID).is_some_and(|v| !valid(v))
    {
        headers.remove(REQUEST_ID);
    }
    request
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("No route matches {}.", request.uri().path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Fills a problem's `instance` (the request path) and `request_id`, which
/// the code that raised the error does not know.
async fn complete_problem(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut response = next.run(request).await;
    if let Some(mut problem) = response.extensions_mut().remove::<Problem>() {
        problem.instance = Some(path);
        problem.request_id = request_id;
        let (mut parts, _) = response.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        response = Response::from_parts(parts, axum::body::Body::from(body));
    }
    response
}

/// Serves `app` on `listener` with the default [`Limits`] until `shutdown`
/// completes, then finishes the requests in flight (see [`crate::server`]).
///
/// # Errors
///
/// An I/O error of the listener.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    crate::server::serve(listener, app, Limits::default(), shutdown).await
}

/// Completes on ctrl-c or SIGTERM (what `docker stop` and Kubernetes send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}

/// Runs the service as configured: logs, database, cache, listener, until a
/// shutdown signal.
///
/// # Errors
///
/// Any [`StartError`].
pub async fn run(config: Config) -> Result<(), StartError> {
    config
        .validate()
        .map_err(|m| StartError::Cache(crate::cache::CacheError::Config(m)))?;
    tracing::info!(
        database = %db::redact(&config.database_url),
        cache = %config.cache_topology(),
        instance_name = %config.instance_name,
        "starting catalog"
    );
    let state = AppState::from_config(&config).await?;
    let listener = TcpListener::bind(("0.0.0.0", config.port)).await?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    let limits = Limits::from_config(&config);
    crate::server::serve(listener, build_app(state), limits, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Installs the log subscriber: `filter` in `EnvFilter` syntax (`LOG`).
/// Safe to call more than once (later calls do nothing).
pub fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colors only on a terminal: container logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .try_init();
}
