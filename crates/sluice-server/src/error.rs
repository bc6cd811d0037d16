//! The one error type of the HTTP API, mapped to a status and the body
//! `{"error": {"code", "message", "field"}}` in one place ([`IntoResponse`]).
//!
//! Messages are lowercase, without a trailing period, and say what would be
//! valid.

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sluice_api::error::{ErrorBody, ErrorDetail};

use crate::commit::CommitError;
use crate::world::WorldError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON, query or input (400).
    #[error("{message}")]
    BadRequest {
        message: String,
        field: Option<String>,
    },
    /// No token, or an unknown one (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The token's role may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts the current state (409).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The plan did not validate (422); `field` is the first problem's path
    /// and position, the message lists every problem.
    #[error("{message}")]
    InvalidPlan { message: String, field: String },
    /// No route for this method (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Too many requests (429): past the check-in queue's bound, or the
    /// token's rate. The answer says when to come back (`Retry-After`).
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_s: u64 },
    /// The store cannot take writes (503).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            field: None,
        }
    }

    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::InvalidPlan { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::InvalidPlan { .. } => "invalid_plan",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { field, .. } => field.as_deref(),
            ApiError::InvalidPlan { field, .. } => Some(field),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                field: self.field().map(str::to_owned),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code(), error = %self, "request failed");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        if let ApiError::TooManyRequests { retry_after_s, .. } = self {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        response
    }
}

impl From<CommitError> for ApiError {
    fn from(error: CommitError) -> ApiError {
        match error {
            CommitError::Refused(_) => ApiError::Internal(error.to_string()),
            CommitError::Unavailable(_)
            | CommitError::Rebuilding
            | CommitError::Closed
            | CommitError::NotLeader(_) => ApiError::Unavailable(error.to_string()),
        }
    }
}

impl From<WorldError> for ApiError {
    fn from(error: WorldError) -> ApiError {
        match error {
            WorldError::NotFound(message) => ApiError::NotFound(message),
            WorldError::Conflict(message) => ApiError::Conflict(message),
            WorldError::Invalid { field, message } => ApiError::BadRequest {
                message,
                field: Some(field),
            },
            WorldError::InvalidPlan { field, message } => ApiError::InvalidPlan { message, field },
        }
    }
}
