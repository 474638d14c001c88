//! The request pipeline, in the order `docs/API.md` documents:
//!
//! 1. the client address (the socket peer, or `X-Forwarded-For` from a trusted proxy,
//!    every header line joined in order) and the pre-authentication failure limit;
//! 2. the route (`/v1/objects/{bucket}/{key}`, `/v1/objects/{bucket}?prefix=…`,
//!    `/v1/audit/{search|export}`);
//! 3. the IP rules: global, then the URL's bucket's — before anything is parsed, so a
//!    denied address learns nothing about its request and burns no nonce;
//! 4. the two headers, each exactly once, decoded and parsed;
//! 5. the URL, method and range must be the signed request's;
//! 6. signatures, audience, lifetime and time window;
//! 7. the nonce (checked and recorded with the audit entry; a PUT also checks it
//!    early, with its reservation, before it receives its body);
//! 8. the ACL;
//!
//! then the operation prepares what it will do, and [`finish`] records the decision
//! and carries it out.

use crate::acl::client_ip;
use crate::config::AUDIT_BUCKET;
use crate::error::ApiError;
use crate::http::{AppState, Gatekeeper, audit, get, list, now_ms, put};
use crate::ledger::{AuditDraft, LedgerError, NonceUse};
use axum::body::Body;
use axum::extract::Request as HttpRequest;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method as HttpMethod, header};
use axum::response::{IntoResponse as _, Response};
use countersign_core::audit::{AuditEntry, CapturedHeader, UNVERIFIED_CAPTURE_BYTES};
use countersign_core::signature::{encode_list, parse_list};
use countersign_core::text::{b64, parse_b64};
use countersign_core::transport::{
    AUDIT_PREFIX, OBJECTS_PREFIX, RECEIPT_HEADER, RECEIPT_SIGNATURE_HEADER, REQUEST_HEADER,
    REQUEST_ID_HEADER, SIGNATURE_HEADER,
};
use countersign_core::{
    Bucket, Decision, ErrorCode, Method, ParsedRequest, Receipt, Request, SignatureEntry,
    VerifiedRequest,
};
use sha2::Digest as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use tracing::Instrument as _;

/// What a request asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Read an object (or a signed range of it).
    Get,
    /// Read an object's metadata.
    Head,
    /// Store a new object.
    Put,
    /// List a bucket's keys under a prefix.
    List,
    /// Search or export the audit log.
    Audit,
}

impl Operation {
    /// The name used in thresholds, the audit log and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Put => "PUT",
            Self::List => "LIST",
            Self::Audit => "AUDIT",
        }
    }

    /// Parses a threshold name.
    pub fn from_policy_name(s: &str) -> Option<Self> {
        [Self::Get, Self::Head, Self::Put, Self::List, Self::Audit]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// A request that passed the IP rules, its signatures, the nonce check and the ACL.
/// Its fields are private and only this module's pipeline makes one; every
/// operation's preparation (index lookups, the upload's reservation) takes it, so
/// acting on an unauthorized request does not type-check.
#[derive(Debug)]
pub struct Authorized {
    verified: VerifiedRequest,
    operation: Operation,
    deadline: Instant,
}

impl Authorized {
    /// The verified request.
    pub fn request(&self) -> &Request {
        self.verified.request()
    }

    /// The verified request with its signatures.
    pub fn verified(&self) -> &VerifiedRequest {
        &self.verified
    }

    /// The bucket it acts on.
    pub fn bucket(&self) -> &Bucket {
        self.verified.request().bucket()
    }

    /// The operation.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// When the request must be over: its signed `expires-at` plus the clock skew.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// What an allowed request will do once its entry is in the log.
#[derive(Debug)]
pub enum Act {
    /// Answer HEAD.
    Head(get::Found),
    /// Stream (part of) an object.
    Get(get::Found),
    /// Publish and index a received upload.
    Put(Box<crate::upload::Received>),
    /// Answer a LIST page.
    List(list::Page),
    /// Answer an audit search or export.
    Audit(audit::Query),
}

/// An allowed request, ready for [`finish`].
#[derive(Debug)]
pub struct Allowed {
    /// Its authorization.
    pub auth: Authorized,
    /// What it does.
    pub act: Act,
}

/// What is known about a request as it goes through the pipeline; becomes its audit
/// entry.
#[derive(Debug)]
pub struct Attempt {
    started: Instant,
    peer: IpAddr,
    /// The client address used for every decision.
    pub client_ip: IpAddr,
    operation: String,
    bucket: Vec<u8>,
    key: Vec<u8>,
    subject: Vec<u8>,
    request_raw: Vec<u8>,
    signatures_raw: Vec<u8>,
    /// SHA-256 of the decoded `countersign-request` header, when it was sent once and
    /// decodes: a denial made before parsing still gets a receipt naming it.
    request_digest: Option<[u8; 32]>,
    nonce: Option<NonceUse>,
    /// Body bytes transferred.
    pub bytes: u64,
    request_id: String,
}

fn raw_header(headers: &HeaderMap, name: &str) -> Vec<u8> {
    headers
        .get_all(name)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b","[..])
}

/// A fresh request id: 32 hex digits, the first 16 drawn from the OS once per
/// process, the last 16 a counter. Ids are unique per process and (with
/// overwhelming probability) across restarts and instances, and cost no system
/// call per request; they name a request in logs and are not secrets (the counter
/// tells a client how many requests came before its own, which every receipt's
/// `audit-seq` tells it anyway).
fn new_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        countersign_core::text::hex(&bytes)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{n:016x}")
}

/// The bytes a URL component spells (`%XX` decoded; any byte may result).
fn percent_decoded(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

impl Attempt {
    fn new(parts: &Parts, peer: SocketAddr) -> Self {
        let path = parts.uri.path();
        let (bucket, key) = match path.strip_prefix(OBJECTS_PREFIX) {
            Some(rest) => match rest.split_once('/') {
                Some((b, k)) => (percent_decoded(b), percent_decoded(k)),
                None => (
                    percent_decoded(rest),
                    form_urlencoded_raw(parts.uri.query().unwrap_or(""), "prefix")
                        .map(percent_decoded)
                        .unwrap_or_default(),
                ),
            },
            None => (Vec::new(), percent_decoded(path)),
        };
        Self {
            started: Instant::now(),
            peer: peer.ip(),
            client_ip: crate::acl::canonical_ip(peer.ip()),
            operation: parts.method.as_str().to_owned(),
            bucket,
            key,
            subject: Vec::new(),
            request_raw: raw_header(&parts.headers, REQUEST_HEADER),
            signatures_raw: raw_header(&parts.headers, SIGNATURE_HEADER),
            request_digest: None,
            nonce: None,
            bytes: 0,
            request_id: new_request_id(),
        }
    }

    /// Counts the decision in the metrics (`None`: allowed). The bucket label is a
    /// bucket this gatekeeper serves (or the audit log's), never an unknown name from
    /// the request: the label set stays bounded.
    fn count(&self, gk: &Gatekeeper, code: Option<ErrorCode>, latency_us: u64) {
        let name = std::str::from_utf8(&self.bucket).unwrap_or("");
        let served = (self.operation == Operation::Audit.as_str() && name == AUDIT_BUCKET)
            || Bucket::parse(name).is_ok_and(|b| gk.storage.has_bucket(&b));
        let bucket = if served { name } else { "" };
        gk.metrics
            .record(&self.operation, bucket, code, self.client_ip, latency_us);
        if let Some(code) = code {
            gk.webhooks.observe(code, self.client_ip, now_ms());
        }
    }

    /// Whether the request's signatures verified.
    fn verified(&self) -> bool {
        self.nonce.is_some()
    }

    /// The audit entry of this attempt. Before its signatures verified, it keeps only
    /// the first bytes of each header (with the whole value's SHA-256 and length), so
    /// unauthenticated garbage cannot flood the log.
    fn draft(&self, decision: Decision) -> AuditDraft {
        let capture = |v: &[u8]| {
            if self.verified() {
                CapturedHeader::whole(v)
            } else {
                CapturedHeader::prefix(v, UNVERIFIED_CAPTURE_BYTES)
            }
        };
        AuditDraft {
            time_ms: now_ms(),
            request_id: self.request_id.clone().into_bytes(),
            client_ip: self.client_ip,
            operation: self.operation.clone().into_bytes(),
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            subject: self.subject.clone(),
            decision,
            bytes: self.bytes,
            latency_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            request: capture(&self.request_raw),
            signatures: capture(&self.signatures_raw),
        }
    }
}

/// Where the URL points.
#[derive(Debug)]
enum Target<'a> {
    Object {
        bucket: &'a str,
        key: &'a str,
        operation: Operation,
    },
    List {
        bucket: &'a str,
    },
    Audit(audit::Endpoint),
}

impl Target<'_> {
    fn operation(&self) -> Operation {
        match self {
            Self::Object { operation, .. } => *operation,
            Self::List { .. } => Operation::List,
            Self::Audit(_) => Operation::Audit,
        }
    }
}

fn route(parts: &Parts) -> Result<Target<'_>, ApiError> {
    let path = parts.uri.path();
    if let Some(rest) = path.strip_prefix(AUDIT_PREFIX) {
        let endpoint = audit::Endpoint::parse(rest).ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                "audit endpoints are /v1/audit/search, /v1/audit/export, /v1/audit/tile/entries/<N>[.p/<W>] and /v1/audit/reload",
            )
        })?;
        if parts.method != endpoint.method() {
            return Err(ApiError::new(
                ErrorCode::RequestMismatch,
                "audit search and export are GETs; a reload is a POST",
            ));
        }
        return Ok(Target::Audit(endpoint));
    }
    let rest = path.strip_prefix(OBJECTS_PREFIX).unwrap_or("");
    let target = match rest.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() => {
            let operation = match parts.method {
                HttpMethod::GET => Operation::Get,
                HttpMethod::HEAD => Operation::Head,
                HttpMethod::PUT => Operation::Put,
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::Malformed,
                        format!(
                            "method {} is not supported: objects are read with GET/HEAD, created with PUT, and never deleted",
                            parts.method
                        ),
                    ));
                }
            };
            Target::Object {
                bucket,
                key,
                operation,
            }
        }
        None if !rest.is_empty() => {
            if parts.method != HttpMethod::GET {
                return Err(ApiError::new(
                    ErrorCode::Malformed,
                    format!(
                        "method {} is not supported: listings are GETs",
                        parts.method
                    ),
                ));
            }
            Target::List { bucket: rest }
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::Malformed,
                "object URLs are /v1/objects/{bucket}/{key} or /v1/objects/{bucket}?prefix=…",
            ));
        }
    };
    Ok(target)
}

/// The one value of a header that must be sent exactly once.
fn single_header<'h>(headers: &'h HeaderMap, name: &str, max: usize) -> Result<&'h str, ApiError> {
    let mut values = headers.get_all(name).iter();
    let v = values.next().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Malformed,
            format!("the {name} header is missing"),
        )
    })?;
    if values.next().is_some() {
        return Err(ApiError::new(
            ErrorCode::Malformed,
            format!("the {name} header is sent more than once"),
        ));
    }
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
}

/// Every `X-Forwarded-For` line, joined in order with commas (a proxy may add a line
/// of its own instead of extending the first).
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<u8>> {
    let mut lines = headers.get_all("x-forwarded-for").iter().peekable();
    lines.peek()?;
    Some(
        lines
            .map(HeaderValue::as_bytes)
            .collect::<Vec<_>>()
            .join(&b","[..]),
    )
}

/// Runs one object or audit request from start to end, in a `request` span that
/// carries its id (the `X-Request-Id` answer header). The server log gets the
/// method, status and duration; never the bucket, key or subject (they can hold
/// patient data: the audit log is where they belong).
pub async fn handle(gk: AppState, peer: SocketAddr, req: HttpRequest) -> Response {
    let (parts, body) = req.into_parts();
    // Whatever this request's fate, the client gets to read the answer.
    let body = super::drain::drain_on_drop(body);
    let mut attempt = Attempt::new(&parts, peer);
    let span = tracing::info_span!("request", id = %attempt.request_id);
    async move {
        let result = run(&gk, &mut attempt, &parts, body).await;
        let started = attempt.started;
        let response = finish(&gk, attempt, result).await;
        tracing::info!(
            method = %parts.method,
            status = response.status().as_u16(),
            ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "request finished"
        );
        response
    }
    .instrument(span)
    .await
}

async fn run(
    gk: &Gatekeeper,
    attempt: &mut Attempt,
    parts: &Parts,
    body: Body,
) -> Result<Allowed, ApiError> {
    // The receipt of a denial names the request's bytes even before they are parsed.
    // They are decoded once, here, and parsed in step 4; their SHA-256 is the one the
    // receipt of any decision names.
    let decoded = single_header(
        &parts.headers,
        REQUEST_HEADER,
        gk.config.limits.max_header_bytes,
    )
    .ok()
    .and_then(|v| parse_b64(v, "").ok());
    attempt.request_digest = decoded.as_ref().map(|c| sha2::Sha256::digest(c).into());
    // The policy in force now stays in force for this request, whatever reloads.
    let policy = gk.policy.load_full();
    // 1. Client address.
    let forwarded = forwarded_for(&parts.headers);
    attempt.client_ip = client_ip(attempt.peer, forwarded.as_deref(), &policy.trusted_proxies)?;
    if !gk.failures.allows(attempt.client_ip) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many failed requests from this address; retry later",
        ));
    }
    // 2. Route.
    let target = route(parts)?;
    attempt.operation = target.operation().as_str().to_owned();
    if let Target::Audit(_) = target {
        attempt.bucket = AUDIT_BUCKET.as_bytes().to_vec();
        attempt.key = parts
            .uri
            .path_and_query()
            .map_or_else(Vec::new, |p| p.as_str().as_bytes().to_vec());
    }
    // 3. IP rules, global then the addressed bucket's.
    policy.ip_rules.check(attempt.client_ip, "global")?;
    let url_bucket = match &target {
        Target::Object { bucket, .. } | Target::List { bucket } => Bucket::parse(bucket).ok(),
        Target::Audit(_) => None,
    };
    if let Some((b, rules)) = url_bucket
        .as_ref()
        .and_then(|b| policy.bucket_ip_rules.get(b).map(|rules| (b, rules)))
    {
        rules.check(attempt.client_ip, &format!("bucket `{b}`"))?;
    }
    // 4. Headers.
    let max = gk.config.limits.max_header_bytes;
    let request_b64 = single_header(&parts.headers, REQUEST_HEADER, max)?;
    let signatures_text = single_header(&parts.headers, SIGNATURE_HEADER, max)?;
    let canonical = match decoded {
        Some(c) => c,
        // Decoding failed above: this reports why.
        None => parse_b64(request_b64, "the countersign-request header")?,
    };
    let parsed = ParsedRequest::parse(canonical)?;
    let request = parsed.request();
    attempt.subject = request.subject().as_str().as_bytes().to_vec();
    attempt.bucket = request.bucket().as_str().as_bytes().to_vec();
    attempt.key = request.operation().key_text().as_bytes().to_vec();
    let signatures: Vec<SignatureEntry> = parse_list(signatures_text)?;
    // 5. The HTTP request must be the signed request.
    bind(&target, request, parts)?;
    if !matches!(target, Target::Audit(_)) && !gk.storage.has_bucket(request.bucket()) {
        return Err(ApiError::new(
            ErrorCode::InvalidBucket,
            format!(
                "bucket `{}` is not served by this gatekeeper",
                request.bucket()
            ),
        ));
    }
    // 6. Signatures, audience, lifetime and window, under this operation's policy.
    let operation = target.operation();
    let verifier = policy.verifiers.get(&operation).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownKey,
            format!(
                "no keys are configured that may sign {} requests",
                operation.as_str()
            ),
        )
    })?;
    let now = now_ms() / 1000;
    let verified = verifier.verify_parsed(parsed, signatures, now)?;
    let request = verified.request();
    attempt.nonce = Some(NonceUse {
        nonce: request.nonce().0,
        until: verified.replay_until(),
    });
    // 7. Replay: the nonce is checked and recorded with the audit entry, in one
    // transaction. A PUT, which would receive its whole body first, also checks it
    // early, in the same call that reserves its key (`Reserved::begin`).
    // 8. The ACL (audit requests are governed by their own threshold).
    if operation != Operation::Audit {
        policy.acl.check(request)?;
    }
    let left = request
        .expires_at()
        .saturating_add(gk.config.limits.clock_skew_secs)
        .saturating_sub(now);
    let auth = Authorized {
        verified,
        operation,
        deadline: Instant::now() + std::time::Duration::from_secs(left),
    };
    let act = match (&target, operation) {
        (_, Operation::Head) => Act::Head(get::prepare(gk, &auth, parts, attempt).await?),
        (_, Operation::Get) => Act::Get(get::prepare(gk, &auth, parts, attempt).await?),
        (_, Operation::Put) => Act::Put(Box::new(
            put::receive(gk, &auth, parts, body, attempt).await?,
        )),
        (_, Operation::List) => Act::List(list::prepare(gk, &auth, parts).await?),
        (Target::Audit(endpoint), Operation::Audit) => Act::Audit(audit::prepare(
            *endpoint,
            parts,
            auth.verified().request().subject().as_str(),
            &policy.acl.groups,
        )?),
        (_, Operation::Audit) => {
            return Err(ApiError::new(ErrorCode::Internal, "audit target expected"));
        }
    };
    Ok(Allowed { auth, act })
}

fn mismatch(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::RequestMismatch,
        format!("the {what} of the HTTP request differs from the signed request"),
    )
}

/// Step 5: method, bucket, key or prefix (spelled exactly as signed) and range.
fn bind(target: &Target<'_>, request: &Request, parts: &Parts) -> Result<(), ApiError> {
    let signed = request.method();
    match target {
        Target::Object {
            bucket,
            key,
            operation,
        } => {
            let expected = match operation {
                Operation::Get => Method::Get,
                Operation::Head => Method::Head,
                _ => Method::Put,
            };
            if signed != expected {
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
            if let countersign_core::Operation::Get { range, .. } = request.operation() {
                let http_range = parts.headers.get(header::RANGE).map(HeaderValue::as_bytes);
                let signed_range = range.map(|r| format!("bytes={}-{}", r.first(), r.last()));
                if http_range.is_some() && http_range != signed_range.as_deref().map(str::as_bytes)
                {
                    return Err(ApiError::new(
                        ErrorCode::RequestMismatch,
                        "the Range header differs from the signed range",
                    ));
                }
            }
        }
        Target::List { bucket } => {
            if signed != Method::List {
                return Err(mismatch("method"));
            }
            if *bucket != request.bucket().as_str() {
                return Err(mismatch("bucket"));
            }
            let raw_prefix = form_urlencoded_raw(parts.uri.query().unwrap_or(""), "prefix");
            if raw_prefix.unwrap_or("")
                != countersign_core::names::percent_encode(request.operation().key_text())
            {
                return Err(mismatch(
                    "prefix (it must be percent-encoded like an object key)",
                ));
            }
        }
        Target::Audit(endpoint) => {
            if signed != Method::List || request.bucket().as_str() != AUDIT_BUCKET {
                return Err(ApiError::new(
                    ErrorCode::RequestMismatch,
                    format!("audit requests are GETs signed as LIST of bucket `{AUDIT_BUCKET}`"),
                ));
            }
            if request.operation().key_text() != endpoint.signed_prefix() {
                return Err(mismatch(
                    "prefix (audit search and export sign an empty prefix, a reload the prefix `reload`)",
                ));
            }
        }
    }
    if request
        .operation()
        .object_key()
        .is_some_and(|k| k.segments().next() == Some(".countersign"))
    {
        return Err(ApiError::new(
            ErrorCode::InvalidKeyPath,
            "keys starting with `.countersign/` are reserved",
        ));
    }
    Ok(())
}

/// The raw (still percent-encoded) value of query parameter `name`: the signed
/// spelling is compared byte for byte, so it is not decoded first.
pub fn form_urlencoded_raw<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// Signs the receipt of `decision`, recorded by `entry`: it names the entry's leaf
/// index and leaf hash, so the client can prove its request was logged.
fn sign_receipt(
    gk: &Gatekeeper,
    request_sha256: [u8; 32],
    decision: Decision,
    entry: &AuditEntry,
    r: &mut Response,
) {
    let receipt = Receipt {
        gatekeeper: gk.config.gatekeeper_id.clone(),
        request_sha256,
        decision,
        decided_at: now_ms() / 1000,
        audit_seq: entry.seq,
        leaf_sha256: Some(entry.leaf_hash()),
    };
    let (bytes, sig) = receipt.sign(&gk.key, gk.key_id.clone());
    set(r.headers_mut(), RECEIPT_HEADER, &b64(&bytes));
    set(
        r.headers_mut(),
        RECEIPT_SIGNATURE_HEADER,
        &encode_list(&[sig]),
    );
}

/// Appends an audit entry, timing it and counting a failure in the metrics.
async fn append(
    gk: &Gatekeeper,
    draft: AuditDraft,
    nonce: Option<NonceUse>,
) -> Result<AuditEntry, LedgerError> {
    let started = Instant::now();
    let result = gk.ledger.append(draft, nonce).await;
    gk.metrics
        .audit_append(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    if result.is_err() {
        gk.metrics.audit_failure();
    }
    result
}

/// Records a denial (with the nonce, once the signatures verified: a denied request
/// cannot be replayed either) and answers it, with a signed receipt if the request
/// parsed. If the log cannot be written, the answer is `audit_unavailable`.
async fn deny(
    gk: &Gatekeeper,
    attempt: &Attempt,
    error: ApiError,
    nonce: Option<NonceUse>,
) -> Response {
    let decision = Decision::Deny(error.code);
    let code = error.code;
    let draft = attempt.draft(decision);
    let latency = draft.latency_us;
    match append(gk, draft, nonce).await {
        Ok(entry) => {
            let (error, decision) = if entry.decision == decision {
                (error, decision)
            } else {
                (
                    ApiError::new(ErrorCode::Replayed, "this request's nonce was already used"),
                    entry.decision,
                )
            };
            attempt.count(gk, Some(error.code), latency);
            let rate_limited = error.code == ErrorCode::RateLimited;
            let mut r = error.into_response();
            // No signature is spent on a client that is being rate limited.
            if let (Some(digest), false) = (attempt.request_digest, rate_limited) {
                sign_receipt(gk, digest, decision, &entry, &mut r);
            }
            r
        }
        Err(e) => {
            tracing::warn!("audit append failed, refusing the request ({code}): {e}");
            attempt.count(gk, Some(ErrorCode::AuditUnavailable), latency);
            ApiError::audit_unavailable().into_response()
        }
    }
}

/// The one ending of every object and audit request: writes the audit entry (with
/// the nonce), then — only if it is durable — carries out the allowed act, signs the
/// receipt and builds the response. A failure after the `allow` entry writes a
/// second, denying entry, for every operation.
pub async fn finish(
    gk: &Gatekeeper,
    mut attempt: Attempt,
    result: Result<Allowed, ApiError>,
) -> Response {
    let request_id = attempt.request_id.clone();
    let mut response = match result {
        Err(error) => {
            if !attempt.verified() {
                gk.failures.failed(attempt.client_ip);
            }
            let nonce = attempt.nonce;
            deny(gk, &attempt, error, nonce).await
        }
        Ok(Allowed { auth, act }) => {
            // The SHA-256 of the header's bytes, taken in `run`: for a verified
            // request, the digest of its one canonical encoding.
            let digest = attempt
                .request_digest
                .unwrap_or_else(|| auth.request().digest());
            let draft = attempt.draft(Decision::Allow);
            let latency = draft.latency_us;
            match append(gk, draft, attempt.nonce).await {
                Err(e) => {
                    tracing::warn!("audit append failed, refusing the request: {e}");
                    act.abandon(gk).await;
                    attempt.count(gk, Some(ErrorCode::AuditUnavailable), latency);
                    ApiError::audit_unavailable().into_response()
                }
                Ok(entry) if entry.decision != Decision::Allow => {
                    // Another request with this nonce got its entry in first.
                    act.abandon(gk).await;
                    attempt.count(gk, Some(ErrorCode::Replayed), latency);
                    let mut r =
                        ApiError::new(ErrorCode::Replayed, "this request's nonce was already used")
                            .into_response();
                    sign_receipt(gk, digest, entry.decision, &entry, &mut r);
                    r
                }
                Ok(entry) => {
                    attempt.count(gk, None, latency);
                    match act.perform(gk, &auth, entry.seq, &attempt).await {
                        Ok(mut r) => {
                            sign_receipt(gk, digest, Decision::Allow, &entry, &mut r);
                            r
                        }
                        Err(error) => {
                            // The log says "allow": record that it did not happen after
                            // all, so the log never shows a failed request as done.
                            attempt.bytes = 0;
                            deny(gk, &attempt, error, None).await
                        }
                    }
                }
            }
        }
    };
    set(response.headers_mut(), REQUEST_ID_HEADER, &request_id);
    response
}

impl Act {
    async fn perform(
        self,
        gk: &Gatekeeper,
        auth: &Authorized,
        seq: u64,
        attempt: &Attempt,
    ) -> Result<Response, ApiError> {
        match self {
            Self::Head(found) => Ok(get::head_response(&found)),
            Self::Get(found) => {
                // The second entry of a body cut short; its decision is set then.
                let late = attempt.draft(Decision::Deny(ErrorCode::Internal));
                get::respond(gk, auth, found, late).await
            }
            Self::Put(received) => put::complete(gk, auth, *received, seq).await,
            Self::List(page) => list::respond(gk, auth, page, seq),
            Self::Audit(query) => audit::respond(gk, query).await,
        }
    }

    /// Undoes what preparing the act did (an upload's reservation and staged bytes).
    async fn abandon(self, gk: &Gatekeeper) {
        if let Self::Put(received) = self {
            received.abandon(gk).await;
        }
    }
}
