//! The demo app through its router (`tower::ServiceExt::oneshot`, no sockets): login
//! with argon2 + TOTP, cookies, entitlement-checked batch signing, rate limits, byte
//! counters.
// Tests panic on failure by design; unwrap/expect/indexing are how they assert.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use argon2::PasswordHasher as _;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use countersign_core::signature::parse_list;
use countersign_core::text::parse_b64;
use countersign_core::{
    AuthorizedKey, GatekeeperId, KeyId, Keyring, Policy, RequestVerifier, Role,
};
use countersign_demo::backoff::BackoffPolicy;
use countersign_demo::config::Directory;
use countersign_demo::password::PasswordLimits;
use countersign_demo::routes::RequestFields;
use countersign_demo::traffic::TrafficStats;
use countersign_demo::{AppState, app, totp};
use countersign_vendor::{Signer, VendorKey};
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tower::ServiceExt as _;

const NOW: u64 = 1_800_000_015;
const ALICE_TOTP: &str = "NZRWWFPCJT6M7PHJIHOUDEEGDZDX2ZXM";
const BOB_TOTP: &str = "UTRBH2TRNRQGDKKAXSLA2LVG2LLERYZJ";

struct Demo {
    app: Router,
    state: Arc<AppState>,
    clock: Arc<AtomicU64>,
    vendor: AuthorizedKey,
    /// Body bytes the test sent and received, to compare with `/api/stats`.
    sent: u64,
    received: u64,
}

/// Argon2id with small parameters: the PHC string carries them, so verification uses
/// them too and the tests stay fast (the shipped config uses the defaults).
fn hash(password: &str) -> String {
    let salt = argon2::password_hash::SaltString::generate(&mut rand_core::OsRng);
    let params = argon2::Params::new(1024, 1, 1, None).unwrap();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

fn config(burst: u32) -> Value {
    json!({
        "gatekeeper": "gk.test",
        "gatekeeper_url": "http://127.0.0.1:1",
        "max_lifetime_secs": 300,
        "sign_burst": burst,
        "sign_per_minute": 60,
        "organisations": [
            {"id": "org-a", "name": "A", "grants": [
                {"bucket": "reports", "prefix": "org-a/", "methods": ["GET", "HEAD", "LIST", "PUT"]}]},
            {"id": "org-b", "name": "B", "grants": [
                {"bucket": "reports", "prefix": "org-b/", "methods": ["GET", "LIST"]}]}
        ],
        "users": [
            {"username": "alice", "subject": "user-alice", "organisation": "org-a",
             "password_hash": hash("alice-pw"), "totp_secret": ALICE_TOTP},
            {"username": "bob", "subject": "user-bob", "organisation": "org-b",
             "password_hash": hash("bob-pw"), "totp_secret": BOB_TOTP}
        ],
        "reports": [
            {"id": "a-1", "organisation": "org-a", "title": "A 1", "bucket": "reports",
             "objects": ["org-a/1.txt"]}
        ]
    })
}

fn demo_with(burst: u32) -> Demo {
    demo_configured(burst, |s| s)
}

fn demo_configured(burst: u32, configure: impl FnOnce(AppState) -> AppState) -> Demo {
    let directory = Directory::from_json(&config(burst).to_string()).unwrap();
    let key = VendorKey::generate(
        KeyId::parse("vendor-1").unwrap(),
        Role::vendor(),
        None,
        None,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let vendor = key.authorized_key();
    let clock = Arc::new(AtomicU64::new(NOW));
    let c = Arc::clone(&clock);
    let state = AppState::new(directory, Signer::new([key]).unwrap())
        .unwrap()
        .with_clock(Arc::new(move || c.load(Ordering::SeqCst)));
    let state = Arc::new(configure(state));
    Demo {
        app: app(Arc::clone(&state)),
        state,
        clock,
        vendor,
        sent: 0,
        received: 0,
    }
}

fn demo() -> Demo {
    demo_with(20)
}

fn code(secret: &str, at: u64) -> String {
    totp::code_at(&totp::base32_decode(secret).unwrap(), at)
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    json: Value,
}

impl Demo {
    async fn call(
        &mut self,
        method: &str,
        uri: &str,
        cookie: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.call_from(None, method, uri, cookie, body).await
    }

    /// A call from the client address `ip`, as `into_make_service_with_connect_info`
    /// records it.
    async fn call_from(
        &mut self,
        ip: Option<IpAddr>,
        method: &str,
        uri: &str,
        cookie: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ip) = ip {
            req = req.extension(ConnectInfo(SocketAddr::new(ip, 40_000)));
        }
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                let bytes = v.to_string().into_bytes();
                self.sent += bytes.len() as u64;
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let resp = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        self.received += bytes.len() as u64;
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
        }
    }

    /// Logs in and returns the `Cookie` header value.
    async fn login(&mut self, user: &str, password: &str, secret: &str) -> String {
        let now = self.clock.load(Ordering::SeqCst);
        let r = self
            .call(
                "POST",
                "/api/login",
                None,
                Some(json!({
                "username": user, "password": password, "totp": code(secret, now)})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
        set.split(';').next().unwrap().to_owned()
    }

    async fn sign(&mut self, cookie: &str, requests: Vec<RequestFields>) -> Reply {
        self.call(
            "POST",
            "/api/sign",
            Some(cookie),
            Some(json!({ "requests": requests })),
        )
        .await
    }
}

fn get(subject: &str, key: &str, nonce: u8) -> RequestFields {
    RequestFields {
        audience: "gk.test".into(),
        method: "GET".into(),
        bucket: "reports".into(),
        key: key.into(),
        subject: subject.into(),
        issued_at: NOW,
        expires_at: NOW + 120,
        nonce: format!("{:032x}", u128::from(nonce) + 1),
        ..RequestFields::default()
    }
}

fn error_code(result: &Value) -> &str {
    result["error"]["code"].as_str().unwrap_or("<signed>")
}

#[tokio::test]
async fn login_sets_a_hardened_signed_cookie() {
    let mut d = demo();
    let r = d
        .call(
            "POST",
            "/api/login",
            None,
            Some(json!({
            "username": "alice", "password": "alice-pw", "totp": code(ALICE_TOTP, NOW)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["subject"], "user-alice");
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(
            set.split("; ").any(|a| a == attr),
            "{attr} missing in {set}"
        );
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    let me = d.call("GET", "/api/me", Some(&cookie), None).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["organisation"], "org-a");
    assert_eq!(
        me.json["grants"],
        json!([{"bucket": "reports", "prefix": "org-a/", "methods": ["GET", "HEAD", "PUT", "LIST"]}])
    );

    // A tampered cookie is no session.
    let mut forged = cookie.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let r = d
        .call(
            "GET",
            "/api/me",
            Some(&String::from_utf8(forged).unwrap()),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );
    // No cookie, no signature.
    let r = d
        .call(
            "POST",
            "/api/sign",
            None,
            Some(json!({"requests": [get("user-alice", "org-a/1.txt", 1)]})),
        )
        .await;
    assert_eq!(r.json["error"]["code"], "unauthenticated");

    // Logout ends the session server-side, even if the cookie is replayed.
    let r = d.call("POST", "/api/logout", Some(&cookie), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = d.call("GET", "/api/me", Some(&cookie), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_password_wrong_totp_and_replayed_totp_fail() {
    // About the checks, not the backoff (its own tests below): no delays here.
    let mut d = demo_configured(20, |s| {
        s.with_login_backoff(BackoffPolicy {
            user_free_failures: 100,
            ip_free_failures: 100,
            ..BackoffPolicy::default()
        })
    });
    let attempt = |user: &str, pw: &str, totp: String| json!({"username": user, "password": pw, "totp": totp});
    for body in [
        attempt("alice", "wrong", code(ALICE_TOTP, NOW)),
        attempt("alice", "alice-pw", code(BOB_TOTP, NOW)),
        attempt("alice", "alice-pw", code(ALICE_TOTP, NOW - 90)),
        attempt("alice", "alice-pw", "12345".into()),
        attempt("nobody", "alice-pw", code(ALICE_TOTP, NOW)),
        attempt("bob", "alice-pw", code(BOB_TOTP, NOW)),
    ] {
        let r = d.call("POST", "/api/login", None, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(r.json["error"]["code"], "bad_credentials");
        assert!(r.headers.get(header::SET_COOKIE).is_none());
    }
    // The right code works once ...
    let good = attempt("alice", "alice-pw", code(ALICE_TOTP, NOW));
    assert_eq!(
        d.call("POST", "/api/login", None, Some(good.clone()))
            .await
            .status,
        StatusCode::OK
    );
    // ... and not again, nor an older code of the window.
    let r = d.call("POST", "/api/login", None, Some(good.clone())).await;
    assert_eq!(r.json["error"]["code"], "bad_credentials");
    let older = attempt("alice", "alice-pw", code(ALICE_TOTP, NOW - 30));
    assert_eq!(
        d.call("POST", "/api/login", None, Some(older)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The next step's code works.
    d.clock.store(NOW + 30, Ordering::SeqCst);
    let next = attempt("alice", "alice-pw", code(ALICE_TOTP, NOW + 30));
    assert_eq!(
        d.call("POST", "/api/login", None, Some(next)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn user_of_org_a_cannot_get_a_signature_for_org_b() {
    let mut d = demo();
    let alice = d.login("alice", "alice-pw", ALICE_TOTP).await;
    let mut put = get("user-alice", "org-a/new.txt", 9);
    put.method = "PUT".into();
    put.content_type = Some("text/plain".into());
    put.body_sha256 = Some("ab".repeat(32));
    put.body_length = Some(5);
    let mut list_b = get("user-alice", "org-b/", 10);
    list_b.method = "LIST".into();
    let mut list_all = get("user-alice", "", 11);
    list_all.method = "LIST".into();
    let mut other_bucket = get("user-alice", "org-a/1.txt", 12);
    other_bucket.bucket = "other-bucket".into();
    let mut other_audience = get("user-alice", "org-a/1.txt", 13);
    other_audience.audience = "gk.other".into();
    let mut too_long = get("user-alice", "org-a/1.txt", 14);
    too_long.expires_at = NOW + 301;
    let mut expired = get("user-alice", "org-a/1.txt", 15);
    expired.issued_at = NOW - 200;
    expired.expires_at = NOW - 100;
    let mut range_on_list = list_b.clone();
    range_on_list.range = Some("0-1".into());

    let cases: Vec<(RequestFields, &str)> = vec![
        (get("user-alice", "org-a/1.txt", 1), "<signed>"),
        (put, "<signed>"),
        (get("user-alice", "org-b/1.txt", 2), "access_denied"),
        (get("user-alice", "org-a-evil/1.txt", 3), "access_denied"),
        (
            get("user-alice", "org-a/../org-b/1.txt", 4),
            "invalid_key_path",
        ),
        (get("user-bob", "org-b/1.txt", 5), "access_denied"),
        (get("user-bob", "org-a/1.txt", 6), "access_denied"),
        (list_b, "access_denied"),
        (list_all, "access_denied"),
        (other_bucket, "access_denied"),
        (other_audience, "wrong_audience"),
        (too_long, "lifetime_too_long"),
        (expired, "expired"),
        (range_on_list, "invalid_field"),
    ];
    let r = d
        .sign(&alice, cases.iter().map(|(f, _)| f.clone()).collect())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let results = r.json["results"].as_array().unwrap();
    assert_eq!(results.len(), cases.len());
    for ((fields, want), got) in cases.iter().zip(results) {
        assert_eq!(
            error_code(got),
            *want,
            "{} {}: {got}",
            fields.method,
            fields.key
        );
    }

    // The same requests as canonical bytes (what the browser client sends) get the
    // same answers; fields that cannot even form a request have no canonical form.
    let (canonical, wants): (Vec<String>, Vec<&str>) = cases
        .iter()
        .filter_map(|(f, want)| {
            let request = f.to_request().ok()?;
            Some((countersign_core::text::b64(&request.encode()), *want))
        })
        .unzip();
    assert_eq!(canonical.len(), cases.len() - 2);
    let r = d
        .call(
            "POST",
            "/api/sign",
            Some(&alice),
            Some(json!({ "canonical": canonical })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let got: Vec<&str> = r.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(error_code)
        .collect();
    assert_eq!(got, wants);

    // Bob (org B, read-only grant) may read org B but not write it, nor touch org A.
    let bob = d.login("bob", "bob-pw", BOB_TOTP).await;
    let mut bob_put = get("user-bob", "org-b/x.txt", 20);
    bob_put.method = "PUT".into();
    bob_put.content_type = Some("text/plain".into());
    bob_put.body_sha256 = Some("00".repeat(32));
    bob_put.body_length = Some(0);
    let r = d
        .sign(
            &bob,
            vec![
                get("user-bob", "org-b/1.txt", 21),
                bob_put,
                get("user-bob", "org-a/1.txt", 22),
            ],
        )
        .await;
    let codes: Vec<&str> = r.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(error_code)
        .collect();
    assert_eq!(codes, ["<signed>", "access_denied", "access_denied"]);

    // Reports are per organisation too.
    let r = d.call("GET", "/api/reports", Some(&bob), None).await;
    assert_eq!(r.json["reports"].as_array().unwrap().len(), 0);
    let r = d.call("GET", "/api/reports", Some(&alice), None).await;
    assert_eq!(r.json["reports"][0]["id"], "a-1");
}

#[tokio::test]
async fn batch_signatures_verify_at_the_gatekeeper() {
    let mut d = demo();
    let alice = d.login("alice", "alice-pw", ALICE_TOTP).await;
    let batch: Vec<RequestFields> = (0..40)
        .map(|i| get("user-alice", &format!("org-a/report/{i}.png"), i))
        .collect();
    let r = d.sign(&alice, batch.clone()).await;
    let results = r.json["results"].as_array().unwrap();
    assert_eq!(results.len(), 40);
    let verifier = RequestVerifier::new(
        GatekeeperId::parse("gk.test").unwrap(),
        Policy::new(
            Keyring::new([d.vendor.clone()]).unwrap(),
            [(Role::vendor(), 1)],
        )
        .unwrap(),
        300,
        30,
    )
    .unwrap();
    for (fields, result) in batch.iter().zip(results) {
        let canonical = parse_b64(result["request"].as_str().unwrap(), "request").unwrap();
        let sigs = parse_list(result["signature"].as_str().unwrap()).unwrap();
        let verified = verifier.verify(&canonical, &sigs, NOW + 10).unwrap();
        // The vendor signed exactly what the browser asked for.
        assert_eq!(verified.request(), &fields.to_request().unwrap());
    }
    // Over the batch limit: the whole call is refused.
    let too_many: Vec<RequestFields> = (0..101).map(|i| get("user-alice", "org-a/x", i)).collect();
    let r = d.sign(&alice, too_many).await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );
    let r = d.sign(&alice, vec![]).await;
    assert_eq!(r.json["error"]["code"], "invalid_field");
}

#[tokio::test]
async fn signing_is_rate_limited_per_user() {
    let mut d = demo_with(3);
    let alice = d.login("alice", "alice-pw", ALICE_TOTP).await;
    let bob = d.login("bob", "bob-pw", BOB_TOTP).await;
    for i in 0..3 {
        let r = d
            .sign(&alice, vec![get("user-alice", "org-a/1.txt", i)])
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = d
        .sign(&alice, vec![get("user-alice", "org-a/1.txt", 9)])
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json["error"]["code"], "rate_limited");
    assert_eq!(r.headers.get(header::RETRY_AFTER).unwrap(), "1");
    // Another user has their own budget; the budget refills with time.
    assert_eq!(
        d.sign(&bob, vec![get("user-bob", "org-b/1.txt", 1)])
            .await
            .status,
        StatusCode::OK
    );
    d.clock.fetch_add(1, Ordering::SeqCst);
    assert_eq!(
        d.sign(&alice, vec![get("user-alice", "org-a/1.txt", 10)])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn malformed_input_gets_stable_codes() {
    let mut d = demo();
    let alice = d.login("alice", "alice-pw", ALICE_TOTP).await;
    let r = d
        .call(
            "POST",
            "/api/sign",
            Some(&alice),
            Some(json!({"requests": "no"})),
        )
        .await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("malformed"))
    );
    let r = d
        .call(
            "POST",
            "/api/sign",
            Some(&alice),
            Some(json!({"requests": [], "extra": 1})),
        )
        .await;
    assert_eq!(r.json["error"]["code"], "malformed");
    let huge = "x".repeat(countersign_demo::MAX_BODY_BYTES + 1);
    let r = d
        .call(
            "POST",
            "/api/sign",
            Some(&alice),
            Some(json!({ "requests": huge })),
        )
        .await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );
    // A form post (what a cross-site page could send) is not JSON.
    let req = Request::builder()
        .method("POST")
        .uri("/api/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("username=alice"))
        .unwrap();
    let resp = d.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = d.call("GET", "/nope", None, None).await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let mut bad_nonce = get("user-alice", "org-a/1.txt", 1);
    bad_nonce.nonce = "XYZ".into();
    let r = d.sign(&alice, vec![bad_nonce]).await;
    assert_eq!(error_code(&r.json["results"][0]), "invalid_field");
}

#[tokio::test]
async fn canonical_signing_rejects_bad_forms() {
    let mut d = demo();
    let alice = d.login("alice", "alice-pw", ALICE_TOTP).await;
    let good = countersign_core::text::b64(
        &get("user-alice", "org-a/1.txt", 1)
            .to_request()
            .unwrap()
            .encode(),
    );
    let mut trailing = parse_b64(&good, "test").unwrap();
    trailing.push(b'\n');
    let r = d
        .call(
            "POST",
            "/api/sign",
            Some(&alice),
            Some(json!({ "canonical": [
                good,
                "not base64url!",
                countersign_core::text::b64(b"countersign-request/v1\nnonsense"),
                countersign_core::text::b64(&trailing),
            ]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let results = r.json["results"].as_array().unwrap();
    assert_eq!(error_code(&results[0]), "<signed>");
    for refused in &results[1..] {
        assert_ne!(error_code(refused), "<signed>", "{refused}");
    }
    // Exactly one of the two forms.
    let both = json!({ "canonical": [good], "requests": [get("user-alice", "org-a/1.txt", 2)] });
    for body in [both, json!({}), json!({ "canonical": [] })] {
        let r = d.call("POST", "/api/sign", Some(&alice), Some(body)).await;
        assert_eq!(
            (r.status, r.json["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_field")),
            "{}",
            r.json
        );
    }
    // Without a session nothing is signed.
    let r = d
        .call(
            "POST",
            "/api/sign",
            None,
            Some(json!({ "canonical": [good] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

async fn get_raw(app: Router, uri: &str) -> axum::response::Response {
    let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    app.oneshot(req).await.unwrap()
}

#[tokio::test]
async fn serves_the_page_and_the_package_with_their_types_and_csp() {
    let dir = tempfile::tempdir().unwrap();
    let (www, pkg) = (dir.path().join("www"), dir.path().join("pkg"));
    std::fs::create_dir_all(&www).unwrap();
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(www.join("index.html"), "<!doctype html>").unwrap();
    std::fs::write(www.join("report.js"), "export {};").unwrap();
    std::fs::write(www.join(".secret.js"), "no").unwrap();
    std::fs::write(www.join("notes.txt"), "no").unwrap();
    std::fs::write(pkg.join("countersign_bg.wasm"), b"\0asm").unwrap();
    std::fs::write(dir.path().join("outside.js"), "no").unwrap();

    let without = demo();
    assert_eq!(
        get_raw(without.app.clone(), "/").await.status(),
        StatusCode::NOT_FOUND
    );

    let directory = Directory::from_json(&config(20).to_string()).unwrap();
    let key = VendorKey::generate(
        KeyId::parse("vendor-1").unwrap(),
        Role::vendor(),
        None,
        None,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let state = AppState::new(directory, Signer::new([key]).unwrap())
        .unwrap()
        .with_assets(countersign_demo::assets::Assets { www, pkg });
    let app = app(Arc::new(state));
    for (uri, want) in [
        ("/", "text/html; charset=utf-8"),
        ("/report.js", "text/javascript; charset=utf-8"),
        ("/pkg/countersign_bg.wasm", "application/wasm"),
    ] {
        let resp = get_raw(app.clone(), uri).await;
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], want, "{uri}");
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval';"),
            "{csp}"
        );
        assert!(
            csp.contains("connect-src 'self' http://127.0.0.1:1;"),
            "{csp}"
        );
        assert_eq!(resp.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    for uri in [
        "/.secret.js",
        "/notes.txt",
        "/../outside.js",
        "/%2e%2e/outside.js",
        "/pkg/..%2foutside.js",
        "/pkg/%2e%2e/outside.js",
        "/missing.js",
        "/api/nothing",
    ] {
        let resp = get_raw(app.clone(), uri).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn byte_counters_account_for_every_body_byte() {
    let mut d = demo();
    let alice = d.login("alice", "alice-pw", ALICE_TOTP).await;
    d.sign(
        &alice,
        (0..5)
            .map(|i| get("user-alice", "org-a/1.txt", i))
            .collect(),
    )
    .await;
    d.call("GET", "/api/reports", Some(&alice), None).await;
    let (sent, received) = (d.sent, d.received);
    let r = d.call("GET", "/api/stats", None, None).await;
    let stats: TrafficStats = serde_json::from_value(r.json).unwrap();
    assert_eq!(stats.requests, 4);
    assert_eq!(stats.request_body_bytes, sent);
    assert_eq!(stats.response_body_bytes, received);
    assert!(sent > 0 && received > 0);
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

fn login_body(user: &str, password: &str, totp: &str) -> Value {
    json!({"username": user, "password": password, "totp": totp})
}

#[tokio::test]
async fn oversized_login_fields_are_refused_before_any_work() {
    let mut d = demo();
    let alice_code = code(ALICE_TOTP, NOW);
    let long = |n: usize| "a".repeat(n);
    for (body, field) in [
        // 250 KB: under the app-wide body limit, over the login route's.
        (login_body(&long(250_000), "pw", &alice_code), None),
        (login_body(&long(129), "pw", &alice_code), Some("username")),
        (
            login_body("alice", &long(1025), &alice_code),
            Some("password"),
        ),
        (login_body("alice", "alice-pw", &long(17)), Some("totp")),
    ] {
        let r = d.call("POST", "/api/login", None, Some(body)).await;
        assert_eq!(
            (r.status, r.json["error"]["code"].as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large")),
            "{}",
            r.json
        );
        if let Some(field) = field {
            let message = r.json["error"]["message"].as_str().unwrap();
            assert!(message.contains(&format!("`{field}`")), "{message}");
        }
    }
    // Nothing was hashed and nothing was remembered.
    assert_eq!(d.state.passwords.stats().hashed, 0);
    let sizes = d.state.login_backoff.sizes();
    assert_eq!((sizes.users, sizes.clients), (0, 0));
    // At the limits, the fields are checked as usual.
    let r = d
        .call(
            "POST",
            "/api/login",
            None,
            Some(login_body(&long(128), &long(1024), "000000")),
        )
        .await;
    assert_eq!(r.json["error"]["code"], "bad_credentials");
    assert_eq!(d.state.passwords.stats().hashed, 1);
    // A username the login form would refuse is refused in the config too.
    let mut c = config(1);
    c["users"][0]["username"] = json!(long(129));
    let err = Directory::from_json(&c.to_string()).unwrap_err();
    assert_eq!(err.code, "invalid_config");
}

#[tokio::test]
async fn the_backoff_tables_stay_bounded_after_many_distinct_usernames() {
    let mut d = demo_configured(20, |s| {
        s.with_login_backoff(BackoffPolicy {
            max_entries: 16,
            ..BackoffPolicy::default()
        })
    });
    for i in 0..48u8 {
        let r = d
            .call_from(
                ip(&format!("198.51.100.{i}")),
                "POST",
                "/api/login",
                None,
                Some(login_body(&format!("nobody-{i}"), "pw", "000000")),
            )
            .await;
        assert_eq!(r.json["error"]["code"], "bad_credentials");
        let sizes = d.state.login_backoff.sizes();
        assert!(
            sizes.users <= 16 && sizes.clients <= 16,
            "{sizes:?} after {i}"
        );
    }
    // Once forgotten (an hour after the last failure), entries are swept out.
    d.clock.fetch_add(3600, Ordering::SeqCst);
    let r = d
        .call_from(
            ip("198.51.100.200"),
            "POST",
            "/api/login",
            None,
            Some(login_body("nobody", "pw", "000000")),
        )
        .await;
    assert_eq!(r.json["error"]["code"], "bad_credentials");
    let sizes = d.state.login_backoff.sizes();
    assert_eq!((sizes.users, sizes.clients), (1, 1));
}

/// Many logins at once, from distinct addresses for distinct unknown usernames (so
/// the backoff lets them all through; each still costs one argon2 verification).
async fn login_storm(d: &Demo, count: u8) -> Vec<(StatusCode, Value, Option<String>)> {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let app = d.app.clone();
            tokio::spawn(async move {
                let req = Request::builder()
                    .method("POST")
                    .uri("/api/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .extension(ConnectInfo(SocketAddr::new(
                        format!("203.0.113.{i}").parse().unwrap(),
                        40_000,
                    )))
                    .body(Body::from(
                        login_body(&format!("nobody-{i}"), "guess", "000000").to_string(),
                    ))
                    .unwrap();
                let resp = app.oneshot(req).await.unwrap();
                let status = resp.status();
                let retry = resp
                    .headers()
                    .get(header::RETRY_AFTER)
                    .map(|v| v.to_str().unwrap().to_owned());
                let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .unwrap();
                (status, serde_json::from_slice(&bytes).unwrap(), retry)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_never_exceed_the_argon2_permits() {
    let d = demo_configured(20, |s| {
        s.with_password_limits(PasswordLimits {
            permits: 2,
            max_waiting: 64,
            max_wait: Duration::from_secs(60),
        })
    });
    // Logins whose clients go away while waiting or hashing: their hashes keep their
    // slots until they finish, so the bound holds across cancellations too.
    for i in 0..8u8 {
        let app = d.app.clone();
        let req = Request::builder()
            .method("POST")
            .uri("/api/login")
            .header(header::CONTENT_TYPE, "application/json")
            .extension(ConnectInfo(SocketAddr::new(
                format!("192.0.2.{i}").parse().unwrap(),
                40_000,
            )))
            .body(Body::from(login_body("bob", "x", "000000").to_string()))
            .unwrap();
        let cancelled = tokio::spawn(app.oneshot(req));
        tokio::task::yield_now().await;
        cancelled.abort();
    }
    let results = login_storm(&d, 24).await;
    for (status, json, _) in &results {
        assert_eq!(*status, StatusCode::UNAUTHORIZED, "{json}");
    }
    let stats = d.state.passwords.stats();
    assert!(stats.hashed >= 24, "{stats:?}");
    assert_eq!(stats.peak_running, 2, "{stats:?}");
    assert_eq!(stats.overloaded, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_password_checker_answers_503_and_counts_no_failure() {
    let d = demo_configured(20, |s| {
        s.with_password_limits(PasswordLimits {
            permits: 1,
            max_waiting: 0,
            max_wait: Duration::ZERO,
        })
    });
    let results = login_storm(&d, 12).await;
    let overloaded: Vec<_> = results
        .iter()
        .filter(|(status, _, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(
        !overloaded.is_empty(),
        "12 logins at once, one slot, no queue"
    );
    for (_, json, retry) in &overloaded {
        assert_eq!(json["error"]["code"], "overloaded");
        assert_eq!(retry.as_deref(), Some("1"));
    }
    let stats = d.state.passwords.stats();
    assert_eq!(stats.peak_running, 1);
    assert_eq!(stats.overloaded, overloaded.len() as u64);
    assert_eq!(stats.hashed + stats.overloaded, 12);
    // Only the judged attempts count as failures: the refused ones were taken back.
    let sizes = d.state.login_backoff.sizes();
    assert_eq!(sizes.users as u64, stats.hashed, "{sizes:?} {stats:?}");
    assert_eq!(sizes.clients as u64, stats.hashed, "{sizes:?} {stats:?}");
}

/// A login with the current TOTP code: status, error code, `Retry-After`.
async fn login_from(
    d: &mut Demo,
    from: Option<IpAddr>,
    user: &str,
    password: &str,
    secret: &str,
) -> (StatusCode, Option<String>, Option<u64>) {
    let now = d.clock.load(Ordering::SeqCst);
    let body = login_body(user, password, &code(secret, now));
    let r = d
        .call_from(from, "POST", "/api/login", None, Some(body))
        .await;
    let retry = r
        .headers
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    (
        r.status,
        r.json["error"]["code"].as_str().map(str::to_owned),
        retry,
    )
}

#[tokio::test]
async fn an_attacker_cannot_lock_a_user_out() {
    let mut d = demo();
    let home = ip("198.51.100.7");
    let attacker = ip("203.0.113.66");
    let step = |d: &Demo, secs: u64| d.clock.fetch_add(secs, Ordering::SeqCst) + secs;
    // Alice logs in from home: that address becomes known for her.
    let (status, ..) = login_from(&mut d, home, "alice", "alice-pw", ALICE_TOTP).await;
    assert_eq!(status, StatusCode::OK);
    step(&d, 30);

    // One address guesses alice's password once a second for ten minutes.
    let (mut judged, mut refused) = (0, 0);
    for _ in 0..600 {
        let (status, code, retry) =
            login_from(&mut d, attacker, "alice", "guess", ALICE_TOTP).await;
        match status {
            StatusCode::UNAUTHORIZED => judged += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(code.as_deref(), Some("rate_limited"));
                assert!(retry.unwrap() >= 1);
                refused += 1;
            }
            other => panic!("{other}"),
        }
        step(&d, 1);
    }
    assert!(
        judged <= 15,
        "{judged} guesses judged in 10 min from one address"
    );
    assert_eq!(judged + refused, 600);
    assert!(d.state.passwords.stats().hashed <= 16);
    // That address is now slowed for every username, not only alice.
    let (status, _, retry) = login_from(&mut d, attacker, "bob", "bob-pw", BOB_TOTP).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.unwrap() > 15, "{retry:?}");

    // Alice, from home, is not slowed at all.
    let (status, ..) = login_from(&mut d, home, "alice", "alice-pw", ALICE_TOTP).await;
    assert_eq!(status, StatusCode::OK);
    step(&d, 30);

    // Many addresses guessing (a botnet): the per-user delay grows, but never past
    // its low cap, so alice from a fresh address waits at most 15 s.
    for i in 0..200u8 {
        let from = ip(&format!("192.0.2.{i}"));
        let (status, _, retry) = login_from(&mut d, from, "alice", "guess", ALICE_TOTP).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(retry.unwrap() <= 15, "{retry:?}");
        }
        step(&d, 1);
    }
    let fresh = ip("100.64.0.9");
    let (status, _, retry) = login_from(&mut d, fresh, "alice", "alice-pw", ALICE_TOTP).await;
    if status == StatusCode::TOO_MANY_REQUESTS {
        let wait = retry.unwrap();
        assert!(wait <= 15, "{wait}");
        step(&d, wait);
        let (status, ..) = login_from(&mut d, fresh, "alice", "alice-pw", ALICE_TOTP).await;
        assert_eq!(status, StatusCode::OK);
    } else {
        assert_eq!(status, StatusCode::OK);
    }
    // And bob, never attacked, logs in from yet another address at once.
    let (status, ..) = login_from(&mut d, ip("100.64.0.10"), "bob", "bob-pw", BOB_TOTP).await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn config_errors_are_reported() {
    let check = |edit: &dyn Fn(&mut Value), want: &str| {
        let mut c = config(1);
        edit(&mut c);
        let err = Directory::from_json(&c.to_string()).unwrap_err();
        assert!(
            err.message.contains(want),
            "{} does not mention {want}",
            err.message
        );
        assert_eq!(err.code, "invalid_config");
    };
    check(
        &|c| c["reports"][0]["objects"][0] = json!("org-b/1.txt"),
        "outside",
    );
    check(
        &|c| c["organisations"][0]["grants"][0]["prefix"] = json!("org-a"),
        "end with `/`",
    );
    check(
        &|c| c["users"][1]["organisation"] = json!("org-z"),
        "unknown organisation",
    );
    check(
        &|c| c["users"][1]["subject"] = json!("user-alice"),
        "appears twice",
    );
    check(
        &|c| c["users"][0]["password_hash"] = json!("plain"),
        "argon2",
    );
    check(
        &|c| c["users"][0]["totp_secret"] = json!("AAAA"),
        "totp_secret",
    );
    let bad_bucket = {
        let mut c = config(1);
        c["organisations"][0]["grants"][0]["bucket"] = json!("UP");
        Directory::from_json(&c.to_string()).unwrap_err()
    };
    assert_eq!(bad_bucket.code, "invalid_bucket");
}

#[test]
fn generated_gatekeeper_config_parses_and_mirrors_the_grants() {
    let mut c = config(1);
    c["organisations"][0]["name"] = json!("A\n[[acl]] injected");
    let directory = Directory::from_json(&c.to_string()).unwrap();
    let key = VendorKey::generate(
        KeyId::parse("vendor-1").unwrap(),
        Role::vendor(),
        Some(5),
        Some(10),
        &mut rand_core::OsRng,
    )
    .unwrap();
    let data_dir = std::path::Path::new("/var/lib/countersign/odd \"dir\\ name");
    let toml = directory.gatekeeper_toml(&[key.authorized_key()], data_dir, "http://127.0.0.1:9");
    let parsed = countersign_gatekeeper::config::Config::from_toml(&toml, None).unwrap();
    assert_eq!(parsed.gatekeeper_id.as_str(), "gk.test");
    assert_eq!(parsed.data_dir, data_dir);
    assert_eq!(parsed.keys, vec![key.authorized_key()]);
    assert_eq!(parsed.cors_origins, vec!["http://127.0.0.1:9".to_owned()]);
    assert_eq!(
        parsed.acl.rules.len(),
        2,
        "one rule per grant; the name could not inject one"
    );
}
