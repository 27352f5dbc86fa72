//! HybridCache in an axum service: an in-process L1, Redis as the shared L2,
//! and the Redis backplane, so a write on one instance evicts every
//! instance's L1 copy. The handler's factory captures the request's state,
//! and its own error ("no such product") becomes a 404.
//!
//! Needs a Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`); serves on
//! `PORT` (default 3000):
//!
//! ```text
//! cargo run -p strata-cache-redis --example axum_hybrid
//! curl -i localhost:3000/products/1              # 200, from the factory, then from L1
//! curl -i localhost:3000/products/7              # 404: the factory's NotFound
//! curl -i -X DELETE localhost:3000/products/1    # 204, evicted on every instance
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use strata_cache::{HybridCache, HybridEntryOptions};
use strata_cache_redis::{RedisBackplane, RedisCache, RedisCacheOptions};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
}

/// Stands in for a database.
#[derive(Default)]
struct Database {
    // A std lock: held for a map access, never across an await.
    products: RwLock<HashMap<u64, Product>>,
}

/// The factory's own error. `get_or_create` needs it to be a
/// `std::error::Error` and hands it back as the source of its error.
#[derive(Debug)]
enum LoadError {
    NotFound(u64),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotFound(id) => write!(f, "no product {id}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl Database {
    async fn find(&self, id: u64) -> Result<Product, LoadError> {
        let products = self.products.read().unwrap_or_else(|e| e.into_inner());
        products.get(&id).cloned().ok_or(LoadError::NotFound(id))
    }
}

/// What every handler gets: cheap clones of the cache and the database.
#[derive(Clone)]
struct AppState {
    cache: HybridCache,
    db: Arc<Database>,
}

async fn get_product(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<Product>, StatusCode> {
    let options = HybridEntryOptions::new()
        .with_expiration(Duration::from_secs(60 * 60))
        .with_local_expiration(Duration::from_secs(5 * 60))
        .with_tags(["products"]);
    // The factory may outlive this request (concurrent callers of the key
    // share its run), so it is 'static: it owns a clone of what it uses.
    let db = Arc::clone(&state.db);
    let found = state
        .cache
        .get_or_create(&format!("product:{id}"), &options, move |_ctx| async move {
            db.find(id).await
        })
        .await;
    match found {
        Ok(product) => Ok(Json(product)),
        // The factory failed: its own error comes back typed. Nothing is
        // cached, so the next request asks the database again.
        Err(error) if matches!(error.factory_error(), Some(LoadError::NotFound(_))) => {
            Err(StatusCode::NOT_FOUND)
        }
        Err(error) => {
            eprintln!("product {id}: {error}");
            Err(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

async fn delete_product(State(state): State<AppState>, Path(id): Path<u64>) -> StatusCode {
    let removed = {
        let mut products = state.db.products.write().unwrap_or_else(|e| e.into_inner());
        products.remove(&id).is_some()
    };
    if !removed {
        return StatusCode::NOT_FOUND;
    }
    // After the write: out of L1, out of Redis, and announced on the
    // backplane so that the other instances drop their L1 copies too.
    if let Err(error) = state.cache.remove(&format!("product:{id}")).await {
        eprintln!("product {id} stays cached until it expires: {error}");
    }
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());

    let redis = RedisCacheOptions::new(url).with_instance_name("example:");
    let cache = HybridCache::builder()
        .distributed(RedisCache::new(&redis)?)
        .backplane(RedisBackplane::new(&redis)?)
        .build();
    let db = Arc::new(Database::default());
    db.products
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            1,
            Product {
                id: 1,
                name: "Lamp".into(),
            },
        );

    let app = Router::new()
        .route("/products/{id}", get(get_product).delete(delete_product))
        .with_state(AppState { cache, db });
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
