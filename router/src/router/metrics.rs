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
    /// Requests the router made to the apiserver to authenticate or authorize callers, by
    /// resource (`tokenreviews`, `subjectaccessreviews`): the caches keep these to a handful.
    pub apiserver_requests: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, Error> {
        let registry = Registry::new();
        let invocations = IntCounterVec::new(
            Opts::new(
                "lmi_router_invocations_total",
                "Invoke API calls, by function, version, alias and result",
            ),
            &["function", "version", "alias", "result"],
        )?;
        let throttles = IntCounterVec::new(
            Opts::new(
                "lmi_router_throttles_total",
                "429 TooManyRequests answers, by reason",
            ),
            &["function", "reason"],
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
        let apiserver_requests = IntCounterVec::new(
            Opts::new(
                "lmi_router_apiserver_requests_total",
                "Reviews asked of the apiserver to authenticate or authorize callers, by resource",
            ),
            &["resource"],
        )?;
        registry.register(Box::new(apiserver_requests.clone()))?;
        registry.register(Box::new(invocations.clone()))?;
        registry.register(Box::new(throttles.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(functions.clone()))?;
        Ok(Self {
            registry,
            invocations,
            throttles,
            retries,
            duration,
            functions,
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
