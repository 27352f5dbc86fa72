//! `/health/live` and `/health/ready`: liveness (the process answers) and
//! readiness (the database answers; Redis is reported but optional).
//!
//! Redis down is a degradation, not an outage: the catalog still serves from
//! the database, so readiness stays 200 and says `degraded`. Only a database
//! that does not answer makes readiness 503, so that a load balancer stops
//! sending traffic to an instance that cannot serve it.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;

/// How long readiness waits for the database.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
}

/// Liveness: `{"status": "ok"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    /// Always `ok`.
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "The process answers", body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live { status: "ok" })
}

/// Readiness report.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ok`, `degraded` (Redis down, served from the database) or `unavailable`.
    status: &'static str,
    /// The cache strategy in use.
    cache: &'static str,
    /// Each dependency's state.
    checks: Checks,
}

/// The dependencies' states.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    /// The database: required.
    database: Check,
    /// Redis, when configured: optional.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<Check>,
}

/// One dependency's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    /// `up` or `down`.
    status: &'static str,
    /// The backend (`postgres`, `sqlite`, `redis`).
    backend: &'static str,
    /// Why it is down: an error class, never a connection string.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Check {
    fn from(backend: &'static str, result: Result<(), String>) -> Self {
        match result {
            Ok(()) => Check {
                status: "up",
                backend,
                error: None,
            },
            Err(error) => Check {
                status: "down",
                backend,
                error: Some(error),
            },
        }
    }
}

/// The instance can serve: 200 when the database answers (Redis may be down:
/// `degraded`), 503 when it does not.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready; `degraded` when Redis is down", body = Ready),
        (status = 503, description = "The database does not answer", body = Ready),
    ))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let database = match tokio::time::timeout(DATABASE_TIMEOUT, state.repo.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: the database is down");
            Err(if error.is_unavailable() {
                "unavailable"
            } else {
                "error"
            }
            .to_owned())
        }
        Err(_) => Err("timeout".to_owned()),
    };
    let redis = state.cache.health().await;
    if let Some(Err(error)) = &redis {
        tracing::warn!(%error, "readiness: Redis is down; serving from the database");
    }
    let (code, status) = match (&database, &redis) {
        (Err(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (Ok(()), Some(Err(_))) => (StatusCode::OK, "degraded"),
        (Ok(()), _) => (StatusCode::OK, "ok"),
    };
    let checks = Checks {
        database: Check::from(state.repo.backend(), database),
        redis: redis.map(|r| Check::from("redis", r)),
    };
    (
        code,
        Json(Ready {
            status,
            cache: state.cache.topology(),
            checks,
        }),
    )
}
