//! # countersign-wasm
//!
//! The browser client of Countersign, published as an npm package. A report page
//! creates one [`GatekeeperClient`] and asks it for objects; the client
//!
//! 1. builds each canonical request with a fresh random nonce (the browser's
//!    `crypto.getRandomValues`),
//! 2. has the vendor sign it through a caller-provided async function (so the vendor
//!    sees request metadata, never object bytes),
//! 3. fetches straight from the gatekeeper, and
//! 4. verifies the gatekeeper's receipt, the object's manifest (gatekeeper and
//!    uploader signatures) and the body's SHA-256 **before** handing bytes back,
//!    reading no more bytes than the manifest signs; and for a LIST, the
//!    gatekeeper's signed listing of the page.
//!
//! With the cargo feature `admin` (the npm package's admin flavor,
//! `@countersign/client/admin`; report pages do not carry it), `AuditRequest` builds
//! customer-admin requests for the audit API that a page signs with a WebCrypto
//! Ed25519 key, and the audit console's `LogView` (checkpoint and inclusion proofs of
//! displayed entries) and `verifyLog` (the whole log) verify the log in the browser.
//!
//! All protocol logic lives in `countersign-core`; this crate converts between
//! JavaScript and Rust and does the HTTP calls. Errors are [`CountersignError`]s whose
//! `code` is the protocol's stable error code.
//!
//! ```js
//! import init, { GatekeeperClient } from "countersign";
//! await init();
//! const client = new GatekeeperClient({
//!   gatekeeperUrl: "https://gk.acme.example", gatekeeperId: "gk.acme",
//!   bucket: "patient-reports", subject: "user-42",
//!   keys: [{ keyId: "gatekeeper-1", role: "gatekeeper", publicKey: "…hex…" },
//!          { keyId: "vendor-2026-01", role: "vendor", publicKey: "…hex…" }],
//!   sign: async (requests) => (await fetch("/api/sign", …)).json(),
//! });
//! const object = await client.getObject("org-17/reports/visit-0001.pdf");
//! let after;
//! do {
//!   const page = await client.listObjects("org-17/reports/", after);
//!   for (const o of page.objects) console.log(o.key, o.size, o.contentType);
//!   after = page.nextAfter;
//! } while (after);
//! ```

#[cfg(feature = "admin")]
mod admin;
mod client;
#[cfg(feature = "admin")]
mod console;
mod error;
#[cfg(feature = "admin")]
mod export;
mod http;
mod listing;
mod logged;
mod options;
mod primitives;

#[cfg(feature = "admin")]
pub use admin::AuditRequest;
pub use client::{GatekeeperClient, PutResult, VerifiedObject};
#[cfg(feature = "admin")]
pub use console::{EntryCheck, LogView, verify_log};
pub use error::CountersignError;
#[cfg(feature = "admin")]
pub use export::ExportVerifier;
pub use listing::ListPage;
pub use logged::{LogProof, LogReceipt};
pub use primitives::{Ed25519PublicKey, sha256, verify_ed25519_strict};
