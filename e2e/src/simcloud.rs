//! A simulated cloud for tests (not part of the product): plays Karpenter's part for the
//! operator's EC2NodeClasses and standalone NodeClaims on a kwok cluster.
//!
//! - An EC2NodeClass gets `status.subnets` with a zone for each subnet id it selects (the zones
//!   are dealt out in the order of the ids), as Karpenter resolves subnets.
//! - A NodeClaim becomes, after a configurable delay, a kwok node with the instance type's labels
//!   and capacity; its status gets the providerID, the node name and the Launched, Registered,
//!   Initialized and Ready conditions. The node is owned by its claim, so deleting the claim
//!   terminates the "instance".

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use lmi_crds::common::instance_selector;
use lmi_operator::karpenter::{
    EC2NodeClass, INSTANCE_TYPE_LABEL, NODE_CLASS_LABEL, NodeClaim, ZONE_LABEL,
};
use serde_json::json;

use crate::error::{Error, Result};
use crate::nodes::{FakeNode, InstanceShape};

/// How the simulated cloud behaves.
#[derive(Debug, Clone)]
pub struct SimCloud {
    /// Zones dealt out to subnets, in order.
    pub zones: Vec<String>,
    /// Time from a NodeClaim to its node.
    pub launch_delay: Duration,
    /// The operator instance whose NodeClaims and node classes this cloud serves (their
    /// `lmi.dev/instance` label; None: the unlabelled ones), as that operator sees them.
    pub instance: Option<String>,
}

impl Default for SimCloud {
    fn default() -> Self {
        Self {
            zones: vec![
                "us-east-1a".into(),
                "us-east-1b".into(),
                "us-east-1c".into(),
            ],
            launch_delay: Duration::ZERO,
            instance: None,
        }
    }
}

impl SimCloud {
    /// Watches only this cloud's operator instance's objects.
    fn watch_config(&self) -> watcher::Config {
        watcher::Config::default().labels(&instance_selector(self.instance.as_deref()))
    }
}

/// The node name of a claim's instance.
pub fn node_name(claim: &str) -> String {
    format!("sim-{claim}")
}

/// Runs until the watches end (they do not, short of the apiserver going away).
pub async fn run(client: Client, cloud: SimCloud) -> Result<()> {
    let classes = resolve_subnets(client.clone(), cloud.clone());
    let claims = launch_claims(client, cloud);
    tokio::try_join!(classes, claims)?;
    Ok(())
}

async fn resolve_subnets(client: Client, cloud: SimCloud) -> Result<()> {
    let api: Api<EC2NodeClass> = Api::all(client);
    let mut events = watcher(api.clone(), cloud.watch_config())
        .default_backoff()
        .applied_objects()
        .boxed();
    // A watch error (the apiserver restarting, say) is retried with backoff, never fatal.
    while let Some(event) = events.next().await {
        let class = match event {
            Ok(class) => class,
            Err(e) => {
                tracing::debug!(error = %e, "watching EC2NodeClasses");
                continue;
            }
        };
        let subnets: Vec<serde_json::Value> = class
            .spec
            .subnet_selector_terms
            .iter()
            .filter_map(|t| t.id.clone())
            .enumerate()
            .map(|(i, id)| json!({"id": id, "zone": cloud.zones[i % cloud.zones.len().max(1)]}))
            .collect();
        let current: Vec<serde_json::Value> = class
            .status
            .as_ref()
            .map(|s| {
                s.subnets
                    .iter()
                    .map(|s| json!({"id": s.id, "zone": s.zone}))
                    .collect()
            })
            .unwrap_or_default();
        if current == subnets {
            continue;
        }
        let patch = json!({"status": {"subnets": subnets, "conditions": [condition("Ready")]}});
        if let Err(e) = api
            .patch_status(
                &class.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            tracing::warn!(class = %class.name_any(), error = %e, "cannot resolve subnets");
        }
    }
    Ok(())
}

fn condition(type_: &str) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: "True".to_string(),
        reason: type_.to_string(),
        message: String::new(),
        observed_generation: None,
        last_transition_time: Time(Timestamp::now()),
    }
}

async fn launch_claims(client: Client, cloud: SimCloud) -> Result<()> {
    let api: Api<NodeClaim> = Api::all(client.clone());
    let launching: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut events = watcher(api.clone(), cloud.watch_config())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let claim = match event {
            Ok(claim) => claim,
            Err(e) => {
                tracing::debug!(error = %e, "watching NodeClaims");
                continue;
            }
        };
        let launched = claim.status.as_ref().is_some_and(|s| s.node_name.is_some());
        if launched || claim.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = claim.name_any();
        let first = launching
            .lock()
            .map(|mut set| set.insert(name.clone()))
            .unwrap_or(false);
        if !first {
            continue;
        }
        let (client, cloud, launching) = (client.clone(), cloud.clone(), launching.clone());
        tokio::spawn(async move {
            tokio::time::sleep(cloud.launch_delay).await;
            if let Err(e) = launch(&client, &claim).await {
                tracing::warn!(claim = %name, error = %e, "simulated launch failed");
            }
            if let Ok(mut set) = launching.lock() {
                set.remove(&name);
            }
        });
    }
    Ok(())
}

/// Creates the claim's node and reports it in the claim's status.
pub async fn launch(client: &Client, claim: &NodeClaim) -> Result<()> {
    let name = claim.name_any();
    let instance_type = claim
        .requirement(INSTANCE_TYPE_LABEL)
        .ok_or_else(|| Error::Other(format!("NodeClaim {name} names no instance type")))?;
    let zone = claim
        .requirement(ZONE_LABEL)
        .ok_or_else(|| Error::Other(format!("NodeClaim {name} names no zone")))?;
    let node_name = node_name(&name);
    let mut fake = FakeNode::new(
        node_name.clone(),
        InstanceShape::from_catalog(instance_type)?,
        zone,
    );
    // Karpenter copies the claim's labels to its node.
    fake.extra_labels = claim.labels().clone();
    if let Some(class) = claim.labels().get(NODE_CLASS_LABEL) {
        fake.extra_labels
            .insert(NODE_CLASS_LABEL.to_string(), class.clone());
    }
    if let Some(cp) = claim.labels().get(crate::nodes::CAPACITY_PROVIDER_KEY) {
        fake = fake.capacity_provider(cp.clone());
    }
    let mut node = fake.to_node();
    let provider_id = format!("aws:///{zone}/i-{:016x}", fnv(&name));
    if let Some(spec) = node.spec.as_mut() {
        spec.provider_id = Some(provider_id.clone());
    }
    node.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "karpenter.sh/v1".to_string(),
        kind: "NodeClaim".to_string(),
        name: name.clone(),
        uid: claim.uid().unwrap_or_default(),
        block_owner_deletion: Some(true),
        controller: Some(true),
    }]);
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let conditions: Vec<Condition> = ["Launched", "Registered", "Initialized", "Ready"]
        .iter()
        .map(|t| condition(t))
        .collect();
    let patch = json!({"status": {"providerID": provider_id, "nodeName": node_name, "conditions": conditions}});
    let claims: Api<NodeClaim> = Api::all(client.clone());
    claims
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    tracing::info!(claim = %name, node = %node_name, instance_type, zone, "simulated instance launched");
    Ok(())
}

/// A stable 64-bit hash (FNV-1a) for fake instance ids.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}
