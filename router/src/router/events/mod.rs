//! Asynchronous (`Event`) invocations on NATS JetStream.
//!
//! Layout: one stream, `LMI_EVENTS`, holds every event under `lmi.events.<namespace>.<function>`
//! with work-queue retention (a message is gone once acknowledged), file storage and a
//! de-duplication window (a publish repeated after a lost acknowledgement is stored once). One
//! durable pull consumer, `lmi-dispatch`, is shared by every router replica: JetStream hands each
//! message to one fetcher at a time and gives it to another only when the first has not
//! acknowledged it within the ack wait (a dispatcher that died) or asked for it later (a throttle,
//! a retry's delay). So any replica takes and dispatches events, and an event is in two hands only
//! by redelivery.
//!
//! The router acknowledges the caller (202) only after JetStream has stored the event; the
//! dispatcher ([`dispatch`]) removes it only once its outcome is final and recorded.

pub mod dispatch;
pub mod meta;
pub mod policy;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;

use crate::Error;
use crate::lambda_error::LambdaError;
use meta::EventMeta;

pub use lmi_crds::event_queue::{STREAM, SUBJECT_PREFIX};
/// The dispatchers' shared durable consumer.
pub const CONSUMER: &str = "lmi-dispatch";
/// How long JetStream waits for a dispatcher's acknowledgement before it redelivers: the
/// dispatcher reports progress every third of it while an invocation runs.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// The largest event payload (Lambda's limit for asynchronous invocations).
pub const MAX_EVENT_PAYLOAD: usize = lmi_crds::rules::ASYNC_PAYLOAD_LIMIT_BYTES;
/// How long the router waits for JetStream to store an event before it answers an error.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// The router's event settings (`--nats-url` and the `--event-*` flags).
#[derive(Debug, Clone, PartialEq)]
pub struct EventSettings {
    pub url: String,
    /// Credentials and TLS files (`LMI_NATS_*_FILE`).
    pub files: lmi_crds::event_queue::NatsFiles,
    /// Delays before the first and second retry of a function error (Lambda: about 1 and 2 min).
    pub retry_delays: Vec<Duration>,
    /// How long a throttled event waits before it is tried again.
    pub busy_delay: Duration,
    /// Events one router runs at once.
    pub concurrency: usize,
    /// Replicas of the stream (1 on a single server, 3 on a 3-node JetStream cluster).
    pub replicas: usize,
}

impl EventSettings {
    pub fn new(url: String) -> Self {
        Self {
            url,
            files: Default::default(),
            retry_delays: policy::DEFAULT_RETRY_DELAYS.to_vec(),
            busy_delay: Duration::from_secs(1),
            concurrency: 64,
            replicas: 1,
        }
    }
}

/// The connection to the queue.
#[derive(Clone)]
pub struct EventQueue {
    pub settings: EventSettings,
    jetstream: jetstream::Context,
}

impl EventQueue {
    /// Connects in the background: the router serves synchronous calls while NATS is away, and
    /// answers events with an error until it is back.
    pub async fn connect(settings: EventSettings) -> Result<Self, Error> {
        let client = settings
            .files
            .connect(&settings.url, "lmi-router")
            .await
            .map_err(Error::Config)?;
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(PUBLISH_TIMEOUT);
        Ok(Self {
            settings,
            jetstream,
        })
    }

    /// Creates the stream and the consumer if they do not exist (every replica may; the
    /// same configuration twice is one stream).
    pub async fn ensure(&self) -> Result<consumer::PullConsumer, String> {
        let stream = self
            .jetstream
            .get_or_create_stream(stream::Config {
                name: STREAM.to_string(),
                subjects: vec![format!("{SUBJECT_PREFIX}.>")],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                num_replicas: self.settings.replicas,
                duplicate_window: Duration::from_secs(120),
                // The payload plus the headers.
                max_message_size: i32::try_from(MAX_EVENT_PAYLOAD + 16 * 1024).unwrap_or(i32::MAX),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("creating stream {STREAM}: {e}"))?;
        stream
            .get_or_create_consumer(
                CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(CONSUMER.to_string()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    // Redelivered until its outcome is final: the dispatcher decides when to
                    // stop, by the event's age.
                    max_deliver: -1,
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("creating consumer {CONSUMER}: {e}"))
    }

    /// Stores an event; Ok once JetStream has acknowledged it.
    pub async fn enqueue(&self, meta: &EventMeta, payload: Bytes) -> Result<(), LambdaError> {
        let subject = lmi_crds::event_queue::subject(&meta.namespace, &meta.function);
        let mut stored = self
            .publish(subject.clone(), meta.to_headers(), payload.clone())
            .await;
        if stored.is_err() && self.ensure().await.is_ok() {
            // The stream was not there yet (a fresh server, or one that lost its store): made
            // now, so try once more.
            stored = self.publish(subject, meta.to_headers(), payload).await;
        }
        stored.map_err(|e| {
            LambdaError::Service(format!("The event queue could not store the event: {e}"))
        })
    }

    /// Publishes to JetStream and waits for the stored acknowledgement.
    pub async fn publish(
        &self,
        subject: String,
        headers: async_nats::HeaderMap,
        payload: Bytes,
    ) -> Result<(), String> {
        let ack = self
            .jetstream
            .publish_with_headers(subject, headers, payload)
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(PUBLISH_TIMEOUT, ack)
            .await
            .map_err(|_| "no acknowledgement in time".to_string())?
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
