//! Real kubelets for the nodes that real Karpenter launches for [`KUBELET_PROVIDER`].
//!
//! Karpenter's kwok provider answers a NodeClaim by creating its Node object and leaving the rest
//! to kwok, which runs nothing. The local cluster's kwok leaves this provider's nodes alone
//! (`cluster::kwok_config_yaml`); here each such Node gets a real kubelet in a free Karpenter slot
//! ([`KARPENTER_SLOTS`]: its own containerd, bridge and cgroup root), registering under the
//! Node's name. The kubelet finds the Node there and takes it over, as an EC2 instance's kubelet
//! joins the Node that Karpenter expects: Karpenter then registers and initialises it, and EEs
//! placed on it run for real. When Karpenter deletes the Node (after its drain), the kubelet stops
//! and the slot's containers are killed, freeing the slot for the next instance.
//!
//! This is how the tests show a replacement under load with real EEs on instances that real
//! Karpenter launches and deletes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::certs::Pki;
use crate::error::Result;
use crate::gobuild::Binaries;
use crate::node::{self, KARPENTER_SLOTS, KUBELET_PROVIDER, Node};
use crate::paths::Paths;
use crate::process::Tracked;

/// Which slot's kubelet runs which Karpenter node.
#[derive(Default)]
struct Slots {
    running: BTreeMap<String, (Node, Tracked)>,
}

impl Slots {
    fn free(&self) -> Option<Node> {
        KARPENTER_SLOTS
            .into_iter()
            .find(|slot| !self.running.values().any(|(used, _)| used == slot))
    }
}

/// Runs a kubelet for each of [`KUBELET_PROVIDER`]'s nodes until stopped.
pub struct Adopter {
    task: JoinHandle<()>,
    slots: Arc<Mutex<Slots>>,
}

/// Starts watching the provider's nodes, after stopping any kubelet an earlier run left in a
/// slot (a test process that died takes no kubelet with it).
pub async fn start(client: Client) -> Adopter {
    let pid_dir = Paths::from_env().pid_dir();
    for slot in KARPENTER_SLOTS {
        if let Some(left) = crate::process::tracked(&pid_dir, &slot.kubelet_component()) {
            warn!(slot = %slot.kubelet_component(), "stopping a kubelet left from an earlier run");
            left.stop(Duration::from_secs(10)).await;
            node::kill_containers(slot).await;
        }
    }
    let slots = Arc::new(Mutex::new(Slots::default()));
    let task = tokio::spawn(run(client, slots.clone()));
    Adopter { task, slots }
}

impl Adopter {
    /// The nodes whose kubelet runs now.
    pub async fn adopted(&self) -> BTreeSet<String> {
        self.slots.lock().await.running.keys().cloned().collect()
    }

    /// Stops watching, then stops every kubelet still running and kills its containers.
    pub async fn stop(self) {
        self.task.abort();
        let running = std::mem::take(&mut self.slots.lock().await.running);
        for (name, (slot, kubelet)) in running {
            release(&name, slot, &kubelet).await;
        }
    }
}

async fn run(client: Client, slots: Arc<Mutex<Slots>>) {
    let paths = Paths::from_env();
    let kubelet = Binaries::locate(&paths).kubelet;
    let pki = Pki::locate(&paths.pki_dir());
    let nodes: Api<KubeNode> = Api::all(client);
    let config = watcher::Config::default().labels(&format!(
        "{}={KUBELET_PROVIDER}",
        lmi_crds::common::CAPACITY_PROVIDER_LABEL
    ));
    let mut events = watcher(nodes, config).boxed();
    // A relist names every node there is: one adopted before it but not named since is gone.
    let mut listed = BTreeSet::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                warn!("watching the Karpenter slots' nodes: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match event {
            watcher::Event::Init => listed.clear(),
            watcher::Event::InitApply(n) => {
                listed.insert(n.name_any());
                adopt(&slots, &paths, &kubelet, &pki, &n).await;
            }
            watcher::Event::InitDone => {
                let gone: Vec<String> = slots
                    .lock()
                    .await
                    .running
                    .keys()
                    .filter(|name| !listed.contains(*name))
                    .cloned()
                    .collect();
                for name in gone {
                    forget(&slots, &name).await;
                }
            }
            watcher::Event::Apply(n) => adopt(&slots, &paths, &kubelet, &pki, &n).await,
            watcher::Event::Delete(n) => forget(&slots, &n.name_any()).await,
        }
    }
}

/// Starts a kubelet for `n` in a free slot, unless one runs for it already.
async fn adopt(
    slots: &Mutex<Slots>,
    paths: &Paths,
    binary: &std::path::Path,
    pki: &Pki,
    n: &KubeNode,
) {
    let name = n.name_any();
    let mut slots = slots.lock().await;
    if slots.running.contains_key(&name) || n.metadata.deletion_timestamp.is_some() {
        return;
    }
    let Some(slot) = slots.free() else {
        warn!(node = %name, "no free Karpenter slot: the node stays without a kubelet");
        return;
    };
    let started = async {
        let args =
            node::adopting_kubelet_args(slot, &name, paths, &paths.kubeconfig(), &pki.ca_cert)?;
        crate::cluster::start_kubelet(paths, binary, slot, args).await
    };
    match started.await {
        Ok(kubelet) => {
            info!(node = %name, slot = %slot.kubelet_component(), "kubelet started for Karpenter's node");
            slots.running.insert(name, (slot, kubelet));
        }
        Err(e) => warn!(node = %name, "could not start a kubelet for Karpenter's node: {e}"),
    }
}

/// The node is gone: its kubelet stops and the slot is free again. The node stays listed until
/// its slot is clean, so [`Adopter::adopted`] does not report it gone (and a caller stop the
/// adopter, cancelling the clean-up) while its directory is still mounted.
async fn forget(slots: &Mutex<Slots>, name: &str) {
    let mut slots = slots.lock().await;
    if let Some((slot, kubelet)) = slots.running.get(name) {
        release(name, *slot, kubelet).await;
        slots.running.remove(name);
    }
}

async fn release(name: &str, slot: Node, kubelet: &Tracked) {
    kubelet.stop(Duration::from_secs(10)).await;
    // Karpenter drained the node before deleting it; anything still running goes with it.
    node::kill_containers(slot).await;
    // The kubelet bind-mounts its root directory onto itself (and pod volumes below it); the
    // node is gone for good, so is its directory.
    let root = slot.kubelet_root(&Paths::from_env()).join(name);
    let _ = tokio::process::Command::new("umount")
        .args(["--recursive", "--lazy"])
        .arg(&root)
        .status()
        .await;
    if let Err(e) = std::fs::remove_dir_all(&root) {
        warn!(dir = %root.display(), "could not remove the node's kubelet directory: {e}");
    }
    info!(node = %name, slot = %slot.kubelet_component(), "kubelet stopped: Karpenter's node is gone");
}

/// Puts a release build of the sidecar into the Karpenter slots' containerds, under the local
/// sidecar image's name ([`crate::images::SIDECAR_IMAGE`]), as a production EE runs it: the debug
/// build that the other nodes run serves about 150 invocations a second per EE on this machine,
/// too few for a test of a replacement under 200 a second. `up` puts the debug build back (the
/// import compares digests), and no other test uses the slots.
pub async fn use_release_sidecar(paths: &Paths) -> Result<()> {
    let image = crate::images::release_sidecar_image(paths, &crate::harness::repo_root()).await?;
    for slot in KARPENTER_SLOTS {
        crate::images::import(&image, &slot.containerd_address()).await?;
    }
    Ok(())
}
