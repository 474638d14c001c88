//! The API's error: a status, a stable code and one sentence, sent as
//! `{"error": {"code": "...", "message": "..."}}` like the gatekeeper's errors.
//! Internal details are logged to stderr, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use countersign_core::ErrorCode;

/// Codes of the demo app beyond the protocol's [`ErrorCode`]s.
pub mod codes {
    /// No valid session cookie.
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    /// Username, password or TOTP code wrong (never says which).
    pub const BAD_CREDENTIALS: &str = "bad_credentials";
    /// Too many calls; retry after the `Retry-After` seconds.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// The config file is invalid (startup only).
    pub const INVALID_CONFIG: &str = "invalid_config";
    /// No such page or report.
    pub const NOT_FOUND: &str = "not_found";
}

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// One sentence for the client.
    pub message: String,
    /// Seconds to wait, for `rate_limited` and `overloaded` (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and sentence.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// `401 unauthenticated`.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHENTICATED,
            "log in first: the session cookie is missing, invalid or expired",
        )
    }

    /// `401 bad_credentials`.
    pub fn bad_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            codes::BAD_CREDENTIALS,
            "the username, password or one-time code is wrong",
        )
    }

    /// `429 rate_limited`.
    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                codes::RATE_LIMITED,
                format!("too many requests; retry in {retry_after} s"),
            )
        }
    }

    /// `503 overloaded`: every password check slot is busy and the queue is full or
    /// did not move in time; retry after `retry_after` seconds.
    pub fn overloaded(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Overloaded.as_str(),
                format!("too many logins are being checked right now; retry in {retry_after} s"),
            )
        }
    }

    /// `413 too_large`: the field `field` is longer than `max` bytes.
    pub fn field_too_large(field: &str, max: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge.as_str(),
            format!("`{field}` is longer than {max} bytes"),
        )
    }

    /// `invalid_config` (startup).
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INVALID_CONFIG,
            message,
        )
    }

    /// `500 internal`; `detail` goes to stderr only.
    pub fn internal(detail: &str) -> Self {
        eprintln!("countersign-demo: internal error: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal.as_str(),
            "internal error",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "code": self.code, "message": self.message } })
    }
}

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::AccessDenied => StatusCode::FORBIDDEN,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<countersign_core::Error> for ApiError {
    fn from(e: countersign_core::Error) -> Self {
        Self::new(status_of(e.code()), e.code().as_str(), e.message())
    }
}

impl From<countersign_vendor::Error> for ApiError {
    fn from(e: countersign_vendor::Error) -> Self {
        match e {
            countersign_vendor::Error::Protocol(p) => p.into(),
            other => Self::internal(&other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}
