//! Bodies that carry what they cost: a payload's share of a memory budget (or a connection-pool
//! slot, an in-flight count) is held by the body itself and given back when the server or client
//! has written it out and dropped it, not when the handler returns. And a way to take in a body
//! the caller will not get an answer for, without keeping any of it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

/// `inner`, holding `guard` until the body is dropped.
pub struct Held<B, G> {
    inner: B,
    _guard: G,
}

impl<B, G> Held<B, G> {
    pub fn new(inner: B, guard: G) -> Self {
        Self {
            inner,
            _guard: guard,
        }
    }
}

impl<B: HttpBody + Unpin, G: Unpin> HttpBody for Held<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Read and drop a request body in the background, so the connection stays usable once the
/// answer (sent at once, before the body) is out, and a client that insists on sending its whole
/// body before it reads sees the answer instead of a broken pipe. Nothing is kept: one frame at a
/// time. Bounded by `limit` bytes and `timeout`; past either the connection is simply closed.
pub fn discard_in_background(body: Incoming, limit: u64, timeout: Duration) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(timeout, discard(body, limit)).await;
    });
}

async fn discard(mut body: Incoming, limit: u64) {
    let mut seen = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            seen += data.len() as u64;
            if seen > limit {
                return;
            }
        }
    }
}

/// The announced `Content-Length`, if any and well formed.
pub fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A byte count as budget permits (a semaphore counts permits in `u32`).
pub fn permits(bytes: u64) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}
