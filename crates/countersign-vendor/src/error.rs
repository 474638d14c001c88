//! The SDK's one error type. Protocol failures keep the core's stable
//! [`ErrorCode`](countersign_core::ErrorCode); key-handling failures have codes of their
//! own, listed on [`Error::code`].

use std::path::PathBuf;

/// Everything that can go wrong in the vendor SDK.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The protocol refused something: a malformed or non-canonical request, a request
    /// outside the signing limits, no key valid for the request's lifetime, a receipt
    /// that does not verify.
    #[error(transparent)]
    Protocol(#[from] countersign_core::Error),
    /// A key file (or the key environment variable) is not a valid key document.
    #[error("{source_name}: {message}")]
    InvalidKeyFile {
        /// The file path, or `$VARIABLE` for the environment.
        source_name: String,
        /// What is wrong with it.
        message: String,
    },
    /// A secret key file can be read by group or others.
    #[error(
        "{}: the secret key file is readable by group or others (mode {mode:03o}); run `chmod 600` on it",
        path.display()
    )]
    InsecureKeyFile {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The gatekeeper refused the request with an error answer of the protocol.
    #[error("the gatekeeper refused ({status}): {message}{receipt}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The gatekeeper's stable error code (from its JSON error body).
        code: countersign_core::ErrorCode,
        /// The gatekeeper's sentence.
        message: String,
        /// What became of the signed denial receipt that came with the answer.
        receipt: DenialReceipt,
    },
    /// The gatekeeper could not be reached, or the connection failed before an answer
    /// arrived.
    #[error("the gatekeeper could not be reached: {message}")]
    Unreachable {
        /// The HTTP stack's error with its causes.
        message: String,
    },
    /// The gatekeeper's answer is not the protocol (an error status without a JSON
    /// error body, an answer too long).
    #[error("{message}")]
    BadResponse {
        /// What is wrong with it.
        message: String,
    },
}

/// The receipt check on a refusal: a gatekeeper signs its denials too, so a client can
/// tell a refusal from the gatekeeper it trusts from one made up on the way.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenialReceipt {
    /// The receipt verifies under the gatekeeper's keys, for the request sent, and
    /// records a denial with this code.
    Verified(countersign_core::ErrorCode),
    /// The answer carried no receipt (the gatekeeper sends none for `rate_limited`).
    Missing,
    /// The receipt does not verify; the code says why.
    Invalid(countersign_core::ErrorCode),
    /// The receipt verifies but records an allow: the refusal contradicts it.
    SaysAllow,
}

impl std::fmt::Display for DenialReceipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Verified(_) => f.write_str("; its signed denial receipt verifies"),
            Self::Missing => f.write_str("; it sent no receipt"),
            Self::Invalid(code) => write!(f, "; its denial receipt does not verify ({code})"),
            Self::SaysAllow => f.write_str("; but its receipt says allow"),
        }
    }
}

impl Error {
    /// The stable machine-readable code: the core's
    /// [`ErrorCode::as_str`](countersign_core::ErrorCode::as_str) for protocol errors,
    /// `invalid_key_file`, `insecure_key_file` or `io` otherwise; for the
    /// [`Client`](crate::client::Client): the gatekeeper's code of a refusal,
    /// `unreachable` or `bad_response`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Protocol(e) => e.code().as_str(),
            Self::InvalidKeyFile { .. } => "invalid_key_file",
            Self::InsecureKeyFile { .. } => "insecure_key_file",
            Self::Io { .. } => "io",
            Self::Refused { code, .. } => code.as_str(),
            Self::Unreachable { .. } => "unreachable",
            Self::BadResponse { .. } => "bad_response",
        }
    }

    /// An [`Error::Unreachable`] with the HTTP error and its chain of causes.
    #[cfg(feature = "client")]
    pub fn unreachable(e: &reqwest::Error) -> Self {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        Self::Unreachable { message }
    }

    pub(crate) fn key_file(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidKeyFile {
            source_name: source_name.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
