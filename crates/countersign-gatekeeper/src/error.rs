//! The HTTP error type: a stable protocol [`ErrorCode`] plus a sentence, rendered as
//! `{"error": {"code": "...", "message": "..."}}` with the status of the code.
//! Internal details never reach the client; they go to the audit log and stderr.

use axum::http::StatusCode;
use countersign_core::ErrorCode;

/// An error answered to a client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The stable code.
    pub code: ErrorCode,
    /// The sentence shown to the client.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The audit log could not be written: fail closed.
    pub fn audit_unavailable() -> Self {
        Self::new(
            ErrorCode::AuditUnavailable,
            "the audit log cannot be written right now, so the request was not carried out",
        )
    }

    /// The object store failed.
    pub fn storage_unavailable() -> Self {
        Self::new(
            ErrorCode::StorageUnavailable,
            "the object store cannot be reached right now",
        )
    }

    /// The HTTP status of this error's code.
    pub fn status(&self) -> StatusCode {
        status_of(self.code)
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        countersign_core::transport::error_body(self.code, &self.message)
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        let mut r = (self.status(), self.body()).into_response();
        r.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        r
    }
}

impl From<countersign_core::Error> for ApiError {
    fn from(e: countersign_core::Error) -> Self {
        Self::new(e.code(), e.message())
    }
}

/// The HTTP status for each protocol error code (defined once, in the core).
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(countersign_core::transport::http_status(code))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
