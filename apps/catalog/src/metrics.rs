//! Prometheus metrics: the process-wide recorder ([`recorder`]) and the HTTP
//! middleware ([`track_http`]) that counts requests and times them by route.
//!
//! Everything goes through the `metrics` facade, so HybridCache's own series
//! (`strata_hybrid_hits_total{layer}`, misses, factory runs, stale served, L2
//! errors, backplane messages) appear at `/metrics` beside the catalog's:
//!
//! - `http_requests_total{method, route, status}`
//! - `http_request_duration_seconds{method, route, status}` (histogram)
//! - `catalog_cache_lookups_total{entry, result}`: hit or miss per entry kind
//! - `catalog_db_loads_total{entry}`: database reads on behalf of the cache
//!
//! Every label comes from a closed set, whatever a client sends, so that the
//! series count stays bounded: `route` is the matched route template
//! (`/products/{id}`), never the raw path (unmatched requests are
//! `unmatched`); `method` is one of the standard methods or `other`; `status`
//! is one of the codes the service answers with.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds: from a sub-millisecond L1 hit to a slow query.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The handle that renders every metric of this process.
///
/// The `metrics` facade has one global recorder per process, so the first
/// call installs it and later calls (several app instances in one test
/// process) share it: their series add up.
pub fn recorder() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                // Someone else installed a recorder first (a test harness):
                // our handle then renders nothing, which beats failing.
                tracing::warn!("a global metrics recorder was already installed");
            }
            handle
        })
        .clone()
}

/// The `method` label: a standard method by name, anything else `other`
/// (a method is any token a client makes up).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Middleware: counts and times every request by method, route and status.
pub async fn track_http(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}
