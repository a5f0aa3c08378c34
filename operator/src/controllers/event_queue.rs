//! Queued events per function: every few seconds, the count of each function's events stored in
//! the routers' NATS JetStream stream (accepted and not yet done: waiting, running, or waiting
//! for a retry), shown on the Function as `status.queuedEvents` (`kubectl get fn`, column
//! Queued).
//!
//! The count is written with a field manager of its own, so the function controller's
//! server-side apply of the rest of the status neither removes it nor fights over it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use lmi_crds::Function;
use lmi_crds::event_queue::{STREAM, SUBJECT_PREFIX, function_of};

use crate::context::Context;

/// How often the queue is counted.
const INTERVAL: Duration = Duration::from_secs(10);
/// The field manager of `status.queuedEvents`.
const FIELD_MANAGER: &str = "lmi-operator-events";

/// Counts until the process ends. NATS may come and go: a count that cannot be taken leaves the
/// last one shown.
pub async fn run(ctx: Arc<Context>, url: String) {
    let client = match ctx.settings.nats_files.connect(&url, "lmi-operator").await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%url, error = %e, "the event queue cannot be reached: no queued-event counts");
            return;
        }
    };
    let jetstream = async_nats::jetstream::new(client);
    loop {
        match count(&jetstream).await {
            Ok(counts) => {
                if let Err(e) = show(&ctx, &counts).await {
                    tracing::debug!(error = %e, "writing queued events");
                }
            }
            Err(e) => tracing::debug!(error = %e, "counting queued events"),
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Stored events by (namespace, function). No stream yet: no events.
async fn count(
    jetstream: &async_nats::jetstream::Context,
) -> Result<BTreeMap<(String, String), i64>, String> {
    let stream = match jetstream.get_stream(STREAM).await {
        Ok(s) => s,
        // Before the first event the routers have not made the stream.
        Err(e) if e.to_string().contains("not found") => return Ok(BTreeMap::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut subjects = stream
        .info_with_subjects(format!("{SUBJECT_PREFIX}.>"))
        .await
        .map_err(|e| e.to_string())?;
    let mut counts = BTreeMap::new();
    while let Some(entry) = subjects.next().await {
        let (subject, n) = entry.map_err(|e| e.to_string())?;
        if let Some((namespace, function)) = function_of(&subject) {
            counts.insert(
                (namespace.to_string(), function.to_string()),
                i64::try_from(n).unwrap_or(i64::MAX),
            );
        }
    }
    Ok(counts)
}

/// Writes each changed count on its Function (0 for a function with none).
async fn show(ctx: &Context, counts: &BTreeMap<(String, String), i64>) -> Result<(), kube::Error> {
    for function in ctx.stores.functions.state() {
        let key = (
            function.namespace().unwrap_or_default(),
            function.name_any(),
        );
        let queued = counts.get(&key).copied().unwrap_or(0);
        let shown = function.status.as_ref().and_then(|s| s.queued_events);
        if shown == Some(queued) {
            continue;
        }
        let api: Api<Function> = Api::namespaced(ctx.client.clone(), &key.0);
        let patch = serde_json::json!({
            "apiVersion": Function::api_version(&()),
            "kind": Function::kind(&()),
            "status": {"queuedEvents": queued}
        });
        api.patch_status(
            &key.1,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    Ok(())
}
