//! Cache-aside with `RedisCache`: read the cache; on a miss, load from the
//! source of truth and store the result. One call, `get_or_set`, does all
//! three, and invalidation is a `remove` after each write to the source.
//!
//! Needs a Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`):
//!
//! ```text
//! cargo run -p strata-cache-redis --example cache_aside
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use strata_cache::{DistributedCache, DistributedCacheExt, EntryOptions};
use strata_cache_redis::{RedisCache, RedisCacheOptions};

#[derive(Debug, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u64,
}

/// Counts the loads, to show which reads Redis answered.
static LOADS: AtomicUsize = AtomicUsize::new(0);

/// The slow source of truth (a database query in a service).
async fn load_product(id: u64) -> Result<Product, std::io::Error> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(Product {
        id,
        name: format!("Product {id}"),
        price_cents: 1999,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // The instance name prefixes every key, as in .NET: `example:product:42`.
    let cache = RedisCache::new(RedisCacheOptions::new(url).with_instance_name("example:"))?;
    // The cache builds without Redis (it connects in the background, and
    // `get_or_set` would fall back to the loader); check it, to say so now.
    cache.ping().await?;

    // Gone 20 minutes after the write at the latest, and after 2 minutes
    // without a read.
    let options = EntryOptions::new()
        .with_relative_expiration(Duration::from_secs(20 * 60))
        .with_sliding_expiration(Duration::from_secs(2 * 60));
    let key = "product:42";
    cache.remove(key).await?; // start cold

    for read in ["first read", "second read"] {
        let started = Instant::now();
        let product: Product = cache.get_or_set(key, &options, || load_product(42)).await?;
        println!(
            "{read}: {product:?} in {:.1?} (loads so far: {})",
            started.elapsed(),
            LOADS.load(Ordering::Relaxed)
        );
    }

    // After a write to the source of truth, remove the entry: the next read
    // loads the new value. Every instance reads the same Redis, so none of
    // them serves the old one.
    cache.remove(key).await?;
    let product: Product = cache.get_or_set(key, &options, || load_product(42)).await?;
    println!(
        "after remove: {} (loads so far: {})",
        product.name,
        LOADS.load(Ordering::Relaxed)
    );
    cache.remove(key).await?;
    Ok(())
}
