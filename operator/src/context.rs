//! What every reconcile shares: the client, the reflector stores, metrics, the event recorder and
//! the settings.

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use lmi_crds::invoke_token::InvokeKey;
use lmi_crds::{Function, FunctionVersion};

use crate::karpenter::{EC2NodeClass, NodeClaim};
use crate::metrics::Metrics;
use crate::settings::Settings;

/// The field manager of every server-side apply and patch.
pub const FIELD_MANAGER: &str = "lmi-operator";

/// In-memory views of the cluster, kept current by one watch per kind.
#[derive(Clone)]
pub struct Stores {
    pub functions: Store<Function>,
    pub versions: Store<FunctionVersion>,
    /// EE pods only (label `app.kubernetes.io/managed-by=lmi-operator`).
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
    /// Their labels decide which capacity providers a namespace's functions may use.
    pub namespaces: Store<Namespace>,
    pub claims: Store<NodeClaim>,
    pub node_classes: Store<EC2NodeClass>,
}

pub struct Context {
    pub client: Client,
    pub stores: Stores,
    /// The autoscaler's wishes and observations, by version key.
    pub scaling: crate::controllers::autoscaler::ScalingTable,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub settings: Settings,
    /// The cluster's invoke key: functions' tokens and EE pods' drain tokens derive from it.
    pub invoke_key: InvokeKey,
}

impl Stores {
    /// Waits until the stores of the core kinds hold their first full list, so that a plan made
    /// after a restart sees every EE that already exists. Karpenter's kinds are waited for
    /// separately ([`Stores::karpenter_ready`]): a cluster without Karpenter (Static providers
    /// only) never fills them.
    pub async fn ready(&self) -> Result<(), kube::runtime::reflector::store::WriterDropped> {
        self.functions.wait_until_ready().await?;
        self.versions.wait_until_ready().await?;
        self.pods.wait_until_ready().await?;
        self.namespaces.wait_until_ready().await?;
        self.nodes.wait_until_ready().await
    }

    /// Karpenter's NodeClaims and EC2NodeClasses are listed (their CRDs are installed).
    pub async fn karpenter_ready(
        &self,
    ) -> Result<(), kube::runtime::reflector::store::WriterDropped> {
        self.claims.wait_until_ready().await?;
        self.node_classes.wait_until_ready().await
    }
}

impl Stores {
    /// The labels of namespace `name` (none when the store does not hold it: a function of an
    /// unknown namespace is then judged as unlabelled, which fails closed).
    pub fn namespace_labels(&self, name: &str) -> std::collections::BTreeMap<String, String> {
        self.namespaces
            .get(&kube::runtime::reflector::ObjectRef::new(name))
            .and_then(|ns| ns.metadata.labels.clone())
            .unwrap_or_default()
    }
}

impl Context {
    pub fn new(
        client: Client,
        stores: Stores,
        metrics: Metrics,
        settings: Settings,
        invoke_key: InvokeKey,
    ) -> Self {
        let reporter = Reporter {
            controller: "lmi-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Self {
            client,
            stores,
            scaling: Default::default(),
            metrics,
            recorder,
            settings,
            invoke_key,
        }
    }

    /// Publishes an Event on `object`; a failure to record is logged, never fatal.
    pub async fn event<K>(&self, object: &K, warning: bool, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(object = %object.name_any(), reason, error = %e, "cannot record event");
        }
    }
}

/// Writes `status` with server-side apply under the operator's field manager: a field the new
/// status leaves out (a cleared reason code, say) is removed, which a merge patch would keep.
pub async fn apply_status<K, S>(api: &kube::Api<K>, name: &str, status: &S) -> kube::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let params = kube::api::PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(name, &params, &kube::api::Patch::Apply(&body))
        .await
        .map(|_| ())
}
