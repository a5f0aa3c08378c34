//! The Lambda Invoke API: `POST /2015-03-31/functions/{FunctionName}/invocations`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::Router;
use super::catalog::Version;
use crate::admission::Refusal;
use crate::function_name::{self, FunctionRef};
use crate::http_server::{Body, full};
use crate::lambda_error::LambdaError;
use crate::{ids, pick, wire};

const PREFIX: &str = "/2015-03-31/functions/";
const SUFFIX: &str = "/invocations";
/// Bound on how long a caller may take to send the payload.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an oversize payload is read and dropped before giving up on the connection.
const DISCARD_LIMIT: usize = 64 * 1024 * 1024;
/// Lambda's limit on `X-Amz-Client-Context` (base64 text).
const MAX_CLIENT_CONTEXT: usize = 3583;

pub async fn handle(router: Arc<Router>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if let Some(name) = path
        .strip_prefix(PREFIX)
        .and_then(|p| p.strip_suffix(SUFFIX))
    {
        if req.method() != Method::POST {
            return lambda_error(&LambdaError::UnknownOperation, &ids::request_id());
        }
        let name = name.to_string();
        return invoke(&router, name, req).await;
    }
    match (req.method(), path) {
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(full(router.metrics.render()));
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::GET, "/healthz") => Response::new(full(r#"{"status":"ok"}"#)),
        _ => lambda_error(&LambdaError::UnknownOperation, &ids::request_id()),
    }
}

/// What a successful hop to an EE gives back.
struct Answer {
    body: Bytes,
    function_error: Option<HeaderValue>,
    version: u32,
}

async fn invoke(router: &Router, raw_name: String, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let request_id = ids::request_id();
    let mut function_label = "-".to_string();
    let result = invoke_inner(router, &raw_name, req, &request_id, &mut function_label).await;
    let (label, resp) = match result {
        Ok(Some(answer)) => {
            let label = if answer.function_error.is_some() {
                "FunctionError"
            } else {
                "Success"
            };
            (label, success(answer, &request_id))
        }
        Ok(None) => {
            // DryRun: the function exists and may be invoked.
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            put(r.headers_mut(), "x-amzn-requestid", &request_id);
            ("DryRun", r)
        }
        Err(e) => {
            if let LambdaError::TooManyRequests { reason, .. } = &e {
                router
                    .metrics
                    .throttles
                    .with_label_values(&[&function_label, reason.as_str()])
                    .inc();
            }
            (e.error_type(), lambda_error(&e, &request_id))
        }
    };
    router
        .metrics
        .invocations
        .with_label_values(&[&function_label, label])
        .inc();
    router
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    resp
}

async fn invoke_inner(
    router: &Router,
    raw_name: &str,
    req: Request<Incoming>,
    request_id: &str,
    function_label: &mut String,
) -> Result<Option<Answer>, LambdaError> {
    let name = function_name::percent_decode(raw_name).ok_or_else(|| {
        LambdaError::InvalidParameterValue(format!("Invalid FunctionName: {raw_name}"))
    })?;
    let qualifier = function_name::query_param(req.uri().query(), "Qualifier");
    let fref = function_name::parse(
        &name,
        qualifier.as_deref(),
        &router.config.default_namespace,
    )?;

    let headers = req.headers().clone();
    let invocation_type = header(&headers, "x-amz-invocation-type").unwrap_or("RequestResponse");
    if !matches!(invocation_type, "RequestResponse" | "Event" | "DryRun") {
        return Err(LambdaError::InvalidParameterValue(format!(
            "Invalid InvocationType: {invocation_type}"
        )));
    }
    // An announced payload beyond what we would even read through: answer at once.
    let announced = header(&headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > DISCARD_LIMIT as u64) {
        return Err(LambdaError::RequestTooLarge);
    }
    let (payload, _budget) = read_payload(&router.payload_budget, req.into_body()).await?;
    let client_context = client_context(&headers)?;

    let version = {
        let catalog = router.catalog();
        Resolved::from(catalog.resolve(&fref, &router.config.region)?)
    };
    // Label metrics with the function only once it is known to exist: names come from callers,
    // and every label value costs memory for the life of the process.
    *function_label = format!("{}/{}", fref.namespace, fref.name);
    match invocation_type {
        "DryRun" => return Ok(None),
        "Event" => return Err(LambdaError::EventNotSupported),
        _ => {}
    }
    if !payload.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
        return Err(LambdaError::InvalidRequestContent(
            "Could not parse request body into json: the payload is not valid JSON".to_string(),
        ));
    }
    let hop = Hop {
        request_id,
        arn: fref.invoked_arn(&router.config.region),
        trace_id: header(&headers, "x-amzn-trace-id")
            .map(str::to_string)
            .unwrap_or_else(ids::trace_id),
        client_context,
        payload,
    };
    forward(router, &fref, &version, &hop).await
}

/// The parts of a resolved version the forwarding needs, detached from the catalog lock.
struct Resolved {
    number: u32,
    timeout: Duration,
    endpoints: Vec<Arc<super::catalog::Endpoint>>,
}

impl From<&Version> for Resolved {
    fn from(v: &Version) -> Self {
        Self {
            number: v.number,
            timeout: v.timeout,
            endpoints: v.endpoints.clone(),
        }
    }
}

struct Hop<'a> {
    request_id: &'a str,
    arn: String,
    trace_id: String,
    client_context: Option<String>,
    payload: Bytes,
}

/// Send to EEs picked by the power of two choices until one admits, at most `max_attempts` of
/// them; all refusing means a throttle.
async fn forward(
    router: &Router,
    _fref: &FunctionRef,
    version: &Resolved,
    hop: &Hop<'_>,
) -> Result<Option<Answer>, LambdaError> {
    let n = version.endpoints.len();
    let mut tried = vec![false; n];
    let mut refusals: Vec<Refusal> = Vec::new();
    let mut unreachable: Option<String> = None;
    for _ in 0..router.config.max_attempts.min(n) {
        let loads: Vec<usize> = version.endpoints.iter().map(|e| e.in_flight()).collect();
        let Some(i) = pick::power_of_two(&loads, &tried, ids::random_u64(), ids::random_u64())
        else {
            break;
        };
        tried[i] = true;
        let ep = &version.endpoints[i];
        let _in_flight = ep.begin();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(ep.uri.clone())
            .header("content-type", "application/json")
            .header(wire::REQUEST_ID, hop.request_id)
            .header(wire::INVOKED_FUNCTION_ARN, hop.arn.as_str())
            .header(wire::TRACE_ID, hop.trace_id.as_str());
        if let Some(c) = &hop.client_context {
            req = req.header(wire::CLIENT_CONTEXT, c.as_str());
        }
        let req = req
            .body(Full::new(hop.payload.clone()))
            .map_err(|e| LambdaError::Service(format!("cannot build the request: {e}")))?;
        // The sidecar enforces the function timeout; this only guards against a stuck EE.
        let limit = version.timeout + Duration::from_secs(10);
        let resp = match tokio::time::timeout(limit, router.client.request(req)).await {
            Err(_) => {
                return Err(LambdaError::Service(
                    "The execution environment did not answer in time".to_string(),
                ));
            }
            Ok(Err(e)) if e.is_connect() => {
                // Nothing was sent: safe to try another EE.
                tracing::warn!(endpoint = %ep.addr, error = %e, "EE unreachable");
                unreachable = Some(format!("{}: {e}", ep.addr));
                continue;
            }
            Ok(Err(e)) => {
                // The request may have reached the function; running it twice is worse than failing.
                return Err(LambdaError::EeUnreachable(format!("{}: {e}", ep.addr)));
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let reason = resp
                .headers()
                .get(wire::REFUSAL_REASON)
                .and_then(|v| v.to_str().ok())
                .and_then(Refusal::parse)
                .unwrap_or(Refusal::NotReady);
            router
                .metrics
                .retries
                .with_label_values(&[reason.as_str()])
                .inc();
            refusals.push(reason);
            // Drain the short refusal body so the connection returns to the pool.
            let _ = read_answer(resp.into_body()).await;
            continue;
        }
        let function_error = resp.headers().get(wire::FUNCTION_ERROR).cloned();
        let body = read_answer(resp.into_body()).await?;
        return match status {
            StatusCode::OK => Ok(Some(Answer {
                body,
                function_error,
                version: version.number,
            })),
            StatusCode::PAYLOAD_TOO_LARGE => Err(LambdaError::RequestTooLarge),
            s => Err(LambdaError::Service(format!(
                "The execution environment answered {s}: {}",
                String::from_utf8_lossy(&body)
            ))),
        };
    }
    if !refusals.is_empty() {
        return Err(LambdaError::TooManyRequests {
            reason: pick::throttle_reason(&refusals),
            retry_after_secs: router.config.retry_after_secs,
        });
    }
    Err(LambdaError::EeUnreachable(unreachable.unwrap_or_else(
        || "no execution environment could be tried".to_string(),
    )))
}

/// Read the payload, at most 6 MB, within [`BODY_TIMEOUT`]. An oversize payload is read on and
/// thrown away (up to [`DISCARD_LIMIT`]) before the 413 goes out: clients such as urllib3 only see
/// an early answer if the server lets them finish sending; otherwise they get a broken pipe.
///
/// The bytes kept count against the router's payload budget until the returned permit drops; when
/// the budget is spent the caller gets a throttle at once rather than the router growing.
async fn read_payload(
    budget: &Arc<tokio::sync::Semaphore>,
    mut body: Incoming,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), LambdaError> {
    let read = async {
        let mut buf = bytes::BytesMut::new();
        let mut total = 0usize;
        let mut held = budget
            .clone()
            .try_acquire_many_owned(0)
            .map_err(|_| LambdaError::Service("payload budget closed".to_string()))?;
        // Past the budget, stop keeping bytes but read on, so the client sees the throttle.
        let mut over_budget = false;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                LambdaError::InvalidRequestContent(format!("cannot read the payload: {e}"))
            })?;
            if let Ok(data) = frame.into_data() {
                total += data.len();
                if total > DISCARD_LIMIT {
                    break;
                }
                if total <= wire::MAX_SYNC_PAYLOAD && !over_budget {
                    let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
                    match budget.clone().try_acquire_many_owned(n) {
                        Ok(more) => {
                            held.merge(more);
                            buf.extend_from_slice(&data);
                        }
                        Err(_) => {
                            over_budget = true;
                            buf = bytes::BytesMut::new();
                            held = budget.clone().try_acquire_many_owned(0).map_err(|_| {
                                LambdaError::Service("payload budget closed".to_string())
                            })?;
                        }
                    }
                }
            }
        }
        if total > wire::MAX_SYNC_PAYLOAD {
            return Err(LambdaError::RequestTooLarge);
        }
        if over_budget {
            return Err(LambdaError::TooManyRequests {
                reason: crate::lambda_error::ThrottleReason::Concurrency,
                retry_after_secs: 1,
            });
        }
        Ok((buf.freeze(), held))
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(r) => r,
        Err(_) => Err(LambdaError::InvalidRequestContent(
            "timed out reading the payload".to_string(),
        )),
    }
}

async fn read_answer(body: Incoming) -> Result<Bytes, LambdaError> {
    // A little over 6 MB: the sidecar already capped the function's answer at 6 MB.
    let limit = wire::MAX_SYNC_PAYLOAD + 64 * 1024;
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) => Err(LambdaError::EeUnreachable(format!(
            "reading the answer: {e}"
        ))),
        Err(_) => Err(LambdaError::EeUnreachable(
            "timed out reading the answer".to_string(),
        )),
    }
}

/// `X-Amz-Client-Context` is base64 JSON; the runtime gets the decoded JSON.
fn client_context(headers: &HeaderMap) -> Result<Option<String>, LambdaError> {
    let Some(raw) = header(headers, "x-amz-client-context") else {
        return Ok(None);
    };
    let bad = || {
        LambdaError::InvalidRequestContent(
            "Client context must be a valid Base64-encoded JSON object.".to_string(),
        )
    };
    if raw.len() > MAX_CLIENT_CONTEXT {
        return Err(LambdaError::InvalidParameterValue(
            "Client context must be at most 3583 bytes".to_string(),
        ));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text).is_err() {
        return Err(bad());
    }
    Ok(Some(text))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn put(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn success(a: Answer, request_id: &str) -> Response<Body> {
    let mut r = Response::new(full(a.body));
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    put(h, "x-amzn-requestid", request_id);
    put(h, "x-amz-executed-version", &a.version.to_string());
    if let Some(fe) = a.function_error {
        h.insert(wire::FUNCTION_ERROR, fe);
    }
    r
}

/// A Lambda-shaped error response.
pub fn lambda_error(e: &LambdaError, request_id: &str) -> Response<Body> {
    let mut r = Response::new(full(e.body()));
    *r.status_mut() = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    put(h, "x-amzn-errortype", e.error_type());
    put(h, "x-amzn-requestid", request_id);
    if let Some(secs) = e.retry_after() {
        put(h, "retry-after", &secs.to_string());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_context_is_decoded_and_checked() {
        let mut h = HeaderMap::new();
        assert_eq!(client_context(&h), Ok(None));
        let enc = base64::engine::general_purpose::STANDARD.encode(r#"{"custom":{"a":1}}"#);
        h.insert(
            "x-amz-client-context",
            HeaderValue::from_str(&enc).expect("header"),
        );
        assert_eq!(
            client_context(&h),
            Ok(Some(r#"{"custom":{"a":1}}"#.to_string()))
        );
        h.insert(
            "x-amz-client-context",
            HeaderValue::from_static("!!notbase64"),
        );
        assert!(client_context(&h).is_err());
    }

    #[test]
    fn error_response_carries_type_and_retry_after() {
        let e = LambdaError::TooManyRequests {
            reason: crate::lambda_error::ThrottleReason::Concurrency,
            retry_after_secs: 2,
        };
        let r = lambda_error(&e, "rid");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["x-amzn-errortype"], "TooManyRequestsException");
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(r.headers()["x-amzn-requestid"], "rid");
    }
}
