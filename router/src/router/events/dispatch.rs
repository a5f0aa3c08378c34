//! The dispatcher: takes stored events from the shared consumer, runs each on its function's EEs
//! and acts on the outcome ([`super::policy`]): removes it once final and recorded, stores it
//! again with one more attempt for a retry, or leaves it queued for later (throttles, delays).
//!
//! At least once: an event is acknowledged only after its outcome is final and its record is
//! sent; a retry is stored before the attempt it replaces is acknowledged. A dispatcher that dies
//! mid-invocation stops reporting progress, and JetStream gives the event to another after
//! [`super::ACK_WAIT`].

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::meta::{EventMeta, now_ms};
use super::policy::{self, Condition, Next, Policy, Response, RunOutcome};
use super::{ACK_WAIT, EventQueue};
use crate::function_name;
use crate::lambda_error::LambdaError;
use crate::router::Router;

/// Largest function answer kept for its destination record (a larger one is replaced by a note).
/// These bytes are outside the payload budget, so they are kept small: at the default event
/// concurrency of 64 they add at most 16 MiB to the router's memory.
const MAX_RECORDED_RESPONSE: usize = 256 * 1024;

/// Runs until the process ends: sets up the stream and consumer (waiting for NATS), then takes
/// events whenever this router has room for more.
pub async fn run(router: Arc<Router>, queue: EventQueue) {
    let consumer = loop {
        match queue.ensure().await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "event queue not ready; trying again in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    tracing::info!(url = %queue.settings.url, "dispatching events");
    let slots = Arc::new(Semaphore::new(queue.settings.concurrency));
    loop {
        // Only as many as there is room for: the rest stay queued for any replica to take.
        let free = slots.available_permits();
        if free == 0 {
            drop(slots.clone().acquire_owned().await);
            continue;
        }
        let batch = consumer
            .fetch()
            .max_messages(free)
            .expires(Duration::from_secs(5))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "fetching events");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(message) = batch.next().await {
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "receiving an event");
                    break;
                }
            };
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            tokio::spawn(handle(router.clone(), queue.clone(), message, permit));
        }
    }
}

/// Handles one delivery of one event.
async fn handle(
    router: Arc<Router>,
    queue: EventQueue,
    message: jetstream::Message,
    _slot: OwnedSemaphorePermit,
) {
    let meta = match EventMeta::from_headers(message.headers.as_ref()) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, subject = %message.subject, "an event without its bookkeeping is dropped");
            count_dropped(&router, ["-", "-"], "Malformed");
            ack(&message, AckKind::Term).await;
            return;
        }
    };
    let function = format!("{}/{}", meta.namespace, meta.function);
    // Metric labels: the namespace and the name apart (function_namespace, function).
    let function_labels = [meta.namespace.clone(), meta.function.clone()];
    let function_labels = [function_labels[0].as_str(), function_labels[1].as_str()];
    let config = router
        .catalog()
        .event_config(&meta.namespace, &meta.function)
        .map(|c| c.cloned());
    let Some(config) = config else {
        // The function was deleted after the event was accepted: as in Lambda, its events go.
        count_dropped(&router, function_labels, "FunctionNotFound");
        ack(&message, AckKind::Ack).await;
        return;
    };
    // The delays the event was accepted with, else this router's.
    let accepted_with: Vec<Duration> = meta
        .retry_delays_ms
        .iter()
        .map(|ms| Duration::from_millis(*ms))
        .collect();
    let delays = if accepted_with.is_empty() {
        &queue.settings.retry_delays
    } else {
        &accepted_with
    };
    let policy = Policy::of(config.as_ref(), delays, queue.settings.busy_delay);
    let step = match policy::before_run(&policy, &meta, now_ms()) {
        Next::Run => {
            let run = run_once(&router, &meta, message.payload.clone());
            // Keep the delivery ours while the function runs (up to 15 minutes).
            let progress = async {
                loop {
                    tokio::time::sleep(ACK_WAIT / 3).await;
                    ack(&message, AckKind::Progress).await;
                }
            };
            let result = tokio::select! {
                r = run => r,
                () = progress => unreachable_progress(),
            };
            let (outcome, response) = classify(result);
            if outcome.is_none() {
                count_dropped(&router, function_labels, "FunctionNotFound");
                ack(&message, AckKind::Ack).await;
                return;
            }
            let outcome = outcome.unwrap_or(RunOutcome::Busy);
            (
                policy::after_run(&policy, &meta, &outcome, now_ms()),
                response,
            )
        }
        other => (other, None),
    };
    match step {
        (Next::Final(condition), response) => {
            let invoked = meta.attempts + u32::from(response.is_some());
            let record = record(
                &router,
                condition,
                &meta,
                invoked,
                &message.payload,
                response.as_ref(),
            );
            let destination = config
                .as_ref()
                .and_then(|c| c.destination_config.as_ref())
                .and_then(|d| match condition {
                    Condition::Success => d.on_success.as_ref(),
                    _ => d.on_failure.as_ref(),
                })
                .map(|d| d.destination.clone());
            if let Some(destination) = destination
                && let Err(e) = deliver(&queue, &meta, &destination, record).await
            {
                tracing::warn!(%function, request_id = %meta.request_id, %destination, error = %e, "destination not reached");
                router
                    .metrics
                    .event_destination_failures
                    .with_label_values(&function_labels)
                    .inc();
            }
            if condition != Condition::Success {
                count_dropped(&router, function_labels, condition.as_str());
            }
            router.metrics.event_age.observe(
                Duration::from_millis(now_ms().saturating_sub(meta.received_ms)).as_secs_f64(),
            );
            ack(&message, AckKind::Ack).await;
        }
        (Next::Retry { attempts, delay }, _) => {
            let retry = EventMeta {
                attempts,
                not_before_ms: now_ms() + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                ..meta.clone()
            };
            // Stored again before this delivery goes: a crash in between runs it twice, never
            // never.
            match queue.enqueue(&retry, message.payload.clone()).await {
                Ok(()) => {
                    router
                        .metrics
                        .event_retries
                        .with_label_values(&function_labels)
                        .inc();
                    ack(&message, AckKind::Ack).await;
                }
                Err(e) => {
                    tracing::warn!(%function, error = %e.message(), "retry not stored; the event is delivered again");
                    ack(&message, AckKind::Nak(Some(delay))).await;
                }
            }
        }
        (Next::Later(delay), _) => ack(&message, AckKind::Nak(Some(delay))).await,
        (Next::Run, _) => ack(&message, AckKind::Nak(None)).await,
    }
}

fn unreachable_progress() -> Result<Response, LambdaError> {
    Err(LambdaError::Service("progress loop ended".to_string()))
}

/// One run's outcome for the policy (None: the function or version is gone) and the answer.
fn classify(result: Result<Response, LambdaError>) -> (Option<RunOutcome>, Option<Response>) {
    match result {
        Ok(r) if r.function_error.is_some() => (Some(RunOutcome::FunctionError), Some(r)),
        Ok(r) => (Some(RunOutcome::Success), Some(r)),
        Err(LambdaError::ResourceNotFound(_)) => (None, None),
        // Throttled, no EE ready, an EE lost or failing: not the function's error.
        Err(_) => (Some(RunOutcome::Busy), None),
    }
}

/// Runs the event once: resolves its function now, sends it to an EE, reads the answer.
async fn run_once(
    router: &Router,
    meta: &EventMeta,
    payload: Bytes,
) -> Result<Response, LambdaError> {
    // The same memory rules as a synchronous call: a slot and the payload's bytes.
    let _in_flight = router
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| LambdaError::Service("the router is full".to_string()))?;
    let _budget = router
        .payload_budget
        .clone()
        .try_acquire_many_owned(crate::body::permits(payload.len() as u64))
        .map_err(|_| LambdaError::Service("the payload budget is used up".to_string()))?;
    let fref = function_name::parse(&meta.function_name(), None, &meta.namespace)?;
    let answer =
        crate::router::api::run_event(router, &fref, &meta.request_id, &meta.trace_id, payload)
            .await?;
    let payload = read_answer(answer.body).await;
    Ok(Response {
        executed_version: answer.version,
        function_error: answer.function_error,
        payload,
    })
}

/// The function's answer for the record, read to its end (so the EE's connection is free again)
/// but kept only up to [`MAX_RECORDED_RESPONSE`].
async fn read_answer(mut body: crate::http_server::Body) -> Vec<u8> {
    use http_body_util::BodyExt;
    let mut kept = Vec::new();
    let mut too_large = false;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            break;
        };
        if let Ok(data) = frame.into_data() {
            if kept.len() + data.len() > MAX_RECORDED_RESPONSE {
                too_large = true;
            } else if !too_large {
                kept.extend_from_slice(&data);
            }
        }
    }
    if too_large {
        return br#""(the response is larger than the record keeps)""#.to_vec();
    }
    kept
}

/// The destination record, as JSON bytes.
fn record(
    router: &Router,
    condition: Condition,
    meta: &EventMeta,
    invoked: u32,
    payload: &[u8],
    response: Option<&Response>,
) -> Bytes {
    let arn = format!(
        "arn:aws:lambda:{}:{}:function:{}{}",
        router.config.region,
        meta.namespace,
        meta.function,
        meta.qualifier
            .as_deref()
            .map(|q| format!(":{q}"))
            .unwrap_or_default()
    );
    let timestamp = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let value = policy::record(
        condition, meta, &arn, invoked, payload, response, &timestamp,
    );
    Bytes::from(value.to_string())
}

/// Sends a record to a destination: a NATS subject (stored by JetStream) or another function
/// (as a new event of its own).
async fn deliver(
    queue: &EventQueue,
    meta: &EventMeta,
    destination: &str,
    record: Bytes,
) -> Result<(), String> {
    if let Some(subject) = destination.strip_prefix("nats:") {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Lmi-Request-Id", meta.request_id.as_str());
        return queue.publish(subject.to_string(), headers, record).await;
    }
    let target =
        function_name::parse(destination, None, &meta.namespace).map_err(|e| e.message())?;
    let event = EventMeta {
        request_id: crate::ids::request_id(),
        namespace: target.namespace,
        function: target.name,
        qualifier: target.qualifier_text,
        received_ms: now_ms(),
        attempts: 0,
        not_before_ms: 0,
        trace_id: meta.trace_id.clone(),
        retry_delays_ms: meta.retry_delays_ms.clone(),
    };
    queue.enqueue(&event, record).await.map_err(|e| e.message())
}

fn count_dropped(router: &Router, [namespace, function]: [&str; 2], reason: &str) {
    router
        .metrics
        .events_dropped
        .with_label_values(&[namespace, function, reason])
        .inc();
}

async fn ack(message: &jetstream::Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        tracing::warn!(error = %e, "acknowledging an event");
    }
}
