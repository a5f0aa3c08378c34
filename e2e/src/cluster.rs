//! `up`, `down` and `status` of the local cluster: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kwok, each a plain process on 127.0.0.1, a NATS server with JetStream beside
//! them ([`crate::nats`]), plus the real nodes (containerd and a kubelet each, and one kube-proxy;
//! see [`crate::node`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::certs::Pki;
use crate::crds;
use crate::error::{Error, Result};
use crate::gobuild::{self, Binaries};
use crate::health;
use crate::logs;
use crate::node;
use crate::paths::Paths;
use crate::process::{self, Tracked};
use crate::{gomod, versions};

/// Loopback ports. Away from the defaults (2379, 6443, 10257, ...) so that the local cluster does
/// not collide with another Kubernetes a developer may run, and below Linux's ephemeral range
/// (32768-60999): a port in that range can be taken at any moment by the local end of some
/// outgoing loopback connection, which made etcd fail to bind now and then.
pub mod ports {
    pub const ETCD_CLIENT: u16 = 12379;
    pub const ETCD_PEER: u16 = 12380;
    pub const APISERVER: u16 = 16443;
    pub const CONTROLLER_MANAGER: u16 = 11257;
    pub const SCHEDULER: u16 = 11259;
    pub const KWOK: u16 = 11080;
    /// NATS clients (default 4222) and its monitoring endpoint (`/healthz`, `/jsz`; default 8222),
    /// shifted like the others so that a developer's own NATS on the defaults does not collide.
    pub const NATS_CLIENT: u16 = 14222;
    pub const NATS_MONITOR: u16 = 18222;
}

/// The annotation that hands a node to kwok.
pub const KWOK_NODE_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");

/// Components in start order; `down` stops them in reverse.
pub const COMPONENTS: [&str; 20] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    crate::nats::COMPONENT,
    crate::karpenter::COMPONENT,
    "containerd",
    "kubelet",
    "containerd-2",
    "kubelet-2",
    "containerd-3",
    "kubelet-3",
    "containerd-4",
    "kubelet-4",
    // The Karpenter slots (`node::KARPENTER_SLOTS`): their kubelets come and go with Karpenter's
    // nodes (`crate::adopt`), and stop before their containerds.
    "containerd-5",
    "containerd-6",
    "kubelet-5",
    "kubelet-6",
    "kube-proxy",
];

/// How often a kubelet is started before its node counts as failed.
const KUBELET_STARTS: u32 = 5;

/// How long one component may take to become healthy.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Folder whose `*.yaml` CRDs are installed (missing or empty is fine).
    pub crd_dir: PathBuf,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            crd_dir: default_crd_dir(),
        }
    }
}

/// `crds/yaml` of the checkout this crate was built from.
pub fn default_crd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("crds")
        .join("yaml")
}

/// What `up` reports.
#[derive(Debug, Clone)]
pub struct Running {
    pub kubeconfig: PathBuf,
    pub already_running: bool,
    pub crds: Vec<String>,
}

/// An exclusive lock on the cluster state, held while starting or stopping, so that two test
/// binaries (or a test and a developer) never start two clusters on the same ports.
pub struct StateLock {
    _file: File,
}

impl StateLock {
    pub fn acquire(paths: &Paths) -> Result<Self> {
        let dir = paths.cluster_dir();
        std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
        let path = paths.lock_file();
        let file = File::create(&path).map_err(Error::io("creating", &path))?;
        file.lock().map_err(Error::io("locking", &path))?;
        Ok(StateLock { _file: file })
    }
}

/// Starts the cluster unless it already runs and is healthy; installs the CRDs either way.
pub async fn up(paths: &Paths, options: &UpOptions) -> Result<Running> {
    let _lock = StateLock::acquire(paths)?;
    let started = Instant::now();
    let binaries = gobuild::ensure_built(paths).await?;

    let already_running = is_healthy(paths).await;
    if already_running {
        info!("cluster already running");
    } else {
        // Whatever is left of an earlier, partial start goes first; its state with it.
        stop_all(paths).await;
        let _ = std::fs::remove_dir_all(paths.state_dir());
        if let Err(e) = start_all(paths, &binaries).await {
            warn!("start failed, stopping what was started");
            stop_all(paths).await;
            return Err(e);
        }
    }
    let client = crate::kubeconfig::client(&paths.kubeconfig()).await?;
    if already_running {
        // Instance types from a catalog this build no longer has: Karpenter reads them anew.
        let (_, changed) = crate::karpenter::write_instance_types(&paths.state_dir())?;
        if changed {
            info!("the instance types changed: restarting karpenter");
            if let Some(tracked) = process::tracked(&paths.pid_dir(), crate::karpenter::COMPONENT) {
                tracked.stop(Duration::from_secs(15)).await;
            }
            start_karpenter(paths, &binaries, &client).await?;
        }
    }
    let crds = crds::install_dir(&client, &options.crd_dir).await?;
    // Every `up`, not only the first: the images are keyed by content, so this rebuilds and
    // re-imports only what changed since (a new sidecar build, an edited example function).
    let images = crate::images::ensure_images(paths, &crate::harness::repo_root()).await?;
    for node in node::containerd_nodes() {
        crate::images::import_all(&images, &node.containerd_address()).await?;
    }
    info!(
        seconds = started.elapsed().as_secs_f32(),
        kubeconfig = %paths.kubeconfig().display(),
        crds = crds.len(),
        "cluster ready"
    );
    Ok(Running {
        kubeconfig: paths.kubeconfig(),
        already_running,
        crds,
    })
}

/// What the main job (`scripts/run.sh`) starts beside the cluster; `down` stops them too, or
/// they would keep calling a cluster that is gone (and a later run would find them "running").
/// (`lmi-simcloud` is the stand-in for Karpenter that older checkouts started.)
pub const MAIN_JOB_COMPONENTS: [&str; 3] = ["lmi-router", "lmi-operator", "lmi-simcloud"];

/// Stops every process `up` started, and the main job's, and removes the cluster state (the logs
/// stay).
pub async fn down(paths: &Paths) -> Result<()> {
    let _lock = StateLock::acquire(paths)?;
    let main_job = paths.main_job_dir();
    for component in MAIN_JOB_COMPONENTS {
        if let Some(tracked) = process::tracked(&main_job, component) {
            tracked.stop(Duration::from_secs(15)).await;
            info!(component, pid = tracked.pid, "stopped the main job's");
        }
        process::remove_pid_file(&main_job, component);
    }
    stop_all(paths).await;
    let state = paths.state_dir();
    if state.exists() {
        std::fs::remove_dir_all(&state).map_err(Error::io("removing", &state))?;
    }
    Ok(())
}

async fn stop_all(paths: &Paths) {
    let pid_dir = paths.pid_dir();
    for component in COMPONENTS.iter().rev() {
        if let Some(node) =
            node::containerd_nodes().find(|n| n.containerd_component() == *component)
        {
            // Its kubelet is gone by now; the containers it started would outlive containerd.
            node::kill_containers(node).await;
        }
        if let Some(tracked) = process::tracked(&pid_dir, component) {
            tracked.stop(Duration::from_secs(15)).await;
            info!(component, pid = tracked.pid, "stopped");
        }
        process::remove_pid_file(&pid_dir, component);
    }
}

/// One line per component, for `status`.
#[derive(Debug, Clone)]
pub struct ComponentStatus {
    pub component: &'static str,
    pub pid: Option<u32>,
    pub running: bool,
}

pub fn component_status(paths: &Paths) -> Vec<ComponentStatus> {
    COMPONENTS
        .iter()
        .map(|component| {
            let tracked = process::tracked(&paths.pid_dir(), component);
            ComponentStatus {
                component,
                pid: tracked.as_ref().map(|t| t.pid),
                running: tracked.as_ref().is_some_and(Tracked::is_running),
            }
        })
        .collect()
}

/// All processes run (but the Karpenter slots' kubelets, which run only while Karpenter has a
/// node for them) and the apiserver answers /readyz.
pub async fn is_healthy(paths: &Paths) -> bool {
    let on_demand: Vec<String> = node::KARPENTER_SLOTS
        .iter()
        .map(|n| n.kubelet_component())
        .collect();
    if !component_status(paths)
        .iter()
        .all(|s| s.running || on_demand.iter().any(|c| c == s.component))
    {
        return false;
    }
    let Ok(client) = crate::kubeconfig::client(&paths.kubeconfig()).await else {
        return false;
    };
    health::apiserver_ready(&client).await.is_ok()
}

/// Fails early, naming the component, when one of our ports is taken by something else.
fn check_ports_free(paths: &Paths) -> Result<()> {
    let wanted = [
        ("etcd", ports::ETCD_CLIENT),
        ("etcd", ports::ETCD_PEER),
        ("kube-apiserver", ports::APISERVER),
        ("kube-controller-manager", ports::CONTROLLER_MANAGER),
        ("kube-scheduler", ports::SCHEDULER),
        ("kwok", ports::KWOK),
        (crate::nats::COMPONENT, ports::NATS_CLIENT),
        (crate::nats::COMPONENT, ports::NATS_MONITOR),
        (crate::karpenter::COMPONENT, crate::karpenter::METRICS_PORT),
        (crate::karpenter::COMPONENT, crate::karpenter::HEALTH_PORT),
    ];
    for (component, port) in wanted {
        // Bound and dropped at once; the component binds it a moment later.
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            let log = log_path(paths, component);
            return Err(Error::Component {
                component: component.to_string(),
                message: format!(
                    "port 127.0.0.1:{port} is not free ({e}); is another cluster running? (`ss -ltnp | grep {port}`)"
                ),
                tail: logs::tail(&log, 5),
                log,
            });
        }
    }
    Ok(())
}

async fn start_all(paths: &Paths, binaries: &Binaries) -> Result<()> {
    check_ports_free(paths)?;
    let state = paths.state_dir();
    let log_dir = paths.log_dir();
    for dir in [&state, &log_dir] {
        std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    }
    let node_ip = node::node_ip()?;
    let pki = Pki::ensure(&paths.pki_dir(), &node_ip)?;
    let kubeconfig = paths.kubeconfig();
    let server = format!("https://127.0.0.1:{}", ports::APISERVER);
    crate::kubeconfig::write(&kubeconfig, &server, &pki)?;
    let etcd = start(paths, "etcd", &binaries.etcd, etcd_args(paths))?;
    wait(&etcd, paths, || health::etcd_healthy(ports::ETCD_CLIENT)).await?;

    let apiserver = start(
        paths,
        "kube-apiserver",
        &binaries.kube_apiserver,
        apiserver_args(&pki, &node_ip),
    )?;
    let client = crate::kubeconfig::client(&kubeconfig).await?;
    wait(&apiserver, paths, || health::apiserver_ready(&client)).await?;

    let kcm = start(
        paths,
        "kube-controller-manager",
        &binaries.kube_controller_manager,
        controller_manager_args(&kubeconfig, &pki),
    )?;
    let scheduler = start(
        paths,
        "kube-scheduler",
        &binaries.kube_scheduler,
        scheduler_args(&kubeconfig),
    )?;
    let kwok_config = state.join("kwok.yaml");
    let kwok_config_text = format!("{}{}", kwok_config_yaml(), kwok_pod_stages().await?);
    std::fs::write(&kwok_config, kwok_config_text).map_err(Error::io("writing", &kwok_config))?;
    let kwok = start(
        paths,
        "kwok",
        &binaries.kwok,
        kwok_args(&kubeconfig, &kwok_config),
    )?;

    wait(&kcm, paths, || {
        health::https_healthz(ports::CONTROLLER_MANAGER)
    })
    .await?;
    wait(&scheduler, paths, || {
        health::https_healthz(ports::SCHEDULER)
    })
    .await?;
    wait(&kwok, paths, || health::http_ok(ports::KWOK, "/healthz")).await?;
    // The service-account controller creating `default` proves the controller manager works
    // (pods cannot be created in a namespace without it).
    wait(&kcm, paths, || {
        health::service_account_exists(&client, "default", "default")
    })
    .await?;
    // After the control plane, before the nodes: nothing in the cluster needs it to start, and
    // the tests and the main job find it running once `up` returns. Its store is in the cluster
    // state, so `down` (and a restart of a broken cluster) empties it like etcd's data.
    crate::nats::write_config(&paths.nats_store_dir())?;
    let nats = start(
        paths,
        crate::nats::COMPONENT,
        &binaries.nats_server,
        crate::nats::server_args(
            ports::NATS_CLIENT,
            ports::NATS_MONITOR,
            &paths.nats_store_dir(),
            crate::nats::SERVER_NAME,
        ),
    )?;
    wait(&nats, paths, || crate::nats::healthy(ports::NATS_MONITOR)).await?;
    start_karpenter(paths, binaries, &client).await?;
    start_node(paths, binaries, &pki, &client).await
}

/// Karpenter's CRDs and the shared node class, then the controller, until it is ready (its
/// leader election won, its caches filled).
async fn start_karpenter(paths: &Paths, binaries: &Binaries, client: &kube::Client) -> Result<()> {
    crate::karpenter_crds::install(client).await?;
    crate::karpenter::ensure_node_class(client).await?;
    let (instance_types, _) = crate::karpenter::write_instance_types(&paths.state_dir())?;
    let log = log_path(paths, crate::karpenter::COMPONENT);
    info!(component = crate::karpenter::COMPONENT, log = %log.display(), "starting");
    let karpenter = process::spawn_with_env(
        crate::karpenter::COMPONENT,
        &binaries.karpenter,
        &crate::karpenter::args(&instance_types),
        &crate::karpenter::env(&paths.kubeconfig()),
        &log,
        &paths.pid_dir(),
    )?;
    wait(&karpenter, paths, crate::karpenter::healthy).await
}

/// Each node's containerd and then its kubelet, until the node is Ready; then kube-proxy. (`up`
/// imports the images next: a kubelet needs the pause image only once a pod comes.)
async fn start_node(
    paths: &Paths,
    binaries: &Binaries,
    pki: &Pki,
    client: &kube::Client,
) -> Result<()> {
    node::ensure_host_packages(paths).await?;
    for n in node::NODES {
        start_containerd(paths, n).await?;
        let args = node::kubelet_args(n, paths, &paths.kubeconfig(), &pki.ca_cert)?;
        let kubelet = start_kubelet(paths, &binaries.kubelet, n, args).await?;
        wait(&kubelet, paths, || node::node_ready(n, client)).await?;
    }
    // The Karpenter slots' kubelets start only when Karpenter makes their nodes.
    for n in node::KARPENTER_SLOTS {
        start_containerd(paths, n).await?;
    }
    // Services (the `kubernetes` one for in-cluster clients, the router's) on the nodes and host.
    let proxy = start(
        paths,
        "kube-proxy",
        &binaries.kube_proxy,
        node::kube_proxy_args(&paths.kubeconfig()),
    )?;
    wait(&proxy, paths, || {
        health::http_ok(node::KUBE_PROXY_HEALTHZ_PORT, "/healthz")
    })
    .await
}

async fn start_containerd(paths: &Paths, n: node::Node) -> Result<()> {
    let containerd = start(
        paths,
        &n.containerd_component(),
        &node::containerd_binary(),
        node::containerd_args(n, paths, crate::images::PAUSE_IMAGE)?,
    )?;
    wait(&containerd, paths, || node::containerd_ready(n)).await
}

/// Starts `n`'s kubelet with `args` and waits until it answers its health check. containerd
/// answers `ctr` before its CRI plugin serves ("server is not initialized yet"), and a kubelet
/// that meets that exits: it is started again, a few times, as systemd would.
pub async fn start_kubelet(
    paths: &Paths,
    binary: &Path,
    n: node::Node,
    args: Vec<String>,
) -> Result<Tracked> {
    let mut attempt = 1;
    loop {
        let kubelet = start(paths, &n.kubelet_component(), binary, args.clone())?;
        match wait(&kubelet, paths, || {
            health::http_ok(n.kubelet_healthz_port(), "/healthz")
        })
        .await
        {
            Ok(()) => return Ok(kubelet),
            Err(_) if attempt < KUBELET_STARTS && !kubelet.is_running() => {
                warn!(component = %kubelet.component, attempt, "exited during start-up; starting it again");
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn start(paths: &Paths, component: &str, binary: &Path, args: Vec<String>) -> Result<Tracked> {
    let log = log_path(paths, component);
    info!(component, log = %log.display(), "starting");
    process::spawn(component, binary, &args, &log, &paths.pid_dir())
}

pub fn log_path(paths: &Paths, component: &str) -> PathBuf {
    paths.log_dir().join(format!("{component}.log"))
}

/// Polls `check` until it succeeds; fails early, naming the component and showing its log, when
/// the process exits or the time runs out.
async fn wait<F, Fut>(tracked: &Tracked, paths: &Paths, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let log = log_path(paths, &tracked.component);
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    loop {
        if !tracked.is_running() {
            return Err(Error::Component {
                component: tracked.component.clone(),
                message: "exited during start-up".into(),
                tail: logs::tail(&log, 30),
                log,
            });
        }
        let last_error = match check().await {
            Ok(()) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            return Err(Error::Component {
                component: tracked.component.clone(),
                message: format!(
                    "not healthy after {}s (last check: {last_error})",
                    HEALTH_TIMEOUT.as_secs()
                ),
                tail: logs::tail(&log, 30),
                log,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn etcd_args(paths: &Paths) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", ports::ETCD_CLIENT);
    let peer = format!("http://127.0.0.1:{}", ports::ETCD_PEER);
    vec![
        "--name=lmi-dev".into(),
        format!("--data-dir={}", paths.etcd_data_dir().display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=lmi-dev={peer}"),
        // Throw-away data: fsync only slows tests down.
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

fn apiserver_args(pki: &Pki, node_ip: &str) -> Vec<String> {
    let p = |path: &PathBuf| path.display().to_string();
    vec![
        format!("--etcd-servers=http://127.0.0.1:{}", ports::ETCD_CLIENT),
        // On every address: the host's clients use 127.0.0.1, pods on the real node reach it as
        // the `kubernetes` service, whose endpoint is the advertised host address.
        "--bind-address=0.0.0.0".into(),
        format!("--advertise-address={node_ip}"),
        format!("--secure-port={}", ports::APISERVER),
        format!("--tls-cert-file={}", p(&pki.serving_cert)),
        format!("--tls-private-key-file={}", p(&pki.serving_key)),
        format!("--client-ca-file={}", p(&pki.ca_cert)),
        format!(
            "--service-account-key-file={}",
            p(&pki.service_account_public_key)
        ),
        format!(
            "--service-account-signing-key-file={}",
            p(&pki.service_account_key)
        ),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        "--authorization-mode=RBAC".into(),
        "--service-cluster-ip-range=10.96.0.0/16".into(),
        "--allow-privileged=true".into(),
        // `kubectl logs/exec` reach the kubelet by the node's address (no DNS for node names).
        "--kubelet-preferred-address-types=InternalIP".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ]
}

/// Only the controllers the operator and the tests rely on: garbage collection (owner references),
/// namespace deletion, service accounts and their tokens; node lifecycle (it lifts the
/// `node.kubernetes.io/not-ready` taint a new node is created with once kwok reports it Ready, and
/// taints nodes whose heartbeats stop); pod GC (deletes pods whose node is gone, which nothing else
/// would finish deleting once kwok no longer manages that node); plus the workload controllers a
/// chart's Deployments and its NATS StatefulSet need; and ClusterRole aggregation (the chart's
/// lmi-edit and lmi-view join Kubernetes' edit, admin and view roles).
const CONTROLLERS: &str = "clusterrole-aggregation-controller,garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,node-lifecycle-controller,pod-garbage-collector-controller,deployment-controller,replicaset-controller,statefulset-controller,endpointslice-controller";

fn controller_manager_args(kubeconfig: &Path, pki: &Pki) -> Vec<String> {
    let k = kubeconfig.display();
    vec![
        format!("--kubeconfig={k}"),
        format!("--authentication-kubeconfig={k}"),
        format!("--authorization-kubeconfig={k}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", ports::CONTROLLER_MANAGER),
        format!("--controllers={CONTROLLERS}"),
        format!(
            "--service-account-private-key-file={}",
            pki.service_account_key.display()
        ),
        format!("--root-ca-file={}", pki.ca_cert.display()),
        "--use-service-account-credentials=false".into(),
        // One instance only; leader election would just delay the start.
        "--leader-elect=false".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ]
}

fn scheduler_args(kubeconfig: &Path) -> Vec<String> {
    let k = kubeconfig.display();
    vec![
        format!("--kubeconfig={k}"),
        format!("--authentication-kubeconfig={k}"),
        format!("--authorization-kubeconfig={k}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", ports::SCHEDULER),
        "--leader-elect=false".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ]
}

/// kwok manages only nodes annotated `kwok.x-k8s.io/node=fake` and, through its default stages,
/// the pods bound to them (Pending -> Running, with a fake pod IP). Karpenter's kwok provider
/// annotates every node it makes; those of [`node::KUBELET_PROVIDER`] are left to a real kubelet
/// ([`crate::adopt`]).
///
/// One kwok stands in for the kubelets of every kwok node. Its default of 4 pod stages at a time
/// made it the bottleneck at 10,000 EEs: a new EE waited up to 109 s behind other pods' status
/// updates (docs/benchmarks.md). Each stage is one API request that mostly waits, so more of them
/// at once cost little CPU; a real node's kubelet handles only its own pods.
fn kwok_config_yaml() -> String {
    use lmi_crds::common::CAPACITY_PROVIDER_LABEL;
    use node::KUBELET_PROVIDER;
    format!(
        "apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  manageAllNodes: false
  manageNodesWithAnnotationSelector: {}={}
  manageNodesWithLabelSelector: {CAPACITY_PROVIDER_LABEL} notin ({KUBELET_PROVIDER})
  serverAddress: 127.0.0.1:{}
  cidr: 10.0.0.1/16
  nodeIP: 10.0.0.1
  podPlayStageParallelism: {KWOK_POD_STAGE_PARALLELISM}
  podsOnNodeSyncParallelism: {KWOK_POD_STAGE_PARALLELISM}
",
        KWOK_NODE_ANNOTATION.0,
        KWOK_NODE_ANNOTATION.1,
        ports::KWOK
    )
}

/// The function environment variable that delays, on kwok nodes, an EE pod's turning Ready (a Go
/// duration such as `3s`). kwok otherwise makes a pod Ready within milliseconds, too fast for a
/// test to see what happens while a replacement starts (consolidation must not drain the old EE
/// before the new one is Ready).
pub const KWOK_READY_DELAY_ENV: &str = "KWOK_READY_DELAY";

/// How many pod stages (and pod syncs after a node change) kwok plays at once; its default is 4 (1).
const KWOK_POD_STAGE_PARALLELISM: u32 = 32;

/// kwok's own fast pod stages (from its module, the version that is built), with one change: the
/// Ready stage waits for [`KWOK_READY_DELAY_ENV`] when a container of the pod sets it. Stages in the
/// configuration replace kwok's built-in pod stages, so all three are given.
async fn kwok_pod_stages() -> Result<String> {
    let module = gomod::download("sigs.k8s.io/kwok", versions::KWOK).await?;
    let dir = module.dir.join("kustomize/stage/pod/fast");
    let mut stages = String::new();
    for name in ["pod-ready.yaml", "pod-complete.yaml", "pod-delete.yaml"] {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(Error::io("reading", &path))?;
        let text = if name == "pod-ready.yaml" {
            with_ready_delay(&text)?
        } else {
            text
        };
        stages.push_str("---\n");
        stages.push_str(&text);
        if !text.ends_with('\n') {
            stages.push('\n');
        }
    }
    Ok(stages)
}

/// Adds the delay to kwok's pod-ready stage: none unless a container sets the variable.
fn with_ready_delay(stage: &str) -> Result<String> {
    let delay = format!(
        "spec:
  delay:
    durationMilliseconds: 0
    durationFrom:
      jq:
        expression: '.spec.containers[].env[]? | select(.name == \"{KWOK_READY_DELAY_ENV}\") | .value'
"
    );
    match stage.split_once("\nspec:\n") {
        Some((head, rest)) => Ok(format!("{head}\n{delay}{rest}")),
        None => Err(Error::Other(
            "kwok's pod-ready stage has no `spec:` line to add the delay to".to_string(),
        )),
    }
}

fn kwok_args(kubeconfig: &Path, config: &Path) -> Vec<String> {
    vec![
        format!("--config={}", config.display()),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!(
            "--manage-nodes-with-annotation-selector={}={}",
            KWOK_NODE_ANNOTATION.0, KWOK_NODE_ANNOTATION.1
        ),
        format!(
            "--manage-nodes-with-label-selector={} notin ({})",
            lmi_crds::common::CAPACITY_PROVIDER_LABEL,
            node::KUBELET_PROVIDER
        ),
        format!("--server-address=127.0.0.1:{}", ports::KWOK),
        // kwok renews a Lease per node, the heartbeat the node-lifecycle controller watches:
        // without it every kwok node turns Unknown after the grace period and its pods NotReady.
        "--node-lease-duration-seconds=40".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_real_node_is_a_component_that_down_stops() {
        for node in node::containerd_nodes() {
            for component in [node.containerd_component(), node.kubelet_component()] {
                assert!(COMPONENTS.contains(&component.as_str()), "{component}");
            }
        }
    }

    #[test]
    fn the_ready_stage_gets_a_delay_read_from_the_pods_environment() {
        let stage =
            "kind: Stage\nmetadata:\n  name: pod-ready\nspec:\n  resourceRef:\n    kind: Pod\n";
        let patched = with_ready_delay(stage).expect("has a spec line");
        assert!(
            patched.starts_with("kind: Stage\nmetadata:\n  name: pod-ready\nspec:\n  delay:\n")
        );
        assert!(patched.contains(KWOK_READY_DELAY_ENV));
        assert!(patched.ends_with("  resourceRef:\n    kind: Pod\n"));
        assert!(with_ready_delay("kind: Stage\n").is_err());
    }
}
