//! Browser's view, end to end over real sockets on 127.0.0.1: log in to the demo
//! vendor app, have it sign a PUT and a GET, move 2 MiB through a real gatekeeper, and
//! prove from the vendor's byte counters that none of those bytes passed through it.
//! The gatekeeper runs on the configuration `Directory::gatekeeper_toml` generates.
// Tests panic on failure by design; unwrap/expect/indexing are how they assert.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use argon2::PasswordHasher as _;
use countersign_core::signature::encode_list;
use countersign_core::text::{b64, hex};
use countersign_core::{
    BodyDigest, Bucket, GatekeeperId, KeyId, ObjectKey, Operation, Request, Role, Subject,
};
use countersign_demo::config::Directory;
use countersign_demo::traffic::TrafficStats;
use countersign_demo::{AppState, app, totp};
use countersign_gatekeeper::{config::Config, server};
use countersign_vendor::{Signer, VendorKey, unix_now};
use serde_json::{Value, json};
use std::sync::Arc;

const TOTP_SECRET: &str = "NZRWWFPCJT6M7PHJIHOUDEEGDZDX2ZXM";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_bytes_never_pass_through_the_vendor() {
    let tmp = tempfile::tempdir().unwrap();
    let vendor_key = VendorKey::generate(
        KeyId::parse("vendor-1").unwrap(),
        Role::vendor(),
        None,
        None,
        &mut rand_core::OsRng,
    )
    .unwrap();

    // Both servers' addresses first: each one's config names the other.
    let gk_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gk_url = format!("http://{}", gk_listener.local_addr().unwrap());
    let vendor_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vendor_url = format!("http://{}", vendor_listener.local_addr().unwrap());

    // The vendor's directory.
    let salt = argon2::password_hash::SaltString::generate(&mut rand_core::OsRng);
    let params = argon2::Params::new(1024, 1, 1, None).unwrap();
    let hash = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(b"pw", &salt)
        .unwrap()
        .to_string();
    let directory = Directory::from_json(
        &json!({
            "gatekeeper": "gk.test",
            "gatekeeper_url": gk_url,
            "organisations": [
                {"id": "org-a", "name": "A", "grants": [
                    {"bucket": "reports", "prefix": "org-a/", "methods": ["GET", "PUT"]}]},
                {"id": "org-b", "name": "B", "grants": [
                    {"bucket": "reports", "prefix": "org-b/", "methods": ["GET"]}]}
            ],
            "users": [
                {"username": "alice", "subject": "user-alice", "organisation": "org-a",
                 "password_hash": hash.clone(), "totp_secret": TOTP_SECRET},
                {"username": "bob", "subject": "user-bob", "organisation": "org-b",
                 "password_hash": hash, "totp_secret": TOTP_SECRET}
            ]
        })
        .to_string(),
    )
    .unwrap();

    // The customer's gatekeeper, on the generated configuration: it trusts the vendor
    // key, allows the page's origin, and mirrors the grants in its own ACL.
    let toml = directory.gatekeeper_toml(
        &[vendor_key.authorized_key()],
        &tmp.path().join("gk"),
        &vendor_url,
    );
    let config = Config::from_toml(&toml, None).unwrap();
    let (gk_state, _) = server::build_state(config).await.unwrap();
    let gk_task = tokio::spawn(server::serve(gk_state, gk_listener));

    let state =
        Arc::new(AppState::new(directory, Signer::new([vendor_key.clone()]).unwrap()).unwrap());
    // Served as `countersign-demo serve` does: with the peer address, for the login
    // backoff per client address.
    let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let vendor_task = tokio::spawn(async move { axum::serve(vendor_listener, service).await });

    let http = reqwest::Client::new();
    let post = |path: &str, cookie: Option<String>, body: Value| {
        let mut req = http
            .post(format!("{vendor_url}{path}"))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send()
    };

    // Log in.
    let code = totp::code_at(&totp::base32_decode(TOTP_SECRET).unwrap(), unix_now());
    let login = post(
        "/api/login",
        None,
        json!({"username": "alice", "password": "pw", "totp": code}),
    )
    .await
    .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    // The browser's object: 2 MiB.
    let data: Vec<u8> = (0u32..512 * 1024)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    let digest = BodyDigest::of(&data);
    let key = "org-a/scans/big.bin";
    let now = unix_now();
    let nonce = |n: u8| format!("{:032x}", u128::from(n) * 0x0101_0101 + u128::from(now));
    let sign = |fields: Value| {
        let cookie = cookie.clone();
        async move {
            let r = post("/api/sign", Some(cookie), json!({ "requests": [fields] }))
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            let result = v["results"][0].clone();
            assert!(result["error"].is_null(), "{result}");
            (
                result["request"].as_str().unwrap().to_owned(),
                result["signature"].as_str().unwrap().to_owned(),
            )
        }
    };
    let url = format!(
        "{gk_url}/v1/objects/reports/{}",
        ObjectKey::parse(key).unwrap().to_url_path()
    );

    // PUT: the vendor signs metadata; the bytes go to the gatekeeper.
    let (request, signature) = sign(json!({
        "audience": "gk.test", "method": "PUT", "bucket": "reports", "key": key,
        "content_type": "application/octet-stream", "body_sha256": hex(&digest.sha256),
        "body_length": digest.length, "subject": "user-alice",
        "issued_at": now, "expires_at": now + 120, "nonce": nonce(1)
    }))
    .await;
    let put = http
        .put(&url)
        .header("countersign-request", request)
        .header("countersign-signature", signature)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{:?}", put.text().await);

    // GET it back the same way, from the report page's origin.
    let (request, signature) = sign(json!({
        "audience": "gk.test", "method": "GET", "bucket": "reports", "key": key,
        "subject": "user-alice", "issued_at": now, "expires_at": now + 120, "nonce": nonce(2)
    }))
    .await;
    let got = http
        .get(&url)
        .header("origin", &vendor_url)
        .header("countersign-request", request)
        .header("countersign-signature", signature)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert!(got.headers().contains_key("countersign-receipt"));
    assert_eq!(
        got.headers()["access-control-allow-origin"],
        vendor_url.as_str()
    );
    assert!(got.bytes().await.unwrap() == data);

    // Even a compromised vendor cannot reach another organisation's prefix: a request
    // it signs outside the grants is refused by the customer's own ACL.
    let forged = Request::new(
        GatekeeperId::parse("gk.test").unwrap(),
        Bucket::parse("reports").unwrap(),
        Operation::Get {
            key: ObjectKey::parse("org-b/secret.pdf").unwrap(),
            range: None,
        },
        Subject::parse("user-alice").unwrap(),
        now,
        60,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let denied = http
        .get(format!("{gk_url}/v1/objects/reports/org-b/secret.pdf"))
        .header("countersign-request", b64(&forged.encode()))
        .header(
            "countersign-signature",
            encode_list(&[vendor_key.sign_document(&forged.encode())]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let body: Value = serde_json::from_slice(&denied.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "access_denied");

    // 4 MiB moved between browser and gatekeeper; the vendor saw a few KiB of JSON.
    let stats: TrafficStats = serde_json::from_slice(
        &http
            .get(format!("{vendor_url}/api/stats"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stats.requests, 4);
    assert!(stats.request_body_bytes > 0 && stats.response_body_bytes > 0);
    let total = stats.request_body_bytes + stats.response_body_bytes;
    assert!(total < 8 * 1024, "the vendor moved {total} body bytes");

    vendor_task.abort();
    gk_task.abort();
}
