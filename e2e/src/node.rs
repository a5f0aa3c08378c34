//! The local cluster's real nodes: containerd and runc from Debian, a bridge network from
//! Debian's CNI plugins, and a kubelet built from the pinned Kubernetes module, four times.
//!
//! kwok nodes run nothing; these nodes run execution-environment pods for real, so the README's
//! main job and the end-to-end tests of the data plane and the autoscaler can invoke functions.
//! Four of them ([`NODES`]), in two pools of two, so that the tests never compete with the main
//! job. The machine's 2 cores give each node room for one EE of 1 vCPU, and scaling out, spreading
//! over zones and routing to a second EE need two nodes:
//!
//! - `lmi-node` and `lmi-node-2` (zones local-a, local-b) are the main job's and the user's: they
//!   carry the labels the Static example provider selects (`examples/capacity-provider-static.yaml`,
//!   provider `local`) and a taint only that provider's EEs tolerate (the example function and the
//!   Rust example beside it). The chart's pods (`charts/lmi/ci/local-values.yaml`) go to
//!   `lmi-node`.
//! - `lmi-node-3` and `lmi-node-4` (local-c, local-d) are the tests': the pool `e2e` and the taint
//!   of the tests' own Static provider `e2e-local`.
//!
//! Each has its own containerd (a kubelet garbage-collects every container its runtime shows), its
//! own bridge and address range, and its own cgroup root.
//!
//! Pod addresses come from host-local ranges on bridges whose gateway addresses are on the host:
//! the router and the tests, running on the host, reach every pod directly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::logs;
use crate::paths::Paths;

/// The pool label of the nodes (a Static provider's selector), beside the well-known labels
/// Karpenter would set on an EC2 instance (`kubernetes.io/arch` comes from the kubelet).
pub const NODE_POOL_KEY: &str = "lmi.dev/pool";
/// The main job's node: what `examples/capacity-provider-static.yaml` selects.
pub const MAIN_POOL: &str = "functions";
/// The capacity provider whose EEs may run on the main job's node (its taint's value): the Static
/// example's name.
pub const MAIN_CAPACITY_PROVIDER: &str = "local";
/// The tests' nodes, and their own Static provider (the same as the example, but for its name
/// and selector), so that tests never touch the main job's provider.
pub const TEST_POOL: &str = "e2e";
pub const TEST_CAPACITY_PROVIDER: &str = "e2e-local";
pub const NODE_INSTANCE_TYPE: &str = "local";
pub const KUBE_PROXY_HEALTHZ_PORT: u16 = 11256;
pub const KUBE_PROXY_METRICS_PORT: u16 = 11249;
/// Where Debian's `containernetworking-plugins` installs the plugins.
const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// Debian packages the nodes need; installed by `up` when missing (it runs as root here).
/// `skopeo` and `docker-registry` (Distribution) are for the test that pushes the product's images
/// to a registry and pulls them back.
const HOST_PACKAGES: [&str; 8] = [
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "conntrack",
    "debootstrap",
    "skopeo",
    "docker-registry",
];

/// The real nodes, in start order: the main job's two, then the tests' two.
pub const NODES: [Node; 4] = [
    Node { index: 0 },
    Node { index: 1 },
    Node { index: 2 },
    Node { index: 3 },
];

/// The tests' nodes (pool [`TEST_POOL`]).
pub const TEST_NODES: [Node; 2] = [Node { index: 2 }, Node { index: 3 }];

/// Kubelet slots for nodes that real Karpenter launches: a containerd each (started by `up`, with
/// the images imported), whose kubelet starts only when a Karpenter node of
/// [`KUBELET_PROVIDER`] appears, registering under that node's name ([`crate::adopt`]). Two: one
/// instance and its replacement.
pub const KARPENTER_SLOTS: [Node; 2] = [Node { index: 4 }, Node { index: 5 }];

/// Every node with a containerd of its own: the fixed nodes and the Karpenter slots (`up` starts
/// them all and imports the images into each; `down` stops them all).
pub fn containerd_nodes() -> impl Iterator<Item = Node> {
    NODES.into_iter().chain(KARPENTER_SLOTS)
}

/// The capacity provider whose Karpenter-launched nodes get a real kubelet instead of kwok (the
/// local cluster's kwok leaves nodes with this provider's label alone): the tests' way to run real
/// EEs on instances that Karpenter launches, replaces and deletes.
pub const KUBELET_PROVIDER: &str = "e2e-kubelets";

/// The first node, the main job's: the chart's pods go there (`charts/lmi/ci/local-values.yaml`).
pub const NODE_NAME: &str = "lmi-node";

/// One real node; everything of node 0 is named as when there was only one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    index: u8,
}

impl Node {
    /// "" for the first node, "-2" for the second: appended to every name and path.
    fn suffix(self) -> String {
        match self.index {
            0 => String::new(),
            i => format!("-{}", i + 1),
        }
    }

    /// The pool label's value and the capacity provider whose EEs the node's taint admits.
    pub fn pool(self) -> (&'static str, &'static str) {
        match self.index {
            0 | 1 => (MAIN_POOL, MAIN_CAPACITY_PROVIDER),
            _ => (TEST_POOL, TEST_CAPACITY_PROVIDER),
        }
    }

    /// The name the kubelet registers.
    pub fn name(self) -> String {
        format!("{NODE_NAME}{}", self.suffix())
    }

    pub fn zone(self) -> String {
        format!("local-{}", char::from(b'a' + self.index))
    }

    /// Component names for the pid files and logs.
    pub fn containerd_component(self) -> String {
        format!("containerd{}", self.suffix())
    }

    pub fn kubelet_component(self) -> String {
        format!("kubelet{}", self.suffix())
    }

    /// Pod network: a Linux bridge with the gateway address on the host.
    pub fn bridge(self) -> String {
        format!("lmi{}", self.index)
    }

    pub fn pod_subnet(self) -> String {
        format!("10.{}.0.0/16", 88 + u16::from(self.index))
    }

    /// Away from the kubelet's defaults (10250, 10248) like the control plane's ports.
    pub fn kubelet_port(self) -> u16 {
        11250 + 10 * u16::from(self.index)
    }

    pub fn kubelet_healthz_port(self) -> u16 {
        11248 + 10 * u16::from(self.index)
    }

    /// Each kubelet's pods under a cgroup of their own (the first keeps the default, `/`).
    fn cgroup_root(self) -> String {
        match self.index {
            0 => "/".to_string(),
            _ => format!("/{}", self.name()),
        }
    }

    /// Runtime state lives on tmpfs (`/run`) like a real node's: sockets, CNI leases, netns.
    pub fn containerd_state_dir(self) -> PathBuf {
        PathBuf::from(format!("/run/lmi/containerd{}", self.suffix()))
    }

    /// The socket the kubelet, `ctr` and the image import talk to.
    pub fn containerd_address(self) -> PathBuf {
        self.containerd_state_dir().join("containerd.sock")
    }

    fn cni_data_dir(self) -> String {
        format!("/run/lmi/cni{}", self.suffix())
    }

    /// containerd's content store and snapshots: kept across `down` and `up` (outside the
    /// cluster state), so imported images survive a restart and a second `up` imports nothing.
    pub fn containerd_root(self, paths: &Paths) -> PathBuf {
        paths
            .root()
            .join(format!("node{}", self.suffix()))
            .join("containerd")
    }

    /// The kubelet's root directory (pod volumes, its serving certificate).
    pub fn kubelet_root(self, paths: &Paths) -> PathBuf {
        paths
            .root()
            .join(format!("node{}", self.suffix()))
            .join("kubelet")
    }

    fn config_dir(self, paths: &Paths) -> PathBuf {
        paths.state_dir().join(format!("node{}", self.suffix()))
    }

    fn cni_conf_dir(self, paths: &Paths) -> PathBuf {
        self.config_dir(paths).join("net.d")
    }
}

/// Installs the Debian packages the node needs when one of their programs is missing.
pub async fn ensure_host_packages(paths: &Paths) -> Result<()> {
    let missing = [
        "containerd",
        "runc",
        "ctr",
        "iptables",
        "conntrack",
        "debootstrap",
        "skopeo",
        "docker-registry",
    ]
    .iter()
    .any(|program| !on_path(program))
        || !Path::new(CNI_BIN_DIR).join("bridge").is_file();
    if !missing {
        return Ok(());
    }
    let log = paths.log_dir().join("apt-get.log");
    logs::truncate(&log)?;
    info!(packages = ?HOST_PACKAGES, log = %log.display(), "installing the node's Debian packages");
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(HOST_PACKAGES);
    // A fresh machine may have no package lists yet: update once if the first try fails.
    if apt_get(&install, &log).await.is_err() {
        apt_get(&["update"], &log).await?;
        apt_get(&install, &log).await?;
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    find_on_path(program).is_some()
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// containerd's absolute path: the pid file records it, and a tracked process is recognised by
/// its command line starting with it.
pub fn containerd_binary() -> PathBuf {
    find_on_path("containerd").unwrap_or_else(|| PathBuf::from("/usr/bin/containerd"))
}

/// containerd answers on its socket.
pub async fn containerd_ready(node: Node) -> Result<()> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(node.containerd_address())
        .arg("version")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(Error::io("running", Path::new("ctr")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "ctr version: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The node is registered and Ready (its CNI network configured, the runtime answering).
pub async fn node_ready(node: Node, client: &kube::Client) -> Result<()> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let name = node.name();
    let node = nodes.get(&name).await?;
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready {
        Ok(())
    } else {
        Err(Error::Other(format!("node {name} is not Ready yet")))
    }
}

async fn apt_get(args: &[&str], log: &Path) -> Result<()> {
    let mut cmd = Command::new("apt-get");
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    logs::run_logged("apt-get", log, &mut cmd).await
}

/// Writes containerd's configuration and returns the arguments that start it.
pub fn containerd_args(node: Node, paths: &Paths, pause_image: &str) -> Result<Vec<String>> {
    let dir = node.config_dir(paths);
    let net_d = node.cni_conf_dir(paths);
    for d in [&dir, &net_d] {
        std::fs::create_dir_all(d).map_err(Error::io("creating", d))?;
    }
    let config = dir.join("containerd.toml");
    let toml = containerd_config(node, paths, pause_image);
    std::fs::write(&config, toml).map_err(Error::io("writing", &config))?;
    let conflist = net_d.join("10-lmi-bridge.conflist");
    std::fs::write(&conflist, cni_conflist(node)).map_err(Error::io("writing", &conflist))?;
    Ok(vec![format!("--config={}", config.display())])
}

fn containerd_config(node: Node, paths: &Paths, pause_image: &str) -> String {
    let state = node.containerd_state_dir();
    format!(
        r#"# Written by lmi-dev (e2e/src/node.rs).
version = 2
root = "{root}"
state = "{state}"

[grpc]
  address = "{address}"

[plugins."io.containerd.grpc.v1.cri"]
  # Built and imported by lmi-dev: there is no registry to pull it from.
  sandbox_image = "{pause_image}"
  # A random loopback port for exec/attach streams, so no fixed port can collide.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # This machine lets no process lower its OOM score (the kubelet asks -997 for Guaranteed pods):
  # clamp to containerd's own score instead of failing every container.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # No systemd here: the kubelet uses the cgroupfs driver (cgroup v1).
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{net_d}"
"#,
        root = node.containerd_root(paths).display(),
        state = state.display(),
        address = node.containerd_address().display(),
        cni_bin = CNI_BIN_DIR,
        net_d = node.cni_conf_dir(paths).display(),
    )
}

/// A bridge with the gateway on the host (so the host reaches pods), masquerading for traffic
/// leaving the pod range, host-local addresses whose leases live on tmpfs.
fn cni_conflist(node: Node) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": format!("lmi{}", node.suffix()),
        "plugins": [{
            "type": "bridge",
            "bridge": node.bridge(),
            "isGateway": true,
            "ipMasq": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": node.pod_subnet()}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": node.cni_data_dir(),
            },
        }],
    })
    .to_string()
}

/// Writes the kubelet's configuration file and returns its arguments.
pub fn kubelet_args(
    node: Node,
    paths: &Paths,
    kubeconfig: &Path,
    ca_cert: &Path,
) -> Result<Vec<String>> {
    let root = node.kubelet_root(paths);
    let mut args = common_kubelet_args(node, paths, kubeconfig, ca_cert, &root, &node.name())?;
    let zone = node.zone();
    let (pool, capacity_provider) = node.pool();
    args.extend([
        format!(
            "--node-labels={NODE_POOL_KEY}={pool},topology.kubernetes.io/zone={zone},node.kubernetes.io/instance-type={NODE_INSTANCE_TYPE}"
        ),
        format!(
            "--register-with-taints={}={capacity_provider}:NoSchedule",
            lmi_crds::common::CAPACITY_PROVIDER_LABEL
        ),
    ]);
    Ok(args)
}

/// A kubelet in `slot` for the Node `name` that Karpenter's kwok provider created: it finds the
/// Node there and takes it over (its labels, taints and provider ID stay Karpenter's), then reports
/// it Ready as an EC2 instance's kubelet would. Each node gets a root directory of its own.
pub fn adopting_kubelet_args(
    slot: Node,
    name: &str,
    paths: &Paths,
    kubeconfig: &Path,
    ca_cert: &Path,
) -> Result<Vec<String>> {
    let root = slot.kubelet_root(paths).join(name);
    common_kubelet_args(slot, paths, kubeconfig, ca_cert, &root, name)
}

fn common_kubelet_args(
    node: Node,
    paths: &Paths,
    kubeconfig: &Path,
    ca_cert: &Path,
    root: &Path,
    name: &str,
) -> Result<Vec<String>> {
    let dir = node.config_dir(paths);
    std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
    std::fs::create_dir_all(root).map_err(Error::io("creating", root))?;
    ensure_cgroup_root(node)?;
    let config = dir.join("kubelet.yaml");
    std::fs::write(&config, kubelet_config(node, ca_cert))
        .map_err(Error::io("writing", &config))?;
    let node_ip = node_ip()?;
    Ok(vec![
        format!("--config={}", config.display()),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--root-dir={}", root.display()),
        format!("--hostname-override={name}"),
        format!("--node-ip={node_ip}"),
        "--v=1".into(),
    ])
}

/// kube-proxy in iptables mode: ClusterIPs work from pods and from the host.
pub fn kube_proxy_args(kubeconfig: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        // One kube-proxy serves the host and both nodes: they share its network namespace.
        format!("--hostname-override={NODE_NAME}"),
        "--proxy-mode=iptables".into(),
        "--cluster-cidr=10.88.0.0/14".into(),
        format!("--healthz-bind-address=127.0.0.1:{KUBE_PROXY_HEALTHZ_PORT}"),
        format!("--metrics-bind-address=127.0.0.1:{KUBE_PROXY_METRICS_PORT}"),
        // Leave the host's conntrack table size alone (it is not ours to tune, and may be
        // read-only here).
        "--conntrack-max-per-core=0".into(),
        "--v=1".into(),
    ]
}

fn kubelet_config(node: Node, ca_cert: &Path) -> String {
    format!(
        r#"# Written by lmi-dev (e2e/src/node.rs).
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://{address}
# This machine has cgroup v1 and no systemd; Kubernetes 1.35+ refuses cgroup v1 unless told.
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
failCgroupV1: false
failSwapOn: false
port: {port}
healthzPort: {healthz}
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
# The apiserver calls the kubelet (logs, exec) without a client certificate: a local, single-user
# cluster, so anonymous requests are allowed.
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
  x509:
    clientCAFile: {ca}
authorization:
  mode: AlwaysAllow
# The host's disk is shared with everything else on it: evict only when really full, and never
# garbage-collect the imported images (there is no registry to pull them again from).
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
registerNode: true
maxPods: 110
"#,
        address = node.containerd_address().display(),
        cgroup_root = node.cgroup_root(),
        port = node.kubelet_port(),
        healthz = node.kubelet_healthz_port(),
        ca = ca_cert.display(),
    )
}

/// The host's first global IPv4 address: the kubelet refuses a loopback node address.
pub fn node_ip() -> Result<String> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .map_err(Error::io("running", Path::new("ip")))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // "2: eth0    inet 192.0.2.2/24 brd ..." (the pod bridges are skipped: they come and go)
        .filter(|line| !NODES.iter().any(|n| line.contains(&n.bridge())))
        .find_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next()?.split('/').next().map(str::to_string)
        })
        .ok_or_else(|| Error::Component {
            component: "kubelet".into(),
            message: "the host has no global IPv4 address for the node".into(),
            log: PathBuf::new(),
            tail: String::new(),
        })
}

/// Kills every container the node's containerd still runs (the kubelet is stopped first), so
/// `down` leaves no function processes behind.
pub async fn kill_containers(node: Node) {
    let address = node.containerd_address();
    if !address.exists() {
        return;
    }
    let ctr = |args: &[&str]| {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&address)
            .args(["-n", "k8s.io"])
            .args(args)
            .stdin(std::process::Stdio::null());
        c
    };
    let tasks = match ctr(&["tasks", "ls", "-q"]).output().await {
        Ok(out) => String::from_utf8_lossy(&out.stdout).to_string(),
        Err(e) => {
            warn!("ctr: {e}");
            return;
        }
    };
    for id in tasks.lines().filter(|l| !l.trim().is_empty()) {
        let _ = ctr(&["tasks", "kill", "-s", "SIGKILL", id]).output().await;
    }
    for id in tasks.lines().filter(|l| !l.trim().is_empty()) {
        // The kill is asynchronous; give each task a moment before deleting it.
        for _ in 0..20 {
            match ctr(&["tasks", "delete", id]).output().await {
                Ok(out) if out.status.success() => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    let containers = match ctr(&["containers", "ls", "-q"]).output().await {
        Ok(out) => String::from_utf8_lossy(&out.stdout).to_string(),
        Err(_) => String::new(),
    };
    for id in containers.lines().filter(|l| !l.trim().is_empty()) {
        let _ = ctr(&["containers", "delete", id]).output().await;
    }
}

/// The kubelet checks that its cgroup root exists in every controller's hierarchy: make it (on
/// cgroup v1, as here, in each hierarchy, giving its cpuset the parent's CPUs and memory nodes:
/// an empty cpuset admits no process).
fn ensure_cgroup_root(node: Node) -> Result<()> {
    let root = node.cgroup_root();
    let relative = root.trim_start_matches('/');
    if relative.is_empty() {
        return Ok(());
    }
    let mount = Path::new(CGROUP_MOUNT);
    if mount.join("cgroup.controllers").is_file() {
        // cgroup v2 (one unified hierarchy): one directory is the whole cgroup root.
        let path = mount.join(relative);
        return std::fs::create_dir_all(&path).map_err(Error::io("creating", &path));
    }
    let hierarchies = std::fs::read_dir(mount).map_err(Error::io("reading", mount))?;
    for hierarchy in hierarchies.flatten() {
        let dir = hierarchy.path();
        // cgroup v2's hierarchy ("unified") is empty here; the kubelet ignores it on v1.
        if hierarchy.file_name() == "unified" || !dir.join("cgroup.procs").is_file() {
            continue;
        }
        let path = dir.join(relative);
        std::fs::create_dir_all(&path).map_err(Error::io("creating", &path))?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let (parent, child) = (dir.join(file), path.join(file));
            if parent.is_file()
                && std::fs::read_to_string(&child).is_ok_and(|c| c.trim().is_empty())
            {
                let value =
                    std::fs::read_to_string(&parent).map_err(Error::io("reading", &parent))?;
                std::fs::write(&child, value.trim()).map_err(Error::io("writing", &child))?;
            }
        }
    }
    Ok(())
}

const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_config_is_a_bridge_with_host_local_addresses() {
        for node in NODES {
            let v: serde_json::Value = serde_json::from_str(&cni_conflist(node)).unwrap();
            let bridge = &v["plugins"][0];
            assert_eq!(bridge["type"], "bridge");
            assert_eq!(bridge["bridge"], node.bridge());
            assert_eq!(bridge["isGateway"], true);
            assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], node.pod_subnet());
        }
    }

    #[test]
    fn kubelet_config_allows_cgroup_v1_and_names_the_runtime() {
        let yaml = kubelet_config(NODES[1], Path::new("/ca.crt"));
        let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(v["failCgroupV1"], serde_yaml::Value::Bool(false));
        assert_eq!(v["cgroupDriver"], "cgroupfs");
        assert_eq!(
            v["containerRuntimeEndpoint"].as_str().unwrap(),
            format!("unix://{}", NODES[1].containerd_address().display())
        );
        assert_eq!(v["port"].as_u64(), Some(11260));
        assert_eq!(v["cgroupRoot"], "/lmi-node-2");
    }
}

#[cfg(test)]
mod naming_tests {
    use super::*;

    #[test]
    fn the_first_node_keeps_the_single_node_names_and_the_others_differ_everywhere() {
        let [a, b, c, d] = NODES;
        assert_eq!(TEST_NODES, [c, d]);
        assert_eq!(a.pool(), ("functions", "local"));
        assert_eq!(a.pool(), b.pool());
        assert_eq!(c.pool(), d.pool());
        assert_ne!(a.pool(), c.pool());
        assert_eq!(
            (d.name(), d.zone(), d.bridge(), d.pod_subnet()),
            (
                "lmi-node-4".into(),
                "local-d".into(),
                "lmi3".into(),
                "10.91.0.0/16".into()
            )
        );
        assert_ne!(c.kubelet_port(), d.kubelet_port());
        assert_eq!(
            (a.name(), a.zone(), a.bridge()),
            ("lmi-node".into(), "local-a".into(), "lmi0".into())
        );
        assert_eq!(
            (b.name(), b.zone(), b.bridge()),
            ("lmi-node-2".into(), "local-b".into(), "lmi1".into())
        );
        assert_eq!(
            a.containerd_address(),
            PathBuf::from("/run/lmi/containerd/containerd.sock")
        );
        assert_ne!(a.containerd_address(), b.containerd_address());
        assert_ne!(a.pod_subnet(), b.pod_subnet());
        assert_ne!(a.kubelet_healthz_port(), b.kubelet_healthz_port());
        assert_eq!(a.cgroup_root(), "/");
    }
}
