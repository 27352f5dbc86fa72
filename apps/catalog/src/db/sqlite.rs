//! [`SqliteRepository`]: products in an embedded SQLite file, the zero-setup
//! default (`migrations/sqlite`).
//!
//! SQLite has no decimal, UUID or timestamp type, so this backend stores their
//! canonical text and parses it on read: exact prices, sortable ids, and
//! timestamps that read back equal to what was written.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use rust_decimal::Decimal;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::{ACQUIRE_TIMEOUT, ProductRepository, RepoError};
use crate::model::{NewProduct, Product, now_micros};

/// The columns of `Row`, in order. A macro, so that every query stays a string
/// literal (`concat!`): sqlx rejects SQL built at run time.
macro_rules! columns {
    () => {
        "id, name, description, price, created_at, updated_at"
    };
}

/// How long a writer waits for SQLite's single write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`ProductRepository`] on an SQLite pool.
#[derive(Debug, Clone)]
pub struct SqliteRepository {
    pool: SqlitePool,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    name: String,
    description: String,
    price: String,
    created_at: String,
    updated_at: String,
}

impl TryFrom<Row> for Product {
    type Error = RepoError;

    fn try_from(r: Row) -> Result<Self, RepoError> {
        let corrupt = |what: &str, value: &str| RepoError::Corrupt(format!("{what} {value:?}"));
        Ok(Product {
            id: Uuid::parse_str(&r.id).map_err(|_| corrupt("id", &r.id))?,
            price: Decimal::from_str(&r.price).map_err(|_| corrupt("price", &r.price))?,
            created_at: OffsetDateTime::parse(&r.created_at, &Rfc3339)
                .map_err(|_| corrupt("created_at", &r.created_at))?,
            updated_at: OffsetDateTime::parse(&r.updated_at, &Rfc3339)
                .map_err(|_| corrupt("updated_at", &r.updated_at))?,
            name: r.name,
            description: r.description,
        })
    }
}

fn timestamp(t: OffsetDateTime) -> Result<String, RepoError> {
    t.format(&Rfc3339)
        .map_err(|e| RepoError::Corrupt(format!("unformattable timestamp: {e}")))
}

fn rows(rows: Vec<Row>) -> Result<Vec<Product>, RepoError> {
    rows.into_iter().map(Product::try_from).collect()
}

impl SqliteRepository {
    /// Opens (creating when missing) the database at `url` and applies the
    /// migrations.
    ///
    /// # Errors
    ///
    /// A bad URL, an unwritable file or a failed migration.
    pub async fn connect(url: &str) -> Result<Self, RepoError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // WAL lets readers proceed while one writer writes.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let mut pool = SqlitePoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        if url.contains(":memory:") || url.contains("mode=memory") {
            // An in-memory database lives as long as one connection to it:
            // keep exactly one, forever.
            pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            pool = pool.max_connections(8);
        }
        let pool = pool.connect_with(options).await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl ProductRepository for SqliteRepository {
    async fn list(&self) -> Result<Vec<Product>, RepoError> {
        let found: Vec<Row> =
            sqlx::query_as(concat!("SELECT ", columns!(), " FROM products ORDER BY id"))
                .fetch_all(&self.pool)
                .await?;
        rows(found)
    }

    async fn get(&self, id: Uuid) -> Result<Option<Product>, RepoError> {
        let row: Option<Row> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM products WHERE id = ?1"
        ))
        .bind(id.hyphenated().to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(Product::try_from).transpose()
    }

    async fn create(&self, input: NewProduct) -> Result<Product, RepoError> {
        let now = timestamp(now_micros())?;
        let row: Row = sqlx::query_as(concat!(
            "INSERT INTO products (",
            columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?5) RETURNING ",
            columns!()
        ))
        .bind(Uuid::now_v7().hyphenated().to_string())
        .bind(&input.name)
        .bind(&input.description)
        .bind(input.price.to_string())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        row.try_into()
    }

    async fn update(&self, id: Uuid, input: NewProduct) -> Result<Option<Product>, RepoError> {
        let row: Option<Row> = sqlx::query_as(concat!(
            "UPDATE products SET name = ?2, description = ?3, price = ?4, updated_at = ?5 \
             WHERE id = ?1 RETURNING ",
            columns!()
        ))
        .bind(id.hyphenated().to_string())
        .bind(&input.name)
        .bind(&input.description)
        .bind(input.price.to_string())
        .bind(timestamp(now_micros())?)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Product::try_from).transpose()
    }

    async fn delete(&self, id: Uuid) -> Result<bool, RepoError> {
        let done = sqlx::query("DELETE FROM products WHERE id = ?1")
            .bind(id.hyphenated().to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn seed_if_empty(&self, products: &[Product]) -> Result<u64, RepoError> {
        // BEGIN IMMEDIATE would be ideal; a deferred transaction plus
        // OR IGNORE is enough, since the rows are deterministic.
        let mut tx = self.pool.begin().await?;
        let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM products)")
            .fetch_one(&mut *tx)
            .await?;
        if any {
            return Ok(0);
        }
        let mut inserted = 0;
        for p in products {
            let done = sqlx::query(concat!(
                "INSERT OR IGNORE INTO products (",
                columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))
            .bind(p.id.hyphenated().to_string())
            .bind(&p.name)
            .bind(&p.description)
            .bind(p.price.to_string())
            .bind(timestamp(p.created_at)?)
            .bind(timestamp(p.updated_at)?)
            .execute(&mut *tx)
            .await?;
            inserted += done.rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn ping(&self) -> Result<(), RepoError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
