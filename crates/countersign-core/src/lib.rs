//! # countersign-core
//!
//! The Countersign protocol, version 1, as a pure library: canonical requests, strict
//! Ed25519 signatures over labelled messages, threshold policies over roles and key
//! ids, the gatekeeper's receipts, signed object manifests and LIST pages, and
//! audit-chain hashing, and the audit log as a transparency log: RFC 6962 Merkle
//! hashing and proofs ([`merkle`]), C2SP signed checkpoints and witness cosignatures
//! ([`note`]) and `tlog-tiles` ([`tiles`]).
//!
//! It does no I/O and reads no clock or global randomness: callers pass bytes, keys,
//! `now` (Unix seconds) and an RNG. It compiles to native code and to
//! `wasm32-unknown-unknown`, and never panics on input. The byte formats are specified
//! in `docs/PROTOCOL.md`.
//!
//! ```
//! use countersign_core::{
//!     AuthorizedKey, Bucket, GatekeeperId, KeyId, Keyring, ObjectKey, Operation, Policy,
//!     PublicKey, Request, RequestVerifier, Role, SignatureEntry, Subject,
//! };
//! use ed25519_dalek::SigningKey;
//!
//! # fn main() -> Result<(), countersign_core::Error> {
//! let now = 1_800_000_000;
//! let vendor_key = SigningKey::from_bytes(&[1; 32]); // load a real key in production
//! let vendor_id = KeyId::parse("vendor-2026")?;
//!
//! // The browser builds a request (the nonce comes from the caller's RNG) ...
//! let request = Request::new(
//!     GatekeeperId::parse("gk.acme")?,
//!     Bucket::parse("patient-reports")?,
//!     Operation::Get { key: ObjectKey::parse("org-1/report 7.pdf")?, range: None },
//!     Subject::parse("user-42")?,
//!     now,
//!     300,
//!     &mut rand_core::OsRng,
//! )?;
//! let canonical = request.encode();
//! // ... the vendor backend signs it ...
//! let sig = SignatureEntry::sign(&vendor_key, Role::vendor(), vendor_id.clone(), &canonical);
//!
//! // ... and the gatekeeper verifies it against the customer's policy.
//! let keyring = Keyring::new([AuthorizedKey {
//!     key_id: vendor_id,
//!     role: Role::vendor(),
//!     public_key: PublicKey::from_bytes(&vendor_key.verifying_key().to_bytes())?,
//!     not_before: None,
//!     not_after: None,
//! }])?;
//! let verifier = RequestVerifier::new(
//!     GatekeeperId::parse("gk.acme")?,
//!     Policy::new(keyring, [(Role::vendor(), 1)])?,
//!     900,
//!     30,
//! )?;
//! let verified = verifier.verify(&canonical, &[sig], now)?;
//! assert_eq!(verified.request().subject().as_str(), "user-42");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "at-rest")]
pub mod at_rest;
pub mod audit;
pub mod canonical;
pub mod download;
pub mod error;
pub mod export;
pub mod listing;
pub mod log_verify;
pub mod logged;
pub mod manifest;
pub mod merkle;
pub mod names;
pub mod note;
pub mod policy;
pub mod receipt;
pub mod signature;
pub mod text;
pub mod tiles;
pub mod transport;
pub mod witness;

pub use canonical::{BodyDigest, Method, Operation, ParsedRequest, Request};
pub use download::{Download, VerifiedDownload, verify_download};
pub use error::{Error, ErrorCode, Result};
pub use listing::{ListedObject, Listing, VerifiedListing};
pub use manifest::{Manifest, VerifiedManifest};
pub use names::{
    Bucket, ByteRange, ContentType, GatekeeperId, KeyId, ListPrefix, Nonce, ObjectKey, Role,
    Subject,
};
pub use policy::{Approvals, AuthorizedKey, Keyring, Policy, RequestVerifier, VerifiedRequest};
pub use receipt::{Decision, Receipt, VerifiedReceipt};
pub use signature::{PublicKey, SignatureEntry};

/// Re-exported so callers use the same Ed25519 types as the core.
pub use ed25519_dalek;
