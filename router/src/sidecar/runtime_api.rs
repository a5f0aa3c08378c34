//! The Lambda Runtime API (`/2018-06-01/runtime/...`) served to the function's runtime.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;

use super::payload::{self, Payload, ReadError};
use super::state::{Lifecycle, Outcome, State};
use super::stream::{End, Relay};
use crate::http_server::{Body, full};
use crate::wire;

const PREFIX: &str = "/2018-06-01/runtime/";
/// Bound on how long a runtime may take to upload an answer.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return error(
            StatusCode::NOT_FOUND,
            "UnknownRoute",
            "Unknown Runtime API route",
        );
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["invocation", "next"]) => next(&state).await,
        (&Method::POST, ["invocation", id, "response"]) => {
            let id = id.to_string();
            response(&state, &id, req).await
        }
        (&Method::POST, ["invocation", id, "error"]) => {
            let id = id.to_string();
            invocation_error(&state, &id, req).await
        }
        (&Method::POST, ["init", "error"]) => init_error(&state, req).await,
        _ => error(
            StatusCode::NOT_FOUND,
            "UnknownRoute",
            "Unknown Runtime API route",
        ),
    }
}

/// Counts an open `/next` long-poll for as long as it is open (also when the runtime hangs up).
struct Polling<'a>(&'a State);
impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.0.polling.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn next(state: &State) -> Response<Body> {
    state.polling.fetch_add(1, Ordering::Relaxed);
    let _polling = Polling(state);
    // Asking for work is what Lambda takes as "initialized".
    state.mark_ready();
    let Some(inv) = state.next_invocation().await else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ShuttingDown",
            "no invocations are handed out any more",
        );
    };
    let mut resp = Response::new(inv.body.into_body());
    let h = resp.headers_mut();
    let mut put = |name: HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    put(wire::REQUEST_ID, &inv.request_id);
    put(wire::DEADLINE_MS, &inv.deadline_ms.to_string());
    put(wire::INVOKED_FUNCTION_ARN, &inv.function_arn);
    put(wire::TRACE_ID, &inv.trace_id);
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(c) = inv.client_context {
        h.insert(wire::CLIENT_CONTEXT, c);
    }
    if let Some(c) = inv.cognito_identity {
        h.insert(wire::COGNITO_IDENTITY, c);
    }
    state.deliver(inv.request_id, inv.reply);
    resp
}

async fn response(state: &State, id: &str, req: Request<Incoming>) -> Response<Body> {
    if header(&req, wire::RESPONSE_MODE).is_some_and(|m| m.eq_ignore_ascii_case("streaming")) {
        return streamed_response(state, id, req).await;
    }
    match read_answer(state, req).await {
        Ok(body) => finish(state, id, Outcome::Response(body)),
        Err(e) => refuse_answer(state, id, e),
    }
}

/// A streamed answer: handed to the invocation's caller as it arrives; the runtime's request is
/// answered once the whole body went out (or the stream was cut off).
async fn streamed_response(state: &State, id: &str, req: Request<Incoming>) -> Response<Body> {
    let content_type = req.headers().get(http::header::CONTENT_TYPE).cloned();
    let (relay, ended) = Relay::new(req.into_body(), state.config.stream_limits);
    if !state.complete(id, Outcome::Stream(relay.with_content_type(content_type))) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "Invalid request ID",
        );
    }
    match ended.await {
        Ok(End::Complete) | Ok(End::CallerGone) | Err(_) => accepted(),
        Ok(End::TooLarge) => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Function.ResponseSizeTooLarge",
            "Response payload size exceeded maximum allowed payload size",
        ),
        Ok(End::TimedOut) => error(
            StatusCode::GONE,
            "Sandbox.Timedout",
            "The invocation timed out while streaming",
        ),
        Ok(End::Broken) => error(
            StatusCode::BAD_REQUEST,
            "Runtime.StreamError",
            "The response stream broke",
        ),
    }
}

async fn invocation_error(state: &State, id: &str, req: Request<Incoming>) -> Response<Body> {
    let error_type = header(&req, wire::FUNCTION_ERROR_TYPE);
    match read_answer(state, req).await {
        Ok(body) => finish(state, id, Outcome::Error { error_type, body }),
        Err(e) => refuse_answer(state, id, e),
    }
}

/// An answer that cannot be taken. Too large: the invocation fails at once with the error Lambda
/// gives (`Function.ResponseSizeTooLarge`, for `/error` bodies too) and the runtime gets a 413.
fn refuse_answer(state: &State, id: &str, e: ReadError) -> Response<Body> {
    match e {
        ReadError::TooLarge => {
            let msg = format!(
                "Response payload size exceeded maximum allowed payload size ({} bytes).",
                wire::MAX_SYNC_PAYLOAD
            );
            let body = json!({"errorMessage": msg, "errorType": "Function.ResponseSizeTooLarge"});
            state.complete(
                id,
                Outcome::Error {
                    error_type: Some("Function.ResponseSizeTooLarge".to_string()),
                    body: Payload::new(Bytes::from(body.to_string()), None),
                },
            );
            error(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", &msg)
        }
        ReadError::Other(m) => error(StatusCode::BAD_REQUEST, "InvalidRequest", &m),
    }
}

/// Read a runtime's answer (at most 6 MB) once the response budget has room for it. The runtime
/// waits meanwhile: answers leave as fast as the router takes them, so room comes back soon.
async fn read_answer(state: &State, req: Request<Incoming>) -> Result<Payload, ReadError> {
    let announced = crate::body::content_length(req.headers());
    if announced.is_some_and(|n| n > wire::MAX_SYNC_PAYLOAD as u64) {
        // Not read: the connection is closed after the 413, and nothing is held.
        return Err(ReadError::TooLarge);
    }
    let need = announced.unwrap_or(wire::MAX_SYNC_PAYLOAD as u64);
    let budget = tokio::time::timeout(
        BODY_TIMEOUT,
        state
            .response_budget
            .clone()
            .acquire_many_owned(crate::body::permits(need)),
    )
    .await
    .map_err(|_| ReadError::Other("no room for the answer in time".to_string()))?
    .map_err(|_| ReadError::Other("shutting down".to_string()))?;
    let bytes = payload::read(
        req.into_body(),
        announced,
        wire::MAX_SYNC_PAYLOAD,
        BODY_TIMEOUT,
    )
    .await?;
    Ok(Payload::new(bytes, Some(budget)))
}

async fn init_error(state: &State, req: Request<Incoming>) -> Response<Body> {
    // Several workers of a multi-concurrent runtime may each report the same init failure; like
    // Lambda, accept the first and answer 403 to the rest. Once the runtime asked for work, init
    // is over: Lambda refuses an init error then too, and the EE keeps serving.
    match state.lifecycle() {
        Lifecycle::Failed { .. } => {
            return error(
                StatusCode::FORBIDDEN,
                "InvalidStateTransition",
                "init error already reported",
            );
        }
        Lifecycle::Ready => {
            return error(
                StatusCode::FORBIDDEN,
                "InvalidStateTransition",
                "State transition from Ready to InitError failed for runtime",
            );
        }
        Lifecycle::Initializing => {}
    }
    let header_type = header(&req, wire::FUNCTION_ERROR_TYPE);
    let announced = crate::body::content_length(req.headers());
    let body = payload::read(req.into_body(), announced, INIT_ERROR_LIMIT, BODY_TIMEOUT)
        .await
        .unwrap_or_default();
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let error_type = parsed["errorType"]
        .as_str()
        .map(str::to_string)
        .or(header_type)
        .unwrap_or_else(|| "Runtime.Unknown".to_string());
    let message = parsed["errorMessage"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    state.mark_failed("FunctionError.RuntimeInitError", &error_type, &message);
    accepted()
}

fn finish(state: &State, id: &str, outcome: Outcome) -> Response<Body> {
    if state.complete(id, outcome) {
        accepted()
    } else {
        // Unknown, already answered, or timed out: the answer is dropped.
        tracing::debug!(
            request_id = id,
            "answer for an unknown or timed-out invocation dropped"
        );
        error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "Invalid request ID",
        )
    }
}

fn header(req: &Request<Incoming>, name: HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// How much of an init error document is kept (it is shown in `/readyz` and `/utilization`).
const INIT_ERROR_LIMIT: usize = 64 * 1024;

fn accepted() -> Response<Body> {
    let mut r = Response::new(full(r#"{"status":"OK"}"#));
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

fn error(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    let body = json!({"errorMessage": message, "errorType": error_type});
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r
}
