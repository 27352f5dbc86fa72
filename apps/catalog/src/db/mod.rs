//! Storage: the [`ProductRepository`] trait and its two implementations,
//! [`PostgresRepository`] and [`SqliteRepository`], chosen by the URL scheme
//! in [`connect`].
//!
//! Each backend has its own migration directory (`migrations/postgres`,
//! `migrations/sqlite`): the column types differ (NUMERIC and UUID in
//! PostgreSQL, TEXT in SQLite), so one shared script would fit neither well.
//! Queries use `query_as` with `FromRow`, never the `query!` macros, so that
//! building needs no live database. Caching is not this module's business: see
//! [`crate::cache`].

mod postgres;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::model::{NewProduct, Product};
use crate::seed;

pub use postgres::PostgresRepository;
pub use sqlite::SqliteRepository;

/// How long a request waits for a pooled connection before the database is
/// declared unavailable (503). Short, so that an outage fails fast instead of
/// piling requests up behind the pool.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A storage failure, classified so that HTTP can answer 503 to an outage and
/// 500 to a bug.
///
/// Cheap to clone (the causes are shared): HybridCache hands one factory
/// failure to every request that waited on it, and each needs its own copy.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RepoError {
    /// The database cannot be reached: refused connection, pool timeout, the
    /// server shutting down.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] Arc<sqlx::Error>),
    /// Any other database error (a constraint, a bad query).
    #[error("database error: {0}")]
    Database(#[source] Arc<sqlx::Error>),
    /// A stored row does not convert to a [`Product`].
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Applying the migrations failed at start-up.
    #[error("database migration failed: {0}")]
    Migrate(#[source] Arc<sqlx::migrate::MigrateError>),
}

impl From<sqlx::Error> for RepoError {
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            RepoError::Unavailable(Arc::new(error))
        } else {
            RepoError::Database(Arc::new(error))
        }
    }
}

impl From<sqlx::migrate::MigrateError> for RepoError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        RepoError::Migrate(Arc::new(error))
    }
}

impl RepoError {
    /// True for an outage, which HTTP reports as 503.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, RepoError::Unavailable(_))
    }
}

/// Outages, as opposed to bugs: transport failures, and the PostgreSQL error
/// classes that mean "the server cannot serve you now" (08 connection
/// exception, 53 insufficient resources, 57P0x shutdown or crash recovery).
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                // SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6) past the busy timeout.
                || code == "5"
                || code == "6"
        }),
        _ => false,
    }
}

/// The product store. Every write commits before it returns, so the caller
/// may invalidate caches right after.
#[async_trait]
pub trait ProductRepository: Send + Sync + 'static {
    /// Every product, in creation order.
    async fn list(&self) -> Result<Vec<Product>, RepoError>;
    /// One product, or `None`.
    async fn get(&self, id: Uuid) -> Result<Option<Product>, RepoError>;
    /// Inserts a product with a fresh UUID v7 and returns it as stored.
    async fn create(&self, input: NewProduct) -> Result<Product, RepoError>;
    /// Replaces the fields of `id` and returns the stored product, or `None`
    /// when there is no such product.
    async fn update(&self, id: Uuid, input: NewProduct) -> Result<Option<Product>, RepoError>;
    /// Deletes `id`; false when there was no such product.
    async fn delete(&self, id: Uuid) -> Result<bool, RepoError>;
    /// Inserts `products` in one transaction when the table is empty; skips
    /// ids that already exist (another replica seeding at the same moment).
    /// Returns how many rows were inserted.
    async fn seed_if_empty(&self, products: &[Product]) -> Result<u64, RepoError>;
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), RepoError>;
    /// The backend's name, for logs and the readiness report.
    fn backend(&self) -> &'static str;
}

/// Opens the database named by `url`, applies its migrations, and seeds it
/// when `seed_when_empty` is set and the table is empty.
///
/// `sqlite://FILE` (created when missing), `sqlite::memory:` (one connection,
/// gone at exit) or `postgres://...` / `postgresql://...`.
///
/// # Errors
///
/// An unknown scheme, an unreachable database or a failed migration.
pub async fn connect(
    url: &str,
    seed_when_empty: bool,
) -> Result<Arc<dyn ProductRepository>, ConnectError> {
    let repo: Arc<dyn ProductRepository> =
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Arc::new(PostgresRepository::connect(url).await?)
        } else if url.starts_with("sqlite:") {
            Arc::new(SqliteRepository::connect(url).await?)
        } else {
            return Err(ConnectError::Scheme(redact(url)));
        };
    if seed_when_empty {
        let inserted = repo.seed_if_empty(&seed::products()).await?;
        if inserted > 0 {
            tracing::info!(inserted, "seeded an empty catalog");
        }
    }
    Ok(repo)
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is neither `sqlite:` nor `postgres://`.
    #[error(
        "unsupported DATABASE_URL {0:?}: use sqlite://catalog.db or postgres://user@host:5432/db"
    )]
    Scheme(String),
    /// The database refused or failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl From<sqlx::Error> for ConnectError {
    fn from(error: sqlx::Error) -> Self {
        ConnectError::Repo(error.into())
    }
}

impl From<sqlx::migrate::MigrateError> for ConnectError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        ConnectError::Repo(error.into())
    }
}

/// The URL without its password, fit for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_told_apart_from_bugs() {
        assert!(RepoError::from(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(RepoError::from(sqlx::Error::PoolClosed).is_unavailable());
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(RepoError::from(sqlx::Error::Io(refused)).is_unavailable());
        assert!(!RepoError::from(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!RepoError::Corrupt("x".into()).is_unavailable());
    }

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("redis://:pw@h:6379"), "redis://:***@h:6379");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://catalog.db"), "sqlite://catalog.db");
    }
}
