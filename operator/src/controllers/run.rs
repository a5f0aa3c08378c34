//! Starts one watch per kind (reflectors whose stores the planner reads) and the two controllers.

use std::sync::Arc;

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use lmi_crds::common::instance_selector;
use lmi_crds::{CapacityProvider, Function, FunctionVersion};

use crate::context::Context;
use crate::controllers::{capacity_provider, function};
use crate::karpenter::{EC2NodeClass, NodeClaim, NodeClassChoice};
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::stores::Stores;
use crate::utilization::UtilizationSource;
use lmi_crds::common::{MANAGED_BY, MANAGED_BY_LABEL};

/// What a reflected kind must be: kube's bounds for an object watched, stored and cloned into
/// the triggers.
trait Reflected:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Reflected for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// A reflected watch: its store, kept current by a task of its own, and a stream of the objects
/// it sees, for the controller's triggers.
///
/// The store must not depend on the controller polling its triggers: the controller holds back
/// triggers for an object it is reconciling, and the planner waits for complete stores inside
/// that reconcile; were the reflector driven by the trigger stream, the two would wait on each
/// other. The task ends when the controller drops the trigger stream.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Reflected,
{
    reflect_trimmed(api, config, crate::trim::managed_fields::<K>)
}

/// [`reflect`], keeping of each object what `trim` leaves (see [`crate::trim`]): the store and
/// the triggers both get the trimmed object.
fn reflect_trimmed<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Reflected,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (spawn_reflector(api, config, trim, vec![tx]), triggers(rx))
}

/// [`reflect`] for two controllers: each gets every object, after the store has it. (With a watch
/// of its own, a controller could be triggered before the store it reads has the change, and
/// reconcile on a stale view that no later event corrects.)
fn reflect_for_two<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Reflected,
{
    let (tx1, rx1) = tokio::sync::mpsc::unbounded_channel();
    let (tx2, rx2) = tokio::sync::mpsc::unbounded_channel();
    let store = spawn_reflector(
        api,
        config,
        crate::trim::managed_fields::<K>,
        vec![tx1, tx2],
    );
    (store, triggers(rx1), triggers(rx2))
}

/// The objects a reflector task sends, as a controller's trigger stream.
fn triggers<K>(
    rx: tokio::sync::mpsc::UnboundedReceiver<K>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Send + 'static,
{
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|object| (Ok(object), rx))
    })
}

/// Starts the task that keeps the store of `api` current and sends each object it applies (as
/// `trim` leaves it) to every sender; it ends when every receiver is gone.
fn spawn_reflector<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
    senders: Vec<tokio::sync::mpsc::UnboundedSender<K>>,
) -> Store<K>
where
    K: Reflected,
{
    let (reader, writer) = reflector::store();
    let trimmed = watcher(api, config).modify(trim);
    let reflected = reflector::reflector(writer, trimmed)
        .default_backoff()
        .touched_objects();
    tokio::spawn(async move {
        let mut reflected = std::pin::pin!(reflected);
        loop {
            let all_gone = async {
                for tx in &senders {
                    tx.closed().await;
                }
            };
            tokio::select! {
                item = reflected.next() => match item {
                    Some(Ok(object)) => {
                        for tx in &senders {
                            let _ = tx.send(object.clone());
                        }
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "watch error (retrying)"),
                    None => return,
                },
                () = all_gone => return,
            }
        }
    });
    reader
}

/// Runs the controllers until `shutdown` resolves.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    source: Arc<dyn UtilizationSource>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // Every EE is built with tokens derived from the key, so nothing is planned before it is
    // known; a shutdown meanwhile ends the wait.
    let mut shutdown = Box::pin(shutdown);
    let invoke_key = tokio::select! {
        key = crate::invoke_key::ensure_until_known(&client, &settings.system_namespace) => key,
        _ = &mut shutdown => return,
    };
    // Every kind this operator acts on is watched through its instance's selector, so that it
    // never sees (and so never touches) another instance's objects. Nodes are shared: a Static
    // provider's own selector picks them.
    let selector = instance_selector(settings.instance.as_deref());
    let scoped = || watcher::Config::default().labels(&selector);
    let (functions, function_stream) = reflect(Api::<Function>::all(client.clone()), scoped());
    // Changes of providers reach functions through the provider controller's own watch; this
    // store is only read (a function's reconcile looks its provider up here).
    let (capacity_providers, provider_stream) =
        reflect(Api::<CapacityProvider>::all(client.clone()), scoped());
    let (versions, version_stream, version_stream_for_functions) =
        reflect_for_two(Api::<FunctionVersion>::all(client.clone()), scoped());
    let (pods, pod_stream) = reflect_trimmed(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY},{selector}")),
        crate::trim::ee_pod,
    );
    let (nodes, node_stream) = reflect_trimmed(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        crate::trim::node,
    );
    let (namespaces, namespace_stream) = reflect(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    );
    let (claims, claim_stream) = reflect(Api::<NodeClaim>::all(client.clone()), scoped());
    // The operator's own EC2NodeClasses; another provider's node class is not its to watch.
    let (node_classes, class_stream) = match settings.node_class {
        NodeClassChoice::Ec2PerProvider => {
            let (store, stream) = reflect(Api::<EC2NodeClass>::all(client.clone()), scoped());
            (Some(store), stream.boxed())
        }
        NodeClassChoice::Shared { .. } => (None, futures::stream::empty().boxed()),
    };
    let stores = Stores {
        functions,
        capacity_providers,
        versions,
        pods,
        nodes,
        namespaces,
        claims,
        node_classes,
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        stores,
        metrics,
        settings,
        invoke_key,
    ));

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let shutdown_rx_for_autoscaler = shutdown_rx.clone();
    let shutdown_rx_for_events = shutdown_rx.clone();
    let signal = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };

    let cp_controller = Controller::new(Api::<CapacityProvider>::all(client.clone()), scoped());
    let cp_store = cp_controller.store();
    let static_providers =
        move |store: &Store<CapacityProvider>| -> Vec<ObjectRef<CapacityProvider>> {
            store
                .state()
                .iter()
                .filter(|cp| {
                    cp.spec.provisioning.mode
                        == lmi_crds::capacity_provider::ProvisioningMode::Static
                })
                .map(|cp| ObjectRef::from_obj(cp.as_ref()))
                .collect()
        };
    let cp_store_for_nodes = cp_store.clone();
    // A namespace's labels decide which providers may place its versions (namespaceSelector).
    let selecting_providers =
        move |store: &Store<CapacityProvider>| -> Vec<ObjectRef<CapacityProvider>> {
            store
                .state()
                .iter()
                .filter(|cp| cp.spec.namespace_selector.is_some())
                .map(|cp| ObjectRef::from_obj(cp.as_ref()))
                .collect()
        };
    let cp_store_for_namespaces = cp_store.clone();
    // The autoscaler asks for a new plan of a capacity provider when a version's wish changes.
    let (replan_tx, replan_rx) = tokio::sync::mpsc::unbounded_channel();
    let replans = futures::stream::unfold(replan_rx, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    let autoscaler =
        crate::controllers::autoscaler::run(ctx.clone(), cp_store.clone(), source, replan_tx);
    let queued_events = ctx.settings.nats_url.clone().map(|url| {
        let ctx = ctx.clone();
        async move { crate::controllers::event_queue::run(ctx, url).await }
    });
    let cp_controller = cp_controller
        .reconcile_on(replans)
        .watches_stream(version_stream, |v: FunctionVersion| {
            Some(ObjectRef::new(
                &v.spec
                    .configuration
                    .capacity_provider_config
                    .capacity_provider_name,
            ))
        })
        .watches_stream(function_stream, |f: Function| {
            Some(ObjectRef::new(
                &f.spec
                    .configuration
                    .capacity_provider_config
                    .capacity_provider_name,
            ))
        })
        .watches_stream(pod_stream, |p: Pod| capacity_provider::by_label(&p))
        .watches_stream(claim_stream, |c: NodeClaim| capacity_provider::by_label(&c))
        .watches_stream(class_stream, |c: EC2NodeClass| {
            Some(ObjectRef::new(&c.name_any()))
        })
        .watches_stream(node_stream, move |n: Node| {
            // Karpenter nodes name their provider; a Static provider's nodes are found by its
            // selector, so any node change replans the Static providers.
            let mut refs: Vec<_> = capacity_provider::by_label(&n).into_iter().collect();
            refs.extend(static_providers(&cp_store_for_nodes));
            refs
        })
        .watches_stream(namespace_stream, move |_: Namespace| {
            selecting_providers(&cp_store_for_namespaces)
        })
        .graceful_shutdown_on(signal(shutdown_rx.clone()))
        .run(
            capacity_provider::reconcile,
            capacity_provider::error_policy,
            ctx.clone(),
        )
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "capacity provider controller");
            }
            future::ready(())
        });

    let fn_controller = Controller::new(Api::<Function>::all(client.clone()), scoped());
    let fn_store = fn_controller.store();
    let fn_controller = fn_controller
        .owns_stream(version_stream_for_functions)
        .watches_stream(provider_stream, move |cp: CapacityProvider| {
            let name = cp.name_any();
            fn_store
                .state()
                .iter()
                .filter(|f| {
                    f.spec
                        .configuration
                        .capacity_provider_config
                        .capacity_provider_name
                        == name
                })
                .map(|f| ObjectRef::from_obj(f.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(signal(shutdown_rx))
        .run(function::reconcile, function::error_policy, ctx)
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "function controller");
            }
            future::ready(())
        });

    let stopper = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing reconciles in flight");
        let _ = shutdown_tx.send(true);
    };
    // The autoscaler loop ends with the controllers: it only advises them.
    let mut stopped = shutdown_rx_for_autoscaler;
    let autoscaler = async move {
        tokio::select! {
            _ = autoscaler => {}
            _ = stopped.wait_for(|s| *s) => {}
        }
    };
    let mut stopped = shutdown_rx_for_events;
    let queued_events = async move {
        let Some(counting) = queued_events else {
            return;
        };
        tokio::select! {
            () = counting => {}
            _ = stopped.wait_for(|s| *s) => {}
        }
    };
    tokio::join!(
        cp_controller,
        fn_controller,
        stopper,
        autoscaler,
        queued_events
    );
}
