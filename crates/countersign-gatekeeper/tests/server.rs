//! Configuration errors, CORS, and the server on a real socket (client source
//! addresses 127.0.0.x, so the IP rules see real peers), plus the audit CLI.

// Tests may unwrap and index: a panic here is a failed test, not a denial of service.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use countersign_core::text::b64;
use countersign_gatekeeper::config::Config;
use countersign_gatekeeper::server::serve;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn config_error(text: &str) -> String {
    Config::from_toml(text, Some(std::path::Path::new("/tmp")))
        .unwrap_err()
        .to_string()
}

#[test]
fn config_errors_name_the_key() {
    let good = config_text("[buckets.reports]\nstore = \"local\"\n", "", "");
    assert!(Config::from_toml(&good, Some(std::path::Path::new("/tmp"))).is_ok());
    let cases = [
        (good.replace("gatekeeper_id = \"gk.test\"", "gatekeeper_id = \"GK!\""), "gatekeeper_id"),
        (good.replace("store = \"local\"", "store = \"ftp\""), "buckets.reports.store"),
        (good.replace("PUT = { vendor = 2 }", "PUT = { vendor = 7 }"), "thresholds.PUT.vendor"),
        (good.replace("deny_ips = [\"127.0.0.2/32\"]", "deny_ips = [\"300.1.1.1\"]"), "network.deny_ips[0]"),
        (good.replace("groups = [\"staff\"]", "groups = [\"nobody\"]"), "acl[1].groups[0]"),
        (good.replace("key_id = \"v2\"", "key_id = \"v1\""), "keys[1].key_id"),
        // One public key under two key ids would count twice towards a threshold.
        (
            good.replace(&format!("public_key = \"{}\"", b64(&keys().v2.verifying_key().to_bytes())), &format!("public_key = \"{}\"", b64(&keys().v1.verifying_key().to_bytes()))),
            "keys[1].public_key",
        ),
        (good.replace("[limits]\n", "[limits]\nupload_memory_bytes = 1024\n"), "limits.upload_memory_bytes"),
        (good.replace("origins = [\"https://reports.example.com\"]", "origins = [\"reports.example.com/\"]"), "cors.origins[0]"),
        (good.replace("[buckets.reports]\nstore = \"local\"\n", "[buckets.reports]\nstore = \"s3\"\naccess_key_id = \"a\"\nsecret_access_key = \"b\"\n"), "buckets.reports.endpoint"),
        (format!("{good}\nsurprise = 1\n"), "unknown field"),
    ];
    for (text, key) in cases {
        let e = config_error(&text);
        assert!(e.contains(key), "`{e}` should name `{key}`");
    }
}

#[test]
fn log_witnesses_and_quorum_are_validated() {
    use countersign_core::ed25519_dalek::SigningKey;
    use countersign_core::note::NoteSigner;
    let vkey = |name: &str, seed: u8| {
        NoteSigner::cosigner(name, SigningKey::from_bytes(&[seed; 32]))
            .unwrap()
            .verifier_key()
    };
    let log_vkey = NoteSigner::ed25519("w3.example", SigningKey::from_bytes(&[3; 32]))
        .unwrap()
        .verifier_key();
    let base = config_text("[buckets.reports]\nstore = \"local\"\n", "", "");
    let with = |witnesses: &[(&str, &str)], extra: &str| {
        let mut t = format!("{base}\n[log]\n{extra}");
        for (url, key) in witnesses {
            t.push_str(&format!(
                "[[log.witnesses]]\nurl = \"{url}\"\nvkey = \"{key}\"\n"
            ));
        }
        t
    };
    let (w1, w2) = (vkey("w1.example", 1), vkey("w2.example", 2));
    let two = [
        ("http://127.0.0.1:1/", w1.as_str()),
        ("https://w2.example", w2.as_str()),
    ];
    let c = Config::from_toml(
        &with(&two, "quorum = 1\n"),
        Some(std::path::Path::new("/tmp")),
    )
    .unwrap();
    assert_eq!(c.witnesses.quorum, 1);
    assert_eq!(c.witnesses.witnesses[0].url, "http://127.0.0.1:1");
    assert_eq!(c.witnesses.witnesses[1].verifier.name(), "w2.example");
    assert_eq!(c.witnesses.timeout, std::time::Duration::from_millis(5000));
    // The quorum defaults to every witness; no witnesses, no quorum.
    let c = Config::from_toml(&with(&two, ""), Some(std::path::Path::new("/tmp"))).unwrap();
    assert_eq!(c.witnesses.quorum, 2);
    let c = Config::from_toml(&base, Some(std::path::Path::new("/tmp"))).unwrap();
    assert!(c.witnesses.witnesses.is_empty());
    let w1_again = vkey("w1.example", 9);
    let cases = [
        (
            with(&two, "quorum = 3\n"),
            "log.quorum: must be between 1 and the number of witnesses (2)",
        ),
        (with(&two, "quorum = 0\n"), "log.quorum"),
        (with(&[], "quorum = 1\n"), "log.quorum"),
        (
            with(&two, "witness_timeout_ms = 0\n"),
            "log.witness_timeout_ms",
        ),
        (
            with(&[("ftp://w1", w1.as_str())], ""),
            "log.witnesses[0].url",
        ),
        (
            with(&[("http://w1", "not a key")], ""),
            "log.witnesses[0].vkey: is not a note verifier key",
        ),
        (
            with(&[("http://w3", log_vkey.as_str())], ""),
            "log.witnesses[0].vkey: must be a witness's cosignature/v1 key",
        ),
        (
            with(
                &[("http://a", w1.as_str()), ("http://b", w1_again.as_str())],
                "",
            ),
            "log.witnesses[1].vkey: witness `w1.example` is named twice",
        ),
    ];
    for (text, expect) in cases {
        let e = config_error(&text);
        assert!(e.contains(expect), "`{e}` should contain `{expect}`");
    }
}

#[test]
fn log_publish_bucket_is_validated() {
    let base = config_text("[buckets.reports]\nstore = \"local\"\n", "", "");
    let with = |extra: &str| {
        format!("{base}\n[log.publish_bucket]\nbucket = \"cp\"\naccess_key_id = \"AK\"\n{extra}")
    };
    let tmp = std::path::Path::new("/tmp");
    let c = Config::from_toml(&with("secret_access_key = \"s\"\n"), Some(tmp)).unwrap();
    let b = c.publish_bucket.unwrap();
    assert_eq!(b.endpoint, "https://s3.us-east-1.amazonaws.com");
    assert_eq!((b.prefix.as_str(), b.object_lock_days), ("", None));
    let c = Config::from_toml(&base, Some(tmp)).unwrap();
    assert!(c.publish_bucket.is_none());
    let cases = [
        (
            with(""),
            "log.publish_bucket.secret_access_key: is required",
        ),
        (
            with("secret_access_key = \"s\"\nprefix = \"/a/\"\n"),
            "log.publish_bucket.prefix",
        ),
        (
            with("secret_access_key = \"s\"\nobject_lock_days = 0\n"),
            "log.publish_bucket.object_lock_days: must be between 1 and 36500",
        ),
        (
            with("secret_access_key = \"s\"\nendpoint = \"ftp://x\"\n"),
            "log.publish_bucket.endpoint",
        ),
        (
            with("secret_access_key = \"s\"\nsecret_access_key_env = \"X\"\n"),
            "set only one of",
        ),
    ];
    for (text, expect) in cases {
        let e = config_error(&text);
        assert!(e.contains(expect), "`{e}` should contain `{expect}`");
    }
}

#[tokio::test]
async fn cors_preflight_and_exposed_headers() {
    let h = Harness::new(&Backend::SqliteLocal).await;
    let pre = axum::http::Request::builder()
        .method("OPTIONS")
        .uri("/v1/objects/reports/a")
        .header("origin", "https://reports.example.com")
        .header("access-control-request-method", "GET")
        .body(axum::body::Body::empty())
        .unwrap();
    let r = h.send(pre).await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        header(&r, "access-control-allow-origin").unwrap(),
        "https://reports.example.com"
    );
    assert!(
        header(&r, "access-control-allow-headers")
            .unwrap()
            .contains("countersign-signature")
    );
    let evil = axum::http::Request::builder()
        .method("OPTIONS")
        .uri("/v1/objects/reports/a")
        .header("origin", "https://evil.example.com")
        .body(axum::body::Body::empty())
        .unwrap();
    let r = h.send(evil).await;
    // Not an allowed origin: no grant, so the browser refuses the real request.
    assert!(header(&r, "access-control-allow-origin").is_none());
    let mut req = signed(&get("a/missing").request(), vec![]);
    req.headers_mut()
        .insert("origin", "https://reports.example.com".parse().unwrap());
    let r = h.send(req).await;
    assert!(
        header(&r, "access-control-expose-headers")
            .unwrap()
            .contains("countersign-receipt-signature")
    );
}

/// One HTTP/1.1 exchange from a chosen local source address.
async fn http_from(source: &str, port: u16, request: &str) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut s = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn real_socket_sees_the_peer_address() {
    let h = Harness::new(&Backend::SqliteLocal).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve(h.state.clone(), listener));
    let health = http_from(
        "127.0.0.1",
        port,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    for (source, status) in [("127.0.0.2", "403"), ("127.0.0.4", "404")] {
        let req = get("a/b").request();
        let c = req.encode();
        let text = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\ncountersign-request: {}\r\ncountersign-signature: {}\r\n\r\n",
            url_of(&req),
            b64(&c),
            vendor_sigs(&c, false)
        );
        let resp = http_from(source, port, &text).await;
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {status}")),
            "{source}: {resp}"
        );
        let last = h.last_entry().await;
        assert_eq!(last.client_ip.to_string(), source);
    }
    server.abort();
}

#[tokio::test]
async fn cli_audit_verify_detects_tampering() {
    let h = Harness::new(&Backend::SqliteLocal).await;
    for i in 0..3 {
        let r = h
            .send(signed(&get(&format!("a/{i}")).request(), vec![]))
            .await;
        assert_eq!(r.status(), 404);
    }
    let config_path = write_config_file(&h, "");
    let bin = env!("CARGO_BIN_EXE_countersign-gatekeeper");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    let dir = h.dir.to_str().unwrap();
    let cfg = config_path.to_str().unwrap();
    let ok = run(&["audit", "verify", "--config", cfg, "--data-dir", dir]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The Merkle tree, integrated and published outside the database, is checked too.
    let mut publisher =
        countersign_gatekeeper::transparency::Publisher::open(&h.config.published_checkpoints)
            .unwrap();
    countersign_gatekeeper::transparency::integrate_and_publish(&h.state.ledger, &mut publisher)
        .await
        .unwrap();
    let tree_ok = run(&["audit", "verify", "--config", cfg, "--data-dir", dir]);
    let stdout = String::from_utf8_lossy(&tree_ok.stdout);
    assert!(
        tree_ok.status.success() && stdout.contains("audit tree OK: 3 entries, 1 published"),
        "{stdout}"
    );
    let export = h.dir.join("audit.jsonl");
    let out = run(&[
        "audit",
        "export",
        "--config",
        cfg,
        "--data-dir",
        dir,
        "--out",
        export.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(
        run(&[
            "audit",
            "verify",
            "--config",
            cfg,
            "--data-dir",
            dir,
            "--file",
            export.to_str().unwrap()
        ])
        .status
        .success()
    );
    let found = run(&[
        "audit",
        "search",
        "--config",
        cfg,
        "--data-dir",
        dir,
        "--error",
        "not_found",
        "--key-prefix",
        "a/1",
    ]);
    assert_eq!(String::from_utf8_lossy(&found.stdout).lines().count(), 1);
    let search = |operation: &str| {
        run(&[
            "audit",
            "search",
            "--config",
            cfg,
            "--data-dir",
            dir,
            "--error",
            "not_found",
            "--operation",
            operation,
        ])
    };
    let found = search("GET");
    assert_eq!(String::from_utf8_lossy(&found.stdout).lines().count(), 3);
    let found = search("PUT");
    assert!(found.status.success() && found.stdout.is_empty());
    let refused = search("get");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("`operation` must be"));
    // Alter an entry in the database: verification from the database fails.
    let ledger = h.ledger().await;
    drop(ledger);
    let pool = sqlx::AnyPool::connect(h.config.database_url.expose())
        .await
        .unwrap();
    // Dropping the tree's checkpoints is caught by the published ones.
    sqlx::query("DELETE FROM tlog_checkpoints")
        .execute(&pool)
        .await
        .unwrap();
    let dropped = run(&["audit", "verify", "--config", cfg, "--data-dir", dir]);
    assert!(!dropped.status.success());
    assert!(
        String::from_utf8_lossy(&dropped.stderr).contains("checkpoints were dropped"),
        "{}",
        String::from_utf8_lossy(&dropped.stderr)
    );
    sqlx::query("UPDATE audit_log SET subject = 'someone-else' WHERE seq = 1")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let bad = run(&["audit", "verify", "--config", cfg, "--data-dir", dir]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("INVALID"));
    // And a file with an entry removed fails too.
    let text = std::fs::read_to_string(&export).unwrap();
    let cut: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&export, cut.join("\n")).unwrap();
    assert!(
        !run(&[
            "audit",
            "verify",
            "--config",
            cfg,
            "--data-dir",
            dir,
            "--file",
            export.to_str().unwrap()
        ])
        .status
        .success()
    );
}

#[test]
fn example_config_parses() {
    // The example reads the S3 secret from an environment variable; the test inlines
    // one instead of touching the process environment.
    let text = include_str!("../gatekeeper.example.toml")
        .replace(
            "secret_access_key_env = \"REPORTS_S3_SECRET\"",
            "secret_access_key = \"example-secret\"",
        )
        .replace(
            "secret_access_key_env = \"REPORTS_KMS_SECRET\"",
            "secret_access_key = \"example-kms-secret\"",
        );
    let config = Config::from_toml(&text, Some(std::path::Path::new("/tmp/example"))).unwrap();
    assert_eq!(config.buckets.len(), 2);
    let reports = &config.buckets[&countersign_core::Bucket::parse("patient-reports").unwrap()];
    let kms = &reports.encryption.as_ref().unwrap().keys["reports-kms"];
    assert!(
        matches!(kms, countersign_gatekeeper::encryption::KekSource::Kms(k)
            if k.endpoint == "https://kms.eu-central-1.amazonaws.com"
                && k.secret_access_key.expose() == "example-kms-secret"),
        "{kms:?}"
    );
    assert_eq!(config.keys.len(), 3);
    let without_env = include_str!("../gatekeeper.example.toml");
    if std::env::var("REPORTS_S3_SECRET").is_err() {
        let e = config_error(without_env);
        assert!(
            e.contains("buckets.patient-reports.secret_access_key_env"),
            "{e}"
        );
    }
}

/// A self-signed certificate for 127.0.0.1 made with the `openssl` command, or `None`
/// (test skipped) when the tool is missing outside CI.
fn self_signed_cert(dir: &std::path::Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match out {
        Ok(o) => {
            assert!(
                o.status.success(),
                "openssl failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Some((cert, key))
        }
        Err(e) => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
            assert!(
                !ci,
                "the TLS test needs the `openssl` command-line tool to make a certificate: {e}"
            );
            eprintln!("SKIPPED: TLS test; the `openssl` command-line tool is missing ({e})");
            None
        }
    }
}

#[tokio::test]
async fn tls_serves_healthz_and_refuses_plain_http() {
    let tmp = temp_dir();
    let Some((cert, key)) = self_signed_cert(tmp.path()) else {
        return;
    };
    let extra = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let h = Harness::with_extra(&Backend::SqliteLocal, &extra).await;
    assert!(h.state.config.tls.is_some());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve(h.state.clone(), listener));

    // A client that trusts only this certificate gets the health check.
    let pem = std::fs::read(&cert).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .no_proxy()
        .build()
        .unwrap();
    let r = client
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["status"], "ok");

    // A client that does not trust it is refused by its own verifier.
    let untrusting = reqwest::Client::builder()
        .tls_certs_only(std::iter::empty())
        .no_proxy()
        .build()
        .unwrap();
    assert!(
        untrusting
            .get(format!("https://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_err()
    );

    // Plain HTTP to the TLS port gets no HTTP response.
    let plain = http_from(
        "127.0.0.1",
        port,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        !plain.starts_with("HTTP/"),
        "plain HTTP was answered: {plain}"
    );
    let plain_client = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(
        plain_client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_err()
    );
    server.abort();
}

/// A client that sends half a request's headers, or nothing at all, is cut off:
/// idle sockets cannot pile up.
#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    let h = Harness::new(&Backend::SqliteLocal).await;
    let mut config = h.config.clone();
    config.limits.header_read_timeout_ms = 300;
    config.limits.idle_timeout_ms = 600;
    let (state, _) = countersign_gatekeeper::server::build_state(config)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve(state, listener));
    for first in ["GET /healthz HTTP/1.1\r\nHost: x\r\n", ""] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(first.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let closed =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "the connection stayed open ({first:?})");
    }
    server.abort();
}

/// A PUT refused before its body is read (here: the key exists) still lets the
/// client send its whole body and read the signed answer: the gatekeeper drains the
/// body instead of resetting the connection under the client's feet.
#[tokio::test]
async fn a_put_refused_before_its_body_still_gets_its_answer() {
    let h = Harness::new(&Backend::SqliteLocal).await;
    let (state, _) = countersign_gatekeeper::server::build_state(h.config.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve(state, listener));
    // Larger than the kernel's socket buffers on both sides together.
    let body: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
    for expected in ["HTTP/1.1 201", "HTTP/1.1 409"] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(put_head("drained/scan.png", &body).as_bytes())
            .await
            .unwrap();
        s.write_all(&body)
            .await
            .expect("the gatekeeper reads the whole body");
        let mut response = Vec::new();
        s.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with(expected), "{response}");
        assert!(response.contains("countersign-receipt:"), "{response}");
    }
    assert_eq!(
        h.last_entry().await.decision,
        countersign_core::Decision::Deny(countersign_core::ErrorCode::AlreadyExists)
    );
    server.abort();
}

/// Writes the test configuration for the harness's data dir and bucket, with `limits`
/// added to its `[limits]`, to `gatekeeper.toml` in the data dir.
fn write_config_file(h: &Harness, limits: &str) -> std::path::PathBuf {
    let config_path = h.dir.join("gatekeeper.toml");
    let bucket = format!(
        "[buckets.reports]\nstore = \"local\"\npath = \"{}\"\n",
        h.dir.join("bucket").display()
    );
    let text = config_text(&bucket, "", "").replace("[limits]\n", &format!("[limits]\n{limits}"));
    std::fs::write(&config_path, text).unwrap();
    config_path
}

/// The head of a vendor-signed PUT of `body` to `key` (HTTP/1.1, connection closed
/// after the answer).
fn put_head(key: &str, body: &[u8]) -> String {
    let req = put(key, body).request();
    let c = req.encode();
    format!(
        "PUT {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\ncontent-length: {}\r\ncountersign-request: {}\r\ncountersign-signature: {}\r\n\r\n",
        url_of(&req),
        body.len(),
        b64(&c),
        vendor_sigs(&c, true)
    )
}

/// A free port on 127.0.0.1 (bound, read and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `127.0.0.1:port` accepts (`true`) or refuses (`false`) connections.
async fn wait_for_port(port: u16, accepting: bool) {
    for _ in 0..200 {
        let up = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok();
        if up == accepting {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("port {port} never became accepting={accepting}");
}

/// Starts the gatekeeper binary on the harness's data and a config file with
/// `limits` added to its `[limits]`, listening on a free port.
fn spawn_gatekeeper(h: &Harness, limits: &str) -> (std::process::Child, u16, std::path::PathBuf) {
    spawn_gatekeeper_with(h, limits, &[])
}

/// [`spawn_gatekeeper`] with extra environment variables.
fn spawn_gatekeeper_with(
    h: &Harness,
    limits: &str,
    env: &[(&str, &str)],
) -> (std::process::Child, u16, std::path::PathBuf) {
    let config_path = write_config_file(h, limits);
    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_countersign-gatekeeper"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&h.dir)
        .arg("--config")
        .arg(&config_path)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (child, port, config_path)
}

fn send_signal(child: &std::process::Child, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test]
async fn sigterm_drains_in_flight_uploads_and_exits_0() {
    let h = Harness::new(&Backend::SqliteLocal).await;
    let (child, port, _) = spawn_gatekeeper(&h, "");
    wait_for_port(port, true).await;

    // An upload whose body is half sent when the signal arrives.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let head = put_head("drain/report.pdf", &body);
    let mut upload = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    upload.write_all(head.as_bytes()).await.unwrap();
    upload.write_all(&body[..100_000]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    send_signal(&child, "TERM");
    // New connections are refused while the upload is still running.
    wait_for_port(port, false).await;
    upload.write_all(&body[100_000..]).await.unwrap();
    let mut response = Vec::new();
    upload.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");

    let status = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(0), "{log}");
    assert!(log.contains("every request finished"), "{log}");

    let entry = h.last_entry().await;
    assert_eq!(entry.key, b"drain/report.pdf");
    assert_eq!(entry.decision, countersign_core::Decision::Allow);
    assert_eq!(entry.bytes, body.len() as u64);
    assert_eq!(h.bucket_contents().await.len(), 2, "object and manifest");
}

#[tokio::test]
async fn shutdown_grace_deadline_bounds_the_drain() {
    let h = Harness::new(&Backend::SqliteLocal).await;
    let (child, port, _) = spawn_gatekeeper(&h, "shutdown_grace_ms = 300\n");
    wait_for_port(port, true).await;
    // An upload that never finishes.
    let body = vec![7u8; 100_000];
    let head = put_head("drain/stuck.pdf", &body);
    let mut upload = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    upload.write_all(head.as_bytes()).await.unwrap();
    upload.write_all(&body[..1000]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    send_signal(&child, "INT");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("still running at the grace deadline"), "{log}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(h.bucket_contents().await.is_empty());
}

/// Runs the gatekeeper binary with `args` and extra environment variables.
fn run_bin(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_countersign-gatekeeper"))
        .args(args)
        .env_remove("COUNTERSIGN_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn config_check_reports_every_problem_with_its_line() {
    let dir = temp_dir();
    let good = config_text("[buckets.reports]\nstore = \"local\"\n", "", "");
    let good_path = dir.path().join("good.toml");
    std::fs::write(&good_path, &good).unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run_bin(
        &[
            "config",
            "check",
            good_path.to_str().unwrap(),
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": OK\n"));

    // Five independent mistakes, each on a line of its own.
    let bad = good
        .replace("gatekeeper_id = \"gk.test\"", "gatekeeper_id = \"GK!\"")
        .replace("PUT = { vendor = 2 }", "PUT = { vendor = 7 }")
        .replace(
            "deny_ips = [\"127.0.0.2/32\"]",
            "deny_ips = [\"300.1.1.1\"]",
        )
        .replace("groups = [\"staff\"]", "groups = [\"nobody\"]")
        .replace("[limits]\n", "[limits]\nclock_skew_secs = 5000\n");
    let line_of = |needle: &str| bad.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let expected = [
        ("gatekeeper_id", line_of("GK!")),
        ("limits.clock_skew_secs", line_of("clock_skew_secs")),
        ("thresholds.PUT.vendor", line_of("vendor = 7")),
        ("network.deny_ips[0]", line_of("300.1.1.1")),
        ("acl[1].groups[0]", line_of("\"nobody\"")),
    ];
    let problems = Config::check(&bad, Some(dir.path())).unwrap_err();
    assert_eq!(problems.len(), expected.len(), "{problems:?}");
    for (key, line) in expected {
        let p = problems
            .iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("{key}: {problems:?}"));
        assert_eq!(p.line, Some(line), "{key}");
    }
    // The first problem is what `from_toml` (and so `serve`) reports.
    assert!(config_error(&bad).contains(&format!("line {}: gatekeeper_id", line_of("GK!"))));

    let bad_path = dir.path().join("bad.toml");
    std::fs::write(&bad_path, &bad).unwrap();
    let bad_file = bad_path.to_str().unwrap();
    let out = run_bin(&["config", "check", bad_file, "--data-dir", d], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{bad_file}:{}: thresholds.PUT.vendor: must be between 1 and the 3",
            line_of("vendor = 7")
        )),
        "{stdout}"
    );

    // Syntax errors: all of them, each with its line.
    let broken = "gatekeeper_id = \"a\"\n[limits\nx = = 1\n\n[y]\nz = \"open\n";
    let problems = Config::check(broken, Some(dir.path())).unwrap_err();
    let lines: Vec<_> = problems.iter().map(|p| p.line).collect();
    assert!(
        lines.contains(&Some(2)) && lines.contains(&Some(3)) && lines.contains(&Some(6)),
        "{problems:?}"
    );
    // A mistyped or unknown key: the file's shape, named by path and line.
    let shape = good.replace("[limits]\n", "[limits]\nbogus = 1\n");
    let problems = Config::check(&shape, Some(dir.path())).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "limits.bogus");
    assert_eq!(
        problems[0].line,
        Some(shape.lines().position(|l| l == "bogus = 1").unwrap() + 1)
    );
}

#[test]
fn secrets_are_never_printed_and_load_from_env_or_file() {
    let dir = temp_dir();
    let d = dir.path().to_str().unwrap();
    let s3 = |secret_line: &str| {
        config_text(
            &format!(
                "[buckets.reports]\nstore = \"s3\"\nendpoint = \"https://s3.example.com\"\naccess_key_id = \"AKIA-ID\"\n{secret_line}\n"
            ),
            "[database]\nurl = \"postgres://gk:db-pass-123@127.0.0.1:5432/gk\"\n",
            "",
        )
    };
    let text = s3("secret_access_key = \"s3-secret-456\"");
    let config = Config::from_toml(&text, Some(dir.path())).unwrap();
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("s3-secret-456") && !debug.contains("db-pass-123"),
        "{debug}"
    );
    assert!(debug.contains("[redacted]"));
    // An error in the file does not echo the secrets either.
    let bad = text.replace("postgres://", "mysql://");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, &bad).unwrap();
    let out = run_bin(
        &["config", "check", path.to_str().unwrap(), "--data-dir", d],
        &[],
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("database.url"), "{all}");
    assert!(
        !all.contains("db-pass-123") && !all.contains("s3-secret-456"),
        "{all}"
    );

    // From a file (mode 0600) and from the environment.
    use std::os::unix::fs::PermissionsExt as _;
    let secret_file = dir.path().join("s3.secret");
    std::fs::write(&secret_file, "from-file\n").unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = Config::from_toml(
        &s3("secret_access_key_file = \"s3.secret\""),
        Some(dir.path()),
    )
    .unwrap();
    let storage = &config.buckets.values().next().unwrap().storage;
    let countersign_gatekeeper::config::StorageConfig::S3 {
        secret_access_key, ..
    } = storage
    else {
        panic!("s3 expected");
    };
    assert_eq!(secret_access_key.expose(), "from-file");
    // A secret file others can read is refused.
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = config_error(&s3("secret_access_key_file = \"/nonexistent/s3.secret\""));
    assert!(e.contains("buckets.reports.secret_access_key_file"), "{e}");
    let e = Config::from_toml(
        &s3("secret_access_key_file = \"s3.secret\""),
        Some(dir.path()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("readable by group or others") && !e.contains("from-file"),
        "{e}"
    );
    // Two sources at once are ambiguous.
    let e = config_error(&s3(
        "secret_access_key = \"a\"\nsecret_access_key_env = \"B\"",
    ));
    assert!(e.contains("set only one of"), "{e}");
    // The database URL from the environment.
    let from_env = s3("secret_access_key = \"x\"").replace(
        "url = \"postgres://gk:db-pass-123@127.0.0.1:5432/gk\"",
        "url_env = \"GK_TEST_DB_URL_UNSET\"",
    );
    assert!(config_error(&from_env).contains("database.url_env"));
}

#[tokio::test]
async fn group_readable_gatekeeper_key_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let h = Harness::new(&Backend::SqliteLocal).await;
    let key = &h.config.key_path;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = countersign_gatekeeper::server::build_state(h.config.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("readable by group or others (mode 640)"), "{e}");
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        countersign_gatekeeper::server::build_state(h.config.clone())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn config_path_from_the_environment() {
    let h = Harness::new(&Backend::SqliteLocal).await;
    let r = h.send(signed(&get("a/1").request(), vec![])).await;
    assert_eq!(r.status(), 404);
    let config_path = write_config_file(&h, "");
    let dir = h.dir.to_str().unwrap();
    let out = run_bin(
        &["audit", "verify", "--data-dir", dir],
        &[("COUNTERSIGN_CONFIG", config_path.to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The variable's path is the one read.
    let out = run_bin(
        &["audit", "verify", "--data-dir", dir],
        &[("COUNTERSIGN_CONFIG", "/nonexistent/gatekeeper.toml")],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/gatekeeper.toml"));
}

/// A customer-admin reload request (POST, signed as LIST of the audit bucket with
/// the prefix `reload`).
fn reload_request(prefix: &str) -> axum::http::Request<axum::body::Body> {
    audit_request("POST", "/v1/audit/reload", prefix)
}

/// A customer-admin request for `path` (signed as LIST of the audit bucket with
/// `prefix`).
fn audit_request(method: &str, path: &str, prefix: &str) -> axum::http::Request<axum::body::Body> {
    let mut r = list(prefix);
    r.bucket = "countersign-audit".into();
    r.subject = "it-admin".into();
    let c = r.request().encode();
    let sigs = countersign_core::signature::encode_list(&[sign(
        &keys().admin,
        countersign_core::Role::customer_admin(),
        "admin1",
        &c,
    )]);
    raw(method, path, &b64(&c), &sigs, vec![])
}

/// A SQLite harness whose configuration is written to `gatekeeper.toml` in its
/// directory and made its reload source: the harness, the file, and its text.
async fn reloadable_harness() -> (Harness, std::path::PathBuf, String) {
    let h = Harness::new(&Backend::SqliteLocal).await;
    let (bucket, database, _) = backend_config(&Backend::SqliteLocal, &h.dir).await;
    let original = config_text(&bucket, &database, "");
    let path = h.dir.join("gatekeeper.toml");
    std::fs::write(&path, &original).unwrap();
    let source = countersign_gatekeeper::reload::ReloadSource {
        path: path.clone(),
        data_dir: Some(h.dir.clone()),
    };
    h.state.reload_source.set(source).unwrap();
    (h, path, original)
}

/// A group filter means the group's members in the policy in force when the search
/// runs: a reload that changes `[groups]` changes what the same search returns, and
/// the answer names the membership it used. `audit search --group` resolves the
/// group from the configuration file it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_search_by_group_follows_the_reloaded_groups() {
    let (h, path, original) = reloadable_harness().await;
    for subject in ["user-1", "user-staff", "user-2"] {
        let mut r = get("public/x");
        r.subject = subject.into();
        h.send(signed(&r.request(), vec![])).await;
    }
    let subjects_found = |query: &'static str| {
        let h = &h;
        async move {
            let r = h
                .send(audit_request(
                    "GET",
                    &format!("/v1/audit/search?{query}"),
                    "",
                ))
                .await;
            let status = r.status();
            let v: serde_json::Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
            assert_eq!(status, 200, "{v}");
            let subjects: Vec<String> = v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["subject"].as_str().unwrap().to_owned())
                .collect();
            (subjects, v["group"]["members"].clone())
        }
    };
    let (found, members) = subjects_found("group=staff&bucket=reports").await;
    assert_eq!(found, ["user-staff"]);
    assert_eq!(members, serde_json::json!(["user-staff"]));

    // user-2 joins staff: the same search now finds user-2's earlier entry too.
    let changed = original.replace(
        "staff = [\"user-staff\"]",
        "staff = [\"user-staff\", \"user-2\"]",
    );
    assert_ne!(changed, original);
    std::fs::write(&path, &changed).unwrap();
    assert_eq!(h.send(reload_request("reload")).await.status(), 200);
    let (found, members) = subjects_found("group=staff&bucket=reports").await;
    assert_eq!(found, ["user-staff", "user-2"]);
    assert_eq!(members, serde_json::json!(["user-2", "user-staff"]));

    // The command line resolves the group from the file it reads.
    let dir = h.dir.to_str().unwrap();
    let cfg = path.to_str().unwrap();
    let cli = |group: &str| {
        run_bin(
            &[
                "audit",
                "search",
                "--config",
                cfg,
                "--data-dir",
                dir,
                "--group",
                group,
                "--bucket",
                "reports",
            ],
            &[],
        )
    };
    let out = cli("staff");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_subjects: Vec<String> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["subject"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(cli_subjects, ["user-staff", "user-2"]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("group `staff` in the configuration read now: user-2, user-staff")
    );
    let out = cli("radiologie");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("group `radiologie` is not defined"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_swaps_the_acl_atomically() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let (h, path, original) = reloadable_harness().await;

    // Load: user-1 reads a missing object (404 = allowed) in a loop on 4 clients.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let state = h.state.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let r = send_to(&state, signed(&get("a/1").request(), vec![]), "127.0.0.1").await;
                seen.push((started, Instant::now(), r.status().as_u16()));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The new policy gives user-1's rule to user-2.
    let changed = original.replace("subjects = [\"user-1\"]", "subjects = [\"user-2\"]");
    std::fs::write(&path, &changed).unwrap();
    let reload_started = Instant::now();
    let r = h.send(reload_request("reload")).await;
    let reloaded = Instant::now();
    let status = r.status();
    let body: serde_json::Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    assert_eq!(status, 200, "{body}");
    let new_hash =
        countersign_core::text::hex(&<sha2::Sha256 as sha2::Digest>::digest(changed.as_bytes()));
    assert_eq!(body["policy_sha256"], new_hash.as_str());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // An invalid file changes nothing and says why.
    let invalid = changed.replace("groups = [\"staff\"]", "groups = [\"nobody\"]");
    std::fs::write(&path, &invalid).unwrap();
    let r = h.send(reload_request("reload")).await;
    assert_eq!(r.status(), 400);
    let text = String::from_utf8(body_bytes(r).await).unwrap();
    assert!(
        text.contains("invalid_field") && text.contains("acl[1].groups[0]"),
        "{text}"
    );
    let invalid_done = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut before = 0;
    let mut after = 0;
    let mut after_invalid = 0;
    for client in clients {
        for (started, ended, status) in client.await.unwrap() {
            // No request fails: each is decided under one policy or the other.
            assert!(status == 404 || status == 403, "status {status}");
            if ended < reload_started {
                assert_eq!(status, 404, "old policy");
                before += 1;
            }
            if started > reloaded {
                assert_eq!(status, 403, "the new ACL applies from the next request");
                after += 1;
            }
            if started > invalid_done {
                assert_eq!(status, 403, "the invalid file changed nothing");
                after_invalid += 1;
            }
        }
    }
    assert!(
        before > 0 && after > 0 && after_invalid > 0,
        "{before} {after} {after_invalid}"
    );

    // Both attempts are in the audit log with the file's hash.
    let reloads: Vec<_> = h
        .all_entries()
        .await
        .into_iter()
        .filter(|e| e.operation == b"policy:reload")
        .collect();
    assert_eq!(reloads.len(), 2);
    assert_eq!(reloads[0].key, format!("sha256:{new_hash}").into_bytes());
    assert_eq!(reloads[0].subject, b"admin:it-admin");
    assert_eq!(reloads[0].decision, countersign_core::Decision::Allow);
    assert_eq!(
        reloads[1].decision,
        countersign_core::Decision::Deny(countersign_core::ErrorCode::InvalidField)
    );

    // A setting only a restart can change is refused, naming it.
    std::fs::write(
        &path,
        changed.replace("[limits]\n", "[limits]\nclock_skew_secs = 5\n"),
    )
    .unwrap();
    let r = h.send(reload_request("reload")).await;
    assert_eq!(r.status(), 400);
    assert!(
        String::from_utf8(body_bytes(r).await)
            .unwrap()
            .contains("limits: changes only on restart")
    );
    // So is the list of witnesses.
    let witness = countersign_core::note::NoteSigner::cosigner(
        "w1.example",
        countersign_core::ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
    )
    .unwrap()
    .verifier_key();
    std::fs::write(
        &path,
        format!(
            "{changed}\n[[log.witnesses]]\nurl = \"http://127.0.0.1:1\"\nvkey = \"{witness}\"\n"
        ),
    )
    .unwrap();
    let r = h.send(reload_request("reload")).await;
    assert_eq!(r.status(), 400);
    assert!(
        String::from_utf8(body_bytes(r).await)
            .unwrap()
            .contains("log: changes only on restart")
    );
    // A signature over another prefix (say, one made for reading the log) cannot reload.
    let r = h.send(reload_request("")).await;
    assert_eq!(error_code(r).await, "request_mismatch");
}

#[tokio::test]
async fn sighup_reloads_and_an_invalid_file_keeps_the_policy() {
    let h = Harness::new(&Backend::SqliteLocal).await;
    let (child, port, config_path) = spawn_gatekeeper(&h, "");
    wait_for_port(port, true).await;
    let get_status = || async {
        let req = get("a/1").request();
        let c = req.encode();
        let text = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\ncountersign-request: {}\r\ncountersign-signature: {}\r\n\r\n",
            url_of(&req),
            b64(&c),
            vendor_sigs(&c, false)
        );
        let resp = http_from("127.0.0.1", port, &text).await;
        resp.get(9..12).unwrap_or("").to_owned()
    };
    assert_eq!(get_status().await, "404");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let changed = original.replace("subjects = [\"user-1\"]", "subjects = [\"user-2\"]");
    std::fs::write(&config_path, &changed).unwrap();
    send_signal(&child, "HUP");
    let mut status = String::new();
    for _ in 0..100 {
        status = get_status().await;
        if status == "403" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "403", "the new ACL never applied");
    // Back to the original ACL, but in a file with a mistake: nothing changes.
    std::fs::write(
        &config_path,
        original.replace(
            "origins = [\"https://reports.example.com\"]",
            "origins = [\"nope\"]",
        ),
    )
    .unwrap();
    send_signal(&child, "HUP");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(get_status().await, "403");
    send_signal(&child, "TERM");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("SIGHUP: policy reloaded"), "{log}");
    assert!(
        log.contains("SIGHUP: policy reload refused") && log.contains("cors.origins[0]"),
        "{log}"
    );
    // The reload entries keep the chain verifiable.
    let dir = h.dir.to_str().unwrap();
    let cfg = config_path.to_str().unwrap();
    std::fs::write(&config_path, &changed).unwrap();
    let out = run_bin(
        &["audit", "verify", "--config", cfg, "--data-dir", dir],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_bin(
        &["audit", "search", "--config", cfg, "--data-dir", dir],
        &[],
    );
    let lines = String::from_utf8_lossy(&out.stdout);
    assert_eq!(lines.matches("\"policy:reload\"").count(), 2, "{lines}");
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_no_keys_or_subjects() {
    let h = Harness::new(&Backend::SqliteLocal).await;
    let (child, port, _) = spawn_gatekeeper_with(&h, "", &[("COUNTERSIGN_LOG_FORMAT", "json")]);
    wait_for_port(port, true).await;
    let body = b"patient scan".to_vec();
    let head = put_head("patients/jane-doe-1970/scan.pdf", &body);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let request_id = response
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap()
        .trim()
        .to_owned();
    send_signal(&child, "TERM");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let finished = events
        .iter()
        .find(|e| e["fields"]["message"] == "request finished")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(finished["span"]["name"], "request");
    assert_eq!(finished["span"]["id"], request_id.as_str());
    assert_eq!(finished["fields"]["status"], 201);
    assert_eq!(finished["level"], "INFO");
    // The key and the subject are in the audit log, not in the server log.
    assert!(
        !log.contains("jane-doe") && !log.contains("user-1"),
        "{log}"
    );
    assert_eq!(h.last_entry().await.subject, b"user-1");
}

#[test]
fn config_check_goes_on_without_a_data_dir() {
    let text = config_text("[buckets.reports]\nstore = \"local\"\n", "", "")
        .replace("gatekeeper_id = \"gk.test\"", "gatekeeper_id = \"GK!\"");
    let problems = Config::check(&text, None).unwrap_err();
    let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["gatekeeper_id", "data_dir"], "{problems:?}");
    assert_eq!(
        problems[1].line,
        Some(1),
        "a missing key is reported at its table"
    );
}

#[tokio::test]
async fn admin_listener_serves_metrics_and_health_only() {
    let h = Harness::new(&Backend::SqliteLocal).await;
    let config_path = write_config_file(&h, "");
    let admin_port = free_port();
    let text = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        format!("admin_listen = \"127.0.0.1:{admin_port}\"\n{text}"),
    )
    .unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_countersign-gatekeeper"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&h.dir)
        .arg("--config")
        .arg(&config_path)
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, true).await;
    wait_for_port(admin_port, true).await;
    let fetch = |port: u16, path: &str| {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        async move { http_from("127.0.0.1", port, &request).await }
    };
    // A denied request, then the admin listener's metrics count it.
    let denied = http_from(
        "127.0.0.2",
        port,
        "GET /v1/objects/reports/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    let metrics = fetch(admin_port, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("countersign_denied_by_network_total{network=\"127.0.0.0/24\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("countersign_audit_log_up 1\n"),
        "{metrics}"
    );
    for path in ["/healthz", "/readyz"] {
        for p in [port, admin_port] {
            let r = fetch(p, path).await;
            assert!(r.starts_with("HTTP/1.1 200"), "{p}{path}: {r}");
        }
    }
    // The main listener no longer serves /metrics; the admin one serves nothing else.
    for (p, path) in [(port, "/metrics"), (admin_port, "/v1/keys")] {
        let r = fetch(p, path).await;
        assert!(r.starts_with("HTTP/1.1 404"), "{p}{path}: {r}");
        assert!(r.contains("not_found"), "{r}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn admin_listen_must_be_an_address() {
    let good = config_text("[buckets.reports]\nstore = \"local\"\n", "", "");
    let e = config_error(&format!("admin_listen = \"metrics-host\"\n{good}"));
    assert!(e.contains("admin_listen"), "{e}");
    let ok = Config::from_toml(
        &format!("admin_listen = \"127.0.0.1:9464\"\n{good}"),
        Some(std::path::Path::new("/tmp")),
    )
    .unwrap();
    assert_eq!(ok.admin_listen, Some("127.0.0.1:9464".parse().unwrap()));
}

/// `serve` refuses to start when `[log.publish_bucket]` asks for object lock on a
/// bucket without it, and names the bucket.
#[tokio::test]
async fn serve_refuses_a_checkpoint_bucket_without_object_lock() {
    let Some(Backend::PostgresS3 { s3_endpoint, .. }) = Backend::from_env() else {
        return;
    };
    let name = format!("unlocked-{}", random_hex(6));
    create_s3_bucket(&s3_endpoint, &name).await;
    let dir = temp_dir();
    let bucket = format!(
        "[buckets.reports]\nstore = \"local\"\npath = \"{}\"\n",
        dir.path().join("bucket").display()
    );
    let extra = format!(
        "[log.publish_bucket]\nendpoint = \"{s3_endpoint}\"\nbucket = \"{name}\"\n\
         access_key_id = \"test\"\nsecret_access_key = \"test\"\nobject_lock_days = 1\n"
    );
    let config_path = dir.path().join("gatekeeper.toml");
    std::fs::write(&config_path, config_text(&bucket, "", &extra)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_countersign-gatekeeper"))
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--config")
        .arg(&config_path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "bucket `{name}` does not have object lock enabled"
        )),
        "{log}"
    );
}

/// `audit verify --bucket` checks the database against the checkpoint bucket.
#[tokio::test]
async fn cli_audit_verify_against_the_checkpoint_bucket() {
    use countersign_gatekeeper::checkpoint_bucket::{
        BucketPublisher, CheckpointBucket, PublishBucketConfig,
    };
    let Some(Backend::PostgresS3 { s3_endpoint, .. }) = Backend::from_env() else {
        return;
    };
    let name = format!("locked-{}", random_hex(6));
    let status = reqwest::Client::new()
        .put(format!("{s3_endpoint}/{name}"))
        .header("x-amz-bucket-object-lock-enabled", "true")
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
    let h = Harness::new(&Backend::SqliteLocal).await;
    for i in 0..3 {
        let r = h
            .send(signed(&get(&format!("a/{i}")).request(), vec![]))
            .await;
        assert_eq!(r.status(), 404);
    }
    let bin = env!("CARGO_BIN_EXE_countersign-gatekeeper");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    let dir = h.dir.to_str().unwrap();
    let config_path = write_config_file(&h, "");
    let cfg = config_path.to_str().unwrap();
    let none = run(&[
        "audit",
        "verify",
        "--config",
        cfg,
        "--data-dir",
        dir,
        "--bucket",
    ]);
    let stderr = String::from_utf8_lossy(&none.stderr);
    assert!(
        !none.status.success() && stderr.contains("the configuration has no [log.publish_bucket]"),
        "{stderr}"
    );
    let section = format!(
        "\n[log.publish_bucket]\nendpoint = \"{s3_endpoint}\"\nbucket = \"{name}\"\n\
         access_key_id = \"test\"\nsecret_access_key = \"test\"\nobject_lock_days = 1\n"
    );
    let mut text = std::fs::read_to_string(&config_path).unwrap();
    text.push_str(&section);
    std::fs::write(&config_path, text).unwrap();
    let config = Config::from_toml(
        &std::fs::read_to_string(&config_path).unwrap(),
        Some(&h.dir),
    )
    .unwrap();
    let b: PublishBucketConfig = config.publish_bucket.unwrap();
    let bucket = CheckpointBucket::new(
        b,
        countersign_gatekeeper::checkpoint_bucket::BUCKET_DEADLINE,
    )
    .unwrap();
    let mut publisher =
        countersign_gatekeeper::transparency::Publisher::open(&h.config.published_checkpoints)
            .unwrap();
    countersign_gatekeeper::transparency::integrate_and_publish(&h.state.ledger, &mut publisher)
        .await
        .unwrap();
    let mut p = BucketPublisher::open(bucket).await.unwrap();
    assert_eq!(p.publish_new(&h.state.ledger).await.unwrap(), 1);
    let ok = run(&[
        "audit",
        "verify",
        "--config",
        cfg,
        "--data-dir",
        dir,
        "--bucket",
    ]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success()
            && stdout.contains(&format!(
                "audit tree OK: 3 entries, 1 published and 1 stored checkpoints verified against bucket `{name}`"
            )),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
