//! `/products`: list (with optional paging), get, create, replace, delete.
//!
//! Reads go through [`ProductCache`](crate::cache::ProductCache); writes go to
//! the database, then invalidate exactly the entries they changed. Requests are
//! validated here; errors are [`ApiError`]s rendered as problem+json.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::model::{Product, ProductInput};

/// The largest page `limit` accepts.
pub const MAX_LIMIT: usize = 1_000;

/// The largest `offset` accepted (past the end gives an empty page). Bounded
/// so that the OpenAPI document can state the bound exactly.
pub const MAX_OFFSET: u64 = u32::MAX as u64;

/// The response header that carries the number of products before paging.
pub const TOTAL_COUNT: &str = "x-total-count";

/// The content type of product bodies.
const APPLICATION_JSON: &str = "application/json";

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/products", get(list).post(create))
        .route(
            "/products/{id}",
            get(get_one).put(update).delete(delete_one),
        )
}

/// Paging parameters of `GET /products`; without them the whole list is served.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Page size, 1 to 1000; without it, every product from `offset` on.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Products to skip, 0 to 4294967295; past the end gives an empty page.
    #[param(minimum = 0, maximum = 4294967295_u64)]
    offset: Option<u64>,
}

/// List products, in creation order.
#[utoipa::path(
    get, path = "/products", tag = "products", params(Paging),
    responses(
        (status = 200, description = "The products; `x-total-count` holds the count before paging",
         body = [Product], headers(("x-total-count" = usize, description = "Products in total"))),
        (status = 400, description = "Bad paging parameters", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    AppQuery(paging): AppQuery<Paging>,
) -> Result<Response, ApiError> {
    let limit = match paging.limit {
        Some(l) if (1..=MAX_LIMIT).contains(&l) => Some(l),
        Some(l) => {
            return Err(ApiError::BadRequest(format!(
                "`limit` must be between 1 and {MAX_LIMIT}, not {l}."
            )));
        }
        None => None,
    };
    let offset = match paging.offset {
        // Bounded by MAX_OFFSET, which fits a usize on every target we build.
        Some(o) if o <= MAX_OFFSET => usize::try_from(o).unwrap_or(usize::MAX),
        Some(o) => {
            return Err(ApiError::BadRequest(format!(
                "`offset` must be between 0 and {MAX_OFFSET}, not {o}."
            )));
        }
        None => 0,
    };
    let body = state.cache.list_body(&state.repo).await?;
    // The whole list is the cached body itself, served without a copy; a
    // page is cut out of it (see `ListBody`).
    let (body, total) = if paging.offset.is_none() && limit.is_none() {
        let total = body.count();
        (body.bytes().clone(), total)
    } else {
        body.page(offset, limit)
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(APPLICATION_JSON),
    );
    headers.insert(TOTAL_COUNT, HeaderValue::from(total));
    Ok((StatusCode::OK, headers, body).into_response())
}

/// Get one product.
#[utoipa::path(
    get, path = "/products/{id}", tag = "products",
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, description = "The product", body = Product),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Response, ApiError> {
    // The cached body, served as it is.
    match state.cache.product_body(&state.repo, id).await? {
        Some(body) => Ok(([(header::CONTENT_TYPE, APPLICATION_JSON)], body).into_response()),
        None => Err(not_found(id)),
    }
}

/// Create a product. The id and timestamps are assigned by the server.
#[utoipa::path(
    post, path = "/products", tag = "products", request_body = ProductInput,
    responses(
        (status = 201, description = "Created; `Location` names the new product", body = Product,
         headers(("location" = String, description = "/products/{id}")),
         links(
             ("GetProduct" = (operation_id = "get_one", parameters(("id" = "$response.body#/id")))),
             ("UpdateProduct" = (operation_id = "update", parameters(("id" = "$response.body#/id")))),
             ("DeleteProduct" = (operation_id = "delete_one", parameters(("id" = "$response.body#/id")))),
         )),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time; the connection closes", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body not declared as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named in `errors`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    AppJson(input): AppJson<ProductInput>,
) -> Result<Response, ApiError> {
    let input = input.validate().map_err(ApiError::Validation)?;
    let product = state.repo.create(input).await?;
    state.cache.invalidate(product.id).await;
    tracing::info!(id = %product.id, "product created");
    let location = HeaderValue::try_from(format!("/products/{}", product.id))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        AppJson(product),
    )
        .into_response())
}

/// Replace a product's name, description and price.
#[utoipa::path(
    put, path = "/products/{id}", tag = "products", request_body = ProductInput,
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, description = "The updated product", body = Product),
        (status = 400, description = "Bad id or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time; the connection closes", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body not declared as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named in `errors`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
    AppJson(input): AppJson<ProductInput>,
) -> Result<AppJson<Product>, ApiError> {
    let input = input.validate().map_err(ApiError::Validation)?;
    let product = state
        .repo
        .update(id, input)
        .await?
        .ok_or_else(|| not_found(id))?;
    state.cache.invalidate(id).await;
    tracing::info!(%id, "product updated");
    Ok(AppJson(product))
}

/// Delete a product.
#[utoipa::path(
    delete, path = "/products/{id}", tag = "products",
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_one(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    if !state.repo.delete(id).await? {
        return Err(not_found(id));
    }
    state.cache.invalidate(id).await;
    tracing::info!(%id, "product deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("No product has the id {id}."))
}
