//! `/openapi.json` (the OpenAPI 3.1 document, derived with utoipa from the
//! handlers' annotations) and `/docs`, Swagger UI over it: every operation
//! with its parameters, bodies, response headers and schemas, Markdown
//! descriptions rendered, and "Try it out" to send a request from the page.
//!
//! Swagger UI's files are vendored from the npm registry
//! (`vendor/swagger-ui`, version and checksums in its README) and compiled
//! into the binary: nothing is downloaded at build time or from a CDN at run
//! time, so the docs work on an air-gapped network. The page runs no inline
//! script and carries its own Content-Security-Policy.

use axum::Json;
use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::OpenApi;

use crate::app::AppState;
use crate::error::Problem;
use crate::model::{Product, ProductInput};
use crate::routes::{health, products};

/// The OpenAPI description of the service.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strata Catalog",
        description = "The reference Product API of Strata, cached through HybridCache. \
                       Prices are exact decimals serialized as JSON strings (\"19.99\"). \
                       Errors are RFC 9457 problem details (application/problem+json).",
    ),
    paths(
        products::list, products::get_one, products::create, products::update,
        products::delete_one, health::live, health::ready,
    ),
    components(schemas(Product, ProductInput, Problem, health::Live, health::Ready,
                       health::Checks, health::Check)),
    tags(
        (name = "products", description = "The catalog"),
        (name = "operations", description = "Health checks; metrics are at /metrics (Prometheus text)"),
    )
)]
pub struct ApiDoc;

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/docs", get(page))
        .route("/docs/init.js", get(init))
        .route("/docs/swagger-ui-bundle.js", get(bundle))
        .route("/docs/swagger-ui.css", get(stylesheet))
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// What the page may load: its own files, the document and the API on the
/// same origin. Swagger UI sets inline styles and uses `data:` images.
const POLICY: &str = "default-src 'self'; script-src 'self'; connect-src 'self'; \
                      style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                      base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The vendored files change only with the binary.
const ASSET_CACHE: &str = "public, max-age=86400";

async fn page() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CONTENT_SECURITY_POLICY, POLICY),
            (CACHE_CONTROL, "no-cache"),
        ],
        include_str!("docs/index.html"),
    )
}

async fn init() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_bytes!("docs/init.js"),
    )
}

async fn bundle() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_bytes!("../../vendor/swagger-ui/swagger-ui-bundle.js"),
    )
}

async fn stylesheet() -> impl IntoResponse {
    asset(
        "text/css; charset=utf-8",
        include_bytes!("../../vendor/swagger-ui/swagger-ui.css"),
    )
}

fn asset(content_type: &'static str, body: &'static [u8]) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, ASSET_CACHE)],
        body,
    )
}
