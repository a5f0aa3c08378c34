#!/usr/bin/env bash
# The README's main command. With no KUBECONFIG it brings up the local cluster (lmi-dev): the
# control plane, two real nodes (containerd and a kubelet each) with the images built here, and the
# simulated cloud standing in for EC2 and Karpenter. Then it runs the operator and the router,
# applies the example capacity provider and function, waits until the published version is
# Active, and invokes it once with the AWS CLI.
#
#   bash scripts/run.sh          # start (idempotent), invoke, and show what runs
#   bash scripts/run.sh down     # stop the router, the operator, the simulated cloud (and the local cluster)
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
    stop lmi-router
    stop lmi-operator
    stop lmi-simcloud
    if [ -z "${KUBECONFIG:-}" ]; then
        cargo build --quiet -p lmi-e2e --bin lmi-dev
        "$BIN/lmi-dev" down
    fi
    echo "stopped"
    exit 0
fi

ROUTER_ADDR=127.0.0.1:18080
FUNCTION=hello-python

echo "== building the operator, the router and the local tools"
cargo build --quiet --locked -p lmi-operator -p lmi-router -p lmi-e2e --bins

LOCAL=0
if [ -z "${KUBECONFIG:-}" ]; then
    LOCAL=1
    echo "== no KUBECONFIG: starting the local cluster (the first time builds Kubernetes from its Go modules and the images)"
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
    nohup "$BIN/lmi-operator" --sidecar-image localhost/lmi/lmi-sidecar:dev --no-leader-election \
        --metrics-addr 127.0.0.1:18081 >"$RUN_DIR/lmi-operator.log" 2>&1 &
    echo $! >"$RUN_DIR/lmi-operator.pid"
fi

if ! running lmi-router; then
    echo "== starting the router on $ROUTER_ADDR (log: $RUN_DIR/lmi-router.log)"
    nohup "$BIN/lmi-router" --listen "$ROUTER_ADDR" >"$RUN_DIR/lmi-router.log" 2>&1 &
    echo $! >"$RUN_DIR/lmi-router.pid"
fi

echo "== applying the example capacity provider and function (the local node's Static provider)"
kubectl apply -f examples/capacity-provider-static.yaml -f examples/function-local.yaml

echo "== waiting for version 1 of function $FUNCTION to be Active"
state=""
for _ in $(seq 1 180); do
    state=$(kubectl get fv "$FUNCTION-v1" -o jsonpath='{.status.state}' 2>/dev/null || true)
    [ "$state" = "Active" ] && break
    sleep 1
done
kubectl get lmi
kubectl get pods -l "lmi.dev/function=$FUNCTION" -o wide
if [ "$state" != "Active" ]; then
    echo "version $FUNCTION-v1 is ${state:-not there}: see $RUN_DIR/lmi-operator.log and kubectl describe fv $FUNCTION-v1" >&2
    exit 1
fi

echo "== the AWS CLI (from PyPI, in $HOME/.cache/lmi/venv)"
VENV="$HOME/.cache/lmi/venv"
if ! "$VENV/bin/python" -c 'import awscli' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/python-clients.txt
fi
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1
INVOKE=("$VENV/bin/aws" lambda invoke --endpoint-url "http://$ROUTER_ADDR" --function-name "$FUNCTION" --payload '{"name": "world"}')

echo "== invoking $FUNCTION: ${INVOKE[*]} out.json"
OUT="$RUN_DIR/out.json"
# The router's watch may see the Ready EE a moment after kubectl does.
for attempt in $(seq 1 30); do
    if "${INVOKE[@]}" "$OUT" && ! grep -q FunctionError "$OUT" 2>/dev/null; then
        break
    fi
    [ "$attempt" = 30 ] && { echo "the invocation failed: see $RUN_DIR/lmi-router.log" >&2; exit 1; }
    sleep 1
done
echo "== the function answered:"
cat "$OUT"
echo
cat <<MSG

The operator and the router run (logs in $RUN_DIR). Invoke again with:
  $( [ "$LOCAL" = 1 ] && echo "eval \"\$($BIN/lmi-dev env)\"" )
  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1
  $VENV/bin/aws lambda invoke --endpoint-url http://$ROUTER_ADDR --function-name $FUNCTION --payload '{"name": "you"}' out.json && cat out.json
See what runs with: kubectl get lmi; kubectl get pods -o wide
Stop everything with: bash scripts/run.sh down
MSG
