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
}

impl Error {
    /// The stable machine-readable code: the core's
    /// [`ErrorCode::as_str`](countersign_core::ErrorCode::as_str) for protocol errors,
    /// `invalid_key_file`, `insecure_key_file` or `io` otherwise.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Protocol(e) => e.code().as_str(),
            Self::InvalidKeyFile { .. } => "invalid_key_file",
            Self::InsecureKeyFile { .. } => "insecure_key_file",
            Self::Io { .. } => "io",
        }
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
