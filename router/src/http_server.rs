//! A small HTTP/1.1 accept loop on hyper, shared by the router and the sidecar. It bounds what a
//! client can hold: headers must arrive within a timeout, idle keep-alive connections are closed,
//! and a gate caps the connections open at once (past it a connection gets a short canned answer
//! and is closed, without its request being read).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::Error;

/// Errors a streamed body may end with (an answer passed through from an EE that broke off).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(b: impl Into<Bytes>) -> Body {
    use http_body_util::BodyExt;
    http_body_util::Full::new(b.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Any body as the servers' body type.
pub fn boxed<B>(b: B) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    use http_body_util::BodyExt;
    b.map_err(Into::into).boxed()
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Serve connections from `listener` with `handler` until the task is dropped.
///
/// `header_timeout` bounds how long a connection may sit without sending a complete request head;
/// hyper runs this timer also while a keep-alive connection is idle between requests, so it doubles
/// as the idle timeout. `None` for the Runtime API, whose trusted client may legitimately keep a
/// connection idle for the whole length of an invocation between `/next` and `/response`.
///
/// `gate` is asked once per accepted connection: `Ok(guard)` serves it and drops the guard when it
/// ends (a permit of a connection cap, a counter); `Err(answer)` writes those bytes (a complete
/// HTTP response) and closes it at once.
pub async fn serve<H, F, G, T>(
    listener: TcpListener,
    header_timeout: Option<Duration>,
    gate: G,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
    G: Fn() -> Result<T, &'static [u8]>,
    T: Send + 'static,
{
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Counted until it closes, refused or not: the heap is trimmed once a flood of them is
        // over (`crate::heap`).
        let load = crate::heap::Load::enter();
        let guard = match gate() {
            Ok(g) => g,
            Err(answer) => {
                // Over the cap: a fixed answer, bounded in time, and the socket is closed. Nothing
                // is read, so a refused connection costs no buffer.
                tokio::spawn(async move {
                    let _load = load;
                    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
                        let _ = stream.write_all(answer).await;
                        let _ = stream.shutdown().await;
                    })
                    .await;
                });
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let _load = load;
            let service = service_fn(move |req| {
                // A request in progress is load too (many may pass through one connection).
                let request = crate::heap::Load::enter();
                let fut = handler(req);
                async move {
                    let answer = fut.await;
                    drop(request);
                    Ok::<_, Infallible>(answer)
                }
            });
            let mut builder = http1::Builder::new();
            // Bound the request head (hyper checks max_buf_size only between reads, so a large
            // head arriving at once could slip past it). The number of headers keeps hyper's
            // default bound of 100: setting it explicitly, even to 100, makes hyper fill a
            // 100-entry array on every request instead of using its inline one.
            builder
                .max_buf_size(MAX_HEAD_BYTES)
                .max_header_size(MAX_HEAD_BYTES);
            if let Some(t) = header_timeout {
                builder.timer(TokioTimer::new()).header_read_timeout(t);
            }
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

/// Largest request head (request line and headers) a connection may send.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long writing the canned answer to a refused connection may take.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_millis(200);

/// A gate of at most `cap` connections at once: past it, `answer`.
pub fn capped_gate(
    cap: usize,
    answer: &'static [u8],
) -> impl Fn() -> Result<tokio::sync::OwnedSemaphorePermit, &'static [u8]> {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(cap));
    move || permits.clone().try_acquire_owned().map_err(|_| answer)
}

/// Whether `answer` is a complete HTTP/1.1 response whose Content-Length is its body's length and
/// whose body is JSON (for tests of the canned answers).
pub fn is_complete_json_response(answer: &[u8]) -> bool {
    let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..split]);
    let body = &answer[split + 4..];
    let length = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    head.starts_with("HTTP/1.1 ")
        && length == Some(body.len())
        && serde_json::from_slice::<serde_json::Value>(body).is_ok()
}
