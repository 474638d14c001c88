//! The HTTP handlers.

use crate::AppState;
use crate::config::User;
use crate::error::{ApiError, codes};
use crate::totp;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use countersign_core::signature::encode_list;
use countersign_core::text::{b64, parse_b64, parse_decimal, parse_hex};
use countersign_core::{
    BodyDigest, Bucket, ByteRange, ContentType, ErrorCode, GatekeeperId, ListPrefix, Method, Nonce,
    ObjectKey, Operation, Request as CsRequest, Subject,
};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Most requests one `POST /api/sign` call may carry.
pub const MAX_SIGN_BATCH: usize = 100;
/// Longest password accepted (argon2 work is bounded by it).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest username accepted (the config refuses longer ones).
pub const MAX_USERNAME_BYTES: usize = 128;
/// Longest TOTP field accepted (a code is 6 digits; surrounding spaces are trimmed).
pub const MAX_TOTP_BYTES: usize = 16;
/// Largest `POST /api/login` body: the three fields at their limits, even with every
/// password character written as a JSON `\uXXXX` escape, fit in it.
pub const MAX_LOGIN_BODY_BYTES: usize = 8 * 1024;

/// `Json` whose rejections are [`ApiError`]s with stable codes.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                let status = rejection.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ErrorCode::TooLarge
                } else {
                    ErrorCode::Malformed
                };
                Err(ApiError::new(status, code.as_str(), rejection.body_text()))
            }
        }
    }
}

/// The logged-in user, from a signed, live session cookie.
pub struct CurrentUser(pub User);

impl FromRequestParts<Arc<AppState>> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let now = state.now();
        parts
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|h| state.sessions.user(h, now))
            .and_then(|name| state.directory.users.get(&name).cloned())
            .map(Self)
            .ok_or_else(ApiError::unauthenticated)
    }
}

/// The JSON of `GET /api/me` and of a successful login.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Me {
    /// Login name.
    pub username: String,
    /// Subject to put into requests.
    pub subject: String,
    /// Organisation id.
    pub organisation: String,
    /// Organisation name.
    pub organisation_name: String,
    /// What the organisation may do.
    pub grants: Vec<GrantView>,
}

/// One grant as the page sees it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GrantView {
    /// Bucket.
    pub bucket: String,
    /// Key prefix.
    pub prefix: String,
    /// Methods.
    pub methods: Vec<String>,
}

fn me(state: &AppState, user: &User) -> Me {
    let org = state.directory.organisations.get(&user.organisation);
    Me {
        username: user.username.clone(),
        subject: user.subject.to_string(),
        organisation: user.organisation.clone(),
        organisation_name: org.map(|o| o.name.clone()).unwrap_or_default(),
        grants: org
            .map(|o| {
                o.grants
                    .iter()
                    .map(|g| GrantView {
                        bucket: g.bucket().to_string(),
                        prefix: g.prefix().to_string(),
                        methods: g.methods().map(|m| m.as_str().to_owned()).collect(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// `GET /api/config`: what the page needs to build requests.
pub async fn config(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let keys: Vec<serde_json::Value> = state
        .signer
        .authorized_keys()
        .iter()
        .filter_map(|k| serde_json::from_str(&countersign_vendor::keys::public_key_json(k)).ok())
        .collect();
    let gatekeeper_keys: Vec<serde_json::Value> = state
        .gatekeeper_keys
        .iter()
        .filter_map(|k| serde_json::from_str(&countersign_vendor::keys::public_key_json(k)).ok())
        .collect();
    Json(serde_json::json!({
        "gatekeeper": state.directory.gatekeeper.as_str(),
        "gatekeeper_url": state.directory.gatekeeper_url,
        "max_lifetime_secs": state.directory.max_lifetime_secs,
        "vendor_public_keys": keys,
        "gatekeeper_public_keys": gatekeeper_keys,
    }))
}

/// Body of `POST /api/login`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Current TOTP code (6 digits).
    pub totp: String,
}

/// The peer address axum recorded (`into_make_service_with_connect_info`); without
/// it (a router driven directly, as in tests) every client shares `0.0.0.0`.
/// Forwarding headers are not trusted: behind a reverse proxy, every client is the
/// proxy.
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip()),
        ))
    }
}

/// Refuses oversized fields before any work: the username would otherwise be kept in
/// the backoff table, and the password hashed.
fn check_login_sizes(body: &LoginBody) -> Result<(), ApiError> {
    for (field, value, max) in [
        ("username", &body.username, MAX_USERNAME_BYTES),
        ("password", &body.password, MAX_PASSWORD_BYTES),
        ("totp", &body.totp, MAX_TOTP_BYTES),
    ] {
        if value.len() > max {
            return Err(ApiError::field_too_large(field, max));
        }
    }
    Ok(())
}

/// `POST /api/login`: password (argon2) and TOTP code; sets the session cookie.
///
/// In order, cheapest first: the body's size ([`MAX_LOGIN_BODY_BYTES`], `413
/// too_large`), each field's size (`413 too_large`), the backoff per username and per
/// client address ([`crate::backoff`], `429 rate_limited`), a password-check slot
/// ([`crate::password`], `503 overloaded`), then argon2 and the TOTP code (`401
/// bad_credentials`, never saying which was wrong).
pub async fn login(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<impl IntoResponse, ApiError> {
    check_login_sizes(&body)?;
    let now = state.now();
    let attempt = state
        .login_backoff
        .begin(&body.username, ip, now)
        .map_err(ApiError::rate_limited)?;
    let user = state.directory.users.get(&body.username).cloned();
    // An unknown user still costs one argon2 verification, so timing does not tell
    // which usernames exist.
    let hash = user
        .as_ref()
        .map_or_else(|| state.timing_hash.clone(), |u| u.password_hash.clone());
    let password_ok = match state.passwords.verify(body.password, hash).await {
        Ok(ok) => ok,
        Err(e) => {
            // Not judged: it must not count against the user or the address.
            state.login_backoff.cancel(attempt);
            return Err(e);
        }
    };
    let Some(user) = user.filter(|_| password_ok) else {
        return Err(ApiError::bad_credentials());
    };
    {
        let mut used = state
            .totp_used
            .lock()
            .map_err(|_| ApiError::internal("TOTP lock poisoned"))?;
        let last = used.get(&user.username).copied();
        let step = totp::verify(&user.totp_secret, body.totp.trim(), now, last)
            .ok_or_else(ApiError::bad_credentials)?;
        used.insert(user.username.clone(), step);
    }
    state.login_backoff.succeeded(attempt, now);
    let cookie = state.sessions.start(&user.username, now);
    Ok(([(SET_COOKIE, cookie)], Json(me(&state, &user))))
}

/// `POST /api/logout`: ends the session and clears the cookie.
pub async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> impl IntoResponse {
    for h in headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        state.sessions.end(h);
    }
    (
        [(SET_COOKIE, state.sessions.clear_cookie())],
        Json(serde_json::json!({ "ok": true })),
    )
}

/// `GET /api/me`.
pub async fn whoami(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
) -> Json<Me> {
    Json(me(&state, &user))
}

/// `GET /api/reports`: the reports of the user's organisation.
pub async fn reports(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
) -> Json<serde_json::Value> {
    let list: Vec<&crate::config::ReportFile> = state
        .directory
        .reports
        .values()
        .filter(|r| r.organisation == user.organisation)
        .collect();
    Json(serde_json::json!({ "reports": list }))
}

/// One request's fields, as the browser built them (see the crate docs).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFields {
    /// Gatekeeper id.
    pub audience: String,
    /// `GET`, `HEAD`, `PUT` or `LIST`.
    pub method: String,
    /// Bucket.
    pub bucket: String,
    /// Object key, or the prefix for LIST.
    pub key: String,
    /// GET only: `first-last`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// PUT only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// PUT only: 64 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
    /// PUT only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_length: Option<u64>,
    /// The logged-in user's subject.
    pub subject: String,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// 32 lowercase hex digits from the browser's CSPRNG.
    pub nonce: String,
}

fn only_for(
    name: &str,
    present: bool,
    allowed: bool,
    method: Method,
) -> countersign_core::Result<()> {
    if present && !allowed {
        Err(countersign_core::Error::new(
            ErrorCode::InvalidField,
            format!("`{name}` must be absent for a {method} request"),
        ))
    } else {
        Ok(())
    }
}

fn required<T>(value: Option<T>, name: &str) -> countersign_core::Result<T> {
    value.ok_or_else(|| {
        countersign_core::Error::new(
            ErrorCode::InvalidField,
            format!("a PUT request needs `{name}`"),
        )
    })
}

impl RequestFields {
    /// Builds the canonical request these fields describe.
    pub fn to_request(&self) -> countersign_core::Result<CsRequest> {
        let method = Method::parse(&self.method)?;
        only_for("range", self.range.is_some(), method == Method::Get, method)?;
        only_for(
            "content_type",
            self.content_type.is_some(),
            method == Method::Put,
            method,
        )?;
        only_for(
            "body_sha256",
            self.body_sha256.is_some(),
            method == Method::Put,
            method,
        )?;
        only_for(
            "body_length",
            self.body_length.is_some(),
            method == Method::Put,
            method,
        )?;
        let operation = match method {
            Method::Get => Operation::Get {
                key: ObjectKey::parse(&self.key)?,
                range: match self.range.as_deref() {
                    None => None,
                    Some(r) => {
                        let (first, last) = r.split_once('-').ok_or_else(|| {
                            countersign_core::Error::new(
                                ErrorCode::InvalidField,
                                "`range` must be `first-last`",
                            )
                        })?;
                        Some(ByteRange::new(
                            parse_decimal(first, "range")?,
                            parse_decimal(last, "range")?,
                        )?)
                    }
                },
            },
            Method::Head => Operation::Head {
                key: ObjectKey::parse(&self.key)?,
            },
            Method::Put => Operation::Put {
                key: ObjectKey::parse(&self.key)?,
                content_type: ContentType::parse(required(
                    self.content_type.as_deref(),
                    "content_type",
                )?)?,
                body: BodyDigest {
                    sha256: parse_hex::<32>(
                        required(self.body_sha256.as_deref(), "body_sha256")?,
                        "body_sha256",
                    )?,
                    length: required(self.body_length, "body_length")?,
                },
            },
            Method::List => Operation::List {
                prefix: ListPrefix::parse(&self.key)?,
            },
        };
        CsRequest::from_parts(
            GatekeeperId::parse(&self.audience)?,
            Bucket::parse(&self.bucket)?,
            operation,
            Subject::parse(&self.subject)?,
            self.issued_at,
            self.expires_at,
            Nonce(parse_hex::<16>(&self.nonce, "nonce")?),
        )
    }
}

/// Body of `POST /api/sign`: exactly one of `requests` (fields) or `canonical`
/// (base64url canonical requests, as the browser client builds them).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignBody {
    /// The requests as fields, 1 to [`MAX_SIGN_BATCH`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<RequestFields>,
    /// The requests as base64url canonical bytes (`docs/PROTOCOL.md`), 1 to
    /// [`MAX_SIGN_BATCH`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canonical: Vec<String>,
}

/// Parses one base64url canonical request; a non-canonical form is an error.
fn parse_canonical(text: &str) -> countersign_core::Result<CsRequest> {
    CsRequest::parse(&parse_b64(text, "canonical request")?)
}

/// One result of `POST /api/sign`: a signed request or an error.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum SignResult {
    /// Signed.
    Signed {
        /// `Countersign-Request` header value (base64url of the canonical request).
        request: String,
        /// `Countersign-Signature` header value.
        signature: String,
    },
    /// Refused.
    Refused {
        /// `{"code": ..., "message": ...}`.
        error: ErrorBody,
    },
}

/// An error's code and sentence.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Stable code.
    pub code: String,
    /// One sentence.
    pub message: String,
}

fn access_denied(message: String) -> countersign_core::Error {
    countersign_core::Error::new(ErrorCode::AccessDenied, message)
}

fn sign_one(
    state: &AppState,
    user: &User,
    request: countersign_core::Result<CsRequest>,
    now: u64,
) -> Result<(String, String), ApiError> {
    let request = request?;
    if request.subject() != &user.subject {
        return Err(access_denied(format!(
            "requests are signed only for the logged-in user `{}`, not `{}`",
            user.subject,
            request.subject()
        ))
        .into());
    }
    let entitled = state
        .directory
        .organisations
        .get(&user.organisation)
        .is_some_and(|org| {
            org.grants
                .iter()
                .any(|g| g.allows(request.bucket(), request.operation()))
        });
    if !entitled {
        return Err(access_denied(format!(
            "organisation `{}` may not {} `{}` in bucket `{}`",
            user.organisation,
            request.method(),
            request.operation().key_text(),
            request.bucket()
        ))
        .into());
    }
    let signature = state.signer.sign_request(&request, now)?;
    Ok((
        b64(&request.encode()),
        encode_list(std::slice::from_ref(&signature)),
    ))
}

/// `POST /api/sign`: signs request metadata (never bodies) for the logged-in user,
/// only inside the organisation's grants; rate limited per user.
pub async fn sign(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<SignBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = state.now();
    state
        .sign_limiter
        .take(user.subject.as_str())
        .map_err(ApiError::rate_limited)?;
    let requests: Vec<countersign_core::Result<CsRequest>> =
        match (body.requests.is_empty(), body.canonical.is_empty()) {
            (false, true) => body
                .requests
                .iter()
                .map(RequestFields::to_request)
                .collect(),
            (true, false) => body.canonical.iter().map(|c| parse_canonical(c)).collect(),
            (true, true) => {
                return Err(countersign_core::Error::new(
                    ErrorCode::InvalidField,
                    "`requests` and `canonical` are both empty",
                )
                .into());
            }
            (false, false) => {
                return Err(countersign_core::Error::new(
                    ErrorCode::InvalidField,
                    "give `requests` or `canonical`, not both",
                )
                .into());
            }
        };
    if requests.len() > MAX_SIGN_BATCH {
        return Err(countersign_core::Error::new(
            ErrorCode::TooLarge,
            format!(
                "at most {MAX_SIGN_BATCH} requests per call, got {}",
                requests.len()
            ),
        )
        .into());
    }
    let results: Vec<SignResult> = requests
        .into_iter()
        .map(|request| match sign_one(&state, &user, request, now) {
            Ok((request, signature)) => SignResult::Signed { request, signature },
            Err(e) => SignResult::Refused {
                error: ErrorBody {
                    code: e.code.to_owned(),
                    message: e.message,
                },
            },
        })
        .collect();
    Ok(Json(serde_json::json!({ "results": results })))
}

/// `GET /api/stats`: body bytes received and sent since start.
pub async fn stats(State(state): State<Arc<AppState>>) -> Json<crate::traffic::TrafficStats> {
    Json(state.traffic.snapshot())
}

/// Anything else.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such page")
}
