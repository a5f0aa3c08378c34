//! Prometheus metrics of the operator (prefix `lmi_operator_`, and `lmi_` for the Lambda-like
//! gauges).

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use crate::error::Result;

/// The labels of per-version series. `function_namespace`, not `namespace`: Prometheus gives
/// every scraped series its target's `namespace` (the operator's), and a series' own
/// `namespace` label would be renamed `exported_namespace`.
const VERSION_LABELS: &[&str] = &["function_namespace", "function", "version"];

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_seconds: HistogramVec,
    pub execution_environments: IntGaugeVec,
    pub execution_environments_ready: IntGaugeVec,
    pub vcpu_allocated: IntGaugeVec,
    pub vcpu_limit: IntGaugeVec,
    pub instances: IntGaugeVec,
    pub cpu_utilization: GaugeVec,
    pub concurrency_saturation: GaugeVec,
    pub cpu_target: GaugeVec,
    /// Requests this operator sends to the API server, by verb (`watch` apart from `get`).
    pub api_requests: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new("lmi_operator_reconciles_total", "Reconciles by controller"),
            &["controller"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "lmi_operator_reconcile_errors_total",
                "Failed reconciles by controller",
            ),
            &["controller"],
        )?;
        let reconcile_seconds = HistogramVec::new(
            HistogramOpts::new(
                "lmi_operator_reconcile_duration_seconds",
                "Reconcile duration by controller",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            &["controller"],
        )?;
        let execution_environments = IntGaugeVec::new(
            Opts::new(
                "lmi_execution_environments",
                "Execution environments of a function version",
            ),
            VERSION_LABELS,
        )?;
        let execution_environments_ready = IntGaugeVec::new(
            Opts::new(
                "lmi_execution_environments_ready",
                "Ready execution environments of a function version",
            ),
            VERSION_LABELS,
        )?;
        let vcpu_allocated = IntGaugeVec::new(
            Opts::new(
                "lmi_capacity_provider_vcpu_allocated",
                "vCPUs of a capacity provider's instances",
            ),
            &["capacity_provider"],
        )?;
        let vcpu_limit = IntGaugeVec::new(
            Opts::new(
                "lmi_capacity_provider_vcpu_limit",
                "maxVCpuCount of a capacity provider",
            ),
            &["capacity_provider"],
        )?;
        let instances = IntGaugeVec::new(
            Opts::new(
                "lmi_capacity_provider_instances",
                "Instances of a capacity provider",
            ),
            &["capacity_provider"],
        )?;
        let cpu_utilization = GaugeVec::new(
            Opts::new(
                "lmi_execution_environment_cpu_utilization",
                "Mean CPU of a version's ready EEs, percent of their limit",
            ),
            VERSION_LABELS,
        )?;
        let concurrency_saturation = GaugeVec::new(
            Opts::new(
                "lmi_execution_environment_concurrency_saturation",
                "Mean in-flight invocations over max concurrency of a version's ready EEs",
            ),
            VERSION_LABELS,
        )?;
        let cpu_target = GaugeVec::new(
            Opts::new(
                "lmi_autoscaler_cpu_target",
                "The autoscaler's CPU target for a version, percent",
            ),
            VERSION_LABELS,
        )?;
        registry.register(Box::new(cpu_utilization.clone()))?;
        registry.register(Box::new(concurrency_saturation.clone()))?;
        registry.register(Box::new(cpu_target.clone()))?;
        let api_requests = IntCounterVec::new(
            Opts::new(
                "lmi_operator_api_requests_total",
                "Requests the operator sent to the Kubernetes API server, by verb",
            ),
            &["verb"],
        )?;
        registry.register(Box::new(api_requests.clone()))?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_seconds.clone()))?;
        registry.register(Box::new(execution_environments.clone()))?;
        registry.register(Box::new(execution_environments_ready.clone()))?;
        registry.register(Box::new(vcpu_allocated.clone()))?;
        registry.register(Box::new(vcpu_limit.clone()))?;
        registry.register(Box::new(instances.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_seconds,
            execution_environments,
            execution_environments_ready,
            vcpu_allocated,
            vcpu_limit,
            instances,
            cpu_utilization,
            concurrency_saturation,
            cpu_target,
            api_requests,
        })
    }

    /// A kube client whose every request counts in `api_requests` (its verb from the HTTP
    /// method, and `watch` for a `watch=true` list).
    pub async fn counting_client(&self) -> std::result::Result<kube::Client, kube::Error> {
        let config = kube::Config::infer()
            .await
            .map_err(kube::Error::InferConfig)?;
        let counter = self.api_requests.clone();
        let count = tower::util::MapRequestLayer::new(
            move |request: ::http::Request<kube::client::Body>| {
                counter.with_label_values(&[verb(&request)]).inc();
                request
            },
        );
        Ok(kube::client::ClientBuilder::try_from(config)?
            .with_layer(&count)
            .build())
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// The Kubernetes verb of an API request.
fn verb<B>(request: &::http::Request<B>) -> &'static str {
    let watch = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    match *request.method() {
        ::http::Method::GET if watch => "watch",
        ::http::Method::GET => "get",
        ::http::Method::POST => "create",
        ::http::Method::PUT => "update",
        ::http::Method::PATCH => "patch",
        ::http::Method::DELETE => "delete",
        _ => "other",
    }
}
