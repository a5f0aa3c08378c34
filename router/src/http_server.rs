//! A small HTTP/1.1 accept loop on hyper, shared by the router and the sidecar. It bounds what a
//! client can hold: headers must arrive within a timeout, and idle keep-alive connections are closed.

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
use tokio::net::TcpListener;

use crate::Error;

pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(b: impl Into<Bytes>) -> Body {
    use http_body_util::BodyExt;
    http_body_util::Full::new(b.into()).boxed()
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
pub async fn serve<H, F>(listener: TcpListener, header_timeout: Option<Duration>, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let fut = handler(req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let mut builder = http1::Builder::new();
            // Bound the request head (hyper checks max_buf_size only between reads, so a large
            // head arriving at once could slip past it). The number of headers keeps hyper's
            // default bound of 100: setting it explicitly, even to 100, makes hyper fill a
            // 100-entry array on every request instead of using its inline one.
            builder.max_buf_size(64 * 1024).max_header_size(64 * 1024);
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
