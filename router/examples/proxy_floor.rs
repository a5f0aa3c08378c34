//! Benchmark baseline: the least a hyper reverse proxy does (no routing, no metrics, no checks),
//! forwarding every request to one upstream. `proxy_floor LISTEN UPSTREAM`.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn main() -> std::io::Result<()> {
    let rt = lmi_router::runtime("LMI_ECHO_THREADS").map_err(std::io::Error::other)?;
    rt.block_on(serve())
}

async fn serve() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:7001".to_string());
    let upstream: hyper::Uri = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:7000/".to_string())
        .parse()
        .map_err(std::io::Error::other)?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let (client, upstream) = (client.clone(), upstream.clone());
                async move {
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    let fwd = Request::post(upstream)
                        .body(Full::new(body))
                        .unwrap_or_default();
                    let answer = match client.request(fwd).await {
                        Ok(r) => r
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default(),
                        Err(_) => Bytes::new(),
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(answer)))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
