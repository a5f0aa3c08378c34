//! A streamed answer (`Lambda-Runtime-Function-Response-Mode: streaming`): the runtime's chunked
//! body goes to the router piece by piece as it arrives, never whole. Lambda's rules apply on the
//! way: at most [`MAX_STREAMED_BYTES`], the first [`UNCAPPED_BYTES`] as fast as they come and the
//! rest at most [`CAPPED_BYTES_PER_SECOND`], and the function timeout. An error the runtime
//! reports after the first bytes comes in the trailers (`Lambda-Runtime-Function-Error-Type`,
//! `-Body`) and is passed on as trailers; the limits end a stream the same way.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use hyper::body::{Body as HttpBody, Frame, Incoming};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use crate::http_server::BoxError;

/// The largest streamed answer (Lambda: 200 MB; "MB" as Lambda's payload limits count them).
pub const MAX_STREAMED_BYTES: u64 = 200 * 1024 * 1024;
/// Streamed without a bandwidth cap (Lambda: the first 6 MB).
pub const UNCAPPED_BYTES: u64 = 6 * 1024 * 1024;
/// The cap after that (Lambda: 2 MBps).
pub const CAPPED_BYTES_PER_SECOND: u64 = 2 * 1024 * 1024;

/// The trailers that carry an error after the first bytes (Lambda's names).
pub const ERROR_TYPE_TRAILER: &str = "lambda-runtime-function-error-type";
pub const ERROR_BODY_TRAILER: &str = "lambda-runtime-function-error-body";

/// How a stream ended, for the runtime's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The runtime's body ended (with or without error trailers).
    Complete,
    /// Past [`MAX_STREAMED_BYTES`]: cut off with `Function.ResponseSizeTooLarge`.
    TooLarge,
    /// The function timeout passed mid-stream: cut off with `Sandbox.Timedout`.
    TimedOut,
    /// The runtime's connection failed mid-body.
    Broken,
    /// The caller went away: the rest is not wanted.
    CallerGone,
}

/// Error trailers in Lambda's form (the body base64-encoded JSON).
pub fn error_trailers(error_type: &str, message: &str) -> HeaderMap {
    let body = serde_json::json!({"errorType": error_type, "errorMessage": message});
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(error_type) {
        h.insert(ERROR_TYPE_TRAILER, v);
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(body.to_string());
    if let Ok(v) = HeaderValue::from_str(&encoded) {
        h.insert(ERROR_BODY_TRAILER, v);
    }
    h
}

/// The runtime's body on its way to the router.
pub struct Relay {
    inner: Incoming,
    sent: u64,
    limits: Limits,
    /// When the first capped byte went out.
    capped_since: Option<Instant>,
    pause: Option<Pin<Box<Sleep>>>,
    deadline: Option<Pin<Box<Sleep>>>,
    timeout_ms: u64,
    ended: Option<oneshot::Sender<End>>,
    finished: bool,
    /// Whatever must live as long as the stream (the EE's slot for the invocation).
    guard: Option<Box<dyn Send + Sync>>,
    /// The runtime's Content-Type, passed on.
    pub content_type: Option<HeaderValue>,
}

/// The limits a relay applies (Lambda's by default; tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub uncapped_bytes: u64,
    pub capped_bytes_per_second: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: MAX_STREAMED_BYTES,
            uncapped_bytes: UNCAPPED_BYTES,
            capped_bytes_per_second: CAPPED_BYTES_PER_SECOND,
        }
    }
}

impl Relay {
    /// The relay of `body`, and where its end is told.
    pub fn new(inner: Incoming, limits: Limits) -> (Self, oneshot::Receiver<End>) {
        let (tx, rx) = oneshot::channel();
        let relay = Self {
            inner,
            sent: 0,
            limits,
            capped_since: None,
            pause: None,
            deadline: None,
            timeout_ms: 0,
            ended: Some(tx),
            finished: false,
            guard: None,
            content_type: None,
        };
        (relay, rx)
    }

    pub fn with_content_type(mut self, content_type: Option<HeaderValue>) -> Self {
        self.content_type = content_type;
        self
    }

    /// Ends the stream with `Sandbox.Timedout` at `deadline` (the invocation's, from admission).
    pub fn set_deadline(&mut self, deadline: Instant, timeout: Duration) {
        self.deadline = Some(Box::pin(tokio::time::sleep_until(deadline)));
        self.timeout_ms = timeout.as_millis() as u64;
    }

    /// Keeps `guard` until the stream ends or is dropped.
    pub fn hold(&mut self, guard: impl Send + Sync + 'static) {
        self.guard = Some(Box::new(guard));
    }

    fn finish(&mut self, end: End) {
        self.finished = true;
        self.guard = None;
        if let Some(tx) = self.ended.take() {
            let _ = tx.send(end);
        }
    }

    /// Cut off with an error in the trailers.
    fn cut(&mut self, end: End, error_type: &str, message: &str) -> Frame<Bytes> {
        self.finish(end);
        Frame::trailers(error_trailers(error_type, message))
    }

    /// After `len` more bytes: when the next may go (the bandwidth cap past the uncapped part).
    fn schedule(&mut self, len: u64) {
        self.sent += len;
        let limits = self.limits;
        if self.sent <= limits.uncapped_bytes || limits.capped_bytes_per_second == 0 {
            return;
        }
        let now = Instant::now();
        let since = *self.capped_since.get_or_insert(now);
        let capped = (self.sent - limits.uncapped_bytes) as f64;
        let due = since + Duration::from_secs_f64(capped / limits.capped_bytes_per_second as f64);
        if due > now {
            self.pause = Some(Box::pin(tokio::time::sleep_until(due)));
        }
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("sent", &self.sent)
            .field("finished", &self.finished)
            .finish()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Dropped before its end: the router (and its caller) went away.
        if let Some(tx) = self.ended.take() {
            let _ = tx.send(End::CallerGone);
        }
    }
}

impl HttpBody for Relay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            let message = format!(
                "Task timed out after {:.2} seconds",
                this.timeout_ms as f64 / 1000.0
            );
            return Poll::Ready(Some(Ok(this.cut(
                End::TimedOut,
                "Sandbox.Timedout",
                &message,
            ))));
        }
        if let Some(pause) = this.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.finish(End::Complete);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                let message = format!("the runtime's response stream broke: {e}");
                Poll::Ready(Some(Ok(this.cut(
                    End::Broken,
                    "Runtime.StreamError",
                    &message,
                ))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if this.sent + len > this.limits.max_bytes {
                        let message = format!(
                            "Response payload size exceeded maximum allowed payload size ({} bytes).",
                            this.limits.max_bytes
                        );
                        return Poll::Ready(Some(Ok(this.cut(
                            End::TooLarge,
                            "Function.ResponseSizeTooLarge",
                            &message,
                        ))));
                    }
                    this.schedule(len);
                } else if frame.is_trailers() {
                    // The runtime's error after the first bytes (or empty trailers): the end.
                    this.finish(End::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }
}
