//! The HTTP contract, every endpoint and every error case, run as one shared
//! body against PostgreSQL and SQLite; plus seeding, caching of a second GET,
//! a database outage, and the operations endpoints.

mod common;

use catalog::CacheMode;
use catalog::cache::ProductCache;
use catalog::db::{PostgresRepository, ProductRepository};
use catalog::{AppState, Config};
use common::{TestApp, TestDb, assert_problem, config};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Every endpoint and error case of the products resource.
async fn contract(app: &TestApp) {
    // The seeded catalog: 1,000 products in creation order.
    let response = app.get("/products").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-total-count"], "1000");
    assert!(response.headers().contains_key("x-request-id"));
    let all: Vec<Value> = response.json().await.unwrap();
    assert_eq!(all.len(), 1000);
    let first = &all[0];
    for field in [
        "id",
        "name",
        "description",
        "price",
        "created_at",
        "updated_at",
    ] {
        assert!(!first[field].is_null(), "{field} in {first}");
    }
    assert!(first["price"].is_string(), "prices are strings: {first}");

    // Paging slices the same list.
    let (status, page) = app.get_json("/products?limit=10&offset=5").await;
    assert_eq!(status, 200);
    assert_eq!(page.as_array().unwrap().as_slice(), &all[5..15]);
    let (_, page) = app.get_json("/products?limit=3").await;
    assert_eq!(page.as_array().unwrap().as_slice(), &all[..3]);
    let (_, page) = app.get_json("/products?offset=998").await;
    assert_eq!(page.as_array().unwrap().as_slice(), &all[998..]);
    let (status, page) = app.get_json("/products?offset=5000&limit=5").await;
    assert_eq!((status, page), (200, json!([])));
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=abc",
        "offset=-3",
        "offset=x",
    ] {
        let body = assert_problem(app.get(&format!("/products?{bad}")).await, 400).await;
        assert_eq!(body["instance"], "/products");
        assert!(body["request_id"].is_string());
    }

    // Get by id.
    let id = first["id"].as_str().unwrap();
    let (status, one) = app.get_json(&format!("/products/{id}")).await;
    assert_eq!((status, &one), (200, first));
    assert_problem(app.get("/products/not-a-uuid").await, 400).await;
    assert_problem(app.get("/products/123").await, 400).await;
    let missing = "01936b2e-7f00-7000-8000-000000000001";
    let body = assert_problem(app.get(&format!("/products/{missing}")).await, 404).await;
    assert_eq!(body["instance"], format!("/products/{missing}"));

    // Create: 201, Location, server-assigned fields, exact price.
    let response = app
        .post_json(
            "/products",
            &json!({"name": "  Ergonomic Test Gadget ", "description": "Made in a test.", "price": "0.10"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let new_id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/products/{new_id}"));
    assert_eq!(created["name"], "Ergonomic Test Gadget");
    assert_eq!(created["price"], "0.10");
    assert_eq!(created["created_at"], created["updated_at"]);
    assert_eq!(uuid::Uuid::parse_str(&new_id).unwrap().get_version_num(), 7);
    let (status, fetched) = app.get_json(&location).await;
    assert_eq!((status, &fetched), (200, &created));
    let list = app.list().await;
    assert_eq!(list.len(), 1001);
    assert_eq!(list.last(), Some(&created), "newest last");
    // A JSON number price is accepted when exact.
    let response = app
        .post_json(
            "/products",
            &json!({"name": "Numeric Price", "price": 12.5}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let numeric: Value = response.json().await.unwrap();
    assert_eq!(numeric["price"], "12.50");
    assert_eq!(numeric["description"], "");

    // Bodies that are not JSON objects: 400; not declared JSON: 415.
    for raw in ["{\"name\": ", "not json", "[1, 2]", "\"a string\"", ""] {
        let response = app
            .http
            .post(app.url("/products"))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_problem(response, 400).await;
    }
    let response = app
        .http
        .post(app.url("/products"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(response, 415).await;

    // Validation: 422 naming each bad field.
    let cases = [
        (json!({"name": "", "price": "1"}), vec!["name"]),
        (json!({"name": "   ", "price": "1"}), vec!["name"]),
        (json!({"name": "x".repeat(201), "price": "1"}), vec!["name"]),
        (
            json!({"name": "ok", "description": "d".repeat(2001), "price": "1"}),
            vec!["description"],
        ),
        (json!({"name": "ok", "price": "-0.01"}), vec!["price"]),
        (json!({"name": "ok", "price": -5}), vec!["price"]),
        (json!({"name": "ok", "price": "NaN"}), vec!["price"]),
        (json!({"name": "ok", "price": "Infinity"}), vec!["price"]),
        (
            json!({"name": "ok", "price": "100000000.00"}),
            vec!["price"],
        ),
        (json!({"name": "ok", "price": 1e300}), vec!["price"]),
        (json!({"name": "ok", "price": "1.234"}), vec!["price"]),
        (json!({"name": "ok"}), vec!["price"]),
        (json!({}), vec!["name", "price"]),
        (
            json!({"name": 5, "description": [], "price": true}),
            vec!["description", "name", "price"],
        ),
        (
            json!({"name": "", "description": "d".repeat(2001), "price": "-1"}),
            vec!["description", "name", "price"],
        ),
    ];
    for (body, fields) in cases {
        let problem = assert_problem(app.post_json("/products", &body).await, 422).await;
        let named: Vec<&str> = problem["errors"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(named, fields, "{body}");
        // The same rules on PUT.
        let put = app.put_json(&format!("/products/{new_id}"), &body).await;
        assert_problem(put, 422).await;
    }

    // Body over 64 KiB: 413, whatever the declared length.
    let huge = json!({"name": "x".repeat(70 * 1024), "price": "1"});
    assert_problem(app.post_json("/products", &huge).await, 413).await;
    assert_problem(
        app.put_json(&format!("/products/{new_id}"), &huge).await,
        413,
    )
    .await;

    // Update.
    let update =
        json!({"name": "Renamed Gadget", "description": "New text.", "price": "99999999.99"});
    let response = app.put_json(&format!("/products/{new_id}"), &update).await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["price"], "99999999.99");
    assert_eq!(updated["created_at"], created["created_at"]);
    assert_ne!(updated["updated_at"], created["updated_at"]);
    let (_, fetched) = app.get_json(&location).await;
    assert_eq!(fetched, updated);
    assert!(app.list().await.contains(&updated));
    let put_missing = app.put_json(&format!("/products/{missing}"), &update).await;
    assert_problem(put_missing, 404).await;
    assert_problem(app.put_json("/products/nope", &update).await, 400).await;

    // Delete.
    let response = app.delete(&location).await;
    assert_eq!(response.status(), 204);
    assert_problem(app.get(&location).await, 404).await;
    assert_problem(app.delete(&location).await, 404).await;
    assert_problem(app.delete("/products/nope").await, 400).await;
    assert!(!app.list().await.iter().any(|p| p["id"] == new_id.as_str()));

    // Unknown routes and methods.
    let body = assert_problem(app.get("/nope").await, 404).await;
    assert_eq!(body["instance"], "/nope");
    assert_problem(app.get("/products/a/b").await, 404).await;
    let response = app.http.patch(app.url("/products")).send().await.unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_problem(response, 405).await;
    let response = app.http.post(app.url(&location)).send().await.unwrap();
    assert_problem(response, 405).await;
    let response = app.http.delete(app.url("/products")).send().await.unwrap();
    assert_problem(response, 405).await;

    // A client's request id is kept and echoed.
    let response = app
        .http
        .get(app.url("/nope"))
        .header("x-request-id", "test-id-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "test-id-42");
    let body = assert_problem(response, 404).await;
    assert_eq!(body["request_id"], "test-id-42");
}

async fn memory_app(db: &TestDb) -> TestApp {
    TestApp::start(db, &config(CacheMode::Memory, None, "catalog:")).await
}

/// The default topology: HybridCache with L1 only.
async fn hybrid_app(db: &TestDb) -> TestApp {
    TestApp::start(db, &config(CacheMode::Hybrid, None, "catalog:")).await
}

/// The production topology: HybridCache with L1, Redis L2 and backplane.
async fn hybrid_redis_app(db: &TestDb, test: &str) -> TestApp {
    let name = common::unique_instance_name(test);
    let config = config(CacheMode::Hybrid, Some(common::redis_url()), &name);
    TestApp::start(db, &config).await
}

#[sqlx::test(migrations = false)]
async fn contract_on_postgres_hybrid_redis(pool: PgPoolOptions, options: PgConnectOptions) {
    let db = TestDb::postgres(pool, options);
    contract(&hybrid_redis_app(&db, "contract").await).await;
}

#[sqlx::test(migrations = false)]
async fn contract_on_postgres_hybrid_l1(pool: PgPoolOptions, options: PgConnectOptions) {
    let db = TestDb::postgres(pool, options);
    contract(&hybrid_app(&db).await).await;
}

#[tokio::test]
async fn contract_on_sqlite_hybrid_l1() {
    contract(&hybrid_app(&TestDb::sqlite()).await).await;
}

#[tokio::test]
async fn contract_on_sqlite_memory() {
    contract(&memory_app(&TestDb::sqlite()).await).await;
}

#[sqlx::test(migrations = false)]
async fn contract_on_postgres_redis(pool: PgPoolOptions, options: PgConnectOptions) {
    let db = TestDb::postgres(pool, options);
    let name = common::unique_instance_name("contract-redis");
    let app = TestApp::start(
        &db,
        &config(CacheMode::Redis, Some(common::redis_url()), &name),
    )
    .await;
    contract(&app).await;
}

#[sqlx::test(migrations = false)]
async fn contract_on_postgres_without_cache(pool: PgPoolOptions, options: PgConnectOptions) {
    let db = TestDb::postgres(pool, options);
    let app = TestApp::start(&db, &config(CacheMode::None, None, "catalog:")).await;
    contract(&app).await;
    let before = app.db_loads();
    app.list().await;
    app.list().await;
    assert_eq!(
        app.db_loads(),
        before + 2,
        "CACHE=none: every read is a load"
    );
}

/// Reads twice through `app` and checks the second read did not load.
async fn second_get_is_cached(app: &TestApp) {
    let id = app.list().await[42]["id"].as_str().unwrap().to_owned();
    let before = app.db_loads();
    let (status, first) = app.get_json(&format!("/products/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(app.db_loads(), before + 1, "the first read is a miss");
    let (_, second) = app.get_json(&format!("/products/{id}")).await;
    assert_eq!(second, first);
    assert_eq!(app.db_loads(), before + 1, "the second read is a hit");

    let before = app.db_loads();
    app.list().await;
    app.get_json("/products?limit=5&offset=100").await;
    assert_eq!(app.db_loads(), before, "the list and its pages are cached");

    // A missing id is cached briefly as missing, and a write to it clears that.
    let missing = "01936b2e-7f00-7000-8000-000000000002";
    let before = app.db_loads();
    assert_eq!(app.get(&format!("/products/{missing}")).await.status(), 404);
    assert_eq!(app.get(&format!("/products/{missing}")).await.status(), 404);
    assert_eq!(app.db_loads(), before + 1, "negative entry");
}

/// HybridCache: the second read is an L1 hit, as its own stats say.
async fn second_get_is_an_l1_hit(app: &TestApp) {
    second_get_is_cached(app).await;
    let hybrid = app.state.cache.hybrid().expect("hybrid mode");
    let id = app.list().await[43]["id"].as_str().unwrap().to_owned();
    let before = hybrid.stats();
    app.get(&format!("/products/{id}")).await;
    let after_miss = hybrid.stats();
    assert_eq!(after_miss.factory_runs(), before.factory_runs() + 1);
    app.get(&format!("/products/{id}")).await;
    let after_hit = hybrid.stats();
    assert_eq!(after_hit.factory_runs(), after_miss.factory_runs());
    assert_eq!(after_hit.l1_hits(), after_miss.l1_hits() + 1);
}

#[tokio::test]
async fn second_get_is_an_l1_hit_sqlite() {
    second_get_is_an_l1_hit(&hybrid_app(&TestDb::sqlite()).await).await;
}

#[sqlx::test(migrations = false)]
async fn second_get_is_an_l1_hit_postgres_redis(pool: PgPoolOptions, options: PgConnectOptions) {
    let db = TestDb::postgres(pool, options);
    second_get_is_an_l1_hit(&hybrid_redis_app(&db, "l1-hit").await).await;
}

/// A second instance on the same Redis finds the entry in L2: no factory run.
#[sqlx::test(migrations = false)]
async fn second_instance_reads_from_l2(pool: PgPoolOptions, options: PgConnectOptions) {
    let db = TestDb::postgres(pool, options);
    let name = common::unique_instance_name("l2-hit");
    let config = config(CacheMode::Hybrid, Some(common::redis_url()), &name);
    let (a, b) = tokio::join!(TestApp::start(&db, &config), TestApp::start(&db, &config));
    let id = a.list().await[10]["id"].as_str().unwrap().to_owned();
    let (_, product) = a.get_json(&format!("/products/{id}")).await;
    let stats = b.state.cache.hybrid().unwrap().stats();
    assert_eq!(b.get_json(&format!("/products/{id}")).await, (200, product));
    let after = b.state.cache.hybrid().unwrap().stats();
    assert_eq!(after.l2_hits(), stats.l2_hits() + 1, "served from Redis");
    assert_eq!(
        after.factory_runs(),
        stats.factory_runs(),
        "no database read"
    );
}

#[sqlx::test(migrations = false)]
async fn second_get_is_served_from_memory_cache_postgres(
    pool: PgPoolOptions,
    options: PgConnectOptions,
) {
    let db = TestDb::postgres(pool, options);
    second_get_is_cached(&memory_app(&db).await).await;
}

#[tokio::test]
async fn second_get_is_served_from_memory_cache_sqlite() {
    second_get_is_cached(&memory_app(&TestDb::sqlite()).await).await;
}

#[sqlx::test(migrations = false)]
async fn second_get_is_served_from_redis_postgres(pool: PgPoolOptions, options: PgConnectOptions) {
    let db = TestDb::postgres(pool, options);
    let name = common::unique_instance_name("redis-hit");
    let app = TestApp::start(
        &db,
        &config(CacheMode::Redis, Some(common::redis_url()), &name),
    )
    .await;
    second_get_is_cached(&app).await;
}

#[sqlx::test(migrations = false)]
async fn seeding_is_idempotent_on_postgres(pool: PgPoolOptions, options: PgConnectOptions) {
    let db = TestDb::postgres(pool, options);
    // Three "replicas" starting at once on an empty database.
    let (a, b, c) = tokio::join!(db.repo(), db.repo(), db.repo());
    assert_eq!(a.list().await.unwrap().len(), 1000);
    let again = db.repo().await;
    assert_eq!(
        again
            .seed_if_empty(&catalog::seed::products())
            .await
            .unwrap(),
        0
    );
    assert_eq!(b.list().await.unwrap(), c.list().await.unwrap());
    assert_eq!(b.list().await.unwrap(), catalog::seed::products());
}

#[tokio::test]
async fn seeding_is_idempotent_on_sqlite() {
    let db = TestDb::sqlite();
    let first = db.repo().await;
    first.delete(catalog::seed::products()[0].id).await.unwrap();
    // A restart: no duplicates, and a deleted product does not come back.
    let again = db.repo().await;
    assert_eq!(again.list().await.unwrap().len(), 999);
    assert_eq!(again.list().await.unwrap(), catalog::seed::products()[1..]);
}

#[tokio::test]
async fn default_config_creates_the_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let config = Config {
        database_url: format!("sqlite://{}", path.display()),
        ..Config::defaults()
    };
    let state = AppState::from_config(&config).await.unwrap();
    assert!(path.exists());
    assert_eq!(state.repo.backend(), "sqlite");
    let app = TestApp::spawn(state).await;
    assert_eq!(app.list().await.len(), 1000);
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn database_outage_is_503_and_never_500(pool: PgPool) {
    let repo: std::sync::Arc<dyn ProductRepository> =
        std::sync::Arc::new(PostgresRepository::from_pool(pool.clone()).await.unwrap());
    repo.seed_if_empty(&catalog::seed::products())
        .await
        .unwrap();
    let app = TestApp::spawn(AppState::new(repo, ProductCache::disabled())).await;
    let id = app.list().await[0]["id"].as_str().unwrap().to_owned();
    pool.close().await;

    let body = assert_problem(app.get("/products").await, 503).await;
    assert!(!body["detail"].as_str().unwrap().contains("pool"), "{body}");
    let response = app.get(&format!("/products/{id}")).await;
    assert_eq!(response.headers()["retry-after"], "5");
    assert_problem(response, 503).await;
    let input = json!({"name": "x", "price": "1"});
    assert_problem(app.post_json("/products", &input).await, 503).await;
    assert_problem(app.put_json(&format!("/products/{id}"), &input).await, 503).await;
    assert_problem(app.delete(&format!("/products/{id}")).await, 503).await;
    // Input errors are still reported as such.
    assert_problem(app.post_json("/products", &json!({})).await, 422).await;

    let (status, ready) = app.get_json("/health/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["checks"]["database"]["status"], "down");
    assert_eq!(app.get("/health/live").await.status(), 200);
}

#[tokio::test]
async fn operations_endpoints() {
    let app = hybrid_app(&TestDb::sqlite()).await;
    app.list().await;
    app.list().await;
    app.get("/products/bad").await;

    let (status, live) = app.get_json("/health/live").await;
    assert_eq!((status, live), (200, json!({"status": "ok"})));
    let (status, ready) = app.get_json("/health/ready").await;
    assert_eq!(status, 200);
    assert_eq!(ready["status"], "ok");
    assert_eq!(
        ready["checks"]["database"],
        json!({"status": "up", "backend": "sqlite"})
    );

    let metrics = app.get("/metrics").await.text().await.unwrap();
    for needle in [
        r#"http_requests_total{method="GET",route="/products",status="200"}"#,
        r#"http_requests_total{method="GET",route="/products/{id}",status="400"}"#,
        "http_request_duration_seconds_bucket{",
        r#"catalog_cache_lookups_total{entry="products",result="miss"}"#,
        r#"catalog_db_loads_total{entry="products"}"#,
        r#"strata_hybrid_hits_total{layer="l1",cache="catalog"}"#,
        "strata_hybrid_misses_total",
        "strata_hybrid_factory_runs_total",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("route=\"/products/bad\""),
        "raw paths are not labels"
    );

    let (status, spec) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/products",
        "/products/{id}",
        "/health/live",
        "/health/ready",
    ] {
        assert!(spec["paths"][path].is_object(), "{path}");
    }
    for method in ["get", "put", "delete"] {
        assert!(
            spec["paths"]["/products/{id}"][method].is_object(),
            "{method}"
        );
    }
    assert!(spec["components"]["schemas"]["Product"].is_object());
    assert!(spec["components"]["schemas"]["Problem"].is_object());

    let response = app.get("/docs").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let html = response.text().await.unwrap();
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "the docs page loads nothing from outside"
    );
    assert!(
        !html.contains("<script>"),
        "no inline script, so the policy can forbid them"
    );

    // Every file the page names is served from the binary.
    for (asset, content_type, at_least) in [
        ("docs/swagger-ui.css", "text/css", 100_000),
        ("docs/swagger-ui-bundle.js", "text/javascript", 1_000_000),
        ("docs/init.js", "text/javascript", 100),
    ] {
        assert!(html.contains(&format!("\"{asset}\"")), "{asset}");
        let response = app.get(&format!("/{asset}")).await;
        assert_eq!(response.status(), 200, "{asset}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{asset}"
        );
        let body = response.bytes().await.unwrap();
        assert!(body.len() >= at_least, "{asset}: {} bytes", body.len());
        if asset == "docs/init.js" {
            let init = String::from_utf8(body.to_vec()).unwrap();
            assert!(init.contains("url: \"openapi.json\""), "{init}");
            assert!(init.contains("validatorUrl: null"), "{init}");
        }
    }
}

/// Pages come from the cached list without a pass over it: the list is
/// indexed once per cached body, however many pages are served, and again
/// after a write replaces it.
async fn pages_reuse_the_index(app: &TestApp) {
    let all = app.list().await;
    let indexings = app.state.cache.list_indexings();
    for offset in [0, 500, 990, 5000] {
        for _ in 0..50 {
            let (status, page) = app
                .get_json(&format!("/products?limit=20&offset={offset}"))
                .await;
            assert_eq!(status, 200);
            let want = &all[offset.min(all.len())..(offset + 20).min(all.len())];
            assert_eq!(page.as_array().unwrap().as_slice(), want);
        }
    }
    assert_eq!(app.state.cache.list_indexings(), indexings, "no re-index");

    let response = app
        .post_json("/products", &json!({"name": "Paged", "price": "1.00"}))
        .await;
    assert_eq!(response.status(), 201);
    let (_, page) = app.get_json("/products?limit=1&offset=1000").await;
    assert_eq!(page[0]["name"], "Paged");
    assert_eq!(app.state.cache.list_indexings(), indexings + 1);
    app.get_json("/products?limit=5&offset=3").await;
    assert_eq!(app.state.cache.list_indexings(), indexings + 1);
}

#[tokio::test]
async fn pages_reuse_the_index_sqlite_hybrid_l1() {
    pages_reuse_the_index(&hybrid_app(&TestDb::sqlite()).await).await;
}

#[sqlx::test(migrations = false)]
async fn pages_reuse_the_index_postgres_hybrid_redis(
    pool: PgPoolOptions,
    options: PgConnectOptions,
) {
    let db = TestDb::postgres(pool, options);
    pages_reuse_the_index(&hybrid_redis_app(&db, "pages").await).await;
}

/// The OpenAPI document states the bounds the server enforces (schemathesis
/// in .ci/run checks the rest against live traffic).
#[tokio::test]
async fn openapi_states_what_the_server_enforces() {
    let app = hybrid_app(&TestDb::sqlite()).await;
    let (_, spec) = app.get_json("/openapi.json").await;
    let params = spec["paths"]["/products"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let param = |name: &str| {
        params
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["schema"].clone())
            .unwrap()
    };
    assert_eq!(param("limit")["minimum"], 1);
    assert_eq!(param("limit")["maximum"], 1000);
    assert_eq!(param("offset")["minimum"], 0);
    assert_eq!(param("offset")["maximum"], 4294967295_u64);
    for (query, status) in [
        ("limit=1", 200),
        ("limit=1000", 200),
        ("offset=4294967295", 200),
        ("offset=4294967296", 400),
    ] {
        assert_eq!(
            app.get(&format!("/products?{query}")).await.status(),
            status,
            "{query}"
        );
    }

    let input = &spec["components"]["schemas"]["ProductInput"];
    let required: Vec<&str> = input["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        required.contains(&"name") && required.contains(&"price"),
        "{input}"
    );
    let price = &input["properties"]["price"]["oneOf"];
    assert_eq!(price[0]["type"], "string");
    assert_eq!(price[0]["pattern"], catalog::model::price::PATTERN);
    assert_eq!(price[1]["type"], "number");
    assert!(
        input["properties"]["name"]["pattern"].is_string(),
        "{input}"
    );
    let served = &spec["components"]["schemas"]["Product"]["properties"]["price"];
    assert_eq!(served["pattern"], catalog::model::price::SERVED_PATTERN);

    for method in ["post", "put"] {
        let responses = &spec["paths"][if method == "post" {
            "/products"
        } else {
            "/products/{id}"
        }][method]["responses"];
        for status in ["408", "413", "415", "422"] {
            assert!(responses[status].is_object(), "{method} {status}");
        }
    }
}
