//! The sidecar's Prometheus metrics (names mirror the Lambda Managed Instances metrics, `lmi_` prefix).

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::Error;

pub struct Metrics {
    pub registry: Registry,
    pub in_flight: IntGauge,
    pub limit: IntGauge,
    pub ready: IntGauge,
    pub cpu_utilization: Gauge,
    pub memory_utilization: Gauge,
    pub memory_bytes: Gauge,
    /// outcome = success | error | timeout | not_run | stream
    pub invocations: IntCounterVec,
    pub duration: Histogram,
    /// reason = Concurrency | CPU | Memory | Disk | Draining | NotReady | EventDeferred
    pub refusals: IntCounterVec,
    /// Times the runtime process exited after it was ready.
    pub runtime_exits: IntCounter,
    /// Requests turned away before anything happened, by reason: `invoke_token`, `drain_token`
    /// (missing or wrong token), `duplicate_request_id` (an invocation with that id is in flight).
    pub rejected: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, Error> {
        let registry = Registry::new();
        let in_flight = IntGauge::new("lmi_ee_concurrency", "Invocations in flight in this EE")?;
        let limit = IntGauge::new("lmi_ee_concurrency_limit", "Maximum invocations in flight")?;
        let ready = IntGauge::new(
            "lmi_ee_ready",
            "1 when the runtime is initialized and not draining",
        )?;
        let cpu_utilization = Gauge::new(
            "lmi_ee_cpu_utilization",
            "Smoothed CPU use of the function over its CPU limit (0-1)",
        )?;
        let memory_utilization = Gauge::new(
            "lmi_ee_memory_utilization",
            "Resident memory of the function over its memory limit (0-1)",
        )?;
        let memory_bytes = Gauge::new("lmi_ee_memory_bytes", "Resident memory of the function")?;
        let invocations = IntCounterVec::new(
            Opts::new(
                "lmi_ee_invocations_total",
                "Invocations admitted, by outcome",
            ),
            &["outcome"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "lmi_ee_invocation_duration_seconds",
                "Time from admission to the runtime's answer (or the timeout)",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0, 300.0, 900.0,
            ]),
        )?;
        let refusals = IntCounterVec::new(
            Opts::new("lmi_ee_throttles_total", "Invocations refused, by reason"),
            &["reason"],
        )?;
        let runtime_exits = IntCounter::new(
            "lmi_ee_runtime_exits_total",
            "Times the runtime process exited after it was ready, other than when the EE drains \
             (its invocations failed with Runtime.ExitError)",
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "lmi_ee_rejected_requests_total",
                "Requests refused before anything ran: a missing or wrong token, or a request id \
                 already in flight, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(runtime_exits.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(limit.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(cpu_utilization.clone()))?;
        registry.register(Box::new(memory_utilization.clone()))?;
        registry.register(Box::new(memory_bytes.clone()))?;
        registry.register(Box::new(invocations.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(refusals.clone()))?;
        Ok(Self {
            registry,
            in_flight,
            limit,
            ready,
            cpu_utilization,
            memory_utilization,
            memory_bytes,
            invocations,
            duration,
            refusals,
            runtime_exits,
            rejected,
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
