//! The reference article's BenchmarkDotNet table, reproduced with criterion on
//! the catalog's own data: 1,000 seeded products in PostgreSQL and SQLite,
//! Redis on loopback, and the raw baselines measured in the same run (a
//! redis-rs `GET` of the same bytes, a `HashMap` lookup).
//!
//! ```text
//! taskset -c 0 cargo bench -p catalog --bench article
//! ```
//!
//! Needs PostgreSQL (`BENCH_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; the bench drops and
//! recreates the database `catalog_bench` there) and `redis-server` on the
//! `PATH` (the bench starts its own, so `taskset` pins it with the client).
//!
//! After criterion's groups the bench prints a Markdown table: criterion's
//! median per row, and the bytes and allocations per operation counted by a
//! global allocator in a separate loop (criterion alone has no "Allocated"
//! column), then paired ratios for the targets.

// The parts live beside this file, in `article/`.
#[path = "article/alloc.rs"]
mod alloc;
#[path = "article/fixture.rs"]
mod fixture;
#[path = "article/report.rs"]
mod report;

use std::future::{Ready, ready};
use std::hint::black_box;
use std::io;

use catalog::cache::LIST_KEY;
use catalog::model::{Product, ProductList};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use redis::AsyncCommands;
use strata_cache::{DistributedCache, DistributedCacheExt, FactoryContext, Postcard, Typed};
use tokio::runtime::Runtime;

use fixture::{Fixture, POSTCARD_LIST_KEY, RAW_LIST_KEY, RAW_PRODUCT_KEY};
use report::Row;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// A factory that must not run: every cache row is a hit.
fn never<T: Send>() -> impl FnOnce(FactoryContext) -> Ready<Result<T, io::Error>> + Send + 'static {
    |_| ready(Err(io::Error::other("a hit was expected; the factory ran")))
}

/// Runs rows: criterion's measurement, then the counted loop.
struct Bench<'a> {
    rt: &'a Runtime,
    fx: &'static Fixture,
    rows: Vec<Row>,
}

/// How a row is compared and counted.
struct Spec {
    baseline: Option<&'static str>,
    iterations: u64,
    payload: usize,
}

impl Bench<'_> {
    fn row<F, Fut, T>(
        &mut self,
        group: &mut BenchmarkGroup<'_, WallTime>,
        group_name: &str,
        name: &str,
        spec: Spec,
        op: F,
    ) where
        F: Fn() -> Fut,
        Fut: Future<Output = T>,
    {
        self.rt.block_on(self.fx.fill());
        group.bench_function(name, |b| b.to_async(self.rt).iter(&op));
        let allocated = self.rt.block_on(async {
            for _ in 0..spec.iterations.min(10) {
                black_box(op().await);
            }
            alloc::start(spec.payload);
            for _ in 0..spec.iterations {
                black_box(op().await);
            }
            alloc::read()
        });
        self.rows.push(Row {
            id: format!("{group_name}/{name}"),
            baseline: spec.baseline,
            iterations: spec.iterations,
            allocated,
            payload: spec.payload,
        });
    }
}

/// Checks once that every cache row reads what it should, so that no row
/// measures a miss or an error.
async fn check(fx: &Fixture) {
    let product = fx.redis.get_value::<Option<Product>>(&fx.product_key).await;
    assert!(matches!(product, Ok(Some(Some(_)))), "Redis product entry");
    let options = fixture::list_options().skip_l1_read();
    let before = fx.hybrid.stats().l2_hits();
    let list = fx
        .hybrid
        .get_or_create(LIST_KEY, &options, never::<ProductList>())
        .await
        .expect("an L2 hit");
    assert_eq!(list.0.len(), catalog::seed::SEED_COUNT);
    assert_eq!(fx.hybrid.stats().l2_hits(), before + 1, "served by L2");
    let typed = Typed::new(&fx.redis, Postcard);
    let postcard = typed.get_value::<ProductList>(POSTCARD_LIST_KEY).await;
    let postcard = postcard.expect("get").expect("the Postcard entry decodes");
    assert_eq!(postcard.0.len(), catalog::seed::SEED_COUNT);
    let body = fx.redis.get(LIST_KEY).await.expect("get");
    assert_eq!(body.as_ref(), Some(&fx.list_json));
    let before = fx.hybrid_body.stats().l2_hits();
    let body = fx
        .hybrid_body
        .get_or_create_bytes(LIST_KEY, &options, never());
    assert_eq!(body.await.expect("an L2 hit"), fx.list_json);
    assert_eq!(fx.hybrid_body.stats().l2_hits(), before + 1, "served by L2");
    let loads = fx.catalog.db_loads();
    let body = fx.catalog.list_body(&fx.postgres).await.expect("list body");
    assert_eq!(body.bytes(), &fx.list_json);
    assert_eq!(body.count(), catalog::seed::SEED_COUNT);
    let product = fx.catalog.product_body(&fx.postgres, fx.id).await;
    assert_eq!(product.expect("body").as_ref(), Some(&fx.product_json));
    assert_eq!(fx.catalog.db_loads(), loads, "the catalog's cache hits");
    let raw: Vec<u8> = fx.raw.clone().get(RAW_LIST_KEY).await.expect("raw get");
    assert_eq!(raw, fx.list_json.as_ref());
}

fn single(c: &mut Criterion, bench: &mut Bench<'_>, fx: &'static Fixture) {
    const G: &str = "SingleProduct";
    let mut g = c.benchmark_group(G);
    let payload = fx.product_json.len();
    let spec = |baseline, iterations| Spec {
        baseline,
        iterations,
        payload,
    };
    let (memory, redis) = (
        Some("Baseline/HashMap_Product"),
        Some("Baseline/RawGet_Product"),
    );
    let l1_options = &*Box::leak(Box::new(fixture::product_options()));
    let l2_options = &*Box::leak(Box::new(fixture::product_options().skip_l1_read()));
    let key = fx.product_key.as_str();
    let (pg, lite) = (&fx.postgres, &fx.sqlite);
    bench.row(
        &mut g,
        G,
        "DatabaseFetch_PostgreSQL",
        spec(None, 500),
        || pg.get(fx.id),
    );
    bench.row(&mut g, G, "DatabaseFetch_SQLite", spec(None, 500), || {
        lite.get(fx.id)
    });
    bench.row(&mut g, G, "MemoryHit", spec(memory, 100_000), || {
        fx.l1
            .get_or_create(key, l1_options, never::<Option<Product>>())
    });
    bench.row(&mut g, G, "MemoryHit_Body", spec(memory, 100_000), || {
        fx.l1_body.get_or_create_bytes(key, l1_options, never())
    });
    bench.row(&mut g, G, "RedisHit", spec(redis, 2_000), || {
        fx.redis.get_value::<Option<Product>>(key)
    });
    bench.row(&mut g, G, "RedisHit_Body", spec(redis, 2_000), || {
        fx.redis.get(key)
    });
    bench.row(&mut g, G, "HybridL2Hit", spec(redis, 2_000), || {
        fx.hybrid
            .get_or_create(key, l2_options, never::<Option<Product>>())
    });
    bench.row(&mut g, G, "HybridL2Hit_Body", spec(redis, 2_000), || {
        fx.hybrid_body.get_or_create_bytes(key, l2_options, never())
    });
    // The service's cache path for `GET /products/{id}` (CACHE=redis).
    bench.row(
        &mut g,
        G,
        "Catalog_RedisHit_Body",
        spec(redis, 2_000),
        || fx.catalog.product_body(pg, fx.id),
    );
    g.finish();
}

fn all(c: &mut Criterion, bench: &mut Bench<'_>, fx: &'static Fixture) {
    const G: &str = "AllProducts";
    let mut g = c.benchmark_group(G);
    // A PostgreSQL list takes milliseconds: 100 samples would take minutes.
    g.sample_size(20);
    let payload = fx.list_json.len();
    let spec = |baseline, iterations| Spec {
        baseline,
        iterations,
        payload,
    };
    let (memory, redis) = (Some("Baseline/HashMap_List"), Some("Baseline/RawGet_List"));
    let l1_options = &*Box::leak(Box::new(fixture::list_options()));
    let l2_options = &*Box::leak(Box::new(fixture::list_options().skip_l1_read()));
    let postcard = &*Box::leak(Box::new(Typed::new(&fx.redis, Postcard)));
    let (pg, lite) = (&fx.postgres, &fx.sqlite);
    bench.row(
        &mut g,
        G,
        "DatabaseFetch_PostgreSQL",
        spec(None, 30),
        || pg.list(),
    );
    bench.row(&mut g, G, "DatabaseFetch_SQLite", spec(None, 30), || {
        lite.list()
    });
    bench.row(&mut g, G, "MemoryHit", spec(memory, 100_000), || {
        fx.l1
            .get_or_create(LIST_KEY, l1_options, never::<ProductList>())
    });
    bench.row(&mut g, G, "MemoryHit_Body", spec(memory, 100_000), || {
        fx.l1_body
            .get_or_create_bytes(LIST_KEY, l1_options, never())
    });
    bench.row(&mut g, G, "RedisHit_Json", spec(redis, 100), || {
        fx.redis.get_value::<ProductList>(LIST_KEY)
    });
    let postcard_spec = Spec {
        payload: fx.list_postcard_len,
        ..spec(redis, 100)
    };
    bench.row(&mut g, G, "RedisHit_Postcard", postcard_spec, || {
        postcard.get_value::<ProductList>(POSTCARD_LIST_KEY)
    });
    bench.row(&mut g, G, "RedisHit_Body", spec(redis, 300), || {
        fx.redis.get(LIST_KEY)
    });
    bench.row(&mut g, G, "HybridL2Hit", spec(redis, 100), || {
        fx.hybrid
            .get_or_create(LIST_KEY, l2_options, never::<ProductList>())
    });
    bench.row(&mut g, G, "HybridL2Hit_Body", spec(redis, 300), || {
        fx.hybrid_body
            .get_or_create_bytes(LIST_KEY, l2_options, never())
    });
    // The service's whole cache path for `GET /products` (CACHE=redis), HTTP
    // aside: lookup, metrics, and the count for `x-total-count`.
    bench.row(
        &mut g,
        G,
        "Catalog_RedisHit_Body",
        spec(redis, 300),
        || async {
            let body = fx.catalog.list_body(pg).await;
            body.map(|b| (b.count(), b))
        },
    );
    g.finish();
}

fn baselines(c: &mut Criterion, bench: &mut Bench<'_>, fx: &'static Fixture) {
    const G: &str = "Baseline";
    let mut g = c.benchmark_group(G);
    let raw = || fx.raw.clone();
    let product = Spec {
        baseline: None,
        iterations: 2_000,
        payload: fx.product_json.len(),
    };
    bench.row(&mut g, G, "RawGet_Product", product, || async move {
        raw().get::<_, Option<Vec<u8>>>(RAW_PRODUCT_KEY).await
    });
    let list = Spec {
        baseline: None,
        iterations: 300,
        payload: fx.list_json.len(),
    };
    bench.row(&mut g, G, "RawGet_List", list, || async move {
        raw().get::<_, Option<Vec<u8>>>(RAW_LIST_KEY).await
    });
    let key = fx.product_key.as_str();
    let map = Spec {
        baseline: None,
        iterations: 100_000,
        payload: fx.product_json.len(),
    };
    bench.row(&mut g, G, "HashMap_Product", map, || async move {
        fx.map_product.get(black_box(key)).cloned()
    });
    let map = Spec {
        baseline: None,
        iterations: 100_000,
        payload: fx.list_json.len(),
    };
    bench.row(&mut g, G, "HashMap_List", map, || async move {
        fx.map_list.get(black_box(LIST_KEY)).cloned()
    });
    g.finish();
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let fx = rt.block_on(fixture::build());
    rt.block_on(check(fx));
    println!(
        "payloads: product {} B (JSON); list {} B (JSON), {} B (Postcard); seeded into PostgreSQL database {}",
        fx.product_json.len(),
        fx.list_json.len(),
        fx.list_postcard_len,
        fixture::DATABASE
    );

    let mut c = Criterion::default().configure_from_args();
    let mut bench = Bench {
        rt: &rt,
        fx,
        rows: Vec::new(),
    };
    baselines(&mut c, &mut bench, fx);
    single(&mut c, &mut bench, fx);
    all(&mut c, &mut bench, fx);
    c.final_summary();
    report::print(&bench.rows);

    // The list fast path against a raw GET of the same bytes, alternating.
    rt.block_on(fx.fill());
    let raw_get = || async { fx.raw.clone().get::<_, Option<Vec<u8>>>(RAW_LIST_KEY).await };
    let (ratio, body, raw) =
        rt.block_on(report::paired(200, 10, || fx.redis.get(LIST_KEY), raw_get));
    println!(
        "\npaired, median of 200 rounds of 10 calls each:\n\
         AllProducts/RedisHit_Body {} vs Baseline/RawGet_List {}: {ratio:.2}x",
        report::time(body),
        report::time(raw)
    );
    let options = fixture::list_options().skip_l1_read();
    let hybrid = || {
        fx.hybrid_body
            .get_or_create_bytes(LIST_KEY, &options, never())
    };
    let (ratio, body, raw) = rt.block_on(report::paired(200, 10, hybrid, raw_get));
    println!(
        "AllProducts/HybridL2Hit_Body {} vs Baseline/RawGet_List {}: {ratio:.2}x",
        report::time(body),
        report::time(raw)
    );
}
