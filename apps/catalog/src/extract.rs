//! Extractors that turn axum's rejections into [`ApiError`]s, so that a bad
//! body, path or query string is answered in problem+json like every other
//! error: [`AppJson`], [`AppPath`] and [`AppQuery`]. [`AppJson`] also bounds
//! the time the body takes to arrive (408).
//!
//! Each wraps the axum extractor of the same name and only changes the
//! rejection; the statuses follow axum's classification (a body over the
//! limit is 413, a missing `Content-Type: application/json` is 415), except
//! that a body that is valid JSON of the wrong shape is 400 here: a request
//! body must be a JSON object, and field-level problems are the validator's
//! 422 (see [`crate::model::ProductInput::validate`]).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::server::BodyReadTimeout;

/// `axum::Json` with problem+json rejections.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // The server puts the body read timeout in the request (see
        // `crate::server`); without one (a router called directly) there is
        // no bound.
        let timeout = req.extensions().get::<BodyReadTimeout>().map(|t| t.0);
        let read = axum::Json::<T>::from_request(req, state);
        let result = match timeout {
            Some(timeout) => tokio::time::timeout(timeout, read).await.map_err(|_| {
                ApiError::RequestTimeout(format!(
                    "The request body did not arrive within {} ms.",
                    timeout.as_millis()
                ))
            })?,
            None => read.await,
        };
        match result {
            Ok(axum::Json(value)) => Ok(AppJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let text = rejection.body_text();
    match rejection {
        JsonRejection::JsonSyntaxError(_) => ApiError::BadRequest(format!(
            "The request body is not valid JSON: {}",
            strip_prefix(&text)
        )),
        JsonRejection::JsonDataError(_) => ApiError::BadRequest(format!(
            "The request body must be a JSON object with the product's fields: {}",
            strip_prefix(&text)
        )),
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "Send the body as JSON with `Content-Type: application/json`.".into(),
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge(format!(
                "The request body exceeds the limit of {} bytes.",
                crate::app::BODY_LIMIT
            ))
        }
        other => ApiError::BadRequest(format!(
            "The request body could not be read: {}",
            other.body_text()
        )),
    }
}

/// axum's texts start with a generic sentence before the useful part.
fn strip_prefix(text: &str) -> &str {
    text.split_once(": ").map_or(text, |(_, rest)| rest)
}

/// `axum::extract::Path` with problem+json rejections (400 for a value that
/// does not parse, such as an id that is not a UUID).
#[derive(Debug, Clone, Copy, Default)]
pub struct AppPath<T>(pub T);

impl<S, T> FromRequestParts<S> for AppPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(AppPath(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    match rejection {
        PathRejection::FailedToDeserializePathParams(e) => ApiError::BadRequest(format!(
            "Invalid path parameter: {}. Product ids are UUIDs such as \
             01936b2e-7f00-7000-8000-000000000001.",
            e.body_text()
        )),
        other => ApiError::Internal(other.body_text()),
    }
}

/// `axum::extract::Query` with problem+json rejections (400).
#[derive(Debug, Clone, Copy, Default)]
pub struct AppQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for AppQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(AppQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::BadRequest(format!(
        "Invalid query string: {}",
        strip_prefix(&rejection.body_text())
    ))
}

impl<T: serde::Serialize> axum::response::IntoResponse for AppJson<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}
