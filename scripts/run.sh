#!/usr/bin/env bash
# The README's main command. With no KUBECONFIG it brings up the local cluster (lmi-dev): the
# control plane, four real nodes (containerd and a kubelet each; two for the main job, two for the
# tests) with the images built here, and real Karpenter with its kwok provider standing in for
# EC2. Then it runs the operator and the router, applies the example capacity provider
# and function, waits until the published version is Active, and invokes it once with the AWS CLI.
# The tests (scripts/test.sh) may run meanwhile: they use their own provider, nodes and operator
# instance, and leave these objects alone.
#
#   bash scripts/run.sh          # start (idempotent; restarts what is stale), invoke, show what runs
#   bash scripts/run.sh down     # stop the router and the operator (and the local cluster)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmi/target}"
RUN_DIR="${LMI_CACHE_DIR:-$HOME/.cache/lmi}/run"
mkdir -p "$RUN_DIR"
BIN="$CARGO_TARGET_DIR/debug"
# The local cluster's kubeconfig (what `lmi-dev env` exports): a KUBECONFIG naming it still means
# the local cluster, started and stopped here.
LOCAL_KUBECONFIG="${LMI_CACHE_DIR:-$HOME/.cache/lmi}/cluster/state/kubeconfig"
local_cluster() {
    [ -z "${KUBECONFIG:-}" ] || [ "$KUBECONFIG" = "$LOCAL_KUBECONFIG" ]
}

# Pid files hold the pid and the binary (the format of lmi-dev's own, e2e/src/process.rs), so
# that `lmi-dev down` stops these too, and a recycled pid is never taken for ours.
pid_of() {
    [ -f "$RUN_DIR/$1.pid" ] && head -n1 "$RUN_DIR/$1.pid"
}

running() {
    local pid binary
    pid=$(pid_of "$1") || return 1
    binary=$(sed -n 2p "$RUN_DIR/$1.pid")
    # (Pid files of older runs held only the pid.)
    [ -n "$binary" ] || binary="$BIN/$1"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        [ "$(readlink "/proc/$pid/exe" | sed 's/ (deleted)$//')" = "$(readlink -f "$binary")" ]
}

stop() {
    local name=$1 pid
    if running "$name"; then
        pid=$(pid_of "$name")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$RUN_DIR/$name.pid"
}

# start NAME ARGS...: runs $BIN/NAME in the background, its log and pid file in $RUN_DIR.
start() {
    local name=$1
    shift
    echo "== starting $name (log: $RUN_DIR/$name.log)"
    nohup "$BIN/$name" "$@" >"$RUN_DIR/$name.log" 2>&1 &
    printf '%s\n%s\n' "$!" "$BIN/$name" >"$RUN_DIR/$name.pid"
}

# with_progress WHAT CMD...: runs CMD, saying once a minute that it still runs (a first build
# takes minutes; a CI log gets one line a minute, not cargo's hundreds).
with_progress() {
    local what=$1 started=$SECONDS pid
    shift
    "$@" &
    pid=$!
    while ! wait_for "$pid" 60; do
        echo "   still $what: $(((SECONDS - started) / 60)) min so far"
    done
    wait "$pid"
}

# wait_for PID SECONDS: true once PID has exited, false if it still runs after SECONDS.
wait_for() {
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.2
    done
    return 1
}

if [ "${1:-}" = "down" ]; then
    stop lmi-router
    stop lmi-operator
    stop lmi-simcloud # (the stand-in for Karpenter that older checkouts started)
    if local_cluster; then
        cargo build --quiet -p lmi-e2e --bin lmi-dev
        "$BIN/lmi-dev" down
    fi
    echo "stopped"
    exit 0
fi

ROUTER_ADDR=127.0.0.1:18080
# Function URLs: the router's URL listener; <url-id>.lambda-url.localhost resolves to loopback.
URL_ADDR=127.0.0.1:18082
URL_TEMPLATE="http://{id}.lambda-url.localhost:${URL_ADDR##*:}/"
FUNCTION=hello-python
# Where the router reads access keys, and the key the main job makes for its caller.
SYSTEM_NAMESPACE=lmi-system
LOCAL_USER=lmi-local-user
KEY_SECRET=lmi-key-local-user
CREDENTIALS="$RUN_DIR/aws-credentials"

echo "== building the operator, the router and the local tools (about 6 min the first time, seconds after)"
# The same packages and targets as lmi-dev's image build (e2e/src/images/catalog.rs): with another
# set, cargo's feature unification would rebuild the binaries each time the two alternate.
with_progress "building (cargo)" cargo build --quiet --locked -p lmi-operator -p lmi-router -p lmi-e2e --bins --example fixture_fn

LOCAL=0
if local_cluster; then
    LOCAL=1
    echo "== the local cluster: starting it unless it runs (the first time builds Kubernetes from its Go modules and the images)"
    "$BIN/lmi-dev" up
    eval "$("$BIN/lmi-dev" env)"
else
    echo "== using the cluster of KUBECONFIG=$KUBECONFIG"
    kubectl apply --server-side -f crds/yaml/ >/dev/null
fi

# What an earlier run started may be stale: started against a cluster since stopped or replaced
# (its watches then fail for ever), an older build, or not answering. The cluster's identity is the uid of its
# kube-system namespace, new with every fresh cluster.
CLUSTER_ID=$(kubectl get namespace kube-system -o jsonpath='{.metadata.uid}')
healthy() {
    command -v curl >/dev/null || return 0
    case $1 in
    lmi-operator) curl -fsS -m 2 "http://127.0.0.1:18081/healthz" >/dev/null 2>&1 ;;
    # (A router from before function URLs has no URL listener: restarted.)
    lmi-router) curl -fsS -m 2 "http://$ROUTER_ADDR/healthz" >/dev/null 2>&1 &&
        curl -sS -m 2 -o /dev/null "http://$URL_ADDR/" 2>/dev/null ;;
    *) true ;;
    esac
}
# Older checkouts started a stand-in for Karpenter; the local cluster runs the real one now.
stop lmi-simcloud
for name in lmi-operator lmi-router; do
    if running "$name"; then
        if [ "$(cat "$RUN_DIR/$name.cluster" 2>/dev/null)" != "$CLUSTER_ID" ]; then
            echo "== $name was started for another cluster (or before this one restarted): restarting it"
            stop "$name"
        elif readlink "/proc/$(pid_of "$name")/exe" | grep -q ' (deleted)$'; then
            echo "== $name was rebuilt since it started: restarting it"
            stop "$name"
        elif ! healthy "$name"; then
            echo "== $name does not answer its health check: restarting it"
            stop "$name"
        fi
    fi
done

# On the local cluster, Karpenter's kwok provider launches the instances: every NodeClaim names
# its one node class, in the zones its offerings cover (e2e/src/karpenter.rs).
NODE_CLASS_FLAGS=()
if [ "$LOCAL" = 1 ]; then
    NODE_CLASS_FLAGS=(--node-class karpenter.kwok.sh/KWOKNodeClass/default --zones us-east-1a,us-east-1b,us-east-1c)
fi
# The system namespace: the operator keeps the cluster's invoke key there (Secret lmi-invoke-key)
# and the router reads it, to call the EEs (whose sidecars refuse callers without the token).
kubectl create namespace lmi-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
if ! running lmi-operator; then
    start lmi-operator --sidecar-image localhost/lmi/lmi-sidecar:dev --no-leader-election \
        --metrics-addr 127.0.0.1:18081 --url-template "$URL_TEMPLATE" "${NODE_CLASS_FLAGS[@]}"
    echo "$CLUSTER_ID" >"$RUN_DIR/lmi-operator.cluster"
fi
if ! running lmi-router; then
    start lmi-router --listen "$ROUTER_ADDR" --system-namespace "$SYSTEM_NAMESPACE" \
        --url-listen "$URL_ADDR"
    echo "$CLUSTER_ID" >"$RUN_DIR/lmi-router.cluster"
fi
# A process that exits at start (a port taken, no cluster) is said here, not 3 minutes later.
for name in lmi-operator lmi-router; do
    for _ in $(seq 1 150); do
        healthy "$name" && break
        running "$name" || break
        sleep 0.2
    done
    if ! running "$name" || ! healthy "$name"; then
        echo "$name did not start; the end of $RUN_DIR/$name.log:" >&2
        tail -n 5 "$RUN_DIR/$name.log" >&2
        exit 1
    fi
done

# Callers must sign (the router's --auth on, as in the chart): a key for a local user, allowed by
# RBAC to invoke the functions of namespace default (docs/security.md).
echo "== access: an access key for user $LOCAL_USER, bound to ClusterRole lmi-invoker in namespace default"
kubectl create namespace "$SYSTEM_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f crds/yaml/lmi-invoker-clusterrole.yaml >/dev/null
if ! kubectl -n "$SYSTEM_NAMESPACE" get secret "$KEY_SECRET" >/dev/null 2>&1; then
    # The documented way to make a key (docs/security.md#access-keys): random id and secret.
    kubectl -n "$SYSTEM_NAMESPACE" create secret generic "$KEY_SECRET" --type=lmi.dev/access-key \
        --from-literal=accessKeyId="LMI$(od -An -N10 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)" \
        --from-literal=secretAccessKey="$(od -An -N30 -tx1 /dev/urandom | tr -d ' \n')" \
        --from-literal=user="$LOCAL_USER" >/dev/null
fi
kubectl create rolebinding "$LOCAL_USER-invoker" --clusterrole=lmi-invoker --user="$LOCAL_USER" \
    -n default --dry-run=client -o yaml | kubectl apply -f - >/dev/null
key_field() {
    kubectl -n "$SYSTEM_NAMESPACE" get secret "$KEY_SECRET" -o "jsonpath={.data.$1}" | base64 -d
}
# An AWS shared credentials file, so the AWS CLI and SDKs sign with the key (profile lmi).
umask 077
printf '[lmi]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
    "$(key_field accessKeyId)" "$(key_field secretAccessKey)" >"$CREDENTIALS"
umask 022

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
VENV=$(bash scripts/python-venv.sh)
export AWS_SHARED_CREDENTIALS_FILE="$CREDENTIALS" AWS_PROFILE=lmi AWS_DEFAULT_REGION=us-east-1
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
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
if [ -n "${LMI_NATS_URL:-}" ]; then
    # The router was started with the local cluster's NATS JetStream (LMI_NATS_URL): asynchronous
    # invocations are stored there and run in the background (docs/data-plane.md, "Event").
    echo "== an Event invocation: ${INVOKE[*]} --invocation-type Event"
    "${INVOKE[@]}" --invocation-type Event "$RUN_DIR/event-out.json"
fi
# Its function URL (the url section of examples/function-local.yaml), plain HTTP without an SDK.
FUNCTION_URL=$(kubectl get function "$FUNCTION" -n default -o jsonpath='{.status.url}')
if [ -n "$FUNCTION_URL" ]; then
    echo "== its function URL: curl ${FUNCTION_URL}plain?name=url"
    curl -fsS -m 10 "${FUNCTION_URL}plain?name=url" || {
        echo "the function URL did not answer: see $RUN_DIR/lmi-router.log" >&2
        exit 1
    }
    echo
fi
ENV_LINE=""
[ "$LOCAL" = 1 ] && ENV_LINE="eval \"\$($BIN/lmi-dev env)\""
cat <<MSG

The operator and the router run (logs in $RUN_DIR). Invoke again with:
  $ENV_LINE
  export AWS_SHARED_CREDENTIALS_FILE=$CREDENTIALS AWS_PROFILE=lmi AWS_DEFAULT_REGION=us-east-1
  $VENV/bin/aws lambda invoke --endpoint-url http://$ROUTER_ADDR --function-name $FUNCTION --payload '{"name": "you"}' out.json && cat out.json
or through its function URL (public: authType NONE): curl '${FUNCTION_URL}plain?name=you'
The router checks every call: the key in $CREDENTIALS (Secret $SYSTEM_NAMESPACE/$KEY_SECRET) acts
as user $LOCAL_USER, whom RoleBinding default/$LOCAL_USER-invoker lets invoke (docs/security.md).
See what runs with: kubectl get lmi; kubectl get pods -o wide
Stop everything with: bash scripts/run.sh down
MSG
