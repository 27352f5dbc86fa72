//! `/openapi.json` (the OpenAPI 3.1 document, derived with utoipa from the
//! handlers' annotations) and `/docs`, a self-contained page that renders it.
//!
//! The page is a small embedded HTML + JavaScript file (`docs.html`): it
//! fetches `/openapi.json` and lists every operation with its parameters,
//! body and responses. Nothing is downloaded at build time or from a CDN at
//! run time, so the docs work on an air-gapped network.

use axum::Json;
use axum::Router;
use axum::response::Html;
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
        .route("/docs", get(docs))
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}
