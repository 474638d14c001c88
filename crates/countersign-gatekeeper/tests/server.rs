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
    let config_path = h.dir.join("gatekeeper.toml");
    std::fs::write(
        &config_path,
        config_text(
            &format!(
                "[buckets.reports]\nstore = \"local\"\npath = \"{}\"\n",
                h.dir.join("bucket").display()
            ),
            "",
            "",
        ),
    )
    .unwrap();
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
    // Alter an entry in the database: verification from the database fails.
    let ledger = h.ledger().await;
    drop(ledger);
    let pool = sqlx::AnyPool::connect(&h.config.database_url)
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
    let text = include_str!("../gatekeeper.example.toml").replace(
        "secret_access_key_env = \"REPORTS_S3_SECRET\"",
        "secret_access_key = \"example-secret\"",
    );
    let config = Config::from_toml(&text, Some(std::path::Path::new("/tmp/example"))).unwrap();
    assert_eq!(config.buckets.len(), 2);
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
