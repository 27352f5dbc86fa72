//! Catalog: the Strata reference Product API.
//!
//! The reference article's .NET Product API, production-grade: CRUD over
//! products in PostgreSQL or embedded SQLite, cached through Strata so that any
//! number of instances behind a load balancer serve consistent data. With
//! nothing configured it runs on `catalog.db` with an in-process cache.
//!
//! Tests build the app exactly as `main` does, on port 0:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use catalog::{AppState, Config, build_app, serve};
//!
//! let config = Config::defaults();
//! let state = AppState::from_config(&config).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! serve(listener, build_app(state), std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`config`]: [`Config`], flags and environment variables (clap).
//! - [`model`]: [`Product`](model::Product), input validation, exact prices.
//! - [`db`]: the [`ProductRepository`](db::ProductRepository) trait, PostgreSQL
//!   and SQLite implementations, migrations and seeding.
//! - [`seed`]: 1,000 deterministic demo products.
//! - [`cache`]: [`ProductCache`](cache::ProductCache), keys, lifetimes,
//!   invalidation, fallback to the database.
//! - [`routes`]: one router per resource (products, health, docs).
//! - [`error`]: [`ApiError`](error::ApiError) and problem+json.
//! - [`extract`]: extractors whose rejections are problem+json.
//! - [`metrics`]: the Prometheus recorder and HTTP metrics.
//! - [`app`]: [`AppState`], [`build_app`], [`serve`], [`run`].
//! - [`telemetry`]: log lines, and span export to OpenTelemetry when the
//!   `OTEL_*` variables ask for it.
//! - [`server`]: the accept loop, timeouts, connection bound, shutdown
//!   deadline, and problem+json for requests hyper cannot parse.

pub mod app;
pub mod cache;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod model;
pub mod routes;
pub mod seed;
pub mod server;
pub mod telemetry;

pub use app::{AppState, build_app, init_tracing, run, serve, shutdown_signal};
pub use config::{CacheMode, Config};
pub use server::Limits;

// The workspace README's Rust snippets compile as doctests of this crate: it
// depends on both library crates, and it is not published, so the README
// outside its directory is no packaging problem.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
