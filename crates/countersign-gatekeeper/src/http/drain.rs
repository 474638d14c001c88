//! A request body that is read to its end even when the gatekeeper stops reading it.
//!
//! A PUT can be refused before its body is read (a bad signature, a replayed nonce,
//! a key that exists) or part-way through it. If the connection were closed with
//! unread bytes in the kernel's buffer, the kernel would answer the client's next
//! segment with a reset, and a reset discards the answer the client has not read
//! yet: the client would see "connection reset" instead of the signed denial. So
//! the unread rest is read and discarded in the background, as nginx does for
//! refused bodies, within bounds ([`DRAIN_MAX_BYTES`], [`DRAIN_MAX_TIME`],
//! [`DRAIN_IDLE_TIME`]) so a client cannot hold the connection open with it; past
//! them the connection closes.

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// At most this many unread bytes are drained after the answer.
pub const DRAIN_MAX_BYTES: u64 = 64 << 20;
/// For at most this long.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(10);
/// A body that stops arriving for this long is not waited for.
pub const DRAIN_IDLE_TIME: Duration = Duration::from_secs(1);

/// Wraps a request body so that, dropped before its end, its rest is drained.
pub fn drain_on_drop(body: Body) -> Body {
    Body::new(DrainOnDrop { inner: Some(body) })
}

struct DrainOnDrop {
    /// `None` once the body ended (or failed): nothing is left to drain.
    inner: Option<Body>,
}

impl http_body::Body for DrainOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.inner = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if http_body::Body::is_end_stream(&body) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body));
        }
    }
}

/// Reads and discards the rest of `body`, within the bounds.
async fn drain(body: Body) {
    use futures::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut read = 0u64;
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout(DRAIN_IDLE_TIME, stream.next()).await {
            read += chunk.len() as u64;
            if read > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
}
