//! The audit console's serving (`[console]`, `src/http/console.rs`): off unless
//! configured, every file with its content type and security headers, the settings
//! the page opens the log with, and a wrong `client_dir` refused when the
//! configuration is loaded. The page itself is tested in Chromium by
//! `tests/e2e/console.mjs`.

// Tests may unwrap and index: a panic here is a failed test, not a denial of service.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode};
use common::*;
use countersign_gatekeeper::config::Config;
use countersign_gatekeeper::http::console::CONTENT_SECURITY_POLICY;

const ADMIN_GLUE: &str = "export class LogView { }\nexport default function init() {}\n";
const WASM: &[u8] = b"\0asm\x01\0\0\0";

/// A client directory holding `js` and `wasm` (either may be left out).
fn client_dir(js: Option<&str>, wasm: Option<&[u8]>) -> tempfile::TempDir {
    let dir = temp_dir();
    if let Some(js) = js {
        std::fs::write(dir.path().join("countersign.js"), js).unwrap();
    }
    if let Some(wasm) = wasm {
        std::fs::write(dir.path().join("countersign_bg.wasm"), wasm).unwrap();
    }
    dir
}

fn console_section(dir: &std::path::Path) -> String {
    format!("[console]\nclient_dir = \"{}\"\n", dir.display())
}

fn get(path: &str) -> HttpRequest<Body> {
    HttpRequest::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn console_is_off_unless_configured() {
    let h = Harness::new(&Backend::SqliteLocal).await;
    for path in [
        "/audit",
        "/audit/",
        "/audit/audit.js",
        "/audit/client/countersign.js",
    ] {
        let r = h.send(get(path)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error_code(r).await, "not_found", "{path}");
    }
}

#[tokio::test]
async fn console_serves_its_files_with_their_headers() {
    let client = client_dir(Some(ADMIN_GLUE), Some(WASM));
    let h = Harness::with_extra(&Backend::SqliteLocal, &console_section(client.path())).await;
    let page = include_str!("../../../www/audit.html");
    let cases: [(&str, &str, &[u8]); 6] = [
        ("/audit/", "text/html; charset=utf-8", page.as_bytes()),
        (
            "/audit/index.html",
            "text/html; charset=utf-8",
            page.as_bytes(),
        ),
        (
            "/audit/audit.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../../www/audit.js"),
        ),
        (
            "/audit/audit.css",
            "text/css; charset=utf-8",
            include_bytes!("../../../www/audit.css"),
        ),
        (
            "/audit/client/countersign.js",
            "text/javascript; charset=utf-8",
            ADMIN_GLUE.as_bytes(),
        ),
        (
            "/audit/client/countersign_bg.wasm",
            "application/wasm",
            WASM,
        ),
    ];
    for (path, content_type, body) in cases {
        let r = h.send(get(path)).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header(&r, "content-type").as_deref(),
            Some(content_type),
            "{path}"
        );
        assert_eq!(
            header(&r, "content-security-policy").as_deref(),
            Some(CONTENT_SECURITY_POLICY),
            "{path}"
        );
        assert_eq!(
            header(&r, "x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(body_bytes(r).await, body, "{path}");
    }
    // The policy allows no inline script, and the page has none.
    assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self' 'wasm-unsafe-eval';"));
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
    assert!(
        !page.contains("<script>")
            && page.contains("<script type=\"module\" src=\"/audit/audit.js\">")
    );

    let head = HttpRequest::head("/audit/client/countersign_bg.wasm")
        .body(Body::empty())
        .unwrap();
    let r = h.send(head).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/wasm")
    );
    assert_eq!(
        header(&r, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert!(body_bytes(r).await.is_empty());

    let r = h.send(get("/audit")).await;
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&r, "location").as_deref(), Some("/audit/"));

    let r = h.send(get("/audit/nothing.js")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let r = h.send(get("/audit/console.json")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/json")
    );
    let settings: serde_json::Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    assert_eq!(settings["gatekeeperId"], GK);
    assert_eq!(settings["keys"][0]["role"], "gatekeeper");
    assert_eq!(
        settings["keys"][0]["publicKey"],
        countersign_core::text::b64(&h.state.public_key())
    );
    assert_eq!(settings["keys"][0]["keyId"], h.state.key_id().as_str());
    assert_eq!(settings["logWitnesses"], serde_json::json!([]));
    assert_eq!(settings["logQuorum"], 0);
}

fn load_error(extra: &str) -> String {
    let text = config_text("[buckets.reports]\nstore = \"local\"\n", "", extra);
    Config::from_toml(&text, Some(std::path::Path::new("/tmp")))
        .unwrap_err()
        .to_string()
}

#[test]
fn a_wrong_client_dir_is_refused_when_the_configuration_loads() {
    let missing = temp_dir();
    let e = load_error(&console_section(&missing.path().join("nope")));
    assert!(
        e.contains("console.client_dir") && e.contains("countersign.js"),
        "{e}"
    );

    let no_wasm = client_dir(Some(ADMIN_GLUE), None);
    let e = load_error(&console_section(no_wasm.path()));
    assert!(
        e.contains("console.client_dir") && e.contains("countersign_bg.wasm"),
        "{e}"
    );

    let default_flavor = client_dir(Some("export class GatekeeperClient {}\n"), Some(WASM));
    let e = load_error(&console_section(default_flavor.path()));
    assert!(
        e.contains("console.client_dir") && e.contains("not the admin flavor"),
        "{e}"
    );

    let not_wasm = client_dir(Some(ADMIN_GLUE), Some(b"<html>"));
    let e = load_error(&console_section(not_wasm.path()));
    assert!(e.contains("not a WebAssembly module"), "{e}");

    let e = load_error("[console]\nclient_dirs = \"x\"\n");
    assert!(e.contains("console"), "{e}");

    let good = client_dir(Some(ADMIN_GLUE), Some(WASM));
    let text = config_text(
        "[buckets.reports]\nstore = \"local\"\n",
        "",
        &console_section(good.path()),
    );
    let config = Config::from_toml(&text, Some(std::path::Path::new("/tmp"))).unwrap();
    assert_eq!(config.console.unwrap().client_dir, good.path());
}
