//! One route of the Catalog called in-process N times: the whole middleware
//! stack and handler, no sockets, no HTTP parsing. Run under callgrind twice
//! with different N and subtract, for the route's instructions per request
//! (see docs/benchmarks.md, "One instance, direct").
//!
//! ```sh
//! cargo build --release -p catalog --example route_cost
//! valgrind --tool=callgrind target/release/examples/route_cost /health/live 100
//! valgrind --tool=callgrind target/release/examples/route_cost /health/live 5100
//! ```
//!
//! The path `product` stands for `/products/{id}` of a seeded product. The
//! database is a temporary SQLite file; the cache is the default (L1 only).

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::Request;
use catalog::{AppState, Config, build_app};
use tower::ServiceExt;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(Ok(n))) = (args.next(), args.next().map(|n| n.parse::<usize>())) else {
        eprintln!("usage: route_cost PATH|product N");
        std::process::exit(2);
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = Config {
        database_url: format!("sqlite://{}", dir.path().join("catalog.db").display()),
        ..Config::defaults()
    };
    let app = build_app(AppState::from_config(&config).await.expect("app state"));
    let path = if path == "product" {
        let first: serde_json::Value =
            serde_json::from_slice(&get(&app, "/products?limit=1").await).expect("JSON list");
        format!("/products/{}", first[0]["id"].as_str().expect("an id"))
    } else {
        path
    };
    for _ in 0..n {
        std::hint::black_box(get(&app, &path).await);
    }
}

/// The body of a successful GET of `path`.
async fn get(app: &Router, path: &str) -> Bytes {
    let request = Request::get(path).body(Body::empty()).expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body")
}
