//! The HTTP API (`docs/API.md`). A request's path through the gatekeeper:
//!
//! - [`pipeline`]: route → client address and IP rules → parse the headers → bind
//!   the URL to the signed request → verify signatures → nonce → ACL, producing an
//!   [`pipeline::Authorized`] value, the only key to storage and the index; then
//!   [`pipeline::finish`], the one place that writes the audit entry, signs the
//!   receipt and builds the response, for every outcome.
//! - One module per operation: [`get`] (GET and HEAD), [`put`] (driving the upload
//!   state machine in [`crate::upload`]), [`list`] and [`audit`].
//!
//! Every object and audit request runs in a task of its own, detached from the
//! connection: a client that goes away cannot stop it half-way, so the audit entry,
//! the nonce, the reservation, the publish and the index row are never left
//! half-done by a cancelled handler.

pub mod audit;
pub mod console;
mod drain;
pub mod get;
pub mod list;
pub mod log;
pub mod pipeline;
pub mod put;

use crate::config::Config;
use crate::error::ApiError;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::ratelimit::FailureLimiter;
use crate::reload::{LivePolicy, ReloadSource};
use crate::storage::Storage;
use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request as HttpRequest, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get as get_route};
use countersign_core::transport::{
    MANIFEST_HEADER, MANIFEST_SIGNATURE_HEADER, RECEIPT_HEADER, RECEIPT_SIGNATURE_HEADER,
    REQUEST_HEADER, REQUEST_ID_HEADER, SIGNATURE_HEADER,
};
use countersign_core::{ErrorCode, KeyId, Keyring, Policy, Role, ed25519_dalek::SigningKey};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

/// The connection's peer address, as the server's accept loop saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// Everything a request needs; shared by every handler.
pub struct Gatekeeper {
    /// The configuration.
    /// The configuration at start-up. Its policy parts (keys, thresholds, ACL, IP
    /// rules) are not read by requests: they read [`Gatekeeper::policy`].
    pub config: Config,
    /// The policy in force; a request takes one snapshot (`load_full`) and keeps it.
    pub policy: ArcSwap<LivePolicy>,
    /// The file a reload reads, when the gatekeeper was started with one.
    pub reload_source: std::sync::OnceLock<ReloadSource>,
    pub(crate) key: SigningKey,
    pub(crate) key_id: KeyId,
    /// The database.
    pub ledger: Ledger,
    /// The buckets.
    pub storage: Storage,
    /// Counters.
    pub metrics: Metrics,
    /// Signed webhook alerts (`[[webhooks]]`).
    pub webhooks: crate::webhook::Notifier,
    /// Memory for upload buffers, in KiB permits.
    pub(crate) upload_memory: Arc<Semaphore>,
    /// Failures before verified signatures, per client address.
    failures: FailureLimiter,
    /// Every connection and request task, so that shutdown can wait for them.
    pub tasks: tokio_util::task::TaskTracker,
}

/// The shared state.
pub type AppState = Arc<Gatekeeper>;

impl std::fmt::Debug for Gatekeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gatekeeper")
            .field("gatekeeper_id", &self.config.gatekeeper_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Gatekeeper {
    /// Assembles the state; the policy (keys, thresholds, ACL, IP rules) comes from
    /// `config` and can later be replaced by [`crate::reload::reload`].
    pub fn new(
        config: Config,
        key: SigningKey,
        ledger: Ledger,
        storage: Storage,
    ) -> Result<Self, countersign_core::Error> {
        let policy = LivePolicy::new(&config)?;
        let key_id = config.key_id.clone();
        let kib = usize::try_from(config.limits.upload_memory_bytes / 1024)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        let failures = FailureLimiter::new(
            config.limits.preauth_failure_burst,
            config.limits.preauth_failures_per_sec,
        );
        let webhooks =
            crate::webhook::Notifier::new(config.gatekeeper_id.as_str(), &config.webhooks);
        Ok(Self {
            webhooks,
            config,
            policy: ArcSwap::from_pointee(policy),
            reload_source: std::sync::OnceLock::new(),
            key,
            key_id,
            ledger,
            storage,
            metrics: Metrics::default(),
            upload_memory: Arc::new(Semaphore::new(kib)),
            failures,
            tasks: tokio_util::task::TaskTracker::new(),
        })
    }

    /// The gatekeeper's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The gatekeeper's key id.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// A policy that accepts this gatekeeper's signatures (for receipts and manifests).
    pub fn gatekeeper_policy(&self) -> Result<Policy, countersign_core::Error> {
        gatekeeper_policy(&self.key_id, &self.public_key())
    }
}

/// A policy with one gatekeeper key, threshold 1.
pub fn gatekeeper_policy(
    key_id: &KeyId,
    public_key: &[u8; 32],
) -> Result<Policy, countersign_core::Error> {
    let keyring = Keyring::new([countersign_core::AuthorizedKey {
        key_id: key_id.clone(),
        role: Role::gatekeeper(),
        public_key: countersign_core::PublicKey::from_bytes(public_key)?,
        not_before: None,
        not_after: None,
    }])?;
    Policy::new(keyring, [(Role::gatekeeper(), 1)])
}

/// The router. `/metrics` is on it unless `admin_listen` is configured: then it is
/// only on [`admin_app`]'s listener.
pub fn app(state: AppState) -> Router {
    let router = Router::new()
        .route("/healthz", get_route(healthz))
        .route("/readyz", get_route(readyz));
    let router = if state.config.admin_listen.is_some() {
        router
    } else {
        router.route("/metrics", get_route(metrics))
    };
    let router = console::routes(router, state.config.console.as_ref());
    router
        .route("/v1/keys", get_route(keys))
        .route("/v1/log/checkpoint", get_route(log::checkpoint))
        .route("/v1/log/tile/{*rest}", get_route(log::tile))
        .route("/v1/log/proof/{index}", get_route(log::proof))
        .route("/v1/objects/{*rest}", any(detached))
        .route("/v1/audit/{*rest}", any(detached))
        .fallback(fallback)
        .layer(cors(&state.config))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The admin listener's router (`admin_listen`): `/metrics`, `/healthz` and
/// `/readyz`, and nothing else.
pub fn admin_app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get_route(healthz))
        .route("/readyz", get_route(readyz))
        .route("/metrics", get_route(metrics))
        .fallback(fallback)
        .with_state(state)
}

/// CORS for the configured report-page origins (tower-http).
fn cors(config: &Config) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let name = |n: &'static str| axum::http::HeaderName::from_static(n);
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::HEAD,
            axum::http::Method::PUT,
        ])
        .allow_headers([
            name(REQUEST_HEADER),
            name(SIGNATURE_HEADER),
            header::CONTENT_TYPE,
            header::RANGE,
        ])
        .expose_headers([
            name(RECEIPT_HEADER),
            name(RECEIPT_SIGNATURE_HEADER),
            name(MANIFEST_HEADER),
            name(MANIFEST_SIGNATURE_HEADER),
            name(REQUEST_ID_HEADER),
            header::CONTENT_RANGE,
            header::CONTENT_LENGTH,
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut r = (status, value.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Runs an object or audit request in a task of its own: if the client goes away,
/// hyper drops this handler's future, but the task runs on to its end (and, for a
/// PUT whose body stopped arriving, cleans up and records the failure).
async fn detached(
    State(gk): State<AppState>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    req: HttpRequest,
) -> Response {
    let task = gk.tasks.clone().spawn(pipeline::handle(gk, peer, req));
    match task.await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("request task failed: {e}");
            ApiError::new(
                ErrorCode::Internal,
                "the request failed inside the gatekeeper",
            )
            .into_response()
        }
    }
}

async fn healthz(State(gk): State<AppState>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::json!({"status": "ok", "gatekeeper": gk.config.gatekeeper_id.as_str()}),
    )
}

/// Ready when the database, every bucket and every KMS key-encryption key answer
/// within their deadlines.
async fn readyz(State(gk): State<AppState>) -> Response {
    if let Err(e) = gk.ledger.ping().await {
        tracing::warn!("readyz: database: {e}");
        return ApiError::audit_unavailable().into_response();
    }
    for bucket in gk.storage.buckets() {
        if let Err(e) = gk.storage.probe(bucket).await {
            tracing::warn!("readyz: bucket {bucket}: {e}");
            return ApiError::new(
                ErrorCode::StorageUnavailable,
                format!("bucket `{bucket}` cannot be reached right now"),
            )
            .into_response();
        }
        if let Some(ring) = gk.storage.keyring(bucket)
            && let Err(e) = ring.check().await
        {
            tracing::warn!("readyz: bucket {bucket}: {e}");
            return ApiError::new(
                ErrorCode::KeyUnavailable,
                format!("a key-encryption key of bucket `{bucket}` cannot be reached right now"),
            )
            .into_response();
        }
    }
    json_response(
        StatusCode::OK,
        &serde_json::json!({"status": "ready", "gatekeeper": gk.config.gatekeeper_id.as_str()}),
    )
}

/// The audit log's progress read from the database now (with the witnesses' quorum
/// time when witnesses are configured); `None` if the database does not answer.
pub(crate) async fn log_progress(gk: &AppState) -> Option<crate::metrics::LogProgress> {
    match gk.ledger.progress().await {
        Ok(mut p) => {
            let policy = &gk.config.witnesses;
            if !policy.witnesses.is_empty() {
                p.witness_quorum_ms = match log::newest_cosigned(gk).await {
                    Ok(c) => Some(
                        c.and_then(|c| c.quorum_time(policy.quorum))
                            .map(|t| t.saturating_mul(1000)),
                    ),
                    Err(e) => {
                        tracing::warn!("metrics: cannot read the witnesses' cosignatures: {e}");
                        Some(None)
                    }
                };
            }
            Some(p)
        }
        Err(e) => {
            tracing::warn!("metrics: cannot read the audit log's progress: {e}");
            None
        }
    }
}

/// The exposition, with the audit log's progress read from the database now (a
/// database that does not answer shows as `countersign_audit_log_up 0`).
async fn metrics(State(gk): State<AppState>) -> Response {
    let progress = log_progress(&gk).await;
    let mut text = gk.metrics.render(progress.as_ref(), now_ms());
    gk.webhooks.render_metrics(&mut text);
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

async fn keys(State(gk): State<AppState>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "gatekeeper": gk.config.gatekeeper_id.as_str(),
            "keys": [{"role": Role::GATEKEEPER, "key_id": gk.key_id.as_str(), "public_key": countersign_core::text::b64(&gk.public_key())}],
        }),
    )
}

async fn fallback() -> Response {
    ApiError::new(
        ErrorCode::NotFound,
        "there is no such endpoint; see docs/API.md",
    )
    .into_response()
}
