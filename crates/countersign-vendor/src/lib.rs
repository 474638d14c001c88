//! # countersign-vendor
//!
//! The vendor's half of the Countersign multisig, for vendor backends written in Rust.
//! Your backend decides that a user is logged in and entitled to an object; a
//! [`Signer`] then signs the browser-built canonical request (metadata only: the
//! object bytes go straight from the browser to the customer's gatekeeper, never
//! through you). The gatekeeper adds its countersignature and returns a receipt that
//! [`transport::verify_receipt`] checks (and, for a LIST, a signed listing that
//! [`transport::verify_listing`] checks).
//!
//! - [`keys`]: generate, save (mode `0600`) and load signing keys; key files readable
//!   by group or others are refused; keys can also come from an environment variable.
//! - [`Signer`]: several keys with key ids and validity windows for rotation; signs
//!   one request ([`Signer::sign`]) or a batch ([`Signer::sign_batch`]) after checking
//!   audience, lifetime and time ([`SigningLimits`]).
//! - [`transport`]: header names and URL paths (the core's), receipt, manifest and
//!   listing verification, and the one check before trusting downloaded bytes
//!   ([`transport::verify_download_headers`]).
//! - [`client`] (feature `client`, on with `cli`): [`Client`] puts, gets, heads and
//!   lists objects through a gatekeeper and verifies every answer before returning it.
//!
//! ## The `countersign` command-line tool
//!
//! Feature `cli` (on by default; backends that embed only the SDK use
//! `default-features = false`). Run `countersign <command> --help` for every flag.
//!
//! | command | what |
//! | --- | --- |
//! | `keygen` | writes a secret key file (mode `0600`, never overwritten) and `<file>.pub` |
//! | `sign` | signs a given canonical request, or one built from `--method`, `--bucket`, … |
//! | `verify` | verifies a request's signatures against public key files |
//! | `inspect` | pretty-prints a request, receipt, manifest or listing and says whether it verifies |
//! | `put` | uploads a file through a gatekeeper (progress bar on a terminal), verifies receipt and manifest |
//! | `get` | downloads through a gatekeeper into a temporary file, verifies receipt, manifest and bytes, then renames |
//! | `cat` | the same, to stdout (spooled through an unnamed temporary file until verified) |
//! | `head` | the object's verified manifest: size, SHA-256, type, uploader (`--json`) |
//! | `ls` | the objects under `--prefix`, from the gatekeeper's verified listing pages (`--json`) |
//!
//! `put`, `get`, `cat`, `head` and `ls` take the gatekeeper URL and key, signing keys,
//! audience, subject and bucket from flags, else from a profile: `--profile NAME`
//! (or `$COUNTERSIGN_PROFILE`; default `default`) in `--profiles FILE` (or
//! `$COUNTERSIGN_PROFILES`; default `$XDG_CONFIG_HOME/countersign/profiles.toml`, else
//! `~/.config/countersign/profiles.toml`), a TOML table per profile with the members
//! `gatekeeper`, `gatekeeper_keys`, `signing_keys`, `vendor_keys`, `audience`,
//! `subject`, `bucket`, `lifetime` (relative paths resolved next to the file).
//!
//! Secret keys come from `--signing-key FILE` (repeatable, for rotation) or from the
//! environment variable `COUNTERSIGN_VENDOR_KEYS` (a secret key document or an array).
//! An error is one line on stderr, `countersign: error[<code>]: <sentence>`, with the
//! protocol's stable code or one of `invalid_key_file`, `insecure_key_file`,
//! `invalid_profile`, `io`, `usage`, `unreachable`, `bad_response`. Exit codes:
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success (`verify`/`inspect`: the document verifies, or no check was asked for) |
//! | 1 | refused: malformed, does not verify, outside the signing limits, or refused by the gatekeeper (its code is printed) |
//! | 2 | usage: bad command-line arguments |
//! | 3 | local input: a file cannot be read or written; a key file is invalid or readable by others; the profile file is invalid |
//! | 4 | the gatekeeper is unreachable, or its answer is not the protocol |
//!
//! ```
//! use countersign_vendor::{Signer, SigningLimits, VendorKey};
//! use countersign_core::{
//!     Bucket, GatekeeperId, KeyId, ObjectKey, Operation, Request, RequestVerifier, Role,
//!     Subject, Keyring, Policy,
//! };
//! use rand_core::OsRng;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let now = 1_800_000_000;
//! // Once: generate a key (in production `countersign keygen` writes it to a file
//! // and `Signer::from_key_files` or `Signer::from_env` loads it).
//! let key = VendorKey::generate(KeyId::parse("vendor-2026")?, Role::vendor(), None, None, &mut OsRng)?;
//! let public = key.authorized_key(); // goes into the customer's gatekeeper policy
//!
//! // At startup: one signer in the server state.
//! let signer = Signer::new([key])?.with_limits(SigningLimits {
//!     audience: Some(GatekeeperId::parse("gk.acme")?),
//!     max_lifetime_secs: 300,
//!     clock_skew_secs: 30,
//! })?;
//!
//! // Per request: the browser built this (with its own random nonce); your code has
//! // checked that user-42 is logged in and may read org-1/.
//! let request = Request::new(
//!     GatekeeperId::parse("gk.acme")?,
//!     Bucket::parse("patient-reports")?,
//!     Operation::Get { key: ObjectKey::parse("org-1/report.pdf")?, range: None },
//!     Subject::parse("user-42")?,
//!     now,
//!     120,
//!     &mut OsRng,
//! )?;
//! let signature = signer.sign(&request.encode(), now)?;
//!
//! // What the gatekeeper does with it (it also needs its own countersignature policy).
//! let verifier = RequestVerifier::new(
//!     GatekeeperId::parse("gk.acme")?,
//!     Policy::new(Keyring::new([public])?, [(Role::vendor(), 1)])?,
//!     300,
//!     30,
//! )?;
//! assert!(verifier.verify(&request.encode(), &[signature], now).is_ok());
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "client")]
pub mod client;
pub mod error;
pub mod keys;
pub mod signer;
pub mod transport;

#[cfg(feature = "client")]
pub use client::Client;
pub use error::{DenialReceipt, Error, Result};
pub use keys::VendorKey;
pub use signer::{MAX_BATCH, Signer, SigningLimits};

/// Re-exported so callers use the same protocol types as this crate.
pub use countersign_core;

/// The current Unix time in seconds (0 if the clock is before 1970). The core never
/// reads the clock; this is where a native caller gets `now` from.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
