//! Health checks of the components, each a single attempt (the caller polls).

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// A plain-HTTP GET on loopback that must answer 200. Enough for etcd and kwok, which serve
/// health over HTTP; not worth an HTTP client dependency.
pub async fn http_ok(port: u16, path: &str) -> Result<()> {
    http_get(port, path).await.map(|_| ())
}

/// A plain-HTTP GET on loopback that must answer 200; returns the body.
pub async fn http_get(port: u16, path: &str) -> Result<String> {
    let addr = ("127.0.0.1", port);
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| Error::Other(format!("connect 127.0.0.1:{port}: {e}")))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| Error::Other(format!("write to 127.0.0.1:{port}: {e}")))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| Error::Other(format!("read from 127.0.0.1:{port}: {e}")))?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(Error::Other(format!(
            "GET {path} on 127.0.0.1:{port} answered {status}"
        )));
    }
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

/// etcd answers `{"health":"true",...}` on /health once it serves.
pub async fn etcd_healthy(port: u16) -> Result<()> {
    let body = http_get(port, "/health").await?;
    if body.contains("\"health\":\"true\"") {
        Ok(())
    } else {
        Err(Error::Other(format!("etcd /health: {body}")))
    }
}

/// The apiserver's own readiness, which includes etcd and its post-start hooks.
pub async fn apiserver_ready(client: &kube::Client) -> Result<()> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| Error::Other(e.to_string()))?;
    let text = client.request_text(request).await?;
    if text.trim() == "ok" {
        Ok(())
    } else {
        Err(Error::Other(format!("/readyz: {text}")))
    }
}

/// /healthz of the controller manager or scheduler. They serve HTTPS with a self-signed
/// certificate made at start-up, and /healthz needs no credentials.
pub async fn https_healthz(port: u16) -> Result<()> {
    let uri: http::Uri = format!("https://127.0.0.1:{port}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| Error::Other(e.to_string()))?;
    let mut config = kube::Config::new(uri);
    config.accept_invalid_certs = true;
    config.connect_timeout = Some(std::time::Duration::from_secs(2));
    config.read_timeout = Some(std::time::Duration::from_secs(5));
    let client = kube::Client::try_from(config)?;
    let request = http::Request::get("/healthz")
        .body(Vec::new())
        .map_err(|e| Error::Other(e.to_string()))?;
    let text = client.request_text(request).await?;
    if text.trim() == "ok" {
        Ok(())
    } else {
        Err(Error::Other(format!("/healthz on port {port}: {text}")))
    }
}

pub async fn service_account_exists(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await? {
        Some(_) => Ok(()),
        None => Err(Error::Other(format!(
            "service account {namespace}/{name} not created yet"
        ))),
    }
}
