//! NodeClaims Karpenter refuses for lack of capacity.
//!
//! Karpenter deletes a NodeClaim whose launch its cloud refuses with an insufficient-capacity
//! error (AWS's CreateFleet short of a type in a zone; the kwok provider without the node class)
//! and says why only in an `InsufficientCapacityError` Event on the claim. The operator keeps
//! what each claim it created asked for until the claim launches ([`Context::launch_started`]);
//! while some of a provider's claims have not launched, it reads those Events and avoids each
//! refused offering as it avoids one that timed out.

use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use lmi_crds::common::CAPACITY_PROVIDER_LABEL;

use crate::context::Context;
use crate::error::Result;
use crate::observe::launched;
use crate::plan::capacity_plan::FailedLaunch;

/// Karpenter's Event reason for a launch its cloud refused for lack of capacity.
pub const INSUFFICIENT_CAPACITY_REASON: &str = "InsufficientCapacityError";

/// Where Events of cluster-scoped objects (NodeClaims) are recorded.
const CLUSTER_EVENTS_NAMESPACE: &str = "default";

/// Learns the refused launches of `provider`'s claims; returns them (already remembered as
/// unavailable offerings).
pub async fn learn(ctx: &Context, provider: &str, now: i64) -> Result<Vec<FailedLaunch>> {
    let pending = ctx.pending_launches(provider, now);
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let claims = ctx.stores.claims.state();
    let mut waiting = Vec::new();
    for (name, launch) in pending {
        let claim = claims.iter().find(|c| {
            c.name_any() == name
                && c.labels().get(CAPACITY_PROVIDER_LABEL).map(String::as_str) == Some(provider)
        });
        match claim {
            Some(c) if launched(c) => ctx.launch_settled(&name),
            _ => waiting.push((name, launch)),
        }
    }
    if waiting.is_empty() {
        return Ok(Vec::new());
    }
    let events: Api<Event> = Api::namespaced(ctx.client.clone(), CLUSTER_EVENTS_NAMESPACE);
    let refusals = events
        .list(&ListParams::default().fields(&format!(
            "involvedObject.kind=NodeClaim,reason={INSUFFICIENT_CAPACITY_REASON}"
        )))
        .await?;
    let mut failed = Vec::new();
    for (name, launch) in waiting {
        let Some(event) = refusals
            .items
            .iter()
            .find(|e| e.involved_object.name.as_deref() == Some(name.as_str()))
        else {
            continue;
        };
        let failure = FailedLaunch {
            claim: name.clone(),
            instance_type: launch.instance_type,
            zone: launch.zone,
            message: format!(
                "refused by Karpenter ({INSUFFICIENT_CAPACITY_REASON}: {})",
                event.message.as_deref().unwrap_or("no message")
            ),
        };
        ctx.remember_failed_launch(&failure, now);
        ctx.launch_settled(&name);
        failed.push(failure);
    }
    Ok(failed)
}
