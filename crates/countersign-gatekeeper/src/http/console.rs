//! The audit console (`www/audit.html`, `docs/API.md`, "Audit console"): a page the
//! gatekeeper serves on its own origin under `/audit/`, off unless `[console]` is
//! configured.
//!
//! The page's own files (`www/audit.html`, `audit.js`, `audit.css`) are compiled into
//! the binary. The client it imports is the npm package's admin flavor, read once
//! from `console.client_dir` when the configuration is loaded: a directory that lacks
//! its files, or holds the default flavor, is refused at start-up (and by `config
//! check`), never per request. Every answer carries a strict Content-Security-Policy
//! (no inline script, scripts and WebAssembly only from this origin, requests only to
//! this origin) and `X-Content-Type-Options: nosniff`.

use super::{AppState, Gatekeeper};
use crate::config::{ConfigError, err};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use bytes::Bytes;
use countersign_core::Role;
use std::path::{Path, PathBuf};

/// The console's Content-Security-Policy.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The largest client file read from `client_dir` (the admin flavor's `.wasm` is a
/// few hundred KiB).
const MAX_CLIENT_FILE_BYTES: u64 = 16 * 1024 * 1024;

const PAGE_HTML: &str = include_str!("../../../../www/audit.html");
const PAGE_JS: &str = include_str!("../../../../www/audit.js");
const PAGE_CSS: &str = include_str!("../../../../www/audit.css");

/// `[console]`: the admin flavor of the client, read when the configuration is loaded.
#[derive(Clone)]
pub struct ConsoleConfig {
    /// `client_dir`, resolved against `data_dir`.
    pub client_dir: PathBuf,
    client_js: Bytes,
    client_wasm: Bytes,
}

impl std::fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("client_dir", &self.client_dir)
            .field("client_js_bytes", &self.client_js.len())
            .field("client_wasm_bytes", &self.client_wasm.len())
            .finish()
    }
}

impl ConsoleConfig {
    /// Reads `countersign.js` and `countersign_bg.wasm` from `client_dir` and checks
    /// that they are the admin flavor (the glue exports `LogView`) and a WebAssembly
    /// module. Errors name the key `console.client_dir` and the file.
    pub fn load(client_dir: PathBuf) -> Result<Self, ConfigError> {
        let read = |name: &str| -> Result<Bytes, ConfigError> {
            let path = client_dir.join(name);
            let problem = |what: String| {
                err(
                    "console.client_dir",
                    format!(
                        "{}: {what}; name the admin flavor of the client (packages/client/admin, built by scripts/build-npm.sh)",
                        path.display()
                    ),
                )
            };
            let file = std::fs::File::open(&path).map_err(|e| problem(e.to_string()))?;
            if !file.metadata().is_ok_and(|m| m.is_file()) {
                return Err(problem("is not a file".into()));
            }
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(file, MAX_CLIENT_FILE_BYTES + 1),
                &mut bytes,
            )
            .map_err(|e| problem(e.to_string()))?;
            if bytes.len() as u64 > MAX_CLIENT_FILE_BYTES {
                return Err(problem(format!(
                    "is larger than {MAX_CLIENT_FILE_BYTES} bytes"
                )));
            }
            Ok(Bytes::from(bytes))
        };
        let client_js = read("countersign.js")?;
        let client_wasm = read("countersign_bg.wasm")?;
        let dir = client_dir.display();
        if !contains(&client_js, b"class LogView") {
            return Err(err(
                "console.client_dir",
                format!(
                    "{dir}/countersign.js is not the admin flavor of the client (it has no LogView): name packages/client/admin, not packages/client/pkg"
                ),
            ));
        }
        if !client_wasm.starts_with(b"\0asm") {
            return Err(err(
                "console.client_dir",
                format!("{dir}/countersign_bg.wasm is not a WebAssembly module"),
            ));
        }
        Ok(Self {
            client_dir,
            client_js,
            client_wasm,
        })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `[console]` as written in the file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConsole {
    client_dir: PathBuf,
}

impl RawConsole {
    /// Resolves `client_dir` against `data_dir` and loads the client.
    pub(crate) fn validate(
        self,
        data_dir: &Path,
        p: &mut Vec<ConfigError>,
    ) -> Option<ConsoleConfig> {
        ConsoleConfig::load(crate::config::resolve(data_dir, self.client_dir))
            .map_err(|e| p.push(e))
            .ok()
    }
}

/// Adds the console's routes to `router` when `[console]` is configured; without it
/// `/audit/…` falls through to `404 not_found` like any unknown path.
pub fn routes(router: Router<AppState>, console: Option<&ConsoleConfig>) -> Router<AppState> {
    let Some(c) = console else {
        return router;
    };
    let page = |body: &'static str, content_type: &'static str| {
        get(move || async move { asset(Bytes::from_static(body.as_bytes()), content_type) })
    };
    let client = |body: Bytes, content_type: &'static str| {
        get(move || async move { asset(body, content_type) })
    };
    router
        .route("/audit", get(redirect))
        .route("/audit/", page(PAGE_HTML, "text/html; charset=utf-8"))
        .route(
            "/audit/index.html",
            page(PAGE_HTML, "text/html; charset=utf-8"),
        )
        .route(
            "/audit/audit.js",
            page(PAGE_JS, "text/javascript; charset=utf-8"),
        )
        .route(
            "/audit/audit.css",
            page(PAGE_CSS, "text/css; charset=utf-8"),
        )
        .route(
            "/audit/client/countersign.js",
            client(c.client_js.clone(), "text/javascript; charset=utf-8"),
        )
        .route(
            "/audit/client/countersign_bg.wasm",
            client(c.client_wasm.clone(), "application/wasm"),
        )
        .route("/audit/console.json", get(settings))
}

fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Revalidated on every load, so a new gatekeeper version's page is used at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    r
}

fn asset(body: Bytes, content_type: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure(r)
}

async fn redirect() -> Response {
    secure(
        (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, "/audit/")],
        )
            .into_response(),
    )
}

/// `GET /audit/console.json`: what the page needs to open the log — the gatekeeper's
/// id and checkpoint key, and the configured witnesses and quorum. The page trusts
/// them as it trusts its own code: both come from this gatekeeper.
async fn settings(State(gk): State<AppState>) -> Response {
    let body = settings_json(&gk);
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    secure(r)
}

fn settings_json(gk: &Gatekeeper) -> serde_json::Value {
    let w = &gk.config.witnesses;
    serde_json::json!({
        "gatekeeperId": gk.config.gatekeeper_id.as_str(),
        "keys": [{
            "keyId": gk.key_id.as_str(),
            "role": Role::GATEKEEPER,
            "publicKey": countersign_core::text::b64(&gk.public_key()),
        }],
        "logWitnesses": w.witnesses.iter().map(|w| w.verifier.to_text()).collect::<Vec<_>>(),
        "logQuorum": w.quorum,
    })
}
