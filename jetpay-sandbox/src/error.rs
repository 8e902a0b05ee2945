//! The one error type of the HTTP surface, and the one place it becomes a response.
//!
//! API errors follow FastAPI's shape (see `jetpay::unspecified::ERROR_DETAIL_FIELD`):
//! `{"detail": "…"}`, and for 422 `{"detail": [{"loc": [...], "msg": "…", "type": "…"}]}`.
//! Errors of the hosted card form are pages for people, not JSON.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use jetpay::unspecified::ERROR_DETAIL_FIELD;

use crate::html;

/// One entry of a 422 answer, as FastAPI writes it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Issue {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl Issue {
    /// An issue with a body field, e.g. `Issue::body("max_batch_size", "…", "less_than_equal")`.
    pub fn body(field: &str, msg: impl Into<String>, kind: &str) -> Self {
        Issue {
            loc: vec!["body".to_owned(), field.to_owned()],
            msg: msg.into(),
            kind: kind.to_owned(),
        }
    }

    pub fn path(param: &str, msg: impl Into<String>, kind: &str) -> Self {
        Issue {
            loc: vec!["path".to_owned(), param.to_owned()],
            msg: msg.into(),
            kind: kind.to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The request is fine but the thing it asks for is done already (409).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("validation failed: {0:?}")]
    Validation(Vec<Issue>),
    /// A page for a person (the hosted form's "expired" or "not found").
    #[error("page {status}: {title}")]
    Page {
        status: StatusCode,
        title: &'static str,
        message: &'static str,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(issue: Issue) -> Self {
        ApiError::Validation(vec![issue])
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = |status: StatusCode, detail: serde_json::Value| {
            (status, axum::Json(json!({ ERROR_DETAIL_FIELD: detail }))).into_response()
        };
        match self {
            ApiError::Unauthorized(msg) => {
                let mut res = detail(StatusCode::UNAUTHORIZED, json!(msg));
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                res
            }
            ApiError::NotFound(msg) => detail(StatusCode::NOT_FOUND, json!(msg)),
            ApiError::Conflict(msg) => detail(StatusCode::CONFLICT, json!(msg)),
            ApiError::Validation(issues) => detail(StatusCode::UNPROCESSABLE_ENTITY, json!(issues)),
            ApiError::Page {
                status,
                title,
                message,
            } => (status, html::message_page(title, message)).into_response(),
            ApiError::Database(e) => {
                tracing::error!(error = %e, "database error");
                detail(StatusCode::INTERNAL_SERVER_ERROR, json!("Internal error"))
            }
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                detail(StatusCode::INTERNAL_SERVER_ERROR, json!("Internal error"))
            }
        }
    }
}

/// Why [`crate::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("signing key: {0}")]
    Key(String),
}
