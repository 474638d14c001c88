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
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message}})
    }
}

impl From<countersign_core::Error> for ApiError {
    fn from(e: countersign_core::Error) -> Self {
        Self::new(e.code(), e.message())
    }
}

/// The HTTP status for each protocol error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode as C;
    match code {
        C::Malformed
        | C::UnsupportedVersion
        | C::NonCanonical
        | C::InvalidField
        | C::InvalidBucket
        | C::InvalidKeyPath
        | C::LifetimeTooLong
        | C::BodyMismatch
        | C::RequestMismatch
        | C::ReceiptMismatch
        | C::ManifestMismatch => StatusCode::BAD_REQUEST,
        C::Expired
        | C::NotYetValid
        | C::BadSignature
        | C::WeakKey
        | C::UnknownKey
        | C::WrongRole
        | C::KeyOutsideWindow
        | C::ThresholdNotMet => StatusCode::UNAUTHORIZED,
        C::WrongAudience | C::IpDenied | C::AccessDenied => StatusCode::FORBIDDEN,
        C::NotFound => StatusCode::NOT_FOUND,
        C::AlreadyExists | C::Replayed => StatusCode::CONFLICT,
        C::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        C::AuditUnavailable | C::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
