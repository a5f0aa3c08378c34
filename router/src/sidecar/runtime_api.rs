//! The Lambda Runtime API (`/2018-06-01/runtime/...`) served to the function's runtime.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;

use super::state::{Outcome, State};
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
    loop {
        let inv = {
            let mut rx = state.queue_rx.lock().await;
            rx.recv().await
        };
        let Some(inv) = inv else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ShuttingDown",
                "queue closed",
            );
        };
        // Timed out (and answered) while queued: skip it rather than run work nobody waits for.
        if inv.reply.is_closed() {
            continue;
        }
        let mut resp = Response::new(full(inv.body));
        let h = resp.headers_mut();
        let mut put = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        };
        put(wire::REQUEST_ID, &inv.request_id);
        put(wire::DEADLINE_MS, &inv.deadline_ms.to_string());
        put(wire::INVOKED_FUNCTION_ARN, &inv.function_arn);
        put(wire::TRACE_ID, &inv.trace_id);
        if let Some(c) = &inv.client_context {
            put(wire::CLIENT_CONTEXT, c);
        }
        if let Some(c) = &inv.cognito_identity {
            put(wire::COGNITO_IDENTITY, c);
        }
        put("content-type", "application/json");
        state.deliver(inv.request_id, inv.reply);
        return resp;
    }
}

async fn response(state: &State, id: &str, req: Request<Incoming>) -> Response<Body> {
    match read_body(req).await {
        Ok(body) => finish(state, id, Outcome::Response(body)),
        Err(BodyError::TooLarge) => {
            // Lambda fails the invocation with this error when the answer is over 6 MB.
            let msg = format!(
                "Response payload size exceeded maximum allowed payload size ({} bytes).",
                wire::MAX_SYNC_PAYLOAD
            );
            let body = json!({"errorMessage": msg, "errorType": "Function.ResponseSizeTooLarge"});
            state.complete(
                id,
                Outcome::Error {
                    error_type: Some("Function.ResponseSizeTooLarge".to_string()),
                    body: Bytes::from(body.to_string()),
                },
            );
            error(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", &msg)
        }
        Err(BodyError::Other(m)) => error(StatusCode::BAD_REQUEST, "InvalidRequest", &m),
    }
}

async fn invocation_error(state: &State, id: &str, req: Request<Incoming>) -> Response<Body> {
    let error_type = header(&req, wire::FUNCTION_ERROR_TYPE);
    match read_body(req).await {
        Ok(body) => finish(state, id, Outcome::Error { error_type, body }),
        Err(_) => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "error too large",
        ),
    }
}

async fn init_error(state: &State, req: Request<Incoming>) -> Response<Body> {
    // Several workers of a multi-concurrent runtime may each report the same init failure; like
    // Lambda, accept the first and answer 403 to the rest.
    if matches!(state.lifecycle(), super::state::Lifecycle::Failed { .. }) {
        return error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "init error already reported",
        );
    }
    let header_type = header(&req, wire::FUNCTION_ERROR_TYPE);
    let body = read_body(req).await.unwrap_or_default();
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

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub enum BodyError {
    TooLarge,
    Other(String),
}

/// Read a body of at most 6 MB within a time bound.
pub async fn read_body(req: Request<Incoming>) -> Result<Bytes, BodyError> {
    read_limited(req.into_body(), wire::MAX_SYNC_PAYLOAD, BODY_TIMEOUT).await
}

pub async fn read_limited(
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(e)) => Err(BodyError::Other(e.to_string())),
        Err(_) => Err(BodyError::Other("timed out reading the body".to_string())),
    }
}

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
