//! Every pinned version of the local control plane, in one place.
//!
//! The build cache is keyed by these versions (`$CACHE/k8s-<version>/bin`, ...), so changing a
//! line here is all it takes to build and use another version.

/// Kubernetes release built from the `k8s.io/kubernetes` module. Keep its minor in step with the
/// `k8s-openapi` feature in the root Cargo.toml (`v1_36`).
pub const KUBERNETES: &str = "1.36.3";

/// etcd server (`go.etcd.io/etcd/server/v3`): the release Kubernetes 1.36.3 itself requires.
pub const ETCD: &str = "3.6.8";

/// kwok (`sigs.k8s.io/kwok`): fakes nodes and the pods bound to them.
pub const KWOK: &str = "0.7.0";

/// Karpenter's core controller with its kwok cloud provider (`sigs.k8s.io/karpenter`, package
/// `kwok`), run by the local cluster to turn the operator's NodeClaims into kwok nodes; also the
/// source of the `karpenter.sh` CRDs. (Newer releases need a newer Go than this machine's.)
pub const KARPENTER: &str = "1.8.0";

/// Karpenter's AWS provider (`github.com/aws/karpenter-provider-aws`): its module carries the real
/// EC2NodeClass CRD, the operator's node class on AWS. (Newer releases need a newer Go than this
/// machine's to even download.)
pub const KARPENTER_AWS: &str = "1.13.0";

/// NATS server with JetStream (`github.com/nats-io/nats-server/v2`), run beside the control plane
/// (`e2e/src/nats.rs`). Its go.mod asks for Go 1.26.0 (its `toolchain go1.26.10` line is only a
/// preference, which GOTOOLCHAIN=local ignores), so the machine's Go 1.26 builds it.
pub const NATS_SERVER: &str = "2.15.2";

/// Helm (`helm.sh/helm/v3`), built for the chart tests (`e2e/src/helm.rs`). Its own go.mod asks
/// for Go 1.26.0, no newer than [`GO_DIRECTIVE`].
pub const HELM: &str = "3.22.0";

/// prometheus-operator's API types (`github.com/prometheus-operator/prometheus-operator/pkg/apis/
/// monitoring`), from which the chart tests generate the ServiceMonitor and PodMonitor CRDs.
pub const PROMETHEUS_OPERATOR: &str = "0.95.2";

/// The Gateway API (`sigs.k8s.io/gateway-api`): its standard CRDs, for the chart's HTTPRoute.
/// (v1.7.0 needs a newer Go than this machine's.)
pub const GATEWAY_API: &str = "1.4.1";

/// Prometheus 3.16.0 (its Go module `github.com/prometheus/prometheus` tags it v0.316.0):
/// promtool, for the chart's alerts. Its go.mod asks for Go 1.26.7.
pub const PROMETHEUS: &str = "0.316.0";

/// Knative Serving (`knative.dev/serving`): its queue-proxy, a comparison row of the data-plane
/// benchmark only.
pub const KNATIVE_SERVING: &str = "0.47.0";

/// controller-gen (`sigs.k8s.io/controller-tools`), the generator of those CRDs.
pub const CONTROLLER_TOOLS: &str = "0.23.0";

/// The `go` directive written into the generated wrapper modules: what k8s.io/kubernetes needs.
pub const GO_DIRECTIVE: &str = "1.26.0";

/// The staging modules (`k8s.io/api`, `k8s.io/client-go`, ...) are tagged `v0.<minor>.<patch>` for
/// Kubernetes `v1.<minor>.<patch>`.
pub fn staging_version(kubernetes: &str) -> String {
    match kubernetes.split_once('.') {
        Some((_, rest)) => format!("0.{rest}"),
        None => format!("0.{kubernetes}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_version_drops_the_major() {
        assert_eq!(staging_version("1.36.3"), "0.36.3");
    }
}
