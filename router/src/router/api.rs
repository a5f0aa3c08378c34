//! The Lambda Invoke API: `POST /2015-03-31/functions/{FunctionName}/invocations`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::OwnedSemaphorePermit;

use super::Router;
use super::catalog::Version;
use super::events::{self, meta::EventMeta};
use crate::admission::Refusal;
use crate::body::Held;
use crate::function_name::{self, FunctionRef, Qualifier};
use crate::http_server::{self, Body, full};
use crate::lambda_error::{LambdaError, ThrottleReason};
use crate::{ids, pick, wire};

const PREFIX: &str = "/2015-03-31/functions/";
const SUFFIX: &str = "/invocations";
/// InvokeWithResponseStream: its own API version and path.
const STREAM_PREFIX: &str = "/2021-11-15/functions/";
const STREAM_SUFFIX: &str = "/response-streaming-invocations";

/// How the caller takes the answer: Invoke (one body) or InvokeWithResponseStream (AWS
/// event-stream messages as the function's bytes come).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Buffered,
    Stream,
}
/// Bound on how long a caller may take to send the payload.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an oversize payload is read and dropped before giving up on the connection.
const DISCARD_LIMIT: u64 = 64 * 1024 * 1024;

pub async fn handle(router: Arc<Router>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let route = path
        .strip_prefix(PREFIX)
        .and_then(|p| p.strip_suffix(SUFFIX))
        .map(|name| (name, Mode::Buffered))
        .or_else(|| {
            path.strip_prefix(STREAM_PREFIX)
                .and_then(|p| p.strip_suffix(STREAM_SUFFIX))
                .map(|name| (name, Mode::Stream))
        });
    if let Some((name, mode)) = route {
        if req.method() != Method::POST {
            return lambda_error(&LambdaError::UnknownOperation, &ids::request_id());
        }
        let name = name.to_string();
        return invoke(&router, name, mode, req).await;
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

/// The invocation metric's labels: `-` until the function resolved (and for `alias`, when the
/// qualifier was not an alias). `version` is the version that runs (an alias's pick).
struct Labels {
    /// The function's namespace and name apart: a series' own `namespace` label would clash with
    /// the one Prometheus gives every series (the router's pod's).
    function_namespace: String,
    function: String,
    version: String,
    alias: String,
}

impl Default for Labels {
    fn default() -> Self {
        Self {
            function_namespace: "-".to_string(),
            function: "-".to_string(),
            version: "-".to_string(),
            alias: "-".to_string(),
        }
    }
}

/// How an invocation ends, short of an error.
enum Handled {
    /// The function's answer.
    Answered(Answer),
    /// DryRun: the function exists and may be invoked.
    DryRun,
    /// An Event, stored in the queue (202).
    Queued,
}

/// What a successful hop to an EE gives back.
pub(crate) struct Answer {
    pub body: Body,
    function_error: Option<HeaderValue>,
    pub version: u32,
    /// The function streamed it (`Lambda-Runtime-Function-Response-Mode: streaming`).
    streamed: bool,
    content_type: Option<HeaderValue>,
}

/// What an event's run gives back.
pub(crate) struct EventAnswer {
    pub body: Body,
    pub function_error: Option<String>,
    pub version: u32,
}

/// What a function URL call gives back: the EE's answer as it comes.
pub(crate) struct UrlAnswer {
    pub body: Body,
    pub function_error: bool,
    pub streamed: bool,
    pub content_type: Option<HeaderValue>,
}

/// A function URL request's body, read under the bounds of an Invoke payload: an in-flight slot
/// and its bytes out of the payload budget, both taken before anything is read (a throttle when
/// either is used up; 413 past 6 MB). The permits go with the call.
pub(crate) async fn read_url_body(
    router: &Router,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<(Bytes, (OwnedSemaphorePermit, OwnedSemaphorePermit)), LambdaError> {
    let announced = crate::body::content_length(headers);
    if announced.is_some_and(|n| n > wire::MAX_SYNC_PAYLOAD as u64) {
        discard(body, announced);
        return Err(LambdaError::RequestTooLarge);
    }
    let Ok(in_flight) = router.in_flight.clone().try_acquire_owned() else {
        discard(body, announced);
        return Err(throttle(router));
    };
    let reserved = match announced {
        Some(n) => match router
            .payload_budget
            .clone()
            .try_acquire_many_owned(crate::body::permits(n))
        {
            Ok(p) => Some(p),
            Err(_) => {
                discard(body, announced);
                return Err(throttle(router));
            }
        },
        None => None,
    };
    let (payload, budget) = read_payload(&router.payload_budget, body, reserved).await?;
    Ok((payload, (in_flight, budget)))
}

/// Runs a function URL call: `payload` (the request as Lambda's version 2.0 event) on the
/// version `fref` resolves to, holding `held` (the request's slot and budget) until the answer
/// has gone out.
pub(crate) async fn run_url(
    router: &Router,
    fref: &FunctionRef,
    request_id: &str,
    payload: Bytes,
    held: (OwnedSemaphorePermit, OwnedSemaphorePermit),
) -> Result<UrlAnswer, LambdaError> {
    let hop = Hop {
        request_id,
        arn: fref.invoked_arn(&router.config.region),
        trace_id: ids::trace_id(),
        client_context: None,
        payload,
        queued_event: false,
        stream: true,
    };
    let answer = run_resolved(router, fref, &hop).await?;
    Ok(UrlAnswer {
        body: http_server::boxed(Held::new(answer.body, held)),
        function_error: answer.function_error.is_some(),
        streamed: answer.streamed,
        content_type: answer.content_type,
    })
}

/// Resolves `fref` as of now and sends `hop` to that version's EEs (the paths that come without
/// a caller's admission: URL calls and stored events).
async fn run_resolved(
    router: &Router,
    fref: &FunctionRef,
    hop: &Hop<'_>,
) -> Result<Answer, LambdaError> {
    let version = router
        .catalog()
        .resolve(fref, &router.config.region, ids::random_unit())
        .map(Resolved::from)?;
    forward(router, &version, hop).await
}

/// Runs one stored event: resolves its function as of now and sends it to an EE (the
/// dispatcher's path; the caller got its 202 long ago).
pub(crate) async fn run_event(
    router: &Router,
    fref: &FunctionRef,
    request_id: &str,
    trace_id: &str,
    payload: Bytes,
) -> Result<EventAnswer, LambdaError> {
    let hop = Hop {
        request_id,
        arn: fref.invoked_arn(&router.config.region),
        trace_id: trace_id.to_string(),
        client_context: None,
        payload,
        queued_event: true,
        stream: false,
    };
    let answer = run_resolved(router, fref, &hop).await?;
    Ok(EventAnswer {
        body: answer.body,
        function_error: answer
            .function_error
            .and_then(|v| v.to_str().ok().map(str::to_string)),
        version: answer.version,
    })
}

async fn invoke(
    router: &Router,
    raw_name: String,
    mode: Mode,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let request_id = ids::request_id();
    let mut labels = Labels::default();
    let result = invoke_inner(router, &raw_name, mode, req, &request_id, &mut labels).await;
    let (label, resp) = match result {
        Ok(Handled::Answered(answer)) => {
            let label = if answer.function_error.is_some() {
                "FunctionError"
            } else {
                "Success"
            };
            let resp = match mode {
                Mode::Buffered => success(answer, &request_id),
                Mode::Stream => streamed_success(answer, &request_id),
            };
            (label, resp)
        }
        Ok(Handled::DryRun) => ("DryRun", empty_answer(StatusCode::NO_CONTENT, &request_id)),
        Ok(Handled::Queued) => {
            router
                .metrics
                .events_received
                .with_label_values(&[&labels.function_namespace, &labels.function])
                .inc();
            ("Queued", empty_answer(StatusCode::ACCEPTED, &request_id))
        }
        Err(e) => {
            if let LambdaError::TooManyRequests { reason, .. } = &e {
                router
                    .metrics
                    .throttles
                    .with_label_values(&[
                        &labels.function_namespace,
                        &labels.function,
                        reason.as_str(),
                    ])
                    .inc();
            }
            (e.error_type(), lambda_error(&e, &request_id))
        }
    };
    router
        .metrics
        .invocations
        .with_label_values(&[
            &labels.function_namespace,
            &labels.function,
            &labels.version,
            &labels.alias,
            label,
        ])
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
    mode: Mode,
    req: Request<Incoming>,
    request_id: &str,
    labels: &mut Labels,
) -> Result<Handled, LambdaError> {
    let (parts, body) = req.into_parts();
    let announced = crate::body::content_length(&parts.headers);
    // Everything that needs no payload is decided first, and a refusal goes out before the
    // payload is read: the body is then taken in and dropped in the background (see
    // `crate::body::discard_in_background`), never kept. Authentication comes first of all, as in
    // AWS: a caller who is not authenticated learns nothing else, not even whether a function
    // exists.
    let caller = match &router.access {
        Some(access) => match access.authenticate(&parts).await {
            Ok(caller) => Some(caller),
            Err(e) => {
                discard(body, announced);
                return Err(e);
            }
        },
        None => None,
    };
    let admitted = admit(router, raw_name, mode, &parts, announced, labels);
    let (prepared, in_flight, reserved) = match admitted {
        Ok(a) => a,
        Err(e) => {
            discard(body, announced);
            return Err(e);
        }
    };
    if caller.is_none() && prepared.invocation_type == "DryRun" {
        // Nothing to verify: the payload is not needed.
        discard(body, announced);
        return Ok(Handled::DryRun);
    }
    let (payload, _budget) = read_payload(&router.payload_budget, body, reserved).await?;
    if let (Some(caller), Some(access)) = (caller, &router.access) {
        // The signature may cover the payload; then RBAC decides, before the caller learns
        // whether the function exists (as Lambda answers AccessDenied for any function the
        // caller may not invoke).
        let identity = caller.identity(&parts, &payload)?;
        access
            .authorize(&identity, &prepared.fref, &router.config.region)
            .await?;
    }
    let version = prepared.version?;
    if prepared.invocation_type == "DryRun" {
        return Ok(Handled::DryRun);
    }
    if !payload.is_empty() {
        check_json(&payload)?;
    }
    if prepared.invocation_type == "Event" {
        // The function resolved to a version that can run; the event runs later, on whatever
        // version its qualifier names then.
        let queue = router
            .events
            .as_ref()
            .ok_or(LambdaError::EventNotSupported)?;
        if payload.len() > events::MAX_EVENT_PAYLOAD {
            return Err(LambdaError::RequestTooLarge);
        }
        let meta = EventMeta {
            request_id: request_id.to_string(),
            namespace: prepared.fref.namespace.clone(),
            function: prepared.fref.name.clone(),
            qualifier: prepared.fref.qualifier_text.clone(),
            received_ms: events::meta::now_ms(),
            attempts: 0,
            not_before_ms: 0,
            trace_id: prepared.trace_id.unwrap_or_else(ids::trace_id),
            retry_delays_ms: queue
                .settings
                .retry_delays
                .iter()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .collect(),
        };
        queue.enqueue(&meta, payload).await?;
        return Ok(Handled::Queued);
    }
    let hop = Hop {
        request_id,
        arn: prepared.fref.invoked_arn(&router.config.region),
        trace_id: prepared.trace_id.unwrap_or_else(ids::trace_id),
        client_context: prepared.client_context,
        payload,
        queued_event: false,
        stream: mode == Mode::Stream,
    };
    let mut answer = forward(router, &version, &hop).await?;
    // The invocation counts as in progress until its answer has streamed out to the caller.
    answer.body = http_server::boxed(Held::new(answer.body, in_flight));
    Ok(Handled::Answered(answer))
}

/// What the checks before the payload found.
struct Prepared {
    fref: FunctionRef,
    /// The version to run, or why there is none (answered once the caller is known to be
    /// allowed to learn it).
    version: Result<Resolved, LambdaError>,
    invocation_type: &'static str,
    trace_id: Option<String>,
    client_context: Option<HeaderValue>,
}

/// Decide everything that needs no payload: the request's parameters, the function, and whether
/// there is room for it (an in-flight slot, and budget for the announced payload). Lambda's order:
/// parameters, then the function, then the payload's size.
fn admit(
    router: &Router,
    raw_name: &str,
    mode: Mode,
    parts: &http::request::Parts,
    announced: Option<u64>,
    labels: &mut Labels,
) -> Result<(Prepared, OwnedSemaphorePermit, Option<OwnedSemaphorePermit>), LambdaError> {
    let name = function_name::percent_decode(raw_name).ok_or_else(|| {
        function_name::invalid_field("functionName", raw_name, function_name::NAME_PATTERN)
    })?;
    let qualifier = function_name::query_qualifier(parts.uri.query())?;
    let fref = function_name::parse(
        &name,
        qualifier.as_deref(),
        &router.config.default_namespace,
    )?;
    let headers = &parts.headers;
    let invocation_type = match ascii_header(headers, "x-amz-invocation-type", "invocationType")? {
        None | Some("RequestResponse") => "RequestResponse",
        Some("Event") if mode == Mode::Buffered => "Event",
        Some("DryRun") => "DryRun",
        Some(other) => {
            // InvokeWithResponseStream has no Event type.
            let allowed = match mode {
                Mode::Buffered => "[Event, RequestResponse, DryRun]",
                Mode::Stream => "[RequestResponse, DryRun]",
            };
            return Err(LambdaError::InvalidParameterValue(format!(
                "1 validation error detected: Value '{other}' at 'invocationType' failed to \
                 satisfy constraint: Member must satisfy enum value set: {allowed}"
            )));
        }
    };
    match ascii_header(headers, "x-amz-log-type", "logType")? {
        None | Some("None") | Some("Tail") => {}
        Some(other) => {
            return Err(LambdaError::InvalidParameterValue(format!(
                "1 validation error detected: Value '{other}' at 'logType' failed to satisfy \
                 constraint: Member must satisfy enum value set: [Tail, None]"
            )));
        }
    }
    let trace_id = ascii_header(headers, "x-amzn-trace-id", "X-Amzn-Trace-Id")?.map(str::to_string);
    let client_context = client_context(headers)?;
    // An announced payload over the limit is answered at once, without waiting for it.
    let limit = match invocation_type {
        "Event" => events::MAX_EVENT_PAYLOAD,
        _ => wire::MAX_SYNC_PAYLOAD,
    };
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(LambdaError::RequestTooLarge);
    }
    let version = {
        let catalog = router.catalog();
        catalog
            .resolve(&fref, &router.config.region, ids::random_unit())
            .map(Resolved::from)
    };
    if let Ok(v) = &version {
        // Label metrics with the function only once it is known to exist: names come from
        // callers, and every label value costs memory for the life of the process. Versions and
        // aliases are objects someone created, so they are bounded too.
        *labels = Labels {
            function_namespace: fref.namespace.clone(),
            function: fref.name.clone(),
            version: v.number.to_string(),
            alias: match &fref.qualifier {
                Qualifier::Alias(name) => name.clone(),
                _ => "-".to_string(),
            },
        };
    }
    if router.access.is_none() {
        // Without authentication nothing waits for the caller to be known: answer at once.
        if let Err(e) = &version {
            return Err(e.clone());
        }
        if invocation_type == "Event" && router.events.is_none() {
            return Err(LambdaError::EventNotSupported);
        }
    }
    let in_flight = router
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| throttle(router))?;
    // With a Content-Length the whole payload is reserved before it is read; without one (chunked)
    // it is counted as it arrives.
    let reserved = match announced {
        Some(n) => Some(
            router
                .payload_budget
                .clone()
                .try_acquire_many_owned(crate::body::permits(n))
                .map_err(|_| throttle(router))?,
        ),
        None => None,
    };
    Ok((
        Prepared {
            fref,
            version,
            invocation_type,
            trace_id,
            client_context,
        },
        in_flight,
        reserved,
    ))
}

fn throttle(router: &Router) -> LambdaError {
    LambdaError::TooManyRequests {
        reason: ThrottleReason::Concurrency,
        retry_after_secs: router.config.retry_after_secs,
    }
}

/// Take in (and drop) the body of a request answered without it, unless it is too large to be
/// worth it; then the connection is closed instead.
fn discard(body: Incoming, announced: Option<u64>) {
    if announced.is_none_or(|n| n <= DISCARD_LIMIT) {
        crate::body::discard_in_background(body, DISCARD_LIMIT, BODY_TIMEOUT);
    }
}

/// Lambda takes only JSON payloads, and JSON text is UTF-8 (serde skips the bytes of strings it
/// ignores, so the encoding is checked on its own).
fn check_json(payload: &[u8]) -> Result<(), LambdaError> {
    if std::str::from_utf8(payload).is_err() {
        return Err(LambdaError::InvalidRequestContent(
            "Could not parse request body into json: Invalid UTF-8 in the request body".to_string(),
        ));
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_err() {
        return Err(LambdaError::InvalidRequestContent(
            "Could not parse request body into json: the payload is not valid JSON".to_string(),
        ));
    }
    Ok(())
}

/// The parts of a resolved version the forwarding needs, detached from the catalog lock.
struct Resolved {
    number: u32,
    timeout: Duration,
    endpoints: Vec<Arc<super::catalog::Endpoint>>,
    invoke_token: Option<HeaderValue>,
}

impl From<&Version> for Resolved {
    fn from(v: &Version) -> Self {
        Self {
            number: v.number,
            timeout: v.timeout,
            endpoints: v.endpoints.clone(),
            invoke_token: v.invoke_token.clone(),
        }
    }
}

struct Hop<'a> {
    request_id: &'a str,
    arn: String,
    trace_id: String,
    client_context: Option<HeaderValue>,
    payload: Bytes,
    /// Taken from the event queue: the EEs run it only in room synchronous callers do not need.
    queued_event: bool,
    /// The caller takes the answer as a stream: errors after the first bytes come in trailers.
    stream: bool,
}

/// Send to EEs picked by the power of two choices until one admits, at most `max_attempts` of
/// them; all refusing means a throttle. An EE whose connections from this router are all in use
/// (and stay so for [`super::pool_wait`]) counts as refusing for concurrency.
async fn forward(
    router: &Router,
    version: &Resolved,
    hop: &Hop<'_>,
) -> Result<Answer, LambdaError> {
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
        let in_flight = ep.begin();
        let pool = ep.connections.clone().acquire_owned();
        let Ok(Ok(connection)) = tokio::time::timeout(super::pool_wait(), pool).await else {
            let reason = Refusal::Throttle(ThrottleReason::Concurrency);
            note_refusal(router, &mut refusals, reason);
            continue;
        };
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(ep.uri.clone())
            .header("content-type", "application/json")
            .header(wire::REQUEST_ID, hop.request_id)
            .header(wire::INVOKED_FUNCTION_ARN, hop.arn.as_str())
            .header(wire::TRACE_ID, hop.trace_id.as_str());
        if let Some(c) = &hop.client_context {
            req = req.header(wire::CLIENT_CONTEXT, c.clone());
        }
        if hop.queued_event {
            req = req.header(wire::QUEUED_EVENT, "1");
        }
        if hop.stream {
            // A streamed answer's late error comes in the trailers, which hyper's server sends
            // only to a client that says it takes them.
            req = req.header(http::header::TE, "trailers");
        }
        // The EE's sidecar runs nothing for a caller without the function's token.
        if let Some(t) = &version.invoke_token {
            req = req.header(wire::INVOKE_TOKEN, t.clone());
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
            note_refusal(router, &mut refusals, reason);
            // Drain the short refusal body so the connection returns to the pool.
            let _ = read_short(resp.into_body()).await;
            continue;
        }
        if status != StatusCode::OK {
            let body = read_short(resp.into_body()).await?;
            return Err(match status {
                StatusCode::PAYLOAD_TOO_LARGE => LambdaError::RequestTooLarge,
                s => LambdaError::Service(format!(
                    "The execution environment answered {s}: {}",
                    String::from_utf8_lossy(&body)
                )),
            });
        }
        let function_error = resp.headers().get(wire::FUNCTION_ERROR).cloned();
        let streamed = resp.headers().contains_key(wire::STREAMED);
        let content_type = resp.headers().get(http::header::CONTENT_TYPE).cloned();
        // The answer (up to 6 MB) streams through rather than being held: the pooled connection
        // and the EE's in-flight count go with it and are given back once it has been sent.
        let body = Held::new(resp.into_body(), (connection, in_flight));
        return Ok(Answer {
            body: http_server::boxed(body),
            function_error,
            version: version.number,
            streamed,
            content_type,
        });
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

/// Read the payload, at most 6 MB, within [`BODY_TIMEOUT`], into one buffer. With a Content-Length
/// its bytes were reserved from the budget already (`reserved`); a chunked payload takes budget as
/// it arrives, and one that does not fit is read on and dropped so the client sees the throttle.
/// The returned permit holds the budget until the payload is dropped.
async fn read_payload(
    budget: &Arc<tokio::sync::Semaphore>,
    mut body: Incoming,
    reserved: Option<OwnedSemaphorePermit>,
) -> Result<(Bytes, OwnedSemaphorePermit), LambdaError> {
    let closed = || LambdaError::Service("payload budget closed".to_string());
    let announced = reserved.as_ref().map(|p| p.num_permits());
    let read = async {
        let mut buf = bytes::BytesMut::with_capacity(announced.unwrap_or(0));
        let mut total = 0usize;
        let mut held = match reserved {
            Some(p) => p,
            None => budget
                .clone()
                .try_acquire_many_owned(0)
                .map_err(|_| closed())?,
        };
        let mut over_budget = false;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                LambdaError::InvalidRequestContent(format!("cannot read the payload: {e}"))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            total += data.len();
            if total > DISCARD_LIMIT as usize {
                break;
            }
            if total > wire::MAX_SYNC_PAYLOAD || over_budget {
                continue;
            }
            if announced.is_none() {
                match budget
                    .clone()
                    .try_acquire_many_owned(crate::body::permits(data.len() as u64))
                {
                    Ok(more) => held.merge(more),
                    Err(_) => {
                        over_budget = true;
                        buf = bytes::BytesMut::new();
                        continue;
                    }
                }
            }
            buf.extend_from_slice(&data);
        }
        if total > wire::MAX_SYNC_PAYLOAD {
            return Err(LambdaError::RequestTooLarge);
        }
        if over_budget {
            return Err(LambdaError::TooManyRequests {
                reason: ThrottleReason::Concurrency,
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

/// A short answer of an EE (a refusal, an error message).
async fn read_short(body: Incoming) -> Result<Bytes, LambdaError> {
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, 64 * 1024).collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) => Err(LambdaError::EeUnreachable(format!(
            "reading the answer: {e}"
        ))),
        Err(_) => Err(LambdaError::EeUnreachable(
            "timed out reading the answer".to_string(),
        )),
    }
}

/// A header the API reads, as text: absent is fine, but a value with bytes outside visible ASCII
/// is a 400 that names the field (`field` in Lambda's name for it).
pub fn ascii_header<'a>(
    h: &'a HeaderMap,
    name: &str,
    field: &str,
) -> Result<Option<&'a str>, LambdaError> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            LambdaError::InvalidParameterValue(format!(
                "1 validation error detected: Value at '{field}' failed to satisfy constraint: \
                 Member must contain only ASCII characters"
            ))
        }),
    }
}

/// `X-Amz-Client-Context` as the header value the runtime gets (see [`crate::client_context`]).
fn client_context(headers: &HeaderMap) -> Result<Option<HeaderValue>, LambdaError> {
    let Some(raw) = headers.get("x-amz-client-context") else {
        return Ok(None);
    };
    let json = crate::client_context::decode(raw.as_bytes())?;
    HeaderValue::from_str(&json)
        .map(Some)
        .map_err(|_| LambdaError::Service("cannot pass the client context on".to_string()))
}

fn put(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// An answer without a body: 204 for DryRun, 202 for a stored event.
fn empty_answer(status: StatusCode, request_id: &str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    put(r.headers_mut(), "x-amzn-requestid", request_id);
    r
}

fn success(a: Answer, request_id: &str) -> Response<Body> {
    let mut r = Response::new(a.body);
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    put(h, "x-amzn-requestid", request_id);
    put(h, "x-amz-executed-version", &a.version.to_string());
    if let Some(fe) = a.function_error {
        h.insert(wire::FUNCTION_ERROR, fe);
    }
    r
}

/// InvokeWithResponseStream's answer: 200 with the AWS event stream of the function's bytes
/// ([`super::response_stream`]); an error, before or after the first bytes, is in its last
/// message.
fn streamed_success(a: Answer, request_id: &str) -> Response<Body> {
    let body = super::response_stream::EventStreamBody::new(a.body, a.function_error.is_some());
    let mut r = Response::new(http_server::boxed(body));
    let h = r.headers_mut();
    // As Lambda: Content-Type is the function's stream's (ResponseStreamContentType), the body
    // the event stream whatever it says.
    let content_type = a
        .content_type
        .filter(|_| a.streamed)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert("content-type", content_type);
    put(h, "x-amzn-requestid", request_id);
    put(h, "x-amz-executed-version", &a.version.to_string());
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

/// Counts a refusal by an EE (or a full connection pool) as a retry, and keeps it for the
/// throttle reason the caller gets when every EE refused.
fn note_refusal(router: &Router, refusals: &mut Vec<Refusal>, reason: Refusal) {
    router
        .metrics
        .retries
        .with_label_values(&[reason.as_str()])
        .inc();
    refusals.push(reason);
}

#[cfg(test)]
mod tests {
    use super::*;

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
