//go:build tools

// Package tools names what lmi-dev needs to generate the prometheus-operator CRDs
// (ServiceMonitor, PodMonitor) for the chart tests: the API types and controller-gen, the
// generator prometheus-operator itself uses. Its own module, which carries the generated
// manifests, is not served by the Go module proxy; the types module is. go.mod is written by
// e2e/src/monitoring_crds.rs from the versions in e2e/src/versions.rs.
package tools

import (
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
