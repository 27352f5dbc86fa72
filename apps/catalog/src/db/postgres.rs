//! [`PostgresRepository`]: products in PostgreSQL, with native UUID, NUMERIC
//! and TIMESTAMPTZ columns (`migrations/postgres`).

use std::str::FromStr;

use async_trait::async_trait;
use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use time::OffsetDateTime;
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

/// A [`ProductRepository`] on a PostgreSQL pool.
#[derive(Debug, Clone)]
pub struct PostgresRepository {
    pool: PgPool,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    name: String,
    description: String,
    price: Decimal,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<Row> for Product {
    fn from(r: Row) -> Self {
        Product {
            id: r.id,
            name: r.name,
            description: r.description,
            price: r.price,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl PostgresRepository {
    /// Connects to `url` and applies the migrations.
    ///
    /// # Errors
    ///
    /// A bad URL, an unreachable server or a failed migration.
    pub async fn connect(url: &str) -> Result<Self, RepoError> {
        let options = PgConnectOptions::from_str(url)?;
        Self::connect_with(PgPoolOptions::new(), options).await
    }

    /// Connects with explicit pool and connection options (tests pass the ones
    /// `#[sqlx::test]` made) and applies the migrations.
    ///
    /// # Errors
    ///
    /// An unreachable server or a failed migration.
    pub async fn connect_with(
        pool: PgPoolOptions,
        options: PgConnectOptions,
    ) -> Result<Self, RepoError> {
        let pool = pool
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Self::from_pool(pool).await
    }

    /// Wraps an existing pool and applies the migrations (concurrent replicas
    /// are serialized by sqlx's advisory lock).
    ///
    /// # Errors
    ///
    /// A failed migration.
    pub async fn from_pool(pool: PgPool) -> Result<Self, RepoError> {
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl ProductRepository for PostgresRepository {
    async fn list(&self) -> Result<Vec<Product>, RepoError> {
        // UUID v7 sorts by creation time, so this is creation order.
        let rows: Vec<Row> =
            sqlx::query_as(concat!("SELECT ", columns!(), " FROM products ORDER BY id"))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(Product::from).collect())
    }

    async fn get(&self, id: Uuid) -> Result<Option<Product>, RepoError> {
        let row: Option<Row> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM products WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Product::from))
    }

    async fn create(&self, input: NewProduct) -> Result<Product, RepoError> {
        let now = now_micros();
        let row: Row = sqlx::query_as(concat!(
            "INSERT INTO products (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $5) RETURNING ",
            columns!()
        ))
        .bind(Uuid::now_v7())
        .bind(&input.name)
        .bind(&input.description)
        .bind(input.price)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn update(&self, id: Uuid, input: NewProduct) -> Result<Option<Product>, RepoError> {
        let row: Option<Row> = sqlx::query_as(concat!(
            "UPDATE products SET name = $2, description = $3, price = $4, updated_at = $5 \
             WHERE id = $1 RETURNING ",
            columns!()
        ))
        .bind(id)
        .bind(&input.name)
        .bind(&input.description)
        .bind(input.price)
        .bind(now_micros())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Product::from))
    }

    async fn delete(&self, id: Uuid) -> Result<bool, RepoError> {
        let done = sqlx::query("DELETE FROM products WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn seed_if_empty(&self, products: &[Product]) -> Result<u64, RepoError> {
        let mut tx = self.pool.begin().await?;
        let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM products)")
            .fetch_one(&mut *tx)
            .await?;
        if any {
            return Ok(0);
        }
        // One statement for all rows: arrays unnested server-side.
        let done = sqlx::query(concat!(
            "INSERT INTO products (",
            columns!(),
            ") \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::numeric[], \
                                  $5::timestamptz[], $6::timestamptz[]) \
             ON CONFLICT (id) DO NOTHING"
        ))
        .bind(products.iter().map(|p| p.id).collect::<Vec<_>>())
        .bind(products.iter().map(|p| p.name.clone()).collect::<Vec<_>>())
        .bind(
            products
                .iter()
                .map(|p| p.description.clone())
                .collect::<Vec<_>>(),
        )
        .bind(products.iter().map(|p| p.price).collect::<Vec<_>>())
        .bind(products.iter().map(|p| p.created_at).collect::<Vec<_>>())
        .bind(products.iter().map(|p| p.updated_at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn ping(&self) -> Result<(), RepoError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}
