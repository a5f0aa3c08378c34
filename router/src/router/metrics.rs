//! The router's Prometheus metrics.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::Error;

pub struct Metrics {
    pub registry: Registry,
    /// function = namespace/name ("-" when it did not resolve); version = the version that ran
    /// (an alias's pick; "-" when it did not resolve); alias = the alias invoked, "-" for none;
    /// result = Success, FunctionError, or the Lambda error type.
    pub invocations: IntCounterVec,
    /// Throttles returned to callers (429), by reason.
    pub throttles: IntCounterVec,
    /// Refusals by an EE that the router absorbed by trying another, by reason.
    pub retries: IntCounterVec,
    pub duration: Histogram,
    pub functions: IntGauge,
    /// Ready EEs in the catalog: where invocations may go.
    pub execution_environments: IntGauge,
    /// Requests the router made to the apiserver to authenticate or authorize callers, by
    /// resource (`tokenreviews`, `subjectaccessreviews`): the caches keep these to a handful.
    pub apiserver_requests: IntCounterVec,
    /// Event invocations stored in the queue (202), by function (Lambda's
    /// AsyncEventsReceived).
    pub events_received: IntCounterVec,
    /// Seconds from an event's acceptance to its final outcome (Lambda's AsyncEventAge).
    pub event_age: Histogram,
    /// Events that ended without success, by function and reason: RetriesExhausted,
    /// EventAgeExceeded, FunctionNotFound, Malformed (Lambda's AsyncEventsDropped).
    pub events_dropped: IntCounterVec,
    /// Function errors stored again for a retry, by function.
    pub event_retries: IntCounterVec,
    /// Records a destination did not take, by function (Lambda's DestinationDeliveryFailures).
    pub event_destination_failures: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, Error> {
        let registry = Registry::new();
        let invocations = IntCounterVec::new(
            Opts::new(
                "lmi_router_invocations_total",
                "Invoke API calls, by function, version, alias and result",
            ),
            &[
                "function_namespace",
                "function",
                "version",
                "alias",
                "result",
            ],
        )?;
        let throttles = IntCounterVec::new(
            Opts::new(
                "lmi_router_throttles_total",
                "429 TooManyRequests answers, by reason",
            ),
            &["function_namespace", "function", "reason"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "lmi_router_retries_total",
                "EE refusals retried on another EE, by reason",
            ),
            &["reason"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "lmi_router_invocation_duration_seconds",
                "Invoke API latency",
            )
            .buckets(vec![
                0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
            ]),
        )?;
        let functions = IntGauge::new("lmi_router_functions", "Functions the router knows")?;
        let execution_environments = IntGauge::new(
            "lmi_router_execution_environments",
            "Ready execution environments the router may call",
        )?;
        let apiserver_requests = IntCounterVec::new(
            Opts::new(
                "lmi_router_apiserver_requests_total",
                "Reviews asked of the apiserver to authenticate or authorize callers, by resource",
            ),
            &["resource"],
        )?;
        let events_received = IntCounterVec::new(
            Opts::new(
                "lmi_router_events_received_total",
                "Event invocations stored in the queue",
            ),
            &["function_namespace", "function"],
        )?;
        let event_age = Histogram::with_opts(
            HistogramOpts::new(
                "lmi_router_event_age_seconds",
                "Time from an event's acceptance to its final outcome",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0,
                600.0, 3600.0, 21600.0,
            ]),
        )?;
        let events_dropped = IntCounterVec::new(
            Opts::new(
                "lmi_router_events_dropped_total",
                "Events that ended without success, by reason",
            ),
            &["function_namespace", "function", "reason"],
        )?;
        let event_retries = IntCounterVec::new(
            Opts::new(
                "lmi_router_event_retries_total",
                "Function errors of events stored again for a retry",
            ),
            &["function_namespace", "function"],
        )?;
        let event_destination_failures = IntCounterVec::new(
            Opts::new(
                "lmi_router_event_destination_failures_total",
                "Event outcome records a destination did not take",
            ),
            &["function_namespace", "function"],
        )?;
        registry.register(Box::new(events_received.clone()))?;
        registry.register(Box::new(event_age.clone()))?;
        registry.register(Box::new(events_dropped.clone()))?;
        registry.register(Box::new(event_retries.clone()))?;
        registry.register(Box::new(event_destination_failures.clone()))?;
        registry.register(Box::new(apiserver_requests.clone()))?;
        registry.register(Box::new(invocations.clone()))?;
        registry.register(Box::new(throttles.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(functions.clone()))?;
        registry.register(Box::new(execution_environments.clone()))?;
        Ok(Self {
            registry,
            invocations,
            throttles,
            retries,
            duration,
            functions,
            execution_environments,
            events_received,
            event_age,
            events_dropped,
            event_retries,
            event_destination_failures,
            apiserver_requests,
        })
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}
