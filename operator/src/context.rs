//! What every reconcile shares: the client, the reflector stores, metrics, the event recorder and
//! the settings.

use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use lmi_crds::invoke_token::InvokeKey;

use std::collections::BTreeMap;

use crate::autoscale::version_scaling::ScalingTable;
use crate::metrics::Metrics;
use crate::plan::capacity_plan::FailedLaunch;
use crate::plan::snapshot::UnavailableOfferings;
use crate::settings::Settings;
use crate::stores::Stores;

/// The field manager of every server-side apply and patch.
pub const FIELD_MANAGER: &str = "lmi-operator";

pub struct Context {
    pub client: Client,
    pub stores: Stores,
    /// The autoscaler's wishes and observations, by version key.
    pub scaling: ScalingTable,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub settings: Settings,
    /// The cluster's invoke key: functions' tokens and EE pods' drain tokens derive from it.
    pub invoke_key: InvokeKey,
    /// Offerings (instance type, zone) that failed to launch, shared by every provider (a cloud
    /// short of a type in a zone is short of it for all): until when they are avoided, and why.
    unavailable: std::sync::Mutex<BTreeMap<(String, String), (i64, String)>>,
    /// NodeClaims this operator created and has not seen launched: name -> (provider, type,
    /// zone, created at). Karpenter deletes a claim it cannot launch for lack of capacity and
    /// says so only in an Event on it, so what the claim asked for is kept here.
    launching: std::sync::Mutex<BTreeMap<String, PendingLaunch>>,
    /// Functions' token Secrets as this process last applied them: `namespace/name` -> digest of
    /// the Secret and the Function's generation. The operator may not read Secrets (no get, list
    /// or watch: see the chart's RBAC), so this is how a resync that changes nothing sends
    /// nothing.
    applied_secrets: std::sync::Mutex<BTreeMap<String, String>>,
}

/// A NodeClaim created and not yet seen launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLaunch {
    pub provider: String,
    pub instance_type: String,
    pub zone: String,
    pub created_at: i64,
}

/// How long a created NodeClaim is remembered while it does not launch (longer than any launch
/// timeout: by then it has launched, failed or been refused).
const PENDING_LAUNCH_SECONDS: i64 = 900;

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
            unavailable: Default::default(),
            launching: Default::default(),
            applied_secrets: Default::default(),
        }
    }

    /// Whether `digest` differs from what was last applied as Secret `key` (then it is to apply).
    pub fn secret_outdated(&self, key: &str, digest: &str) -> bool {
        self.applied_secrets
            .lock()
            .map_or(true, |m| m.get(key).map(String::as_str) != Some(digest))
    }

    /// Remembers that Secret `key` was applied as `digest`.
    pub fn secret_applied(&self, key: &str, digest: &str) {
        if let Ok(mut m) = self.applied_secrets.lock() {
            m.insert(key.to_string(), digest.to_string());
        }
    }

    /// Remembers a NodeClaim just created, until it launches.
    pub fn launch_started(&self, claim: &str, launch: PendingLaunch) {
        if let Ok(mut launching) = self.launching.lock() {
            launching.insert(claim.to_string(), launch);
        }
    }

    /// Forgets a NodeClaim: it launched, failed, was refused or was deleted.
    pub fn launch_settled(&self, claim: &str) {
        if let Ok(mut launching) = self.launching.lock() {
            launching.remove(claim);
        }
    }

    /// The NodeClaims of `provider` not seen launched yet (those older than the memory's limit
    /// are forgotten).
    pub fn pending_launches(&self, provider: &str, now: i64) -> BTreeMap<String, PendingLaunch> {
        let Ok(mut launching) = self.launching.lock() else {
            return BTreeMap::new();
        };
        launching.retain(|_, l| now - l.created_at < PENDING_LAUNCH_SECONDS);
        launching
            .iter()
            .filter(|(_, l)| l.provider == provider)
            .map(|(name, l)| (name.clone(), l.clone()))
            .collect()
    }

    /// Remembers that `failed` did not launch: its offering is avoided until `now` plus the
    /// setting's time.
    pub fn remember_failed_launch(&self, failed: &FailedLaunch, now: i64) {
        let until =
            now + i64::try_from(self.settings.unavailable_for.as_secs()).unwrap_or(i64::MAX / 2);
        if let Ok(mut unavailable) = self.unavailable.lock() {
            unavailable.insert(
                (failed.instance_type.clone(), failed.zone.clone()),
                (until, failed.message.clone()),
            );
        }
    }

    /// The offerings still avoided at `now` (the expired ones are forgotten).
    pub fn unavailable_offerings(&self, now: i64) -> UnavailableOfferings {
        let Ok(mut unavailable) = self.unavailable.lock() else {
            return UnavailableOfferings::new();
        };
        unavailable.retain(|_, (until, _)| *until > now);
        unavailable
            .iter()
            .map(|(offering, (_, why))| (offering.clone(), why.clone()))
            .collect()
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
