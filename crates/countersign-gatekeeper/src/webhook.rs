//! Signed webhook alerts (`[[webhooks]]`, `docs/API.md`, "Webhook alerts"): the
//! events the shipped Prometheus rules alarm on, pushed to a receiver the customer
//! runs, without Prometheus.
//!
//! - **Bursts** of `ip_denied`, `bad_signature` or `replayed` denials (`burst_threshold`
//!   within `burst_window_secs`) and any `audit_unavailable`, counted as requests are
//!   decided ([`Notifier::observe`]: a lock and a `try_send`, never an `.await`).
//! - **Conditions** of the log, checked every `check_interval_secs` by a background
//!   task: entries waiting too long for a checkpoint (`integration_lag`), the newest
//!   checkpoint too old while entries wait (`checkpoint_too_old`), the newest witness
//!   quorum too old (`cosignature_too_old`). Each fires when it starts to hold.
//!
//! Each webhook has its own bounded queue and delivery task, so a receiver that is down
//! or slow delays only its own deliveries; a full queue drops the event (counted in
//! `countersign_webhook_deliveries_total{outcome="dropped"}` and logged). Deliveries are
//! signed as [Standard Webhooks](https://www.standardwebhooks.com/) specify (HMAC-SHA256
//! over `id.timestamp.body` with the `whsec_` secret), a scheme receivers already have
//! libraries for; retried with exponential backoff, never redirected.

use crate::config::{ConfigError, Secret, err};
use crate::http::Gatekeeper;
use crate::metrics::LogProgress;
use base64::Engine as _;
use countersign_core::ErrorCode;
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// Most events a burst may need before it fires (bounds the memory of a burst).
pub const MAX_BURST_THRESHOLD: u32 = 10_000;

/// Most client addresses one burst event lists (the busiest first).
pub const MAX_CLIENTS_LISTED: usize = 10;

/// An event a webhook can be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertKind {
    /// A burst of requests from addresses the IP rules deny.
    IpDenied,
    /// A burst of requests whose signatures do not verify.
    BadSignature,
    /// A burst of requests sent again with a used nonce.
    Replayed,
    /// A request refused because its audit entry could not be written.
    AuditUnavailable,
    /// Entries wait longer than `integration_lag_max_secs` for a checkpoint.
    IntegrationLag,
    /// Entries wait and the newest checkpoint is older than `checkpoint_max_age_secs`.
    CheckpointTooOld,
    /// The newest witness quorum is older than `cosignature_max_age_secs`.
    CosignatureTooOld,
}

impl AlertKind {
    /// Every event, in the order of the docs.
    pub const ALL: [Self; 7] = [
        Self::IpDenied,
        Self::BadSignature,
        Self::Replayed,
        Self::AuditUnavailable,
        Self::IntegrationLag,
        Self::CheckpointTooOld,
        Self::CosignatureTooOld,
    ];

    /// The name used in the configuration and in the event's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IpDenied => "ip_denied",
            Self::BadSignature => "bad_signature",
            Self::Replayed => "replayed",
            Self::AuditUnavailable => "audit_unavailable",
            Self::IntegrationLag => "integration_lag",
            Self::CheckpointTooOld => "checkpoint_too_old",
            Self::CosignatureTooOld => "cosignature_too_old",
        }
    }

    /// The event counted for a denial with `code`, if any.
    fn of_code(code: ErrorCode) -> Option<Self> {
        match code {
            ErrorCode::IpDenied => Some(Self::IpDenied),
            ErrorCode::BadSignature => Some(Self::BadSignature),
            ErrorCode::Replayed => Some(Self::Replayed),
            ErrorCode::AuditUnavailable => Some(Self::AuditUnavailable),
            _ => None,
        }
    }

    fn is_condition(self) -> bool {
        matches!(
            self,
            Self::IntegrationLag | Self::CheckpointTooOld | Self::CosignatureTooOld
        )
    }
}

/// One validated `[[webhooks]]` entry.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Where events are POSTed.
    pub url: reqwest::Url,
    /// The Standard Webhooks secret (`whsec_` and the base64 of the HMAC key).
    pub secret: Secret,
    /// The events sent.
    pub events: BTreeSet<AlertKind>,
    /// Denials of one code within `burst_window` that make a burst.
    pub burst_threshold: u32,
    /// The window of a burst, and the quiet time after an event of one kind.
    pub burst_window: Duration,
    /// `integration_lag` fires above this many seconds.
    pub integration_lag_max_secs: u64,
    /// `checkpoint_too_old` fires above this many seconds (while entries wait).
    pub checkpoint_max_age_secs: u64,
    /// `cosignature_too_old` fires above this many seconds.
    pub cosignature_max_age_secs: u64,
    /// How often the log's conditions are checked.
    pub check_interval: Duration,
    /// Events waiting for delivery at most; more are dropped.
    pub queue: usize,
    /// Attempts per event (the first included).
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles each retry, up to a minute.
    pub retry_base: Duration,
    /// Deadline of one attempt.
    pub timeout: Duration,
}

/// `[[webhooks]]` as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    url: String,
    secret: Option<String>,
    secret_file: Option<std::path::PathBuf>,
    #[serde(default)]
    allow_http: bool,
    events: Option<Vec<String>>,
    burst_threshold: Option<u32>,
    burst_window_secs: Option<u64>,
    integration_lag_max_secs: Option<u64>,
    checkpoint_max_age_secs: Option<u64>,
    cosignature_max_age_secs: Option<u64>,
    check_interval_secs: Option<u64>,
    queue: Option<usize>,
    max_attempts: Option<u32>,
    retry_base_ms: Option<u64>,
    timeout_ms: Option<u64>,
}

/// Decodes a Standard Webhooks secret: `whsec_` then standard base64 of 24 to 64 bytes.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret
        .trim()
        .strip_prefix("whsec_")
        .ok_or("must start with `whsec_` (a Standard Webhooks secret)")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "must be `whsec_` followed by standard base64")?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!(
            "must encode 24 to 64 bytes (it encodes {})",
            key.len()
        ));
    }
    Ok(key)
}

impl RawWebhook {
    /// Validates entry `i`, resolving `secret_file` against `data_dir`.
    pub(crate) fn validate(
        self,
        i: usize,
        data_dir: &std::path::Path,
        p: &mut Vec<ConfigError>,
    ) -> Option<WebhookConfig> {
        let at = |field: &str| format!("webhooks[{i}].{field}");
        let before = p.len();
        let url = match reqwest::Url::parse(&self.url) {
            Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && self.allow_http) => Some(u),
            Ok(u) if u.scheme() == "http" => {
                p.push(err(
                    at("url"),
                    "is plain HTTP: use https, or set allow_http = true for a receiver on a trusted network",
                ));
                None
            }
            Ok(_) => {
                p.push(err(at("url"), "must be an https:// URL"));
                None
            }
            Err(e) => {
                p.push(err(at("url"), format!("is not a URL: {e}")));
                None
            }
        };
        let secret = match (self.secret, self.secret_file) {
            (Some(s), None) => Some(s),
            (None, Some(file)) => {
                let path = crate::config::resolve(data_dir, file);
                match std::fs::read_to_string(&path) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        p.push(err(
                            at("secret_file"),
                            format!("cannot read {}: {e}", path.display()),
                        ));
                        None
                    }
                }
            }
            _ => {
                p.push(err(
                    at("secret"),
                    "give exactly one of secret and secret_file",
                ));
                None
            }
        };
        if let Some(Err(m)) = secret.as_deref().map(decode_secret) {
            p.push(err(at("secret"), m));
        }
        let mut events = BTreeSet::new();
        match self.events {
            None => events.extend(AlertKind::ALL),
            Some(names) if names.is_empty() => {
                p.push(err(at("events"), "must name at least one event"))
            }
            Some(names) => {
                for (j, name) in names.iter().enumerate() {
                    match AlertKind::ALL.iter().find(|k| k.as_str() == name) {
                        Some(k) => {
                            events.insert(*k);
                        }
                        None => p.push(err(
                            format!("webhooks[{i}].events[{j}]"),
                            format!(
                                "`{name}` is not an event (one of: {})",
                                AlertKind::ALL.map(AlertKind::as_str).join(", ")
                            ),
                        )),
                    }
                }
            }
        }
        let mut range = |field: &str, v: Option<u64>, default: u64, lo: u64, hi: u64| {
            let v = v.unwrap_or(default);
            if !(lo..=hi).contains(&v) {
                p.push(err(at(field), format!("must be between {lo} and {hi}")));
            }
            v
        };
        let burst_threshold = range(
            "burst_threshold",
            self.burst_threshold.map(u64::from),
            6,
            1,
            u64::from(MAX_BURST_THRESHOLD),
        );
        let burst_window = range("burst_window_secs", self.burst_window_secs, 300, 1, 86_400);
        let integration_lag_max_secs = range(
            "integration_lag_max_secs",
            self.integration_lag_max_secs,
            120,
            1,
            86_400,
        );
        let checkpoint_max_age_secs = range(
            "checkpoint_max_age_secs",
            self.checkpoint_max_age_secs,
            900,
            1,
            86_400,
        );
        let cosignature_max_age_secs = range(
            "cosignature_max_age_secs",
            self.cosignature_max_age_secs,
            3600,
            1,
            604_800,
        );
        let check_interval = range("check_interval_secs", self.check_interval_secs, 30, 1, 3600);
        let queue = range("queue", self.queue.map(|q| q as u64), 256, 1, 100_000);
        let max_attempts = range("max_attempts", self.max_attempts.map(u64::from), 5, 1, 20);
        let retry_base = range("retry_base_ms", self.retry_base_ms, 1000, 1, 60_000);
        let timeout = range("timeout_ms", self.timeout_ms, 5000, 100, 60_000);
        if p.len() > before {
            return None;
        }
        Some(WebhookConfig {
            url: url?,
            secret: Secret::new(secret?.trim()),
            events,
            burst_threshold: u32::try_from(burst_threshold).ok()?,
            burst_window: Duration::from_secs(burst_window),
            integration_lag_max_secs,
            checkpoint_max_age_secs,
            cosignature_max_age_secs,
            check_interval: Duration::from_secs(check_interval),
            queue: usize::try_from(queue).ok()?,
            max_attempts: u32::try_from(max_attempts).ok()?,
            retry_base: Duration::from_millis(retry_base),
            timeout: Duration::from_millis(timeout),
        })
    }
}

/// The Standard Webhooks signature of one delivery: `v1,` then the standard base64 of
/// HMAC-SHA256(`key`, `{id}.{timestamp}.{body}`).
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    )
}

/// The denials of one kind seen lately by one webhook.
#[derive(Default)]
struct Burst {
    /// (time in ms, client) of the newest `burst_threshold` denials.
    recent: VecDeque<(u64, IpAddr)>,
    /// No event of this kind before this time (ms).
    quiet_until_ms: u64,
}

/// Delivery counters of one webhook.
#[derive(Default)]
struct Outcomes {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

struct Hook {
    config: Arc<WebhookConfig>,
    tx: mpsc::Sender<Vec<u8>>,
    rx: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    bursts: Mutex<BTreeMap<AlertKind, Burst>>,
    outcomes: Arc<Outcomes>,
}

/// The webhooks of a gatekeeper: counts denials, queues events, and (once
/// [`spawn`]ed) delivers them.
pub struct Notifier {
    gatekeeper: String,
    hooks: Vec<Hook>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("webhooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Queues for `webhooks`; nothing is delivered until [`spawn`] runs.
    pub fn new(gatekeeper: &str, webhooks: &[WebhookConfig]) -> Self {
        let hooks = webhooks
            .iter()
            .map(|c| {
                let (tx, rx) = mpsc::channel(c.queue);
                Hook {
                    config: Arc::new(c.clone()),
                    tx,
                    rx: Mutex::new(Some(rx)),
                    bursts: Mutex::default(),
                    outcomes: Arc::default(),
                }
            })
            .collect();
        Self {
            gatekeeper: gatekeeper.to_owned(),
            hooks,
        }
    }

    /// Counts a request denied with `code` from `client` at `now_ms`; queues a burst
    /// event when one is complete. Never waits.
    pub fn observe(&self, code: ErrorCode, client: IpAddr, now_ms: u64) {
        let Some(kind) = AlertKind::of_code(code) else {
            return;
        };
        for hook in &self.hooks {
            if !hook.config.events.contains(&kind) {
                continue;
            }
            let threshold = if kind == AlertKind::AuditUnavailable {
                1
            } else {
                hook.config.burst_threshold as usize
            };
            let window_ms = u64::try_from(hook.config.burst_window.as_millis()).unwrap_or(u64::MAX);
            let fired = {
                let Ok(mut bursts) = hook.bursts.lock() else {
                    continue;
                };
                let burst = bursts.entry(kind).or_default();
                burst.recent.push_back((now_ms, client));
                while burst.recent.len() > threshold
                    || burst
                        .recent
                        .front()
                        .is_some_and(|(t, _)| now_ms.saturating_sub(*t) > window_ms)
                {
                    burst.recent.pop_front();
                }
                if burst.recent.len() >= threshold && now_ms >= burst.quiet_until_ms {
                    burst.quiet_until_ms = now_ms.saturating_add(window_ms);
                    Some(std::mem::take(&mut burst.recent))
                } else {
                    None
                }
            };
            if let Some(recent) = fired {
                let data = burst_data(&recent, window_ms / 1000);
                self.enqueue(hook, kind, now_ms, data);
            }
        }
    }

    /// Serializes the event and queues it, or counts it dropped.
    fn enqueue(&self, hook: &Hook, kind: AlertKind, now_ms: u64, data: serde_json::Value) {
        let event = serde_json::json!({
            "type": format!("countersign.alert.{}", kind.as_str()),
            "time_ms": now_ms,
            "gatekeeper": self.gatekeeper,
            "data": data,
        });
        let body = event.to_string().into_bytes();
        if hook.tx.try_send(body).is_err() {
            hook.outcomes.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "webhook {}: event {} dropped: the delivery queue is full",
                origin(&hook.config.url),
                kind.as_str()
            );
        }
    }

    /// Appends `countersign_webhook_deliveries_total` to a metrics exposition (nothing
    /// without webhooks).
    pub fn render_metrics(&self, out: &mut String) {
        if self.hooks.is_empty() {
            return;
        }
        out.push_str("# HELP countersign_webhook_deliveries_total Webhook events by webhook (its index in [[webhooks]]) and outcome: delivered, failed (every attempt failed) or dropped (the queue was full).\n# TYPE countersign_webhook_deliveries_total counter\n");
        for (i, hook) in self.hooks.iter().enumerate() {
            let o = &hook.outcomes;
            for (outcome, n) in [
                ("delivered", &o.delivered),
                ("failed", &o.failed),
                ("dropped", &o.dropped),
            ] {
                let _ = writeln!(
                    out,
                    "countersign_webhook_deliveries_total{{webhook=\"{i}\",outcome=\"{outcome}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
        }
    }
}

/// The `data` of a burst event: its size, window, time span and busiest clients.
fn burst_data(recent: &VecDeque<(u64, IpAddr)>, window_secs: u64) -> serde_json::Value {
    let mut by_client: BTreeMap<IpAddr, u64> = BTreeMap::new();
    for (_, ip) in recent {
        *by_client.entry(*ip).or_default() += 1;
    }
    let mut clients: Vec<(IpAddr, u64)> = by_client.into_iter().collect();
    clients.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    clients.truncate(MAX_CLIENTS_LISTED);
    serde_json::json!({
        "count": recent.len(),
        "window_secs": window_secs,
        "first_ms": recent.front().map_or(0, |r| r.0),
        "last_ms": recent.back().map_or(0, |r| r.0),
        "clients": clients
            .iter()
            .map(|(ip, n)| serde_json::json!({"ip": ip.to_string(), "count": n}))
            .collect::<Vec<_>>(),
    })
}

/// The conditions of `progress` at `now_ms` that `config` alarms on, each with its
/// event data.
fn conditions(
    config: &WebhookConfig,
    progress: &LogProgress,
    now_ms: u64,
) -> Vec<(AlertKind, serde_json::Value)> {
    let age = |t: u64| now_ms.saturating_sub(t) / 1000;
    let waiting = progress.entries.saturating_sub(progress.checkpoint_size);
    let mut out = Vec::new();
    if let Some(t) = progress.oldest_unintegrated_ms
        && age(t) > config.integration_lag_max_secs
    {
        out.push((
            AlertKind::IntegrationLag,
            serde_json::json!({"age_secs": age(t), "max_secs": config.integration_lag_max_secs, "entries_waiting": waiting}),
        ));
    }
    if let Some(t) = progress.checkpoint_newest_ms
        && waiting > 0
        && age(t) > config.checkpoint_max_age_secs
    {
        out.push((
            AlertKind::CheckpointTooOld,
            serde_json::json!({"age_secs": age(t), "max_secs": config.checkpoint_max_age_secs, "checkpoint_size": progress.checkpoint_size, "entries_waiting": waiting}),
        ));
    }
    if let Some(Some(t)) = progress.witness_quorum_ms
        && age(t) > config.cosignature_max_age_secs
    {
        out.push((
            AlertKind::CosignatureTooOld,
            serde_json::json!({"age_secs": age(t), "max_secs": config.cosignature_max_age_secs}),
        ));
    }
    out.retain(|(k, _)| config.events.contains(k));
    out
}

/// Starts the delivery task of every webhook of `state` and, for those that want the
/// log's conditions, a task checking them. The tasks end when the state is dropped.
/// A second call does nothing.
pub fn spawn(state: &Arc<Gatekeeper>) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("webhooks disabled: cannot build the HTTP client: {e}");
            return;
        }
    };
    for (i, hook) in state.webhooks.hooks.iter().enumerate() {
        let Some(rx) = hook.rx.lock().ok().and_then(|mut r| r.take()) else {
            continue;
        };
        tokio::spawn(deliver(
            client.clone(),
            hook.config.clone(),
            hook.outcomes.clone(),
            rx,
        ));
        if hook.config.events.iter().any(|k| k.is_condition()) {
            tokio::spawn(check(Arc::downgrade(state), i));
        }
    }
}

/// Delivers the events of one webhook in order, each with up to `max_attempts`
/// attempts. Ends when the queue's sender (the gatekeeper) is gone.
async fn deliver(
    client: reqwest::Client,
    config: Arc<WebhookConfig>,
    outcomes: Arc<Outcomes>,
    mut rx: mpsc::Receiver<Vec<u8>>,
) {
    // Validated with the configuration: it decodes.
    let key = decode_secret(config.secret.expose()).unwrap_or_default();
    while let Some(body) = rx.recv().await {
        let id = format!("msg_{}", random_hex());
        let mut last_error = String::new();
        let mut delivered = false;
        for attempt in 0..config.max_attempts {
            if attempt > 0 {
                let factor = 1u32 << (attempt - 1).min(16);
                let wait = config
                    .retry_base
                    .saturating_mul(factor)
                    .min(Duration::from_secs(60));
                tokio::time::sleep(wait).await;
            }
            let timestamp = crate::http::now_ms() / 1000;
            let result = client
                .post(config.url.clone())
                .timeout(config.timeout)
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", sign(&key, &id, timestamp, &body))
                .body(body.clone())
                .send()
                .await;
            match result {
                Ok(r) if r.status().is_success() => {
                    delivered = true;
                    break;
                }
                Ok(r) => last_error = format!("status {}", r.status().as_u16()),
                Err(e) => last_error = e.to_string(),
            }
        }
        if delivered {
            outcomes.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            outcomes.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "webhook {}: event {id} not delivered after {} attempts: {last_error}",
                origin(&config.url),
                config.max_attempts
            );
        }
    }
}

/// Checks the log's conditions for webhook `i` every `check_interval`, queueing an
/// event when a condition starts to hold. Ends when the gatekeeper is dropped.
async fn check(state: Weak<Gatekeeper>, i: usize) {
    let Some(every) = state
        .upgrade()
        .and_then(|s| s.webhooks.hooks.get(i).map(|h| h.config.check_interval))
    else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    let mut holding: BTreeSet<AlertKind> = BTreeSet::new();
    loop {
        tick.tick().await;
        let Some(gk) = state.upgrade() else {
            return;
        };
        let Some(hook) = gk.webhooks.hooks.get(i) else {
            return;
        };
        let Some(progress) = crate::http::log_progress(&gk).await else {
            continue;
        };
        let now = crate::http::now_ms();
        let found = conditions(&hook.config, &progress, now);
        let now_holding: BTreeSet<AlertKind> = found.iter().map(|(k, _)| *k).collect();
        for (kind, data) in found {
            if !holding.contains(&kind) {
                gk.webhooks.enqueue(hook, kind, now, data);
            }
        }
        holding = now_holding;
    }
}

/// The scheme, host and port of a webhook's URL: what logs name (its path or query
/// may hold a token).
fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 12];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    countersign_core::text::hex(&bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// The vector in `docs/API.md` (cross-checked with Python's `hmac` module).
    #[test]
    fn signature_vector() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"type":"countersign.alert.replayed","time_ms":1700000000000,"gatekeeper":"gk-1","data":{"count":5}}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_700_000_000, body),
            "v1,2S/sCzBrophzCUd0bMbcjtGtfuqs0jzKCAQFC6Xa65E="
        );
    }

    #[test]
    fn secrets_are_checked() {
        assert!(decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(decode_secret("whsec_not base64!").is_err());
        assert!(decode_secret("whsec_AAAA").is_err());
    }

    fn config(threshold: u32, events: &[AlertKind]) -> WebhookConfig {
        WebhookConfig {
            url: reqwest::Url::parse("https://alerts.example/hook").unwrap(),
            secret: Secret::new(format!("whsec_{}", "A".repeat(32))),
            events: events.iter().copied().collect(),
            burst_threshold: threshold,
            burst_window: Duration::from_secs(60),
            integration_lag_max_secs: 120,
            checkpoint_max_age_secs: 900,
            cosignature_max_age_secs: 3600,
            check_interval: Duration::from_secs(30),
            queue: 8,
            max_attempts: 1,
            retry_base: Duration::from_millis(1),
            timeout: Duration::from_secs(1),
        }
    }

    fn queued(n: &Notifier) -> Vec<serde_json::Value> {
        let mut rx = n.hooks[0].rx.lock().unwrap().take().unwrap();
        let mut out = Vec::new();
        while let Ok(body) = rx.try_recv() {
            out.push(serde_json::from_slice(&body).unwrap());
        }
        out
    }

    #[test]
    fn a_burst_fires_once_per_window() {
        let n = Notifier::new("gk", &[config(3, &[AlertKind::Replayed])]);
        let a: IpAddr = "127.0.0.7".parse().unwrap();
        let b: IpAddr = "127.0.0.8".parse().unwrap();
        // Two within the window, then one too late to count with the first.
        n.observe(ErrorCode::Replayed, a, 1_000);
        n.observe(ErrorCode::Replayed, a, 2_000);
        n.observe(ErrorCode::BadSignature, a, 2_000);
        n.observe(ErrorCode::NotFound, a, 2_000);
        n.observe(ErrorCode::Replayed, b, 62_000);
        n.observe(ErrorCode::Replayed, b, 62_500);
        // Three within 60 s: fires; the next three are within the quiet time.
        n.observe(ErrorCode::Replayed, a, 63_000);
        for t in [64_000, 65_000, 66_000] {
            n.observe(ErrorCode::Replayed, a, t);
        }
        // After the quiet time, a new burst fires again.
        for t in [124_000, 124_100, 124_200] {
            n.observe(ErrorCode::Replayed, b, t);
        }
        let events = queued(&n);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0]["type"], "countersign.alert.replayed");
        assert_eq!(events[0]["gatekeeper"], "gk");
        assert_eq!(events[0]["time_ms"], 63_000);
        let d = &events[0]["data"];
        assert_eq!(d["count"], 3);
        assert_eq!(d["window_secs"], 60);
        assert_eq!(d["first_ms"], 62_000);
        assert_eq!(d["last_ms"], 63_000);
        assert_eq!(d["clients"][0]["ip"], "127.0.0.8");
        assert_eq!(d["clients"][0]["count"], 2);
        assert_eq!(d["clients"][1]["ip"], "127.0.0.7");
        // 65 s and 66 s are still in the window at 124 s: three in 60 s.
        assert_eq!(events[1]["time_ms"], 124_000);
    }

    #[test]
    fn audit_unavailable_fires_at_once_and_a_full_queue_drops() {
        let mut c = config(50, &[AlertKind::AuditUnavailable]);
        c.queue = 1;
        c.burst_window = Duration::from_secs(1);
        let n = Notifier::new("gk", &[c]);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        n.observe(ErrorCode::AuditUnavailable, ip, 5_000);
        n.observe(ErrorCode::AuditUnavailable, ip, 7_000);
        let mut text = String::new();
        n.render_metrics(&mut text);
        assert!(text.contains(
            "countersign_webhook_deliveries_total{webhook=\"0\",outcome=\"dropped\"} 1\n"
        ));
        let events = queued(&n);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["type"], "countersign.alert.audit_unavailable");
        assert_eq!(events[0]["data"]["clients"][0]["ip"], "10.1.2.3");
    }

    #[test]
    fn conditions_follow_the_thresholds() {
        let c = config(5, &AlertKind::ALL);
        let mut p = LogProgress {
            entries: 10,
            checkpoint_size: 10,
            checkpoint_newest_ms: Some(0),
            oldest_unintegrated_ms: None,
            witness_quorum_ms: None,
        };
        let now = 20_000_000;
        // An idle log: the checkpoint is old, but nothing waits.
        assert!(conditions(&c, &p, now).is_empty());
        p.entries = 12;
        p.oldest_unintegrated_ms = Some(now - 121_000);
        p.witness_quorum_ms = Some(Some(now - 3_601_000));
        let found = conditions(&c, &p, now);
        let kinds: Vec<_> = found.iter().map(|f| f.0).collect();
        assert_eq!(
            kinds,
            [
                AlertKind::IntegrationLag,
                AlertKind::CheckpointTooOld,
                AlertKind::CosignatureTooOld
            ]
        );
        assert_eq!(found[0].1["age_secs"], 121);
        assert_eq!(found[1].1["entries_waiting"], 2);
        p.oldest_unintegrated_ms = Some(now - 119_000);
        p.witness_quorum_ms = Some(None);
        let only = config(5, &[AlertKind::IntegrationLag]);
        assert!(conditions(&only, &p, now).is_empty());
    }
}
