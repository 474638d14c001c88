//! The HTTP API (`docs/API.md`) and the request pipeline every object and audit
//! request goes through: parse → verify signatures, audience and time window →
//! nonce → IP rules and ACL → audit entry (fail closed) → countersign → execute.

use crate::acl::client_ip;
use crate::audit::{AuditFilter, AuditLine, AuditRecord};
use crate::config::{AUDIT_BUCKET, Config};
use crate::error::ApiError;
use crate::ledger::{AuditDraft, IndexedObject, Ledger};
use crate::metrics::Metrics;
use crate::storage::{RESERVED_SEGMENT, Storage, StorageError};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request as HttpRequest, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method as HttpMethod, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use countersign_core::names::percent_encode;
use countersign_core::signature::{encode_list, parse_list};
use countersign_core::text::{b64, hex, parse_b64};
use countersign_core::{
    Decision, ErrorCode, KeyId, Keyring, Manifest, Method, Operation, Policy, Receipt, Request,
    RequestVerifier, Role, SignatureEntry, VerifiedRequest, ed25519_dalek::SigningKey,
};
use futures::StreamExt as _;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Request header: base64url of the canonical request.
pub const REQUEST_HEADER: &str = "countersign-request";
/// Request header: the signature list over it.
pub const SIGNATURE_HEADER: &str = "countersign-signature";
/// Response header: base64url of the receipt.
pub const RECEIPT_HEADER: &str = "countersign-receipt";
/// Response header: the gatekeeper's signature list over the receipt.
pub const RECEIPT_SIGNATURE_HEADER: &str = "countersign-receipt-signature";
/// Response header: base64url of the object's manifest.
pub const MANIFEST_HEADER: &str = "countersign-manifest";
/// Response header: the gatekeeper's signature list over the manifest.
pub const MANIFEST_SIGNATURE_HEADER: &str = "countersign-manifest-signature";

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
    pub config: Config,
    verifiers: BTreeMap<String, RequestVerifier>,
    key: SigningKey,
    key_id: KeyId,
    /// The database.
    pub ledger: Ledger,
    /// The buckets.
    pub storage: Storage,
    /// Counters.
    pub metrics: Metrics,
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
    /// Assembles the state. Operations whose threshold needs keys that are not
    /// configured get no verifier: their requests fail with `unknown_key`.
    pub fn new(
        config: Config,
        key: SigningKey,
        ledger: Ledger,
        storage: Storage,
    ) -> Result<Self, countersign_core::Error> {
        let keyring = Keyring::new(config.keys.iter().cloned())?;
        let mut verifiers = BTreeMap::new();
        let mut thresholds = config.thresholds.clone();
        if !thresholds.contains_key("AUDIT")
            && keyring.iter().any(|k| k.role == Role::customer_admin())
        {
            thresholds.insert("AUDIT".to_owned(), vec![(Role::customer_admin(), 1)]);
        }
        for (op, roles) in thresholds {
            if roles
                .iter()
                .all(|(role, _)| keyring.iter().any(|k| &k.role == role))
            {
                let policy = Policy::new(keyring.clone(), roles)?;
                let verifier = RequestVerifier::new(
                    config.gatekeeper_id.clone(),
                    policy,
                    config.limits.max_lifetime_secs,
                    config.limits.clock_skew_secs,
                )?;
                verifiers.insert(op, verifier);
            }
        }
        let key_id = config.key_id.clone();
        Ok(Self {
            config,
            verifiers,
            key,
            key_id,
            ledger,
            storage,
            metrics: Metrics::default(),
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

    fn sign_receipt(
        &self,
        request: &Request,
        decision: Decision,
        audit_seq: u64,
        now: u64,
    ) -> (String, String) {
        let receipt = Receipt {
            gatekeeper: self.config.gatekeeper_id.clone(),
            request_sha256: request.digest(),
            decision,
            decided_at: now,
            audit_seq,
        };
        let (bytes, sig) = receipt.sign(&self.key, self.key_id.clone());
        (b64(&bytes), encode_list(&[sig]))
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

/// The router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/keys", get(keys))
        .route("/v1/objects/{*rest}", any(objects))
        .route("/v1/audit/{*rest}", any(audit))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(state.clone(), cors))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

fn now_ms() -> u64 {
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

fn error_response(e: &ApiError) -> Response {
    json_response(e.status(), &e.body())
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

async fn healthz(State(gk): State<AppState>) -> Response {
    match gk.ledger.ping().await {
        Ok(()) => json_response(
            StatusCode::OK,
            &serde_json::json!({"status": "ok", "gatekeeper": gk.config.gatekeeper_id.as_str()}),
        ),
        Err(e) => {
            eprintln!("healthz: {e}");
            error_response(&ApiError::audit_unavailable())
        }
    }
}

async fn metrics(State(gk): State<AppState>) -> Response {
    let mut r = gk.metrics.render().into_response();
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
            "keys": [{"role": Role::GATEKEEPER, "key_id": gk.key_id.as_str(), "public_key": b64(&gk.public_key())}],
        }),
    )
}

async fn fallback() -> Response {
    error_response(&ApiError::new(
        ErrorCode::NotFound,
        "there is no such endpoint; see docs/API.md",
    ))
}

/// CORS for the configured report-page origins.
async fn cors(
    State(gk): State<AppState>,
    req: HttpRequest,
    next: axum::middleware::Next,
) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = origin
        .as_ref()
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| gk.config.cors_origins.iter().any(|a| a == o));
    if req.method() == HttpMethod::OPTIONS && origin.is_some() {
        if !allowed {
            return error_response(&ApiError::new(
                ErrorCode::AccessDenied,
                "this origin is not allowed to call the gatekeeper",
            ));
        }
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, PUT"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "countersign-request, countersign-signature, content-type, range",
            ),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        add_cors(h, origin);
        return r;
    }
    let mut r = next.run(req).await;
    if allowed {
        add_cors(r.headers_mut(), origin);
    }
    r
}

fn add_cors(h: &mut HeaderMap, origin: Option<HeaderValue>) {
    if let Some(o) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
    }
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(
            "countersign-receipt, countersign-receipt-signature, countersign-manifest, countersign-manifest-signature, content-range, content-length",
        ),
    );
}

/// What is known about a request as it goes through the pipeline; becomes its audit
/// entry.
struct Attempt {
    started: Instant,
    client_ip: IpAddr,
    operation: String,
    bucket: String,
    key: String,
    subject: String,
    request_raw: Vec<u8>,
    signatures_raw: String,
    request: Option<Request>,
    bytes: u64,
}

impl Attempt {
    fn new(peer: IpAddr, operation: &str, bucket: &str, key: &str, headers: &HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .chars()
                        .take(16 * 1024)
                        .collect::<String>()
                })
                .unwrap_or_default()
        };
        let raw = text(REQUEST_HEADER);
        Self {
            started: Instant::now(),
            client_ip: peer,
            operation: operation.to_owned(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            subject: String::new(),
            // Until it decodes, the header text itself is what was received.
            request_raw: raw.into_bytes(),
            signatures_raw: text(SIGNATURE_HEADER),
            request: None,
            bytes: 0,
        }
    }

    fn draft(&self, decision: Decision) -> AuditDraft {
        AuditDraft {
            time_ms: now_ms(),
            client_ip: self.client_ip,
            operation: self.operation.clone(),
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            subject: self.subject.clone(),
            decision,
            bytes: self.bytes,
            latency_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            request: self.request_raw.clone(),
            signatures: self.signatures_raw.clone(),
        }
    }
}

/// Records the decision; on success returns the audit sequence number.
async fn record(gk: &Gatekeeper, attempt: &Attempt, decision: Decision) -> Result<u64, ApiError> {
    let draft = attempt.draft(decision);
    let latency = draft.latency_us;
    let code = decision.error().map_or("", ErrorCode::as_str);
    match gk.ledger.append(draft).await {
        Ok(entry) => {
            gk.metrics
                .record(&attempt.operation, decision.as_str(), code, latency);
            Ok(entry.seq)
        }
        Err(e) => {
            eprintln!("audit append failed, refusing the request: {e}");
            gk.metrics.audit_failure();
            gk.metrics.record(
                &attempt.operation,
                "deny",
                ErrorCode::AuditUnavailable.as_str(),
                latency,
            );
            Err(ApiError::audit_unavailable())
        }
    }
}

/// Audits a denial and answers it, with a signed receipt if the request parsed.
async fn deny(gk: &Gatekeeper, attempt: &Attempt, error: ApiError) -> Response {
    let decision = Decision::Deny(error.code);
    match record(gk, attempt, decision).await {
        Ok(seq) => {
            let mut r = error_response(&error);
            if let Some(request) = &attempt.request {
                let (receipt, sig) = gk.sign_receipt(request, decision, seq, now_ms() / 1000);
                set(r.headers_mut(), RECEIPT_HEADER, &receipt);
                set(r.headers_mut(), RECEIPT_SIGNATURE_HEADER, &sig);
            }
            r
        }
        Err(audit_error) => error_response(&audit_error),
    }
}

/// What the URL asks for.
enum Target<'a> {
    /// `/v1/objects/{bucket}/{key}`: the raw (percent-encoded) key.
    Object { bucket: &'a str, key: &'a str },
    /// `/v1/objects/{bucket}`: a listing.
    List { bucket: &'a str },
    /// `/v1/audit/{search|export}`.
    Audit,
}

fn decode_lossy(s: &str) -> String {
    percent_decode(s).map_or_else(
        || s.to_owned(),
        |b| String::from_utf8_lossy(&b).into_owned(),
    )
}

/// Decodes `%XX` escapes; `None` if an escape is broken.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Steps 1–5 of the pipeline; fills `attempt` as it learns more.
async fn authorize(
    gk: &Gatekeeper,
    attempt: &mut Attempt,
    peer: IpAddr,
    method: &HttpMethod,
    target: &Target<'_>,
    headers: &HeaderMap,
    query: &str,
) -> Result<VerifiedRequest, ApiError> {
    // The client address: the socket peer, or X-Forwarded-For from a trusted proxy.
    // A refused X-Forwarded-For is reported after parsing, so the denial still gets a
    // receipt.
    let forwarded = headers.get("x-forwarded-for").map(HeaderValue::as_bytes);
    let resolved = client_ip(peer, forwarded, &gk.config.trusted_proxies);
    if let Ok(ip) = resolved {
        attempt.client_ip = ip;
    }

    // Parse the transport.
    let max = gk.config.limits.max_header_bytes;
    let header_text = |name: &str| -> Result<&str, ApiError> {
        let v = headers.get(name).ok_or_else(|| {
            ApiError::new(
                ErrorCode::Malformed,
                format!("the {name} header is missing"),
            )
        })?;
        if v.len() > max {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("the {name} header is larger than {max} bytes"),
            ));
        }
        v.to_str().map_err(|_| {
            ApiError::new(
                ErrorCode::Malformed,
                format!("the {name} header is not ASCII"),
            )
        })
    };
    let request_b64 = header_text(REQUEST_HEADER)?;
    let signatures_text = header_text(SIGNATURE_HEADER)?;
    let canonical = parse_b64(request_b64, "the countersign-request header")?;
    attempt.request_raw.clone_from(&canonical);
    let request = Request::parse(&canonical)?;
    attempt.subject = request.subject().to_string();
    attempt.bucket = request.bucket().to_string();
    attempt.key = request.operation().key_text().to_owned();
    attempt.request = Some(request.clone());
    let signatures: Vec<SignatureEntry> = parse_list(signatures_text)?;
    resolved?;

    // The HTTP request must be the signed request.
    let mismatch = |what: &str| {
        ApiError::new(
            ErrorCode::RequestMismatch,
            format!("the {what} of the HTTP request differs from the signed request"),
        )
    };
    let signed_method = request.method();
    let (op_name, verifier_name) = match target {
        Target::Object { bucket, key } => {
            let expected = match *method {
                HttpMethod::GET => Method::Get,
                HttpMethod::HEAD => Method::Head,
                HttpMethod::PUT => Method::Put,
                _ => return Err(mismatch("method")),
            };
            if signed_method != expected {
                return Err(mismatch("method"));
            }
            if *bucket != request.bucket().as_str() {
                return Err(mismatch("bucket"));
            }
            let signed_key = request
                .operation()
                .object_key()
                .ok_or_else(|| mismatch("object key"))?;
            if *key != signed_key.to_url_path() {
                return Err(mismatch(
                    "object key (it must be spelled exactly as ObjectKey::to_url_path)",
                ));
            }
            (signed_method.as_str(), signed_method.as_str())
        }
        Target::List { bucket } => {
            if *method != HttpMethod::GET || signed_method != Method::List {
                return Err(mismatch("method"));
            }
            if *bucket != request.bucket().as_str() {
                return Err(mismatch("bucket"));
            }
            let prefix = query_param(query, "prefix").unwrap_or("");
            if prefix != percent_encode(request.operation().key_text()) {
                return Err(mismatch(
                    "prefix (it must be percent-encoded like an object key)",
                ));
            }
            ("LIST", "LIST")
        }
        Target::Audit => {
            if *method != HttpMethod::GET
                || signed_method != Method::List
                || request.bucket().as_str() != AUDIT_BUCKET
            {
                return Err(ApiError::new(
                    ErrorCode::RequestMismatch,
                    format!("audit requests are GETs signed as LIST of bucket `{AUDIT_BUCKET}`"),
                ));
            }
            if !request.operation().key_text().is_empty() {
                return Err(mismatch("prefix (audit requests sign an empty prefix)"));
            }
            ("AUDIT", "AUDIT")
        }
    };
    attempt.operation = op_name.to_owned();
    if request
        .operation()
        .object_key()
        .is_some_and(|k| k.segments().next() == Some(RESERVED_SEGMENT))
    {
        return Err(ApiError::new(
            ErrorCode::InvalidKeyPath,
            format!("keys starting with `{RESERVED_SEGMENT}/` are reserved for the gatekeeper"),
        ));
    }
    if !matches!(target, Target::Audit) && !gk.storage.has_bucket(request.bucket()) {
        return Err(ApiError::new(
            ErrorCode::InvalidBucket,
            format!(
                "bucket `{}` is not served by this gatekeeper",
                request.bucket()
            ),
        ));
    }

    // Signatures, audience, lifetime and time window, against this operation's policy.
    let verifier = gk.verifiers.get(verifier_name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownKey,
            format!("no keys are configured that may sign {op_name} requests"),
        )
    })?;
    let now = now_ms() / 1000;
    let verified = verifier.verify(&canonical, &signatures, now)?;

    // Replay.
    let fresh = gk
        .ledger
        .use_nonce(&request.nonce().0, verified.replay_until(), now)
        .await
        .map_err(|e| {
            eprintln!("nonce store failed: {e}");
            ApiError::audit_unavailable()
        })?;
    if !fresh {
        return Err(ApiError::new(
            ErrorCode::Replayed,
            "this request's nonce was already used",
        ));
    }

    // IP rules, global then per bucket; then the subject ACL.
    gk.config.ip_rules.check(attempt.client_ip, "global")?;
    if let Some(b) = gk.config.buckets.get(request.bucket()) {
        b.ip_rules
            .check(attempt.client_ip, &format!("bucket `{}`", request.bucket()))?;
    }
    if !matches!(target, Target::Audit) {
        gk.config.acl.check(&request)?;
    }
    Ok(verified)
}

fn split_object_path(rest: &str) -> Option<Target<'_>> {
    match rest.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() => Some(Target::Object { bucket, key }),
        None if !rest.is_empty() => Some(Target::List { bucket: rest }),
        _ => None,
    }
}

async fn objects(
    State(gk): State<AppState>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    req: HttpRequest,
) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let rest = path.strip_prefix("/v1/objects/").unwrap_or("");
    let query = parts.uri.query().unwrap_or("");
    let target = split_object_path(rest);
    let (bucket_raw, key_raw) = match &target {
        Some(Target::Object { bucket, key }) => (*bucket, *key),
        Some(Target::List { bucket }) => (*bucket, query_param(query, "prefix").unwrap_or("")),
        _ => ("", rest),
    };
    let mut attempt = Attempt::new(
        peer.ip(),
        parts.method.as_str(),
        &decode_lossy(bucket_raw),
        &decode_lossy(key_raw),
        &parts.headers,
    );
    let Some(target) = target else {
        return deny(
            &gk,
            &attempt,
            ApiError::new(
                ErrorCode::Malformed,
                "object URLs are /v1/objects/{bucket}/{key} or /v1/objects/{bucket}?prefix=…",
            ),
        )
        .await;
    };
    if !matches!(
        parts.method,
        HttpMethod::GET | HttpMethod::HEAD | HttpMethod::PUT
    ) {
        return deny(
            &gk,
            &attempt,
            ApiError::new(ErrorCode::Malformed, format!("method {} is not supported: objects are read with GET/HEAD, created with PUT, and never deleted", parts.method)),
        )
        .await;
    }
    let verified = match authorize(
        &gk,
        &mut attempt,
        peer.ip(),
        &parts.method,
        &target,
        &parts.headers,
        query,
    )
    .await
    {
        Ok(v) => v,
        Err(e) => return deny(&gk, &attempt, e).await,
    };
    match verified.request().operation().clone() {
        Operation::Get { key, range } => {
            get_object(&gk, attempt, &verified, &key, range, &parts.headers).await
        }
        Operation::Head { key } => head_object(&gk, attempt, &verified, &key).await,
        Operation::Put {
            key,
            content_type,
            body: digest,
        } => {
            put_object(
                &gk,
                attempt,
                &verified,
                &key,
                &content_type,
                digest,
                &parts.headers,
                body,
            )
            .await
        }
        Operation::List { prefix } => {
            list_objects(&gk, attempt, &verified, prefix.as_str(), query).await
        }
    }
}

fn allow_headers(gk: &Gatekeeper, verified: &VerifiedRequest, seq: u64, headers: &mut HeaderMap) {
    let (receipt, sig) = gk.sign_receipt(verified.request(), Decision::Allow, seq, now_ms() / 1000);
    set(headers, RECEIPT_HEADER, &receipt);
    set(headers, RECEIPT_SIGNATURE_HEADER, &sig);
}

fn manifest_headers(o: &IndexedObject, headers: &mut HeaderMap) {
    set(headers, MANIFEST_HEADER, &b64(&o.manifest));
    set(headers, MANIFEST_SIGNATURE_HEADER, &o.manifest_signatures);
    if let Ok(v) = HeaderValue::from_str(&o.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    set(headers, "etag", &format!("\"{}\"", hex(&o.sha256)));
}

async fn lookup(
    gk: &Gatekeeper,
    verified: &VerifiedRequest,
    key: &str,
) -> Result<IndexedObject, ApiError> {
    match gk
        .ledger
        .object(verified.request().bucket().as_str(), key)
        .await
    {
        Ok(Some(o)) => Ok(o),
        Ok(None) => Err(ApiError::new(ErrorCode::NotFound, "no such object")),
        Err(e) => {
            eprintln!("index lookup failed: {e}");
            Err(ApiError::audit_unavailable())
        }
    }
}

async fn head_object(
    gk: &Gatekeeper,
    attempt: Attempt,
    verified: &VerifiedRequest,
    key: &countersign_core::ObjectKey,
) -> Response {
    let o = match lookup(gk, verified, key.as_str()).await {
        Ok(o) => o,
        Err(e) => return deny(gk, &attempt, e).await,
    };
    let seq = match record(gk, &attempt, Decision::Allow).await {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    allow_headers(gk, verified, seq, h);
    manifest_headers(&o, h);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(o.size));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    r
}

async fn get_object(
    gk: &Gatekeeper,
    mut attempt: Attempt,
    verified: &VerifiedRequest,
    key: &countersign_core::ObjectKey,
    range: Option<countersign_core::ByteRange>,
    headers: &HeaderMap,
) -> Response {
    // An HTTP Range header, if sent, must be the signed range.
    let http_range = headers.get(header::RANGE).map(HeaderValue::as_bytes);
    let signed_range = range.map(|r| format!("bytes={}-{}", r.first(), r.last()));
    if let Some(h) = http_range
        && Some(h) != signed_range.as_deref().map(str::as_bytes)
    {
        return deny(
            gk,
            &attempt,
            ApiError::new(
                ErrorCode::RequestMismatch,
                "the Range header differs from the signed range",
            ),
        )
        .await;
    }
    let o = match lookup(gk, verified, key.as_str()).await {
        Ok(o) => o,
        Err(e) => return deny(gk, &attempt, e).await,
    };
    let span = match range {
        None => 0..o.size,
        Some(r) if r.first() < o.size => r.first()..(r.last().saturating_add(1)).min(o.size),
        Some(r) => {
            let e = ApiError::new(
                ErrorCode::InvalidField,
                format!(
                    "the range starts at {} but the object has {} bytes",
                    r.first(),
                    o.size
                ),
            );
            return deny(gk, &attempt, e).await;
        }
    };
    attempt.bytes = span.end - span.start;
    let seq = match record(gk, &attempt, Decision::Allow).await {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let stream = match gk
        .storage
        .get(verified.request().bucket(), key, span.clone())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("get {}/{key} failed: {e}", verified.request().bucket());
            return error_response(&ApiError::storage_unavailable());
        }
    };
    gk.metrics.add_bytes_out(attempt.bytes);
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    allow_headers(gk, verified, seq, h);
    manifest_headers(&o, h);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(attempt.bytes));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if range.is_some() {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        set(
            r.headers_mut(),
            "content-range",
            &format!(
                "bytes {}-{}/{}",
                span.start,
                span.end.saturating_sub(1),
                o.size
            ),
        );
    }
    r
}

async fn list_objects(
    gk: &Gatekeeper,
    attempt: Attempt,
    verified: &VerifiedRequest,
    prefix: &str,
    query: &str,
) -> Response {
    let max = gk.config.limits.max_list_page;
    let limit = match query_param(query, "limit").map(str::parse::<u32>) {
        None => max,
        Some(Ok(n)) if (1..=max).contains(&n) => n,
        Some(_) => {
            return deny(
                gk,
                &attempt,
                ApiError::new(ErrorCode::InvalidField, format!("limit must be 1 to {max}")),
            )
            .await;
        }
    };
    let after = match query_param(query, "after")
        .map(|a| percent_decode(a).and_then(|b| String::from_utf8(b).ok()))
    {
        None => String::new(),
        Some(Some(a)) => a,
        Some(None) => {
            return deny(
                gk,
                &attempt,
                ApiError::new(
                    ErrorCode::Malformed,
                    "`after` must be a percent-encoded UTF-8 key",
                ),
            )
            .await;
        }
    };
    let bucket = verified.request().bucket().as_str();
    let mut rows = match gk
        .ledger
        .list(bucket, prefix, &after, limit.saturating_add(1))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("list failed: {e}");
            return deny(gk, &attempt, ApiError::audit_unavailable()).await;
        }
    };
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let seq = match record(gk, &attempt, Decision::Allow).await {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let objects: Vec<_> = rows
        .iter()
        .map(|o| serde_json::json!({"key": o.key, "size": o.size, "sha256": hex(&o.sha256), "content_type": o.content_type, "stored_at": o.stored_at}))
        .collect();
    let next = if more {
        rows.last().map(|o| percent_encode(&o.key))
    } else {
        None
    };
    let mut r = json_response(
        StatusCode::OK,
        &serde_json::json!({"bucket": bucket, "prefix": prefix, "objects": objects, "next_after": next}),
    );
    allow_headers(gk, verified, seq, r.headers_mut());
    r
}

#[allow(clippy::too_many_arguments)]
async fn put_object(
    gk: &Gatekeeper,
    mut attempt: Attempt,
    verified: &VerifiedRequest,
    key: &countersign_core::ObjectKey,
    content_type: &countersign_core::ContentType,
    expected: countersign_core::BodyDigest,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let bucket = verified.request().bucket();
    let max = gk.config.limits.max_object_bytes;
    if expected.length > max {
        return deny(
            gk,
            &attempt,
            ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "the object is {} bytes; this gatekeeper stores at most {max}",
                    expected.length
                ),
            ),
        )
        .await;
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|d| d != expected.length) {
        return deny(
            gk,
            &attempt,
            ApiError::new(
                ErrorCode::BodyMismatch,
                format!(
                    "Content-Length differs from the signed body length {}",
                    expected.length
                ),
            ),
        )
        .await;
    }
    let now = now_ms() / 1000;
    match gk.ledger.reserve(bucket.as_str(), key.as_str(), now).await {
        Ok(true) => {}
        Ok(false) => {
            return deny(
                gk,
                &attempt,
                ApiError::new(
                    ErrorCode::AlreadyExists,
                    "an object with this key exists; objects are never overwritten",
                ),
            )
            .await;
        }
        Err(e) => {
            eprintln!("reserve failed: {e}");
            return deny(gk, &attempt, ApiError::audit_unavailable()).await;
        }
    }
    let release = || async {
        if let Err(e) = gk.ledger.release(bucket.as_str(), key.as_str()).await {
            eprintln!("releasing {bucket}/{key} failed: {e}");
        }
    };
    let mut pending = match gk.storage.begin_put(bucket, key) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("begin put failed: {e}");
            release().await;
            return deny(gk, &attempt, ApiError::storage_unavailable()).await;
        }
    };
    let mut stream = body.into_data_stream();
    let failure = loop {
        let chunk: Bytes = match stream.next().await {
            None => break None,
            Some(Ok(c)) => c,
            Some(Err(_)) => {
                break Some(ApiError::new(
                    ErrorCode::BodyMismatch,
                    "the request body ended before the signed length was received",
                ));
            }
        };
        attempt.bytes += chunk.len() as u64;
        if attempt.bytes > expected.length {
            break Some(ApiError::new(
                ErrorCode::BodyMismatch,
                format!(
                    "the body is longer than the signed {} bytes",
                    expected.length
                ),
            ));
        }
        if let Err(e) = pending.write(chunk).await {
            eprintln!("write {bucket}/{key} failed: {e}");
            break Some(ApiError::storage_unavailable());
        }
    };
    let failure = failure.or_else(|| {
        let got = pending.digest();
        if got.length != expected.length {
            Some(ApiError::new(
                ErrorCode::BodyMismatch,
                format!(
                    "the body is {} bytes, the signed length is {}",
                    got.length, expected.length
                ),
            ))
        } else if got.sha256 != expected.sha256 {
            Some(ApiError::new(
                ErrorCode::BodyMismatch,
                "the body's SHA-256 differs from the signed body-sha256",
            ))
        } else {
            None
        }
    });
    let abort = |pending: crate::storage::PendingPut| async {
        if let Err(e) = pending.abort().await {
            eprintln!("aborting the upload of {bucket}/{key} failed: {e}");
        }
        release().await;
    };
    if let Some(e) = failure {
        abort(pending).await;
        return deny(gk, &attempt, e).await;
    }
    let seq = match record(gk, &attempt, Decision::Allow).await {
        Ok(s) => s,
        Err(e) => {
            abort(pending).await;
            return error_response(&e);
        }
    };
    let manifest = match Manifest::for_put(verified, gk.config.gatekeeper_id.clone(), now, seq) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("manifest failed: {e}");
            abort(pending).await;
            // The "allow" entry is already in the log: record that the PUT did not
            // happen after all, so the log never shows an upload that failed as done.
            return deny(
                gk,
                &attempt,
                ApiError::new(
                    ErrorCode::Internal,
                    "the gatekeeper could not build the manifest",
                ),
            )
            .await;
        }
    };
    let (manifest_bytes, manifest_sig) = manifest.sign(&gk.key, gk.key_id.clone());
    let manifest_sigs = encode_list(&[manifest_sig]);
    let sidecar =
        serde_json::json!({"manifest": b64(&manifest_bytes), "signatures": manifest_sigs})
            .to_string();
    if let Err(e) = pending.publish(Bytes::from(sidecar)).await {
        eprintln!("publish {bucket}/{key} failed: {e}");
        release().await;
        let err = match e {
            StorageError::AlreadyExists => ApiError::new(
                ErrorCode::AlreadyExists,
                "an object with this key exists; objects are never overwritten",
            ),
            _ => ApiError::storage_unavailable(),
        };
        // As above: a second entry records that the allowed PUT failed.
        return deny(gk, &attempt, err).await;
    }
    let indexed = IndexedObject {
        bucket: bucket.to_string(),
        key: key.to_string(),
        size: expected.length,
        sha256: expected.sha256,
        content_type: content_type.to_string(),
        stored_at: now,
        manifest: manifest_bytes,
        manifest_signatures: manifest_sigs,
    };
    if let Err(e) = gk.ledger.commit(&indexed).await {
        eprintln!("index commit of {bucket}/{key} failed (object stored, key stays reserved): {e}");
        return error_response(&ApiError::audit_unavailable());
    }
    gk.metrics.add_bytes_in(expected.length);
    let mut r = json_response(
        StatusCode::CREATED,
        &serde_json::json!({"bucket": bucket.as_str(), "key": key.as_str(), "size": expected.length, "sha256": hex(&expected.sha256), "audit_seq": seq}),
    );
    allow_headers(gk, verified, seq, r.headers_mut());
    manifest_headers(&indexed, r.headers_mut());
    // The JSON body describes the result; the stored type is in the manifest.
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn audit(
    State(gk): State<AppState>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    req: HttpRequest,
) -> Response {
    let (parts, _body) = req.into_parts();
    let endpoint = parts
        .uri
        .path()
        .strip_prefix("/v1/audit/")
        .unwrap_or("")
        .to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let mut attempt = Attempt::new(
        peer.ip(),
        "AUDIT",
        AUDIT_BUCKET,
        &format!("{endpoint}?{query}"),
        &parts.headers,
    );
    if endpoint != "search" && endpoint != "export" {
        return deny(
            &gk,
            &attempt,
            ApiError::new(
                ErrorCode::NotFound,
                "audit endpoints are /v1/audit/search and /v1/audit/export",
            ),
        )
        .await;
    }
    let verified = match authorize(
        &gk,
        &mut attempt,
        peer.ip(),
        &parts.method,
        &Target::Audit,
        &parts.headers,
        &query,
    )
    .await
    {
        Ok(v) => v,
        Err(e) => return deny(&gk, &attempt, e).await,
    };
    attempt.key = format!("{endpoint}?{query}");
    let filter = match parse_filter(&query) {
        Ok(f) => f,
        Err(e) => return deny(&gk, &attempt, e).await,
    };
    let seq = match record(&gk, &attempt, Decision::Allow).await {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let mut r = if endpoint == "search" {
        match gk.ledger.search(&filter).await {
            Ok(entries) => {
                let next = if entries.len() >= filter.limit as usize {
                    entries.last().map(|e| e.seq + 1)
                } else {
                    None
                };
                let records: Vec<_> = entries.iter().map(AuditRecord::from_entry).collect();
                json_response(
                    StatusCode::OK,
                    &serde_json::json!({"entries": records, "next_after_seq": next}),
                )
            }
            Err(e) => {
                eprintln!("audit search failed: {e}");
                error_response(&ApiError::audit_unavailable())
            }
        }
    } else {
        match export_jsonl(&gk.ledger, now_ms() / 1000, true).await {
            Ok(text) => {
                let mut r = text.into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-ndjson"),
                );
                r
            }
            Err(e) => {
                eprintln!("audit export failed: {e}");
                error_response(&ApiError::audit_unavailable())
            }
        }
    };
    allow_headers(&gk, &verified, seq, r.headers_mut());
    r
}

/// Parses search/export query parameters.
pub fn parse_filter(query: &str) -> Result<AuditFilter, ApiError> {
    let mut f = AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    };
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = percent_decode(&v.replace('+', " "))
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Malformed,
                    format!("query parameter `{k}` is not percent-encoded UTF-8"),
                )
            })?;
        let num = |v: &str| {
            v.parse::<u64>().map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidField,
                    format!("`{k}` must be a non-negative integer"),
                )
            })
        };
        match k {
            "after_seq" | "from_seq" => f.after_seq = num(&v)?,
            "from_ms" => f.from_ms = Some(num(&v)?),
            "to_ms" => f.to_ms = Some(num(&v)?),
            "subject" => f.subject = Some(v),
            "ip" => {
                f.client_ip = Some(v.parse().map_err(|_| {
                    ApiError::new(ErrorCode::InvalidField, "`ip` must be an IP address")
                })?)
            }
            "key_prefix" => f.key_prefix = Some(v),
            "decision" if v == "allow" || v == "deny" => f.decision = Some(v),
            "decision" => {
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    "`decision` must be allow or deny",
                ));
            }
            "error" => {
                f.error = Some(ErrorCode::from_str_code(&v).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidField,
                        format!("`{v}` is not an error code"),
                    )
                })?)
            }
            "limit" => {
                f.limit = u32::try_from(num(&v)?)
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| {
                        ApiError::new(ErrorCode::InvalidField, "`limit` must be 1 to 10000")
                    })?;
            }
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    format!("unknown query parameter `{k}`"),
                ));
            }
        }
    }
    Ok(f)
}

/// The whole audit log as JSONL: every entry and every stored checkpoint. With
/// `fresh_checkpoint`, a checkpoint over the current head is signed first, so the
/// export is pinned up to its last entry.
pub async fn export_jsonl(
    ledger: &Ledger,
    now_secs: u64,
    fresh_checkpoint: bool,
) -> Result<String, crate::ledger::LedgerError> {
    let fresh = if fresh_checkpoint {
        ledger.checkpoint_now(now_secs).await?
    } else {
        None
    };
    let mut out = String::new();
    let mut next = 0;
    loop {
        let page = ledger.entries(next, 1000).await?;
        let Some(last) = page.last() else { break };
        next = last.seq + 1;
        for e in &page {
            out.push_str(
                &serde_json::to_string(&AuditLine::Entry(Box::new(AuditRecord::from_entry(e))))
                    .unwrap_or_default(),
            );
            out.push('\n');
        }
    }
    let mut checkpoints = ledger.checkpoints().await?;
    if let Some(f) = fresh
        && !checkpoints.contains(&f)
    {
        checkpoints.push(f);
    }
    for c in checkpoints {
        let line = AuditLine::Checkpoint {
            checkpoint: b64(&c.body),
            signatures: c.signatures,
        };
        out.push_str(&serde_json::to_string(&line).unwrap_or_default());
        out.push('\n');
    }
    Ok(out)
}
