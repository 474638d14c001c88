//! # countersign-gatekeeper
//!
//! The server a customer runs in front of its own bucket. Every GET, HEAD, PUT and
//! LIST carries a vendor-signed canonical request; the gatekeeper verifies it against
//! the customer's policy (signatures and thresholds, audience, time window, nonce, IP
//! rules, ACL), writes a hash-chained audit entry (or refuses: fail closed),
//! countersigns with a receipt, and only then streams to or from the bucket.
//!
//! [`http::app`] is the router; [`server::build_state`] assembles it from a
//! [`config::Config`]. The API is documented in `docs/API.md`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use countersign_gatekeeper::{config::Config, server};
//! let config = Config::embedded(std::path::Path::new("/tmp/gk"), Vec::new())?;
//! let (state, _created) = server::build_state(config).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server::serve(state, listener).await?;
//! # Ok(()) }
//! ```

pub mod acl;
pub mod audit;
pub mod checkpoint_bucket;
pub mod config;
pub mod encrypt_existing;
pub mod encryption;
pub mod error;
pub mod http;
pub mod kms;
pub mod ledger;
pub mod metrics;
pub mod ratelimit;
pub mod reconcile;
pub mod reload;
pub mod s3_uploads;
pub mod server;
pub mod storage;
pub mod transparency;
pub mod upload;
pub mod webhook;
pub mod witnesses;
