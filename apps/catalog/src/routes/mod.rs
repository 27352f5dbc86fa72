//! The HTTP resources, one `router()` each: [`products`], [`health`],
//! [`metrics`] (Prometheus), [`docs`] (OpenAPI and its page). They are merged
//! in [`crate::app::build_app`].

pub mod docs;
pub mod health;
pub mod metrics;
pub mod products;
