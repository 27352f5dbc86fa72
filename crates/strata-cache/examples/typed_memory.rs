//! The in-process backend through the typed helpers: values in and out as
//! JSON (or Postcard), cache-aside with `get_or_set`, and expiration.
//!
//! ```text
//! cargo run -p strata-cache --example typed_memory
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_cache::{
    DistributedCache, DistributedCacheExt, EntryOptions, MemoryDistributedCache, Postcard,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u64,
}

/// Counts the loads, to show which reads the cache answered.
static LOADS: AtomicUsize = AtomicUsize::new(0);

/// The source of truth the cache stands in front of (a database in a service).
async fn load_product(id: u64) -> Result<Product, std::io::Error> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(Product {
        id,
        name: format!("Product {id}"),
        price_cents: 1999,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Bounded by the size of its keys and values (64 MiB by default).
    let cache = MemoryDistributedCache::new();

    // Plain typed reads and writes, in JSON. The default options expire an
    // entry after an hour, or after 30 minutes without a read.
    let lamp = Product {
        id: 1,
        name: "Lamp".into(),
        price_cents: 2500,
    };
    cache.set_value("product:1", &lamp).await?;
    let read: Option<Product> = cache.get_value("product:1").await?;
    println!("get_value after set_value: {read:?}");

    // Cache-aside: the loader runs on the first read only.
    let options = EntryOptions::new()
        .with_relative_expiration(Duration::from_secs(20 * 60))
        .with_sliding_expiration(Duration::from_secs(2 * 60));
    for _ in 0..3 {
        let product: Product = cache
            .get_or_set("product:2", &options, || load_product(2))
            .await?;
        println!(
            "get_or_set: {} (loads so far: {})",
            product.name,
            LOADS.load(Ordering::Relaxed)
        );
    }

    // Another codec for the same helpers: Postcard is compact.
    let postcard = cache.with_codec(Postcard);
    postcard.set_value("product:3", &lamp, &options).await?;
    let bytes = cache.get("product:3").await?.map_or(0, |b| b.len());
    println!("Postcard stores the lamp in {bytes} bytes");

    // Expiration: gone once its time is up.
    let brief = EntryOptions::new().with_relative_expiration(Duration::from_millis(100));
    cache.set_value_with("flash-sale", &true, &brief).await?;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let sale: Option<bool> = cache.get_value("flash-sale").await?;
    println!("after 150 ms, a 100 ms entry reads {sale:?}");
    Ok(())
}
