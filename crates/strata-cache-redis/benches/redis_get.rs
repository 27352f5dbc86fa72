//! `RedisCache::get` against a raw redis-rs `GET` of the same bytes, measured
//! side by side.
//!
//! The bench starts its own `redis-server` (strata-cache-testkit's `RedisServer`),
//! so running it under `taskset -c 0` pins client and server to one core:
//!
//! ```text
//! taskset -c 0 cargo bench -p strata-cache-redis --bench redis_get
//! ```
//!
//! Groups:
//! - `get_200b`: `RedisCache::get` of a 200-byte entry without sliding
//!   expiration (one `HMGET`) and of a 200-byte sliding entry (the `HMGET`,
//!   then the renewal script sent without waiting), against a raw `GET` of a
//!   200-byte string, a raw `HMGET` of the entry's three fields (the floor
//!   of a read in the .NET layout), and that `HMGET` pipelined with the
//!   refresh script (the floor of a read that renews in one round trip).
//! - `get_product`: a Product-sized JSON value through `get_value::<Product>`,
//!   through `RedisCache::get` (bytes only) and through a raw `GET`, plus the
//!   JSON decode alone.
//!
//! Both paths use the same connection type: one multiplexed RESP3 connection
//! with `TCP_NODELAY`.
//!
//! After criterion's groups, the bench prints paired ratios: many short rounds
//! that alternate the two sides, and the median of the per-round ratios. On a
//! shared machine, load drifts during the minutes criterion takes per
//! function; alternating in rounds of a few milliseconds cancels that drift.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use criterion::Criterion;
use redis::aio::MultiplexedConnection;
use redis::io::tcp::TcpSettings;
use redis::{IntoConnectionInfo, ProtocolVersion};
use serde::{Deserialize, Serialize};
use strata_cache::{DistributedCache, DistributedCacheExt, EntryOptions};
use strata_cache_redis::layout::{REFRESH_SCRIPT, ticks_of};
use strata_cache_redis::{RedisCache, RedisCacheOptions};
use strata_cache_testkit::RedisServer;

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

/// What is measured, one call each.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// `RedisCache::get` of the 200-byte entry without sliding expiration.
    CacheGet,
    /// `RedisCache::get` of the 200-byte sliding entry.
    CacheGetSliding,
    /// `HMGET absexp sldexp data` of the 200-byte entry, by hand.
    RawHmget,
    /// That `HMGET` and the refresh script on the sliding entry, in one
    /// pipeline, awaited: the floor of a read that renews in one round trip.
    RawHmgetRenew,
    /// `GET` of the 200-byte string.
    RawGet,
    /// `get_value::<Product>`.
    TypedGet,
    /// `RedisCache::get` of the Product entry.
    CacheGetProduct,
    /// `GET` of the Product's JSON.
    RawGetProduct,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::CacheGet => "RedisCache::get (not sliding)",
            Op::CacheGetSliding => "RedisCache::get (sliding)",
            Op::RawHmget => "raw HMGET of the 3 fields",
            Op::RawHmgetRenew => "raw HMGET + refresh script, pipelined",
            Op::RawGet | Op::RawGetProduct => "raw GET",
            Op::TypedGet => "get_value::<Product>",
            Op::CacheGetProduct => "RedisCache::get (bytes)",
        }
    }
}

struct Fixture {
    cache: RedisCache,
    raw: MultiplexedConnection,
    refresh_sha: String,
}

impl Fixture {
    async fn run(&self, op: Op) {
        match op {
            Op::CacheGet => drop(black_box(self.cache.get("absolute").await.expect("get"))),
            Op::CacheGetSliding => drop(black_box(self.cache.get("sliding").await.expect("get"))),
            Op::CacheGetProduct => drop(black_box(self.cache.get("product").await.expect("get"))),
            Op::TypedGet => {
                let v: Option<Product> = self.cache.get_value("product").await.expect("get_value");
                black_box(v.expect("present"));
            }
            Op::RawHmget => {
                let mut conn = self.raw.clone();
                let v: (Option<i64>, Option<i64>, Option<Bytes>) = redis::cmd("HMGET")
                    .arg("absolute")
                    .arg("absexp")
                    .arg("sldexp")
                    .arg("data")
                    .query_async(&mut conn)
                    .await
                    .expect("HMGET");
                black_box(v.2.expect("present"));
            }
            Op::RawHmgetRenew => {
                let mut conn = self.raw.clone();
                let mut pipe = redis::pipe();
                pipe.cmd("HMGET")
                    .arg("sliding")
                    .arg("absexp")
                    .arg("sldexp")
                    .arg("data");
                pipe.cmd("EVALSHA")
                    .arg(&self.refresh_sha)
                    .arg(1)
                    .arg("sliding")
                    .arg(ticks_of(SystemTime::now()))
                    .ignore();
                let (v,): ((Option<i64>, Option<i64>, Option<Bytes>),) =
                    pipe.query_async(&mut conn).await.expect("pipeline");
                black_box(v.2.expect("present"));
            }
            Op::RawGet | Op::RawGetProduct => {
                let key = if matches!(op, Op::RawGet) {
                    "raw"
                } else {
                    "product-raw"
                };
                let mut conn = self.raw.clone();
                let v: Option<Bytes> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .expect("GET");
                black_box(v.expect("present"));
            }
        }
    }
}

async fn setup(url: &str) -> (Fixture, Vec<u8>) {
    let cache = RedisCache::new(RedisCacheOptions::new(url)).expect("options");
    let mut raw = raw_connection(url).await;
    let sliding = EntryOptions::new().with_sliding_expiration(Duration::from_secs(1800));
    let absolute = EntryOptions::new().with_relative_expiration(Duration::from_secs(3600));
    let value = Bytes::from(vec![b'x'; 200]);
    cache
        .set("sliding", value.clone(), &sliding)
        .await
        .expect("set");
    cache
        .set("absolute", value.clone(), &absolute)
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
    let refresh_sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(REFRESH_SCRIPT)
        .query_async(&mut raw)
        .await
        .expect("SCRIPT LOAD");
    (
        Fixture {
            cache,
            raw,
            refresh_sha,
        },
        product_json,
    )
}

/// Mean time of one call of each side in alternating rounds; prints the
/// medians and the median of the per-round ratios `a / b` (or the median
/// per-round difference `a - b` in µs when `difference` is set).
async fn paired(fixture: &Fixture, a: Op, b: Op, difference: bool) {
    const ROUNDS: usize = 300;
    const CALLS: u32 = 100;
    let mut a_times = Vec::with_capacity(ROUNDS);
    let mut b_times = Vec::with_capacity(ROUNDS);
    let mut comparisons = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        // Alternate which side goes first, so neither always runs warm.
        let sides = if round % 2 == 0 {
            [(0, a), (1, b)]
        } else {
            [(1, b), (0, a)]
        };
        let mut per_call = [0.0f64; 2];
        for (slot, op) in sides {
            let start = Instant::now();
            for _ in 0..CALLS {
                fixture.run(op).await;
            }
            let micros = start.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS);
            per_call[slot] = micros;
        }
        a_times.push(per_call[0]);
        b_times.push(per_call[1]);
        comparisons.push(if difference {
            per_call[0] - per_call[1]
        } else {
            per_call[0] / per_call[1]
        });
    }
    let (a_med, b_med, cmp_med) = (median(a_times), median(b_times), median(comparisons));
    let comparison = if difference {
        format!("median difference {cmp_med:+.2} µs")
    } else {
        format!("median ratio {cmp_med:.3}")
    };
    println!(
        "paired: {} {a_med:.2} µs vs {} {b_med:.2} µs: {comparison} ({ROUNDS} rounds of {CALLS} calls)",
        a.name(),
        b.name(),
    );
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn bench(c: &mut Criterion) {
    let server = RedisServer::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (fixture, product_json) = runtime.block_on(setup(&server.url()));
    println!("product JSON: {} bytes", product_json.len());

    let groups = [
        (
            "get_200b",
            &[
                Op::CacheGet,
                Op::CacheGetSliding,
                Op::RawHmget,
                Op::RawHmgetRenew,
                Op::RawGet,
            ][..],
        ),
        (
            "get_product",
            &[Op::TypedGet, Op::CacheGetProduct, Op::RawGetProduct][..],
        ),
    ];
    for (name, ops) in groups {
        let mut group = c.benchmark_group(name);
        for &op in ops {
            group.bench_function(op.name(), |b| {
                b.to_async(&runtime).iter(|| fixture.run(op));
            });
        }
        if name == "get_product" {
            group.bench_function("JSON decode only", |b| {
                b.iter(|| {
                    let p: Product =
                        serde_json::from_slice(black_box(&product_json)).expect("decode");
                    black_box(p);
                });
            });
        }
        group.finish();
    }

    runtime.block_on(async {
        paired(&fixture, Op::CacheGet, Op::RawGet, false).await;
        paired(&fixture, Op::CacheGetSliding, Op::RawGet, false).await;
        paired(&fixture, Op::RawHmget, Op::RawGet, false).await;
        paired(&fixture, Op::CacheGet, Op::RawHmget, false).await;
        paired(&fixture, Op::RawHmgetRenew, Op::RawGet, false).await;
        paired(&fixture, Op::CacheGetSliding, Op::RawHmgetRenew, false).await;
        paired(&fixture, Op::TypedGet, Op::CacheGetProduct, true).await;
        paired(&fixture, Op::TypedGet, Op::RawGetProduct, true).await;
    });
    drop(fixture);
    drop(server);
}

// What `criterion_group!`/`criterion_main!` expand to, minus the undocumented
// public function they add.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
