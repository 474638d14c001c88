//! The report page's files: `www/` (the page) and `pkg/` (the built npm package),
//! served from directories given on the command line. Only plain file names with a
//! known extension are served, each with its exact media type (`application/wasm`
//! lets the browser compile while streaming) and the page's Content-Security-Policy.

use crate::AppState;
use crate::error::{ApiError, codes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the page's files live.
#[derive(Clone, Debug)]
pub struct Assets {
    /// The page (`index.html`, its modules and styles), served at `/`.
    pub www: PathBuf,
    /// The npm package's `pkg/` directory, served at `/pkg/`.
    pub pkg: PathBuf,
}

/// The media type of a servable file, by extension; `None` for anything else.
fn media_type(name: &str) -> Option<&'static str> {
    let (_, ext) = name.rsplit_once('.')?;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        _ => return None,
    })
}

/// A path segment that cannot leave its directory or name a hidden file.
fn plain_segment(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The Content-Security-Policy of the page: scripts only from this app (plus
/// `'wasm-unsafe-eval'` to compile the client), network only to this app and the
/// gatekeeper, images only from here and from `blob:` URLs of verified bytes.
pub fn content_security_policy(gatekeeper_origin: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' blob:; connect-src 'self' {gatekeeper_origin}; frame-ancestors 'none'; \
         form-action 'self'; base-uri 'none'"
    )
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such page")
}

async fn serve(state: &AppState, path: &str) -> Result<impl IntoResponse + use<>, ApiError> {
    let assets = state.assets.as_ref().ok_or_else(not_found)?;
    let (root, rest) = match path.strip_prefix("pkg/") {
        Some(rest) => (&assets.pkg, rest),
        None => (
            &assets.www,
            if path.is_empty() { "index.html" } else { path },
        ),
    };
    let segments: Vec<&str> = rest.split('/').collect();
    if !segments.iter().all(|s| plain_segment(s)) {
        return Err(not_found());
    }
    let file_name = segments.last().copied().unwrap_or_default();
    let content_type = media_type(file_name).ok_or_else(not_found)?;
    let file = segments.iter().fold(root.clone(), |p, s| p.join(s));
    let body = tokio::fs::read(&file).await.map_err(|_| not_found())?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_SECURITY_POLICY,
                content_security_policy(&state.directory.gatekeeper_origin),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CACHE_CONTROL, "no-cache".to_owned()),
        ],
        body,
    ))
}

/// `GET /`: the page's `index.html`.
pub async fn index(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    serve(&state, "").await
}

/// `GET /{*path}`: a file of the page, or of the package under `pkg/`.
pub async fn file(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    serve(&state, &path).await
}
