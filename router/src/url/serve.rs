//! The function URL listener: `http://<url-id>.<--url-domain>/path` (one host name per URL, for
//! clusters with wildcard DNS) or `http://<listener>/<url-id>/path` (the path form). A request
//! becomes Lambda's version 2.0 event ([`super::event`]), runs on the URL's qualifier, and the
//! answer goes back as Lambda maps it ([`super::response`]): whole (`BUFFERED`) or, for
//! `RESPONSE_STREAM`, after the function's HTTP-integration prelude, as it comes. CORS as the
//! URL's settings say ([`super::cors`]); `AWS_IAM` URLs take the router's SigV4 and RBAC checks.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming};

use super::cors::CorsPolicy;
use super::{AuthType, InvokeMode, event, response};
use crate::http_server::{self, Body, full};
use crate::router::Router;
use crate::router::catalog::UrlTarget;
use crate::{function_name, ids, wire};

/// The content type of a streamed answer that starts with Lambda's HTTP-integration prelude.
const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";
/// The prelude ends at 8 NUL bytes; more than this before them is not a prelude.
const MAX_PRELUDE: usize = 64 * 1024;

pub async fn handle(router: Arc<Router>, req: Request<Incoming>) -> Response<Body> {
    let request_id = ids::request_id();
    let (target, raw_path) = match locate(&router, &req) {
        Some(found) => found,
        None => {
            return plain(
                StatusCode::NOT_FOUND,
                r#"{"Message":"Not Found"}"#,
                &request_id,
            );
        }
    };
    let origin = req
        .headers()
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let cors = target.config.cors.clone().unwrap_or_default();
    if req.method() == Method::OPTIONS
        && let (Some(origin), Some(method)) = (
            origin.as_deref(),
            req.headers()
                .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
                .and_then(|v| v.to_str().ok()),
        )
    {
        let mut r = plain(StatusCode::OK, "", &request_id);
        for (k, v) in cors.preflight(origin, method).unwrap_or_default() {
            put(&mut r, &k, &v);
        }
        return r;
    }
    let mut resp = match call(&router, &target, raw_path, req, &request_id).await {
        Ok(r) => r,
        Err(r) => r,
    };
    if let Some(origin) = origin.as_deref() {
        for (k, v) in cors.response_headers(origin) {
            put(&mut resp, &k, &v);
        }
    }
    resp
}

/// The URL a request is for, by its host name or its first path segment, and the path the
/// function sees.
fn locate(router: &Router, req: &Request<Incoming>) -> Option<(UrlTarget, String)> {
    let catalog = router.catalog();
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase());
    let suffix = format!(".{}", router.config.url_domain);
    if let Some(id) = host.as_deref().and_then(|h| h.strip_suffix(&suffix))
        && let Some(t) = catalog.url(id)
    {
        return Some((t.clone(), req.uri().path().to_string()));
    }
    let path = req.uri().path().strip_prefix('/')?;
    let (id, rest) = path.split_once('/').unwrap_or((path, ""));
    catalog.url(id).map(|t| (t.clone(), format!("/{rest}")))
}

async fn call(
    router: &Router,
    target: &UrlTarget,
    raw_path: String,
    req: Request<Incoming>,
    request_id: &str,
) -> Result<Response<Body>, Response<Body>> {
    let (parts, body) = req.into_parts();
    let fref = function_name::parse(
        &target.name,
        target.config.qualifier.as_deref(),
        &target.namespace,
    )
    .map_err(|e| error(&e, request_id))?;
    let fref = function_name::FunctionRef {
        namespace: target.namespace.clone(),
        ..fref
    };
    let caller = match (target.config.auth_type, &router.access) {
        (AuthType::None, _) => None,
        (AuthType::AwsIam, Some(access)) => Some(
            access
                .authenticate(&parts)
                .await
                .map_err(|e| error(&e, request_id))?,
        ),
        // An AWS_IAM URL on a router without authentication: nobody can be checked, so nobody
        // is let in.
        (AuthType::AwsIam, None) => {
            return Err(plain(
                StatusCode::FORBIDDEN,
                r#"{"Message":"Forbidden"}"#,
                request_id,
            ));
        }
    };
    // The same bounds as an Invoke payload: a slot and budget first, at most 6 MB.
    let (body, held) = crate::router::api::read_url_body(router, &parts.headers, body)
        .await
        .map_err(|e| error(&e, request_id))?;
    if let (Some(caller), Some(access)) = (caller, &router.access) {
        let identity = caller
            .identity(&parts, &body)
            .map_err(|e| error(&e, request_id))?;
        access
            .authorize(&identity, &fref, &router.config.region)
            .await
            .map_err(|e| error(&e, request_id))?;
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let time = now.strftime("%d/%b/%Y:%H:%M:%S +0000").to_string();
    let domain = format!(
        "{}.{}",
        crate::url::url_id(&target.namespace, &target.name),
        router.config.url_domain
    );
    let url_id = crate::url::url_id(&target.namespace, &target.name);
    let source_ip = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .unwrap_or("")
        .to_string();
    let ev = event::v2_event(&event::UrlRequest {
        method: parts.method.as_str(),
        raw_path: &raw_path,
        raw_query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: &body,
        source_ip: &source_ip,
        url_id: &url_id,
        domain_name: &domain,
        account_id: &target.namespace,
        request_id,
        time_epoch_ms: now.as_millisecond().max(0) as u64,
        time: &time,
        iam: None,
    });
    let answer =
        crate::router::api::run_url(router, &fref, request_id, Bytes::from(ev.to_string()), held)
            .await
            .map_err(|e| error(&e, request_id))?;
    if answer.function_error {
        return Ok(mapped(response::function_error(), request_id));
    }
    let integration = answer
        .content_type
        .as_ref()
        .is_some_and(|ct| ct.as_bytes().starts_with(HTTP_INTEGRATION.as_bytes()));
    if target.config.invoke_mode == InvokeMode::ResponseStream && answer.streamed && integration {
        return streamed(answer.body, request_id).await;
    }
    let (bytes, _budget) = read_answer(&router.payload_budget, answer.body)
        .await
        .ok_or_else(|| mapped(response::function_error(), request_id))?;
    Ok(mapped(response::from_answer(&bytes), request_id))
}

/// How long a buffered answer's piece may wait for payload budget before the answer is given up
/// (a 502).
const ANSWER_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The whole answer (at most 6 MB), held under the payload budget as Invoke payloads are (an
/// Invoke answer streams through; a URL's must be whole to be mapped to HTTP), or None if it
/// breaks off, is larger, or cannot get budget in time. The request's in-flight slot bounds
/// how many answers wait for budget at once.
async fn read_answer(
    budget: &Arc<tokio::sync::Semaphore>,
    mut body: Body,
) -> Option<(Bytes, tokio::sync::OwnedSemaphorePermit)> {
    let mut buf = BytesMut::new();
    let mut held = budget.clone().try_acquire_many_owned(0).ok()?;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            if buf.len() + data.len() > wire::MAX_SYNC_PAYLOAD {
                return None;
            }
            let more = budget
                .clone()
                .acquire_many_owned(crate::body::permits(data.len() as u64));
            held.merge(
                tokio::time::timeout(ANSWER_BUDGET_WAIT, more)
                    .await
                    .ok()?
                    .ok()?,
            );
            buf.extend_from_slice(&data);
        }
    }
    Some((buf.freeze(), held))
}

/// A streamed answer behind its prelude (status, headers and cookies as JSON, then 8 NUL bytes):
/// the prelude read, the rest passed on as it comes.
async fn streamed(mut body: Body, request_id: &str) -> Result<Response<Body>, Response<Body>> {
    let mut head = BytesMut::new();
    let split = loop {
        if let Some(i) = head.windows(8).position(|w| w == [0u8; 8]) {
            break i;
        }
        if head.len() > MAX_PRELUDE {
            return Err(mapped(response::function_error(), request_id));
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                }
            }
            _ => return Err(mapped(response::function_error(), request_id)),
        }
    };
    let rest = head.split_off(split + 8);
    head.truncate(split);
    let mut prelude = response::from_answer(&head);
    if prelude.status == 200 && head.is_empty() {
        prelude.headers.clear();
    }
    let rest = rest.freeze();
    let mut r = Response::new(http_server::boxed(Prefixed {
        first: (!rest.is_empty()).then_some(rest),
        rest: body,
    }));
    *r.status_mut() = StatusCode::from_u16(prelude.status).unwrap_or(StatusCode::OK);
    for (k, v) in &prelude.headers {
        put(&mut r, k, v);
    }
    put(&mut r, "x-amzn-requestid", request_id);
    Ok(r)
}

fn mapped(m: response::UrlResponse, request_id: &str) -> Response<Body> {
    let mut r = Response::new(full(m.body));
    *r.status_mut() = StatusCode::from_u16(m.status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (k, v) in &m.headers {
        put(&mut r, k, v);
    }
    put(&mut r, "x-amzn-requestid", request_id);
    r
}

fn plain(status: StatusCode, body: &'static str, request_id: &str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    if !body.is_empty() {
        put(&mut r, "content-type", "application/json");
    }
    put(&mut r, "x-amzn-requestid", request_id);
    r
}

/// A Lambda error as a URL answers it: its status and message.
fn error(e: &crate::lambda_error::LambdaError, request_id: &str) -> Response<Body> {
    crate::router::api::lambda_error(e, request_id)
}

fn put(r: &mut Response<Body>, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        http::HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        r.headers_mut().append(n, v);
    }
}

/// The bytes read past the prelude, then the rest of the answer as it comes.
struct Prefixed {
    first: Option<Bytes>,
    rest: Body,
}

impl HttpBody for Prefixed {
    type Data = Bytes;
    type Error = crate::http_server::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(Frame::data(first))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }
}
