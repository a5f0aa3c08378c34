//! A Lambda function on the real Rust runtime client (`lambda_runtime`, `run_concurrent`), used by
//! the integration tests and the benchmark. The payload steers it:
//! `{"sleepMs": N}` waits N ms, `{"spinMs": N}` burns CPU for N ms, `{"fail": "message"}` returns an
//! error, `{"exit": N}` ends the whole runtime process with exit status N (a crash mid-invocation),
//! `{"answerBytes": N}` answers a string of N bytes (`{"fail": ...}` with it: an error document that
//! large; with `{"withRequestId": true}` its message ends with the request id), `{"noEcho": true}` leaves the payload out of the answer; anything else is echoed.
//! Streamed answers (`lambda_runtime`'s response streaming): `{"stream": ["a", "b"], "gapMs": N}`
//! writes each piece, N ms apart; `{"streamBytes": N}` writes N bytes of `x` in 64 KiB pieces.
//! Behind a function URL, the request's body is the steering JSON.
//!
//! Run it behind a sidecar: `lmi-sidecar -- target/debug/examples/fixture_fn`.

use lambda_runtime::streaming::{Body, channel};
use lambda_runtime::{Error, FunctionResponse, LambdaEvent, StreamResponse, service_fn};
use serde_json::{Value, json};

async fn handler(mut event: LambdaEvent<Value>) -> Result<FunctionResponse<Value, Body>, Error> {
    // Behind a function URL the steering JSON is the request's body (a version 2.0 event).
    if event.payload.get("version").and_then(Value::as_str) == Some("2.0")
        && let Some(body) = event.payload.get("body").and_then(Value::as_str)
        && let Ok(inner) = serde_json::from_str::<Value>(body)
    {
        event.payload = inner;
    }
    let payload = &event.payload;
    let pieces: Option<Vec<String>> = payload.get("stream").and_then(|s| {
        s.as_array().map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
    });
    let stream_bytes = payload.get("streamBytes").and_then(Value::as_u64);
    if pieces.is_none() && stream_bytes.is_none() {
        return buffered(event)
            .await
            .map(FunctionResponse::BufferedResponse);
    }
    let gap =
        std::time::Duration::from_millis(payload.get("gapMs").and_then(Value::as_u64).unwrap_or(0));
    let (mut tx, rx) = channel();
    tokio::spawn(async move {
        for (i, piece) in pieces.unwrap_or_default().into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            if tx.send_data(piece.into()).await.is_err() {
                return;
            }
        }
        let mut left = stream_bytes.unwrap_or(0) as usize;
        let piece = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
        while left > 0 {
            let n = left.min(piece.len());
            if tx.send_data(piece.slice(..n)).await.is_err() {
                return;
            }
            left -= n;
        }
    });
    Ok(FunctionResponse::StreamingResponse(StreamResponse::from(
        rx,
    )))
}

async fn buffered(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, ctx) = event.into_parts();
    if let Some(ms) = payload.get("sleepMs").and_then(Value::as_u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if let Some(ms) = payload.get("spinMs").and_then(Value::as_u64) {
        // Burn CPU (for the sidecar's CPU-pressure admission).
        let end = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        let mut x = 0u64;
        while std::time::Instant::now() < end {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    if let Some(code) = payload.get("exit").and_then(Value::as_i64) {
        std::process::exit(i32::try_from(code).unwrap_or(1));
    }
    let answer_bytes = payload.get("answerBytes").and_then(Value::as_u64);
    if let Some(msg) = payload.get("fail").and_then(Value::as_str) {
        let pad = "x".repeat(answer_bytes.unwrap_or(0) as usize);
        // `{"withRequestId": true}`: the message ends with the request id the runtime gave.
        if payload.get("withRequestId").and_then(Value::as_bool) == Some(true) {
            return Err(format!("{msg}{pad} {}", ctx.request_id).into());
        }
        return Err(format!("{msg}{pad}").into());
    }
    if let Some(n) = answer_bytes {
        return Ok(Value::String("x".repeat(n as usize)));
    }
    if payload.get("noEcho").and_then(Value::as_bool) == Some(true) {
        return Ok(json!({"ee": std::env::var("EE_NAME").unwrap_or_default()}));
    }
    Ok(json!({
        "echo": payload,
        // Which EE served it: the tests start each sidecar with its own EE_NAME.
        "ee": std::env::var("EE_NAME").unwrap_or_default(),
        "requestId": ctx.request_id,
        "invokedFunctionArn": ctx.invoked_function_arn,
        "deadlineMs": ctx.deadline,
        "xrayTraceId": ctx.xray_trace_id,
        "clientContext": ctx.client_context.map(|c| json!({"custom": c.custom, "env": c.environment})),
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run_concurrent(service_fn(handler)).await
}
