//! The canonical request (`countersign/v1/request`): the one byte string that every
//! party signs. See `docs/PROTOCOL.md`, "Canonical request".

use crate::error::{Error, ErrorCode, Result};
use crate::names::{
    Bucket, ByteRange, ContentType, GatekeeperId, ListPrefix, Nonce, ObjectKey, Subject,
};
use crate::text::{Reader, Writer, hex, parse_decimal, parse_hex, preview};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use std::fmt;

/// Largest canonical request in bytes.
pub const MAX_REQUEST_BYTES: usize = 4096;

/// Largest clock skew a verifier may allow, and the tolerance used when checking that
/// a receipt or manifest was made while its request was valid.
pub const MAX_CLOCK_SKEW_SECS: u64 = 600;

/// Longest lifetime (`expires-at - issued-at`, seconds) the protocol allows; policies
/// usually allow much less.
pub const MAX_LIFETIME_SECS: u64 = 86_400;

/// The four operations; there is no delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// Read an object (optionally a byte range).
    Get,
    /// Read an object's manifest without its body.
    Head,
    /// Create an object; never overwrites.
    Put,
    /// List keys under a prefix.
    List,
}

impl Method {
    /// All methods.
    pub const ALL: [Method; 4] = [Self::Get, Self::Head, Self::Put, Self::List];

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Put => "PUT",
            Self::List => "LIST",
        }
    }

    /// Parses the canonical spelling (uppercase only).
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidField,
                    format!("method `{}` is not one of GET, HEAD, PUT, LIST", preview(s)),
                )
            })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SHA-256 and length of a PUT body, as signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BodyDigest {
    /// SHA-256 of the body.
    pub sha256: [u8; 32],
    /// Length of the body in bytes (at most 2^53-1).
    pub length: u64,
}

impl BodyDigest {
    /// Hashes a complete body.
    pub fn of(body: &[u8]) -> Self {
        Self {
            sha256: Sha256::digest(body).into(),
            length: body.len() as u64,
        }
    }
}

/// What the request does, with exactly the fields that operation has.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Read `key`, or part of it.
    Get {
        /// The object.
        key: ObjectKey,
        /// Optional inclusive byte range.
        range: Option<ByteRange>,
    },
    /// Read `key`'s manifest.
    Head {
        /// The object.
        key: ObjectKey,
    },
    /// Create `key` with a body of the given digest and type.
    Put {
        /// The object.
        key: ObjectKey,
        /// Media type stored with the object.
        content_type: ContentType,
        /// Hash and length the body must have.
        body: BodyDigest,
    },
    /// List keys starting with `prefix`.
    List {
        /// The prefix (may be empty).
        prefix: ListPrefix,
    },
}

impl Operation {
    /// The method of this operation.
    pub fn method(&self) -> Method {
        match self {
            Self::Get { .. } => Method::Get,
            Self::Head { .. } => Method::Head,
            Self::Put { .. } => Method::Put,
            Self::List { .. } => Method::List,
        }
    }

    /// The object key, or the list prefix, as text.
    pub fn key_text(&self) -> &str {
        match self {
            Self::Get { key, .. } | Self::Head { key } | Self::Put { key, .. } => key.as_str(),
            Self::List { prefix } => prefix.as_str(),
        }
    }

    /// The object key, if this operation names one object.
    pub fn object_key(&self) -> Option<&ObjectKey> {
        match self {
            Self::Get { key, .. } | Self::Head { key } | Self::Put { key, .. } => Some(key),
            Self::List { .. } => None,
        }
    }
}

/// A request, parsed and well-formed but **not** verified. Only
/// [`crate::policy::RequestVerifier::verify`] turns it into a
/// [`crate::policy::VerifiedRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    audience: GatekeeperId,
    bucket: Bucket,
    operation: Operation,
    subject: Subject,
    issued_at: u64,
    expires_at: u64,
    nonce: Nonce,
}

impl Request {
    /// Builds a request with a fresh random nonce from the caller's RNG. The request
    /// is valid from `issued_at` until (excluding) `issued_at + lifetime_secs`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        audience: GatekeeperId,
        bucket: Bucket,
        operation: Operation,
        subject: Subject,
        issued_at: u64,
        lifetime_secs: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self> {
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let expires_at = issued_at.saturating_add(lifetime_secs);
        Self::from_parts(
            audience,
            bucket,
            operation,
            subject,
            issued_at,
            expires_at,
            Nonce(nonce),
        )
    }

    /// Builds a request from every field, checking the cross-field rules
    /// (`issued-at < expires-at`, lifetime at most [`MAX_LIFETIME_SECS`]).
    pub fn from_parts(
        audience: GatekeeperId,
        bucket: Bucket,
        operation: Operation,
        subject: Subject,
        issued_at: u64,
        expires_at: u64,
        nonce: Nonce,
    ) -> Result<Self> {
        use crate::text::MAX_INTEGER;
        if issued_at > MAX_INTEGER || expires_at > MAX_INTEGER {
            return Err(Error::new(
                ErrorCode::InvalidField,
                "issued-at and expires-at must be at most 2^53-1",
            ));
        }
        if expires_at <= issued_at {
            return Err(Error::new(
                ErrorCode::InvalidField,
                format!("expires-at ({expires_at}) must be after issued-at ({issued_at})"),
            ));
        }
        if expires_at - issued_at > MAX_LIFETIME_SECS {
            return Err(Error::new(
                ErrorCode::LifetimeTooLong,
                format!(
                    "the request lives {} s; the protocol allows at most {MAX_LIFETIME_SECS} s",
                    expires_at - issued_at
                ),
            ));
        }
        if let Operation::Put { body, .. } = &operation
            && body.length > MAX_INTEGER
        {
            return Err(Error::new(
                ErrorCode::InvalidField,
                "body-length must be at most 2^53-1",
            ));
        }
        Ok(Self {
            audience,
            bucket,
            operation,
            subject,
            issued_at,
            expires_at,
            nonce,
        })
    }

    /// The exact canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (range, content_type, sha, len) = match &self.operation {
            Operation::Get { range, .. } => (
                range.map(|r| format!("{}-{}", r.first(), r.last())),
                None,
                None,
                None,
            ),
            Operation::Put {
                content_type, body, ..
            } => (
                None,
                Some(content_type.as_str()),
                Some(hex(&body.sha256)),
                Some(body.length.to_string()),
            ),
            Operation::Head { .. } | Operation::List { .. } => (None, None, None, None),
        };
        let mut w = Writer::new("request");
        w.field("audience", self.audience.as_str())
            .field("method", self.operation.method().as_str())
            .field("bucket", self.bucket.as_str())
            .field("key", self.operation.key_text())
            .field("range", range.as_deref().unwrap_or(""))
            .field("content-type", content_type.unwrap_or(""))
            .field("body-sha256", sha.as_deref().unwrap_or(""))
            .field("body-length", len.as_deref().unwrap_or(""))
            .field("subject", self.subject.as_str())
            .field("issued-at", &self.issued_at.to_string())
            .field("expires-at", &self.expires_at.to_string())
            .field("nonce", &hex(&self.nonce.0));
        w.finish()
    }

    /// Parses canonical bytes; anything but the exact canonical form is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "request", MAX_REQUEST_BYTES)?;
        let audience = GatekeeperId::parse(r.field("audience")?)?;
        let method = Method::parse(r.field("method")?)?;
        let bucket = Bucket::parse(r.field("bucket")?)?;
        let key = r.field("key")?;
        let range = r.field("range")?;
        let content_type = r.field("content-type")?;
        let sha = r.field("body-sha256")?;
        let len = r.field("body-length")?;
        let subject = Subject::parse(r.field("subject")?)?;
        let issued_at = parse_decimal(r.field("issued-at")?, "issued-at")?;
        let expires_at = parse_decimal(r.field("expires-at")?, "expires-at")?;
        let nonce = Nonce(parse_hex::<16>(r.field("nonce")?, "nonce")?);
        r.end()?;

        let only_for = |name: &str, value: &str, allowed: bool| {
            if value.is_empty() || allowed {
                Ok(())
            } else {
                Err(Error::new(
                    ErrorCode::InvalidField,
                    format!("`{name}` must be empty for a {method} request"),
                ))
            }
        };
        only_for("range", range, method == Method::Get)?;
        for (name, value) in [
            ("content-type", content_type),
            ("body-sha256", sha),
            ("body-length", len),
        ] {
            only_for(name, value, method == Method::Put)?;
        }
        let operation = match method {
            Method::Get => Operation::Get {
                key: ObjectKey::parse(key)?,
                range: if range.is_empty() {
                    None
                } else {
                    Some(parse_range(range)?)
                },
            },
            Method::Head => Operation::Head {
                key: ObjectKey::parse(key)?,
            },
            Method::Put => Operation::Put {
                key: ObjectKey::parse(key)?,
                content_type: ContentType::parse(content_type)?,
                body: BodyDigest {
                    sha256: parse_hex::<32>(sha, "body-sha256")?,
                    length: parse_decimal(len, "body-length")?,
                },
            },
            Method::List => Operation::List {
                prefix: ListPrefix::parse(key)?,
            },
        };
        Self::from_parts(
            audience, bucket, operation, subject, issued_at, expires_at, nonce,
        )
    }

    /// Whether `t` lies in `[issued-at - 600, expires-at + 600)`: the window in which a
    /// gatekeeper with the largest allowed clock skew could have accepted the request.
    pub fn in_window(&self, t: u64) -> bool {
        t.saturating_add(MAX_CLOCK_SKEW_SECS) >= self.issued_at
            && t < self.expires_at.saturating_add(MAX_CLOCK_SKEW_SECS)
    }

    /// SHA-256 of the canonical bytes: the request's identity in receipts, manifests
    /// and the audit log.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }

    /// The gatekeeper this request is addressed to.
    pub fn audience(&self) -> &GatekeeperId {
        &self.audience
    }
    /// The bucket.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }
    /// What the request does.
    pub fn operation(&self) -> &Operation {
        &self.operation
    }
    /// The method.
    pub fn method(&self) -> Method {
        self.operation.method()
    }
    /// The vendor's user id.
    pub fn subject(&self) -> &Subject {
        &self.subject
    }
    /// Unix seconds from which the request is valid.
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }
    /// Unix seconds from which the request is no longer valid.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
    /// The random nonce.
    pub fn nonce(&self) -> Nonce {
        self.nonce
    }
}

fn parse_range(s: &str) -> Result<ByteRange> {
    let (first, last) = s.split_once('-').ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidField,
            format!("range `{}` must be `first-last`", preview(s)),
        )
    })?;
    ByteRange::new(
        parse_decimal(first, "range")?,
        parse_decimal(last, "range")?,
    )
}

/// A request together with the exact canonical bytes it was parsed from. A server
/// reads a request's fields (to bind its URL, to log them) before it verifies the
/// signatures; [`crate::RequestVerifier::verify_parsed`] then takes this value and
/// neither parses nor copies the bytes again. Only [`ParsedRequest::parse`] makes
/// one, so the fields are always those of the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRequest {
    pub(crate) request: Request,
    pub(crate) bytes: Vec<u8>,
}

impl ParsedRequest {
    /// Parses canonical bytes ([`Request::parse`]) and keeps them.
    pub fn parse(bytes: Vec<u8>) -> Result<Self> {
        let request = Request::parse(&bytes)?;
        Ok(Self { request, bytes })
    }

    /// The parsed request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The canonical bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}
