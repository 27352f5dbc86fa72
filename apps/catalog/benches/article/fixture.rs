//! The bench's world, built once: the same 1,000 seeded products in a fresh
//! PostgreSQL database and an SQLite temp file, a `redis-server` of our own
//! holding the cached entries, and the caches and baselines that read them.
//!
//! Everything is leaked into a `&'static Fixture`, so that each measured
//! operation borrows what it needs instead of cloning handles.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use catalog::cache::{
    LIST_EXPIRATION, LIST_KEY, LIST_SLIDING, LIST_TAG, LOCAL_EXPIRATION, PRODUCT_EXPIRATION,
    PRODUCT_SLIDING, ProductCache, product_key,
};
use catalog::db::{self, PostgresRepository, ProductRepository};
use catalog::model::{Product, ProductList};
use catalog::seed;
use catalog::{CacheMode, Config};
use redis::aio::MultiplexedConnection;
use redis::io::tcp::TcpSettings;
use redis::{AsyncCommands, IntoConnectionInfo, ProtocolVersion};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};
use strata_cache::Bytes;
use strata_cache::{
    DistributedCache, DistributedCacheExt, EntryOptions, HybridCache, HybridEntryOptions, Postcard,
    Typed,
};
use strata_cache_redis::{RedisCache, RedisCacheOptions};
use strata_cache_testkit::RedisServer;
use tempfile::TempDir;
use uuid::Uuid;

/// The PostgreSQL server to use, overridable with `BENCH_POSTGRES_URL`. Its
/// database name is ignored: the bench recreates [`DATABASE`] there.
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The database the bench drops, recreates and seeds on every run.
pub(crate) const DATABASE: &str = "catalog_bench"; // spelled out in the DROP and CREATE below (sqlx wants literal SQL)

/// Where the Postcard copy of the list lives (the JSON one is at `LIST_KEY`).
pub(crate) const POSTCARD_LIST_KEY: &str = "products:postcard";
/// Plain Redis strings holding the exact bytes of the cached entries: what a
/// raw `GET` reads.
pub(crate) const RAW_PRODUCT_KEY: &str = "raw:product";
pub(crate) const RAW_LIST_KEY: &str = "raw:products";

/// Everything the rows read.
pub(crate) struct Fixture {
    pub(crate) postgres: Arc<dyn ProductRepository>,
    pub(crate) sqlite: Arc<dyn ProductRepository>,
    /// A product from the middle of the catalog.
    pub(crate) id: Uuid,
    pub(crate) product_key: String,
    /// `RedisCache` on our server (`InstanceName` "bench:").
    pub(crate) redis: RedisCache,
    /// A plain redis-rs connection with the cache's settings (RESP3, nodelay).
    pub(crate) raw: MultiplexedConnection,
    /// HybridCache with L1 only.
    pub(crate) l1: HybridCache,
    /// HybridCache with L1 and Redis as L2 (no backplane: a read never uses it).
    pub(crate) hybrid: HybridCache,
    /// The same two, holding the catalog's cached bodies (raw-bytes API):
    /// a key holds one kind, typed or raw.
    pub(crate) l1_body: HybridCache,
    pub(crate) hybrid_body: HybridCache,
    /// The catalog's own cache, `CACHE=redis`, on the entries above.
    pub(crate) catalog: ProductCache,
    pub(crate) map_product: HashMap<String, Arc<Product>>,
    pub(crate) map_list: HashMap<String, ProductList>,
    /// The JSON of one product: what `GET /products/{id}` serves.
    pub(crate) product_json: Bytes,
    /// The JSON of the list: what `GET /products` serves.
    pub(crate) list_json: Bytes,
    /// Size of the Postcard list, for the report.
    pub(crate) list_postcard_len: usize,
    /// The cached values.
    product: Product,
    list: ProductList,
    _sqlite_dir: TempDir,
    _redis_server: RedisServer,
}

/// The catalog's HybridCache options for a product entry (see `catalog::cache`).
pub(crate) fn product_options() -> HybridEntryOptions {
    HybridEntryOptions::new()
        .with_local_expiration(LOCAL_EXPIRATION)
        .with_expiration(PRODUCT_EXPIRATION)
        .with_sliding_expiration(PRODUCT_SLIDING)
}

/// The catalog's HybridCache options for the list entry.
pub(crate) fn list_options() -> HybridEntryOptions {
    HybridEntryOptions::new()
        .with_local_expiration(LOCAL_EXPIRATION)
        .with_expiration(LIST_EXPIRATION)
        .with_sliding_expiration(LIST_SLIDING)
        .with_tags([LIST_TAG])
}

/// The catalog's plain-cache options for the list entry.
fn list_entry_options() -> EntryOptions {
    EntryOptions::new()
        .with_relative_expiration(LIST_EXPIRATION)
        .with_sliding_expiration(LIST_SLIDING)
}

fn product_entry_options() -> EntryOptions {
    EntryOptions::new()
        .with_relative_expiration(PRODUCT_EXPIRATION)
        .with_sliding_expiration(PRODUCT_SLIDING)
}

/// Drops and recreates [`DATABASE`], then opens it through the catalog's own
/// repository (which migrates) and seeds it with the catalog's seed.
async fn postgres() -> Arc<dyn ProductRepository> {
    let url = std::env::var("BENCH_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
    let server = PgConnectOptions::from_str(&url)
        .expect("BENCH_POSTGRES_URL is a postgres:// URL")
        .disable_statement_logging();
    let mut admin = sqlx::PgConnection::connect_with(&server.clone().database("postgres"))
        .await
        .expect("PostgreSQL reachable (set BENCH_POSTGRES_URL)");
    admin
        .execute("DROP DATABASE IF EXISTS catalog_bench WITH (FORCE)")
        .await
        .expect("drop the bench database");
    admin
        .execute("CREATE DATABASE catalog_bench")
        .await
        .expect("create the bench database");
    admin.close().await.ok();
    let repo = PostgresRepository::connect_with(PgPoolOptions::new(), server.database(DATABASE))
        .await
        .expect("open the bench database");
    let inserted = repo.seed_if_empty(&seed::products()).await.expect("seed");
    assert_eq!(inserted as usize, seed::SEED_COUNT);
    Arc::new(repo)
}

async fn raw_connection(url: &str) -> MultiplexedConnection {
    let info = url.into_connection_info().expect("Redis URL");
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let info = info
        .set_redis_settings(settings)
        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
    redis::Client::open(info)
        .expect("Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

/// Builds everything and fills the caches; panics with a reason when a part
/// is missing.
pub(crate) async fn build() -> &'static Fixture {
    let products = seed::products();
    let id = products[products.len() / 2].id;
    let product_key = product_key(id);

    let postgres = postgres().await;
    let sqlite_dir = tempfile::tempdir().expect("temp dir");
    let sqlite_url = format!("sqlite://{}", sqlite_dir.path().join("bench.db").display());
    let sqlite = db::connect(&sqlite_url, true).await.expect("SQLite");

    // The cached values come from the database, as the catalog's would.
    let list = ProductList(Arc::new(postgres.list().await.expect("list")));
    assert_eq!(list.0.len(), seed::SEED_COUNT);
    let product = postgres.get(id).await.expect("get").expect("seeded");
    assert_eq!(*list.0, sqlite.list().await.expect("SQLite list"));
    let product_json = Bytes::from(serde_json::to_vec(&Some(&product)).expect("JSON"));
    let list_json = Bytes::from(serde_json::to_vec(&list).expect("JSON"));

    let server = RedisServer::new();
    let redis_at = |instance_name: &str| {
        RedisCache::new(RedisCacheOptions::new(server.url()).with_instance_name(instance_name))
            .expect("RedisCache")
    };
    let mut raw = raw_connection(&server.url()).await;
    // Plain strings without expiry: the raw baseline.
    let _: () = raw
        .set(RAW_PRODUCT_KEY, product_json.as_ref())
        .await
        .expect("raw set");
    let _: () = raw
        .set(RAW_LIST_KEY, list_json.as_ref())
        .await
        .expect("raw set");
    let mut config = Config::defaults();
    config.cache = CacheMode::Redis;
    config.redis_url = Some(server.url());
    config.instance_name = "bench:".into();

    let fixture = Box::leak(Box::new(Fixture {
        postgres,
        sqlite,
        id,
        product_key: product_key.clone(),
        redis: redis_at("bench:"),
        raw,
        l1: HybridCache::builder().build(),
        hybrid: HybridCache::builder()
            .distributed(Arc::new(redis_at("bench-hybrid:")))
            .build(),
        l1_body: HybridCache::builder().build(),
        hybrid_body: HybridCache::builder()
            .distributed(Arc::new(redis_at("bench-hybrid-body:")))
            .build(),
        catalog: ProductCache::from_config(&config).expect("the catalog's cache"),
        map_product: HashMap::from([(product_key, Arc::new(product.clone()))]),
        map_list: HashMap::from([(LIST_KEY.to_owned(), list.clone())]),
        product,
        list,
        product_json,
        list_json,
        list_postcard_len: 0,
        _sqlite_dir: sqlite_dir,
        _redis_server: server,
    }));
    fixture.fill().await;
    fixture.list_postcard_len = fixture
        .redis
        .get(POSTCARD_LIST_KEY)
        .await
        .expect("get")
        .map_or(0, |b| b.len());
    fixture
}

impl Fixture {
    /// (Re)writes every cached entry with the catalog's options. The list's
    /// entries slide by 2 minutes, less than a run takes: every row calls
    /// this first, so that none measures an expired entry.
    pub(crate) async fn fill(&self) {
        let key = self.product_key.as_str();
        // Typed entries exactly as the catalog (CACHE=redis) wrote them; the
        // same bytes its bodies are now.
        let redis = &self.redis;
        let product = Some(&self.product);
        redis
            .set_value_with(key, &product, &product_entry_options())
            .await
            .expect("set");
        redis
            .set_value_with(LIST_KEY, &self.list, &list_entry_options())
            .await
            .expect("set");
        let postcard = Typed::new(redis, Postcard);
        let list = &self.list;
        postcard
            .set_value(POSTCARD_LIST_KEY, list, &list_entry_options())
            .await
            .expect("set");
        for cache in [&self.l1, &self.hybrid] {
            cache
                .set(key, product.cloned(), &product_options())
                .await
                .expect("set");
            cache
                .set(LIST_KEY, list.clone(), &list_options())
                .await
                .expect("set");
        }
        for cache in [&self.l1_body, &self.hybrid_body] {
            let (product, list) = (self.product_json.clone(), self.list_json.clone());
            cache
                .set_bytes(key, product, &product_options())
                .await
                .expect("set");
            cache
                .set_bytes(LIST_KEY, list, &list_options())
                .await
                .expect("set");
        }
    }
}
