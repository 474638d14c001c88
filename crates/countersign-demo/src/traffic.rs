//! Counts every body byte the app receives and sends, so tests (and operators) can
//! check that object bytes never pass through the vendor.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counters.
#[derive(Debug, Default)]
pub struct Traffic {
    requests: AtomicU64,
    request_body_bytes: AtomicU64,
    response_body_bytes: AtomicU64,
}

/// A snapshot of [`Traffic`], the JSON of `GET /api/stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrafficStats {
    /// HTTP requests handled.
    pub requests: u64,
    /// Body bytes received.
    pub request_body_bytes: u64,
    /// Body bytes sent.
    pub response_body_bytes: u64,
}

impl Traffic {
    /// The current numbers.
    pub fn snapshot(&self) -> TrafficStats {
        TrafficStats {
            requests: self.requests.load(Ordering::Relaxed),
            request_body_bytes: self.request_body_bytes.load(Ordering::Relaxed),
            response_body_bytes: self.response_body_bytes.load(Ordering::Relaxed),
        }
    }
}

fn counted(body: Body, counter: Arc<Traffic>, response: bool) -> Body {
    Body::new(body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            let slot = if response {
                &counter.response_body_bytes
            } else {
                &counter.request_body_bytes
            };
            slot.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        frame
    }))
}

/// Middleware (install with `axum::middleware::from_fn_with_state`): wraps request
/// and response bodies so every data frame is counted as it streams.
pub async fn count_bytes(
    State(traffic): State<Arc<Traffic>>,
    request: Request,
    next: Next,
) -> Response {
    traffic.requests.fetch_add(1, Ordering::Relaxed);
    let t = Arc::clone(&traffic);
    let request = request.map(|body| counted(body, t, false));
    next.run(request)
        .await
        .map(|body| counted(body, traffic, true))
}
