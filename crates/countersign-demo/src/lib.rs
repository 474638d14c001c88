//! # countersign-demo
//!
//! A small but real vendor backend built on [`countersign_vendor`]: organisations and
//! users, passwords hashed with argon2, a TOTP second factor (RFC 6238; a code works
//! once), signed `HttpOnly` + `SameSite=Strict` session cookies, and a signing
//! endpoint that signs **only request metadata** and only inside the logged-in user's
//! organisation's grants. It serves the report page. It never receives or proxies
//! object bytes, and it counts every body byte it receives or sends
//! (`GET /api/stats`), so tests can prove that.
//!
//! The store is in memory, seeded from one JSON file checked as a whole at start
//! ([`config`]; example: `crates/countersign-demo/demo-config.json`). Sessions and
//! used TOTP steps live in memory too, so a restart logs everyone out.
//!
//! ```
//! use countersign_demo::{AppState, app, config::Directory};
//! use countersign_vendor::{Signer, VendorKey};
//! use countersign_core::{KeyId, Role};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let directory = Directory::from_json(include_str!("../demo-config.json"))?;
//! let key = VendorKey::generate(KeyId::parse("vendor-1")?, Role::vendor(), None, None, &mut rand_core::OsRng)?;
//! let state = AppState::new(directory, Signer::new([key])?)?;
//! let router = app(std::sync::Arc::new(state));
//! // serve with axum::serve(listener,
//! //     router.into_make_service_with_connect_info::<std::net::SocketAddr>())
//! # drop(router); Ok(()) }
//! ```
//!
//! ## Run it
//!
//! One command builds everything, starts a gatekeeper and this app on free
//! 127.0.0.1 ports, seeds a sample helpdesk report through the gatekeeper and prints
//! the URL, the users and how to get their TOTP codes (Ctrl-C stops it):
//!
//! ```text
//! scripts/demo.sh          # or: npm run demo
//! ```
//!
//! By hand, the same steps:
//!
//! ```text
//! countersign keygen --key-id vendor-demo --out vendor-demo.key
//! countersign-demo gatekeeper-config --config crates/countersign-demo/demo-config.json \
//!     --vendor-key vendor-demo.key.pub --data-dir gk-data --origin http://127.0.0.1:8080 > gatekeeper.toml
//! countersign-gatekeeper serve --config gatekeeper.toml --listen 127.0.0.1:8443 &
//! curl -s http://127.0.0.1:8443/v1/keys > gatekeeper-keys.json
//! scripts/build-npm.sh
//! countersign-demo serve --config crates/countersign-demo/demo-config.json \
//!     --listen 127.0.0.1:8080 --signing-key vendor-demo.key \
//!     --gatekeeper-key gatekeeper-keys.json --www www --pkg pkg
//! ```
//!
//! Then open `http://127.0.0.1:8080/` and log in as `alice` / `alice-demo-password`
//! (Acme Clinic) or `bob` / `bob-demo-password` (Bravo Dental, read-only), with the
//! code printed by `countersign-demo totp-code --secret <the user's totp_secret>`.
//! The page (`www/`, importing the npm package from `/pkg/countersign.js`) lists the
//! organisation's reports from the gatekeeper's index, fetches a report's objects
//! with one signing call and shows each one only after it verified (uploader, hash,
//! signer key ids), or the error code when it did not; its form uploads a new report
//! with a screenshot. Every object byte goes between the browser and the gatekeeper.
//! The generated gatekeeper configuration gives the customer its own ACL mirroring
//! the grants, so even a request the vendor should not have signed is refused.
//! `tests/e2e/run.mjs` checks all of this in headless Chromium.
//!
//! ## HTTP API
//!
//! Errors are `{"error": {"code": "...", "message": "..."}}` with the protocol's codes
//! (`access_denied`, `wrong_audience`, `lifetime_too_long`, `expired`,
//! `invalid_field`, `malformed`, `too_large`, …) plus [`error::codes`]
//! (`unauthenticated`, `bad_credentials`, `rate_limited`, `not_found`), and
//! `overloaded` (503) when too many logins are being checked. Every `POST` takes
//! `Content-Type: application/json`.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /`, `GET /{file}`, `GET /pkg/{file}` | the report page from `--www`, the npm package from `--pkg` ([`assets`]; `application/wasm`, a Content-Security-Policy allowing `'wasm-unsafe-eval'` and `connect-src` to the gatekeeper) |
//! | `GET /api/config` | `{"gatekeeper", "gatekeeper_url", "max_lifetime_secs", "vendor_public_keys", "gatekeeper_public_keys"}` (public key documents; the gatekeeper's are pinned with `--gatekeeper-key`) |
//! | `POST /api/login` | `{"username", "password", "totp"}` → sets the session cookie; `{"username", "subject", "organisation", "organisation_name", "grants": [{"bucket", "prefix", "methods"}]}`; guarded as below |
//! | `POST /api/logout` | ends the session |
//! | `GET /api/me` | the logged-in user, as at login |
//! | `GET /api/reports` | `{"reports": [{"id", "organisation", "title", "bucket", "objects": [key, …]}]}` |
//! | `POST /api/sign` | signs a batch of requests, below |
//! | `GET /api/stats` | `{"requests", "request_body_bytes", "response_body_bytes"}` |
//!
//! ### `POST /api/login`
//!
//! A login costs an argon2 verification (19 MiB and tens of milliseconds with the
//! default parameters), so everything cheap is checked first, and nothing an
//! attacker sends is kept or hashed before its size is known:
//!
//! 1. the body is at most [`routes::MAX_LOGIN_BODY_BYTES`] (8 KiB), the username at
//!    most [`routes::MAX_USERNAME_BYTES`], the password [`routes::MAX_PASSWORD_BYTES`],
//!    the TOTP field [`routes::MAX_TOTP_BYTES`] bytes: else `413 too_large`, naming
//!    the field;
//! 2. the failed-login backoff, per username and per client address
//!    ([`backoff`]: exponential, 5 free failures each; at most 15 s for a username,
//!    so an attacker cannot lock a user out for longer, and none from an address the
//!    user logged in from before; up to 15 min for an address): else
//!    `429 rate_limited` with `Retry-After`;
//! 3. a password-check slot ([`password`]: a few argon2 runs at once, a short bounded
//!    queue): else `503 overloaded` with `Retry-After`;
//! 4. argon2 and the TOTP code: else `401 bad_credentials`, never saying which.
//!
//! The client address is the TCP peer's (`countersign-demo serve` records it);
//! forwarding headers are not trusted. The tables are swept of forgotten entries
//! and capped in size ([`backoff`]).
//!
//! ### `POST /api/sign`
//!
//! The browser builds each request itself, with a fresh random nonce, and asks the
//! vendor to sign its metadata. The browser client sends the canonical requests
//! themselves, base64url (`{"canonical": ["<base64url>", ...]}`, parsed strictly);
//! a page may instead send fields, whose names and values are those of the canonical
//! request (`docs/PROTOCOL.md`); fields a method does not have are left out. A call
//! carries one form or the other, and both get exactly the same checks:
//!
//! ```json
//! {"requests": [
//!   {"audience": "gk.demo", "method": "GET", "bucket": "acme-reports",
//!    "key": "org-acme/2026-11/summary.txt", "range": "0-1023",
//!    "subject": "user-alice", "issued_at": 1800000000, "expires_at": 1800000120,
//!    "nonce": "00112233445566778899aabbccddeeff"},
//!   {"audience": "gk.demo", "method": "PUT", "bucket": "acme-reports",
//!    "key": "org-acme/uploads/scan.png", "content_type": "image/png",
//!    "body_sha256": "<64 lowercase hex>", "body_length": 52311,
//!    "subject": "user-alice", "issued_at": 1800000000, "expires_at": 1800000120,
//!    "nonce": "ffeeddccbbaa99887766554433221100"},
//!   {"audience": "gk.demo", "method": "LIST", "bucket": "acme-reports", "key": "org-acme/",
//!    "subject": "user-alice", "issued_at": 1800000000, "expires_at": 1800000120,
//!    "nonce": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"}
//! ]}
//! ```
//!
//! `key` is the object key, or the prefix for `LIST`. A request is signed only if its
//! `subject` is the logged-in user's, its `audience` is the configured gatekeeper, it
//! lives at most `max_lifetime_secs`, it has not expired, and the user's
//! organisation has a grant for the method on that bucket and key prefix. The answer
//! has one result per request, in order:
//!
//! ```json
//! {"results": [
//!   {"request": "<Countersign-Request header value>", "signature": "<Countersign-Signature header value>"},
//!   {"error": {"code": "access_denied", "message": "organisation `org-acme` may not PUT ..."}},
//!   ...
//! ]}
//! ```
//!
//! A call carries 1 to [`routes::MAX_SIGN_BATCH`] requests and costs one token of the
//! user's rate limit (`sign_burst`, `sign_per_minute` in the config); over the limit
//! the whole call is `429 rate_limited` with `Retry-After`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod assets;
pub mod backoff;
pub mod config;
pub mod error;
pub mod password;
pub mod ratelimit;
pub mod routes;
pub mod session;
pub mod totp;
pub mod traffic;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use config::Directory;
use countersign_vendor::{Signer, SigningLimits};
use error::ApiError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Largest request body the app reads.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Where the app gets `now` (Unix seconds); tests pass a fake clock.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Everything the handlers share.
pub struct AppState {
    /// Organisations, users, reports.
    pub directory: Directory,
    /// The vendor's signer (audience and lifetime limits set from the directory).
    pub signer: Signer,
    /// Sessions and the cookie key.
    pub sessions: session::Sessions,
    /// Per-user limit on `POST /api/sign`.
    pub sign_limiter: ratelimit::RateLimiter,
    /// Failed-login backoff per username and per client address.
    pub login_backoff: backoff::LoginBackoff,
    /// Argon2 verifications, a bounded number at a time.
    pub passwords: password::PasswordChecker,
    /// Last accepted TOTP step per username (a code works once).
    pub totp_used: Mutex<HashMap<String, u64>>,
    /// Body byte counters.
    pub traffic: Arc<traffic::Traffic>,
    /// A real hash to verify against for unknown usernames (same cost as a real one).
    pub timing_hash: String,
    /// The gatekeeper's public keys, pinned in the page's configuration.
    pub gatekeeper_keys: Vec<countersign_core::AuthorizedKey>,
    /// The page's files; without them the app serves only the API.
    pub assets: Option<assets::Assets>,
    clock: Clock,
}

impl AppState {
    /// The state for `directory`, signing with `signer` limited to the directory's
    /// gatekeeper and maximum lifetime. Uses the system clock.
    pub fn new(directory: Directory, signer: Signer) -> Result<Self, ApiError> {
        let signer = signer.with_limits(SigningLimits {
            audience: Some(directory.gatekeeper.clone()),
            max_lifetime_secs: directory.max_lifetime_secs,
            clock_skew_secs: 30,
        })?;
        let timing_hash = directory
            .users
            .values()
            .next()
            .map(|u| u.password_hash.clone())
            .unwrap_or_default();
        let clock: Clock = Arc::new(countersign_vendor::unix_now);
        Ok(Self {
            sessions: session::Sessions::new(directory.session_ttl_secs, directory.cookie_secure),
            sign_limiter: ratelimit::RateLimiter::new(
                directory.sign_burst,
                directory.sign_per_minute,
                Arc::clone(&clock),
            ),
            login_backoff: backoff::LoginBackoff::default(),
            passwords: password::PasswordChecker::new(password::PasswordLimits::default()),
            totp_used: Mutex::new(HashMap::new()),
            traffic: Arc::default(),
            timing_hash,
            gatekeeper_keys: Vec::new(),
            assets: None,
            clock,
            directory,
            signer,
        })
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.sign_limiter = ratelimit::RateLimiter::new(
            self.directory.sign_burst,
            self.directory.sign_per_minute,
            Arc::clone(&clock),
        );
        self.clock = clock;
        self
    }

    /// Replaces the failed-login backoff policy.
    pub fn with_login_backoff(mut self, policy: backoff::BackoffPolicy) -> Self {
        self.login_backoff = backoff::LoginBackoff::new(policy);
        self
    }

    /// Replaces how many password checks run and wait at once.
    pub fn with_password_limits(mut self, limits: password::PasswordLimits) -> Self {
        self.passwords = password::PasswordChecker::new(limits);
        self
    }

    /// Pins the gatekeeper's public keys for the page (`GET /api/config`).
    pub fn with_gatekeeper_keys(mut self, keys: Vec<countersign_core::AuthorizedKey>) -> Self {
        self.gatekeeper_keys = keys;
        self
    }

    /// Serves the report page from `assets`.
    pub fn with_assets(mut self, assets: assets::Assets) -> Self {
        self.assets = Some(assets);
        self
    }

    /// Unix seconds now.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }
}

/// The router: every route of the crate docs, body limits, and the byte counter
/// around everything. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so the login backoff sees
/// each client's address.
pub fn app(state: Arc<AppState>) -> Router {
    let traffic = Arc::clone(&state.traffic);
    Router::new()
        .route("/", get(assets::index))
        .route("/api/config", get(routes::config))
        .route(
            "/api/login",
            post(routes::login).layer(DefaultBodyLimit::max(routes::MAX_LOGIN_BODY_BYTES)),
        )
        .route("/api/logout", post(routes::logout))
        .route("/api/me", get(routes::whoami))
        .route("/api/reports", get(routes::reports))
        .route("/api/sign", post(routes::sign))
        .route("/api/stats", get(routes::stats))
        .route("/{*path}", get(assets::file))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            traffic,
            traffic::count_bytes,
        ))
}
