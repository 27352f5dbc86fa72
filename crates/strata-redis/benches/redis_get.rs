//! `RedisCache::get` against a raw redis-rs `GET`, measured side by side.
//!
//! The bench starts its own `redis-server` (strata-testkit's `RedisServer`),
//! so running it under `taskset -c 0` pins client and server to one core:
//!
//! ```text
//! taskset -c 0 cargo bench -p strata-redis --bench redis_get
//! ```
//!
//! Groups:
//! - `get_200b`: a 200-byte sliding entry through `RedisCache::get` (one
//!   EVALSHA that reads and renews) vs `GET` of a 200-byte string.
//! - `get_product`: a Product-sized JSON value through `get_value::<Product>`,
//!   through `RedisCache::get` (bytes only) and through a raw `GET`, plus the
//!   JSON decode alone.
//!
//! Both paths use the same connection type: one multiplexed RESP3 connection
//! with `TCP_NODELAY`.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use redis::aio::MultiplexedConnection;
use redis::io::tcp::TcpSettings;
use redis::{IntoConnectionInfo, ProtocolVersion};
use serde::{Deserialize, Serialize};
use strata::{DistributedCache, DistributedCacheExt, EntryOptions};
use strata_redis::{RedisCache, RedisCacheOptions};
use strata_testkit::RedisServer;

/// The catalog's Product as the cache stores it.
#[derive(Debug, Serialize, Deserialize)]
struct Product {
    id: String,
    name: String,
    description: String,
    price: String,
    created_at: String,
    updated_at: String,
}

fn product() -> Product {
    Product {
        id: "0193b5e4-7c1a-7d3e-9f2b-4a6c8e0d1f23".into(),
        name: "Ergonomic Steel Chair".into(),
        description:
            "A sturdy chair with lumbar support, adjustable height and a breathable mesh back."
                .chars()
                .take(80)
                .collect(),
        price: "249.99".into(),
        created_at: "2025-11-24T16:00:00.123456Z".into(),
        updated_at: "2025-11-25T09:30:00.654321Z".into(),
    }
}

/// A plain multiplexed connection with the cache's settings (RESP3, nodelay).
async fn raw_connection(url: &str) -> MultiplexedConnection {
    let info = url.into_connection_info().expect("valid URL");
    let redis = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let info = info
        .set_redis_settings(redis)
        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
    redis::Client::open(info)
        .expect("valid URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

fn bench(c: &mut Criterion) {
    let server = RedisServer::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (cache, raw, product_json) = runtime.block_on(async {
        let cache = RedisCache::new(RedisCacheOptions::new(server.url())).expect("options");
        let mut raw = raw_connection(&server.url()).await;
        let sliding = EntryOptions::new().with_sliding_expiration(Duration::from_secs(1800));
        let value = Bytes::from(vec![b'x'; 200]);
        cache
            .set("sliding", value.clone(), &sliding)
            .await
            .expect("set");
        let () = redis::cmd("SET")
            .arg("raw")
            .arg(value.as_ref())
            .query_async(&mut raw)
            .await
            .expect("SET");
        let product_json = serde_json::to_vec(&product()).expect("encode");
        cache
            .set_value_with("product", &product(), &sliding)
            .await
            .expect("set_value");
        let () = redis::cmd("SET")
            .arg("product-raw")
            .arg(&product_json)
            .query_async(&mut raw)
            .await
            .expect("SET");
        (cache, raw, product_json)
    });
    println!("product JSON: {} bytes", product_json.len());
    // `RedisCache::set` ran no script yet: the first get loads it.
    runtime.block_on(async { cache.get("sliding").await.expect("get") });
    let get_sha = redis::Script::new(strata_redis::layout::GET_SCRIPT)
        .get_hash()
        .to_owned();

    let mut group = c.benchmark_group("get_200b");
    group.bench_function("RedisCache::get (sliding)", |b| {
        b.to_async(&runtime).iter(|| async {
            let v = cache.get("sliding").await.expect("get");
            black_box(v.expect("present"));
        });
    });
    // The cache's script sent by hand on the raw connection: the difference to
    // `RedisCache::get` is the client-side cost of the cache.
    group.bench_function("raw EVALSHA of the get script", |b| {
        b.to_async(&runtime).iter(|| async {
            let mut conn = raw.clone();
            let v: Option<Bytes> = redis::cmd("EVALSHA")
                .arg(&get_sha)
                .arg(1)
                .arg("sliding")
                .arg(638_700_000_000_000_000_i64)
                .query_async(&mut conn)
                .await
                .expect("EVALSHA");
            black_box(v.expect("present"));
        });
    });
    group.bench_function("raw GET", |b| {
        b.to_async(&runtime).iter(|| async {
            let mut conn = raw.clone();
            let v: Option<Bytes> = redis::cmd("GET")
                .arg("raw")
                .query_async(&mut conn)
                .await
                .expect("GET");
            black_box(v.expect("present"));
        });
    });
    group.finish();

    let mut group = c.benchmark_group("get_product");
    group.bench_function("get_value::<Product>", |b| {
        b.to_async(&runtime).iter(|| async {
            let v: Option<Product> = cache.get_value("product").await.expect("get_value");
            black_box(v.expect("present"));
        });
    });
    group.bench_function("RedisCache::get (bytes)", |b| {
        b.to_async(&runtime).iter(|| async {
            let v = cache.get("product").await.expect("get");
            black_box(v.expect("present"));
        });
    });
    group.bench_function("raw GET", |b| {
        b.to_async(&runtime).iter(|| async {
            let mut conn = raw.clone();
            let v: Option<Bytes> = redis::cmd("GET")
                .arg("product-raw")
                .query_async(&mut conn)
                .await
                .expect("GET");
            black_box(v.expect("present"));
        });
    });
    group.bench_function("JSON decode only", |b| {
        b.iter(|| {
            let p: Product = serde_json::from_slice(black_box(&product_json)).expect("decode");
            black_box(p);
        });
    });
    group.finish();
    drop(server);
}

// What `criterion_group!`/`criterion_main!` expand to, minus the undocumented
// public function they add.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
