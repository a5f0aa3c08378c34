//! The local cluster's one real node: containerd and runc from Debian, a bridge network from
//! Debian's CNI plugins, and a kubelet built from the pinned Kubernetes module.
//!
//! kwok nodes run nothing; this node runs execution-environment pods for real, so the README's main
//! job and the end-to-end tests of the data plane and the autoscaler can invoke functions. It is
//! registered as [`NODE_NAME`] with the labels a Static capacity provider selects
//! (`examples/capacity-provider-static.yaml`) and a taint only that provider's EEs tolerate, so
//! that nothing else the tests create is ever scheduled onto it.
//!
//! Pod addresses come from a host-local range on the bridge [`BRIDGE`], whose gateway address is
//! on the host: the router and the tests, running on the host, reach every pod directly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::logs;
use crate::paths::Paths;

/// Name the kubelet registers.
pub const NODE_NAME: &str = "lmi-node";
/// Labels of the node: what `examples/capacity-provider-static.yaml` selects, plus the well-known
/// labels Karpenter would set on an EC2 instance (zone, instance type, architecture come from the
/// kubelet itself for `kubernetes.io/arch`).
pub const NODE_POOL_LABEL: (&str, &str) = ("lmi.dev/pool", "functions");
pub const NODE_ZONE: &str = "local-a";
pub const NODE_INSTANCE_TYPE: &str = "local";
/// The capacity provider whose EEs may run here (the taint's value): the Static example's name.
pub const NODE_CAPACITY_PROVIDER: &str = "local";
/// Pod network: a Linux bridge with the gateway address on the host.
pub const BRIDGE: &str = "lmi0";
pub const POD_SUBNET: &str = "10.88.0.0/16";
/// Away from the kubelet's defaults (10250, 10248) like the control plane's ports.
pub const KUBELET_PORT: u16 = 11250;
pub const KUBELET_HEALTHZ_PORT: u16 = 11248;
pub const KUBE_PROXY_HEALTHZ_PORT: u16 = 11256;
pub const KUBE_PROXY_METRICS_PORT: u16 = 11249;
/// Where Debian's `containernetworking-plugins` installs the plugins.
const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// Debian packages the node needs; installed by `up` when missing (it runs as root here).
const HOST_PACKAGES: [&str; 6] = [
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "conntrack",
    "debootstrap",
];

/// Runtime state lives on tmpfs (`/run`) like a real node's: sockets, CNI address leases, netns.
pub fn containerd_state_dir() -> PathBuf {
    PathBuf::from("/run/lmi/containerd")
}

/// The socket the kubelet, `ctr` and the image import talk to.
pub fn containerd_address() -> PathBuf {
    containerd_state_dir().join("containerd.sock")
}

/// containerd's content store and snapshots: kept across `down` and `up` (outside the cluster
/// state), so imported images survive a restart and a second `up` imports nothing.
pub fn containerd_root(paths: &Paths) -> PathBuf {
    paths.root().join("node").join("containerd")
}

/// The kubelet's root directory (pod volumes, its serving certificate).
pub fn kubelet_root(paths: &Paths) -> PathBuf {
    paths.root().join("node").join("kubelet")
}

fn node_config_dir(paths: &Paths) -> PathBuf {
    paths.state_dir().join("node")
}

fn cni_conf_dir(paths: &Paths) -> PathBuf {
    node_config_dir(paths).join("net.d")
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
    if run_logged("apt-get", &install, &log).await.is_err() {
        run_logged("apt-get", &["update"], &log).await?;
        run_logged("apt-get", &install, &log).await?;
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
pub async fn containerd_ready() -> Result<()> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(containerd_address())
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
pub async fn node_ready(client: &kube::Client) -> Result<()> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let node = nodes.get(NODE_NAME).await?;
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready {
        Ok(())
    } else {
        Err(Error::Other(format!("node {NODE_NAME} is not Ready yet")))
    }
}

async fn run_logged(program: &str, args: &[&str], log: &Path) -> Result<()> {
    logs::append_line(log, &format!("$ {program} {}", args.join(" ")))?;
    let out = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(Error::io("running", Path::new(program)))?;
    logs::append_line(log, &String::from_utf8_lossy(&out.stdout))?;
    logs::append_line(log, &String::from_utf8_lossy(&out.stderr))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Component {
            component: program.to_string(),
            message: format!("`{program} {}` exited with {}", args.join(" "), out.status),
            tail: logs::tail(log, 20),
            log: log.to_path_buf(),
        })
    }
}

/// Writes containerd's configuration and returns the arguments that start it.
pub fn containerd_args(paths: &Paths, pause_image: &str) -> Result<Vec<String>> {
    let dir = node_config_dir(paths);
    let net_d = cni_conf_dir(paths);
    for d in [&dir, &net_d] {
        std::fs::create_dir_all(d).map_err(Error::io("creating", d))?;
    }
    let config = dir.join("containerd.toml");
    let toml = containerd_config(paths, pause_image);
    std::fs::write(&config, toml).map_err(Error::io("writing", &config))?;
    let conflist = net_d.join("10-lmi-bridge.conflist");
    std::fs::write(&conflist, cni_conflist()).map_err(Error::io("writing", &conflist))?;
    Ok(vec![format!("--config={}", config.display())])
}

fn containerd_config(paths: &Paths, pause_image: &str) -> String {
    let state = containerd_state_dir();
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
        root = containerd_root(paths).display(),
        state = state.display(),
        address = containerd_address().display(),
        cni_bin = CNI_BIN_DIR,
        net_d = cni_conf_dir(paths).display(),
    )
}

/// A bridge with the gateway on the host (so the host reaches pods), masquerading for traffic
/// leaving the pod range, host-local addresses whose leases live on tmpfs.
fn cni_conflist() -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "lmi",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "ipMasq": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": "/run/lmi/cni",
            },
        }],
    })
    .to_string()
}

/// Writes the kubelet's configuration file and returns its arguments.
pub fn kubelet_args(paths: &Paths, kubeconfig: &Path, ca_cert: &Path) -> Result<Vec<String>> {
    let dir = node_config_dir(paths);
    std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
    let root = kubelet_root(paths);
    std::fs::create_dir_all(&root).map_err(Error::io("creating", &root))?;
    let config = dir.join("kubelet.yaml");
    std::fs::write(&config, kubelet_config(ca_cert)).map_err(Error::io("writing", &config))?;
    let node_ip = node_ip()?;
    Ok(vec![
        format!("--config={}", config.display()),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--root-dir={}", root.display()),
        format!("--hostname-override={NODE_NAME}"),
        format!("--node-ip={node_ip}"),
        format!(
            "--node-labels={}={},topology.kubernetes.io/zone={NODE_ZONE},node.kubernetes.io/instance-type={NODE_INSTANCE_TYPE}",
            NODE_POOL_LABEL.0, NODE_POOL_LABEL.1
        ),
        format!(
            "--register-with-taints={}={NODE_CAPACITY_PROVIDER}:NoSchedule",
            lmi_crds::common::CAPACITY_PROVIDER_LABEL
        ),
        "--v=1".into(),
    ])
}

/// kube-proxy in iptables mode: ClusterIPs work from pods and from the host.
pub fn kube_proxy_args(kubeconfig: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--hostname-override={NODE_NAME}"),
        "--proxy-mode=iptables".into(),
        format!("--cluster-cidr={POD_SUBNET}"),
        format!("--healthz-bind-address=127.0.0.1:{KUBE_PROXY_HEALTHZ_PORT}"),
        format!("--metrics-bind-address=127.0.0.1:{KUBE_PROXY_METRICS_PORT}"),
        // Leave the host's conntrack table size alone (it is not ours to tune, and may be
        // read-only here).
        "--conntrack-max-per-core=0".into(),
        "--v=1".into(),
    ]
}

fn kubelet_config(ca_cert: &Path) -> String {
    format!(
        r#"# Written by lmi-dev (e2e/src/node.rs).
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://{address}
# This machine has cgroup v1 and no systemd; Kubernetes 1.35+ refuses cgroup v1 unless told.
cgroupDriver: cgroupfs
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
        address = containerd_address().display(),
        port = KUBELET_PORT,
        healthz = KUBELET_HEALTHZ_PORT,
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
        // "2: eth0    inet 192.0.2.2/24 brd ..." (the pod bridge is skipped: it comes and goes)
        .filter(|line| !line.contains(BRIDGE))
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

/// Kills every container this node's containerd still runs (the kubelet is stopped first), so
/// `down` leaves no function processes behind.
pub async fn kill_containers() {
    let address = containerd_address();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_config_is_a_bridge_with_host_local_addresses() {
        let v: serde_json::Value = serde_json::from_str(&cni_conflist()).unwrap();
        let bridge = &v["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], BRIDGE);
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], POD_SUBNET);
    }

    #[test]
    fn kubelet_config_allows_cgroup_v1_and_names_the_runtime() {
        let yaml = kubelet_config(Path::new("/ca.crt"));
        let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(v["failCgroupV1"], serde_yaml::Value::Bool(false));
        assert_eq!(v["cgroupDriver"], "cgroupfs");
        assert_eq!(
            v["containerRuntimeEndpoint"].as_str().unwrap(),
            format!("unix://{}", containerd_address().display())
        );
        assert_eq!(v["port"].as_u64(), Some(u64::from(KUBELET_PORT)));
    }
}
