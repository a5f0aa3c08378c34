#!/usr/bin/env bash
# The README's main command. With no KUBECONFIG it brings up the local cluster (lmi-dev), with
# the simulated cloud standing in for EC2 and Karpenter; then it runs the operator, applies the
# example capacity provider and function, and waits until the published version is Active.
#
#   bash scripts/run.sh          # start (idempotent) and show what runs
#   bash scripts/run.sh down     # stop the operator and the simulated cloud (and the local cluster)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmi/target}"
RUN_DIR="${LMI_CACHE_DIR:-$HOME/.cache/lmi}/run"
mkdir -p "$RUN_DIR"
BIN="$CARGO_TARGET_DIR/debug"

stop() {
    local name=$1
    if [ -f "$RUN_DIR/$name.pid" ]; then
        kill "$(cat "$RUN_DIR/$name.pid")" 2>/dev/null || true
        rm -f "$RUN_DIR/$name.pid"
    fi
}

running() {
    [ -f "$RUN_DIR/$1.pid" ] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null
}

if [ "${1:-}" = "down" ]; then
    stop lmi-operator
    stop lmi-simcloud
    if [ -z "${KUBECONFIG:-}" ]; then
        cargo build --quiet -p lmi-e2e --bin lmi-dev
        "$BIN/lmi-dev" down
    fi
    echo "stopped"
    exit 0
fi

echo "== building the operator and the local tools"
cargo build --quiet -p lmi-operator -p lmi-e2e --bins

LOCAL=0
if [ -z "${KUBECONFIG:-}" ]; then
    LOCAL=1
    echo "== no KUBECONFIG: starting the local cluster (the first time builds Kubernetes from its Go modules)"
    "$BIN/lmi-dev" up
    eval "$("$BIN/lmi-dev" env)"
else
    echo "== using the cluster of KUBECONFIG=$KUBECONFIG"
    kubectl apply --server-side -f crds/yaml/ >/dev/null
fi

if [ "$LOCAL" = 1 ] && ! running lmi-simcloud; then
    echo "== starting the simulated cloud (log: $RUN_DIR/lmi-simcloud.log)"
    nohup "$BIN/lmi-simcloud" >"$RUN_DIR/lmi-simcloud.log" 2>&1 &
    echo $! >"$RUN_DIR/lmi-simcloud.pid"
fi
if ! running lmi-operator; then
    echo "== starting the operator (log: $RUN_DIR/lmi-operator.log)"
    nohup "$BIN/lmi-operator" --sidecar-image localhost/lmi/sidecar:dev --no-leader-election \
        --metrics-addr 127.0.0.1:18081 >"$RUN_DIR/lmi-operator.log" 2>&1 &
    echo $! >"$RUN_DIR/lmi-operator.pid"
fi

echo "== waiting for Karpenter's CRDs"
for _ in $(seq 1 120); do
    kubectl get crd nodeclaims.karpenter.sh >/dev/null 2>&1 && break
    sleep 1
done

echo "== applying the example capacity provider and function"
kubectl apply -f examples/capacity-provider-karpenter.yaml -f examples/function.yaml

echo "== waiting for version 1 of function hello to be Active"
for _ in $(seq 1 180); do
    state=$(kubectl get fv hello-v1 -o jsonpath='{.status.state}' 2>/dev/null || true)
    [ "$state" = "Active" ] && break
    sleep 1
done
kubectl get lmi
kubectl get nodeclaims,nodes -l lmi.dev/capacity-provider=default
kubectl get pods -l lmi.dev/function=hello -o wide
if [ "$state" != "Active" ]; then
    echo "version hello-v1 is ${state:-not there}: see $RUN_DIR/lmi-operator.log" >&2
    exit 1
fi
cat <<MSG

The operator runs (log: $RUN_DIR/lmi-operator.log). Try:
  $( [ "$LOCAL" = 1 ] && echo "eval \"\$($BIN/lmi-dev env)\"" )
  kubectl patch fn hello --type merge -p '{"spec":{"scalingConfig":{"minExecutionEnvironments":5,"maxExecutionEnvironments":30}}}'
  kubectl get lmi
Stop everything with: bash scripts/run.sh down
MSG
