//! The sidecar's endpoint on the pod address: invocations from the router, plus readiness, metrics
//! and the utilization the autoscaler reads.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, Method, StatusCode};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;
use tokio::sync::oneshot;

use lmi_crds::ee_contract::{UTILIZATION_PATH, UtilizationSample};

use super::payload::{self, Payload, ReadError};
use super::state::{Invocation, Outcome, State};
use crate::admission::Refusal;
use crate::http_server::{Body, full};
use crate::{ids, lambda_error, wire};

pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, wire::INVOKE_PATH) => invoke(&state, req).await,
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(full(state.metrics.render()));
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::GET, UTILIZATION_PATH) => json_response(StatusCode::OK, utilization(&state)),
        (&Method::GET, "/readyz") => {
            let status = if state.ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(
                status,
                json!({"ready": state.ready(), "draining": state.draining(), "lifecycle": state.lifecycle()}),
            )
        }
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, json!({"status": "ok"})),
        // The function container's preStop hook: the kubelet sends the function SIGTERM only once
        // this returns, so invocations admitted before the pod's deletion finish (a native
        // sidecar itself is stopped only after the function container). Draining is for good,
        // so only the hook, which carries this pod's drain token, may ask for it.
        (&Method::GET, wire::DRAIN_PATH) => {
            if !state.access.drain.admits(req.headers(), &wire::DRAIN_TOKEN) {
                return forbidden(&state, "drain_token", "a valid drain token");
            }
            let drained = state.drain().await;
            tracing::info!(
                drained,
                in_flight = state.in_flight(),
                "drained for shutdown"
            );
            json_response(
                StatusCode::OK,
                json!({"drained": drained, "inFlight": state.in_flight()}),
            )
        }
        _ => json_response(StatusCode::NOT_FOUND, json!({"message": "not found"})),
    }
}

/// What the autoscaler samples (and what a person can curl).
pub fn utilization(state: &State) -> serde_json::Value {
    let u = state.usage();
    let sample = UtilizationSample {
        ready: state.ready(),
        draining: state.draining(),
        runtime_polling: state.polling.load(Ordering::Relaxed) as u64,
        in_flight: state.in_flight() as u64,
        max_concurrency: state.config.max_concurrency as u64,
        cpu_utilization: u.cpu_utilization,
        cpu_cores: u.cpu_cores,
        cpu_limit_cores: state.config.cpu_limit_cores.unwrap_or_default(),
        memory_utilization: u.memory_utilization,
        memory_bytes: u.memory_bytes,
        memory_limit_bytes: state.config.memory_limit_bytes.unwrap_or_default(),
        invocations: state.invocations.load(Ordering::Relaxed),
        refusals: state.refusals.load(Ordering::Relaxed),
    };
    // The contract's sample, plus the runtime's lifecycle for people reading it.
    let mut json = serde_json::to_value(sample).unwrap_or_default();
    if let (Some(map), Ok(lifecycle)) = (
        json.as_object_mut(),
        serde_json::to_value(state.lifecycle()),
    ) {
        map.insert("lifecycle".to_string(), lifecycle);
    }
    json
}

async fn invoke(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // Only the router has the function's token. Without it nothing else happens: the body is
    // neither read nor kept (the answer closes the connection), and no slot or id is taken.
    if !state
        .access
        .invoke
        .admits(&parts.headers, &wire::INVOKE_TOKEN)
    {
        drop(body);
        return forbidden(state, "invoke_token", "the function's invoke token");
    }
    let announced = crate::body::content_length(&parts.headers);
    // Admission is decided on the headers alone; a refused payload is taken in and dropped in the
    // background (the router's pooled connection stays usable), never kept.
    if announced.is_some_and(|n| n > wire::MAX_SYNC_PAYLOAD as u64) {
        discard(body);
        let e = lambda_error::LambdaError::RequestTooLarge;
        return json_bytes(StatusCode::PAYLOAD_TOO_LARGE, e.body());
    }
    let header = |name: HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    // The runtime's answer is matched to its caller by request id: a second request with an id in
    // flight here is refused before it takes a slot, so the first one keeps its answer.
    let request_id = header(wire::REQUEST_ID).unwrap_or_else(ids::request_id);
    let Some(id_guard) = state.reserve(&request_id) else {
        discard(body);
        state
            .metrics
            .rejected
            .with_label_values(&["duplicate_request_id"])
            .inc();
        return json_response(
            StatusCode::CONFLICT,
            json!({
                "errorType": "RequestIdInUse",
                "errorMessage": format!(
                    "An invocation with request id {request_id} is already in progress in this \
                     execution environment"
                ),
            }),
        );
    };
    let queued_event = parts.headers.contains_key(wire::QUEUED_EVENT);
    let slot = match state.admit(queued_event) {
        Ok(slot) => Some(slot),
        Err(refusal) => {
            discard(body);
            return refused(refusal);
        }
    };
    // Room for the payload: its announced size (or the most it may be) out of the request budget.
    let need = announced.unwrap_or(wire::MAX_SYNC_PAYLOAD as u64);
    let Ok(budget) = state
        .request_budget
        .clone()
        .try_acquire_many_owned(crate::body::permits(need))
    else {
        discard(body);
        let refusal = Refusal::Throttle(crate::lambda_error::ThrottleReason::Concurrency);
        state.count_refusal(&refusal);
        return refused(refusal);
    };
    let started = Instant::now();
    let function_arn = header(wire::INVOKED_FUNCTION_ARN)
        .unwrap_or_else(|| state.config.default_function_arn.clone());
    let trace_id = header(wire::TRACE_ID).unwrap_or_else(ids::trace_id);
    // Passed on as they came (the client context may hold UTF-8 from the caller's JSON).
    let client_context = parts.headers.get(wire::CLIENT_CONTEXT).cloned();
    let cognito_identity = parts.headers.get(wire::COGNITO_IDENTITY).cloned();
    let body = match payload::read(body, announced, wire::MAX_SYNC_PAYLOAD, BODY_TIMEOUT).await {
        Ok(b) => Payload::new(b, Some(budget)),
        Err(ReadError::TooLarge) => {
            let e = lambda_error::LambdaError::RequestTooLarge;
            return json_bytes(StatusCode::PAYLOAD_TOO_LARGE, e.body());
        }
        Err(ReadError::Other(m)) => {
            return json_response(StatusCode::BAD_REQUEST, json!({"message": m}));
        }
    };
    let timeout = state.config.function_timeout;
    let (reply, answer) = oneshot::channel();
    let queued = state.enqueue(Invocation {
        request_id: request_id.clone(),
        deadline_ms: ids::epoch_ms() + timeout.as_millis() as u64,
        function_arn,
        trace_id,
        client_context,
        cognito_identity,
        body,
        reply,
    });
    if !queued {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"message": "shutting down"}),
        );
    }
    state.invocations.fetch_add(1, Ordering::Relaxed);
    let mut slot = slot;
    let deadline = tokio::time::Instant::now() + timeout;
    let (outcome, resp) = match tokio::time::timeout_at(deadline, answer).await {
        Ok(Ok(Outcome::Response(p))) => ("success", result(p.into_body(), false)),
        Ok(Ok(Outcome::Stream(mut relay))) => {
            // The answer goes on after this returns: the slot goes with it, and the function
            // timeout still ends it.
            relay.set_deadline(deadline, timeout);
            if let Some(slot) = slot.take() {
                relay.hold(slot.into_owned(state.clone()));
            }
            ("stream", streamed(relay))
        }
        Ok(Ok(Outcome::Error { error_type, body })) => {
            let doc = lambda_error::function_error_payload(error_type.as_deref(), &body.bytes);
            // The runtime's own JSON is passed on as it is, without a copy.
            let out = if doc == body.bytes {
                body.into_body()
            } else {
                full(doc)
            };
            ("error", result(out, true))
        }
        Ok(Ok(Outcome::NotRun)) => ("not_run", refused(Refusal::NotReady)),
        Ok(Err(_)) => (
            "error",
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"message": "invocation lost"}),
            ),
        ),
        Err(_) => {
            // The runtime may still answer; forget the id so that answer is dropped, and free the
            // slot (by returning) so the EE takes new work.
            state.forget(&request_id);
            let body = lambda_error::timeout_payload(&request_id, timeout.as_millis() as u64);
            ("timeout", result(full(body), true))
        }
    };
    state
        .metrics
        .invocations
        .with_label_values(&[outcome])
        .inc();
    state
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    drop(slot);
    // The id is free for another invocation only now that this one has its answer (or gave up):
    // also when hyper drops this future because the router hung up.
    drop(id_guard);
    resp
}

/// 403 for a request without the token `what` its route needs. The connection is closed: a
/// caller without the token has no business keeping one open, and its body is not read.
fn forbidden(state: &State, reason: &'static str, what: &str) -> Response<Body> {
    state.metrics.rejected.with_label_values(&[reason]).inc();
    let mut r = json_response(
        StatusCode::FORBIDDEN,
        json!({
            "errorType": "AccessDenied",
            "errorMessage": format!("Forbidden: this request needs {what}"),
        }),
    );
    r.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A streamed answer: chunked, with Lambda's error trailers declared (hyper sends trailers only
/// when they are, and the router asked for them with `TE: trailers`).
fn streamed(relay: super::stream::Relay) -> Response<Body> {
    let content_type = relay
        .content_type
        .clone()
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut r = Response::new(crate::http_server::boxed(relay));
    let h = r.headers_mut();
    h.insert("content-type", content_type);
    h.insert(wire::STREAMED, HeaderValue::from_static("1"));
    h.insert(
        http::header::TRAILER,
        HeaderValue::from_static(
            "lambda-runtime-function-error-type, lambda-runtime-function-error-body",
        ),
    );
    r
}

fn result(body: Body, function_error: bool) -> Response<Body> {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if function_error {
        // Every error a runtime reports through the Runtime API, and every timeout, is "Unhandled"
        // on Lambda ("Handled" is only produced by the legacy Node.js callback style).
        h.insert(wire::FUNCTION_ERROR, HeaderValue::from_static("Unhandled"));
    }
    r
}

/// How long a caller may take to send a payload.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Take in and drop the body of a request answered without it (at most a little over the payload
/// limit; a larger one closes the connection instead).
fn discard(body: Incoming) {
    crate::body::discard_in_background(
        body,
        wire::MAX_SYNC_PAYLOAD as u64 + 1,
        Duration::from_secs(10),
    );
}

fn refused(r: Refusal) -> Response<Body> {
    let mut resp = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"message": "refused", "reason": r.as_str()}),
    );
    resp.headers_mut()
        .insert(wire::REFUSAL_REASON, HeaderValue::from_static(r.as_str()));
    resp
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    json_bytes(status, v.to_string().into_bytes())
}

fn json_bytes(status: StatusCode, b: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(full(b));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}
