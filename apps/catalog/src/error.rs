//! [`ApiError`], the one error type of the HTTP layer, and its RFC 9457
//! `application/problem+json` rendering ([`Problem`]).
//!
//! Every failure a client can see goes through here, axum's own rejections
//! included (see [`crate::extract`] and the fallbacks in [`crate::app`]). 5xx
//! details are logged with the request's span and replaced by a generic text
//! in the response: internal error messages never reach clients.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::RepoError;
use crate::model::FieldErrors;

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything that can go wrong in a request, with its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON, bad id, bad query parameters).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: no such product, or no such route.
    #[error("not found: {0}")]
    NotFound(String),
    /// 405: the route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 408: the request body did not arrive within the body read timeout.
    /// The connection is closed after the answer.
    #[error("request timeout: {0}")]
    RequestTimeout(String),
    /// 413: the body is larger than the limit.
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    /// 415: the body is not declared as JSON.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// 422: the JSON is well-formed but some fields are invalid; each is named.
    #[error("validation failed: {0:?}")]
    Validation(FieldErrors),
    /// 503: the database cannot be reached. Logged; the client gets a generic
    /// text and `Retry-After`.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] RepoError),
    /// 500: a bug. Logged; the client gets a generic text.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RepoError> for ApiError {
    fn from(error: RepoError) -> Self {
        if error.is_unavailable() {
            ApiError::Unavailable(error)
        } else {
            ApiError::Internal(error.to_string())
        }
    }
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> Cow<'static, str> {
        match self {
            ApiError::BadRequest(d)
            | ApiError::NotFound(d)
            | ApiError::RequestTimeout(d)
            | ApiError::PayloadTooLarge(d)
            | ApiError::UnsupportedMediaType(d) => Cow::Owned(d.clone()),
            ApiError::MethodNotAllowed => {
                "This route does not support this method; see the Allow header.".into()
            }
            ApiError::Validation(_) => "One or more fields are invalid; see `errors`.".into(),
            ApiError::Unavailable(_) => {
                "The database is unavailable. Try again in a few seconds.".into()
            }
            ApiError::Internal(_) => "An unexpected error occurred; it has been logged.".into(),
        }
    }
}

/// An RFC 9457 problem details document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the problem type; `about:blank` means "see the status".
    #[serde(rename = "type")]
    pub type_: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence, in words.
    pub detail: String,
    /// The request path this occurrence is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Validation messages per field (422 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::BTreeMap<String, Vec<String>>>)]
    pub errors: Option<FieldErrors>,
    /// The `x-request-id` of the request, to quote when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    /// A problem of `status` with `detail` and no instance yet.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            type_: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
            instance: None,
            errors: None,
            request_id: None,
        }
    }

    /// Renders the document as a response with its status and content type.
    /// The problem also rides in the response extensions, so that the
    /// middleware in [`crate::app`] can add `instance` and `request_id`.
    pub fn into_response_with_status(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response.extensions_mut().insert(self);
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // The full error, source chain included, goes to the log only.
            tracing::error!(error = %self, error_debug = ?self, "request failed");
        }
        let mut problem = Problem::new(status, self.detail());
        let is_unavailable = matches!(self, ApiError::Unavailable(_));
        let is_timeout = matches!(self, ApiError::RequestTimeout(_));
        if let ApiError::Validation(errors) = self {
            problem.errors = Some(errors);
        }
        let mut response = problem.into_response_with_status();
        if is_unavailable {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if is_timeout {
            // The rest of the body is never read: the connection cannot
            // carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_are_not_sent() {
        let response = ApiError::Internal("secret table name".into()).into_response();
        assert_eq!(response.status(), 500);
        let problem = response.extensions().get::<Problem>().unwrap();
        assert!(!problem.detail.contains("secret"));
    }

    #[test]
    fn validation_names_fields() {
        let mut errors = FieldErrors::new();
        errors.insert("price", vec!["must not be negative".into()]);
        let response = ApiError::Validation(errors).into_response();
        assert_eq!(response.status(), 422);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let problem = response.extensions().get::<Problem>().unwrap();
        let json = serde_json::to_value(problem).unwrap();
        assert_eq!(json["errors"]["price"][0], "must not be negative");
        assert_eq!(json["type"], "about:blank");
        assert_eq!(json["title"], "Unprocessable Entity");
    }
}
