//! Starts one watch per kind (reflectors whose stores the planner reads) and the two controllers.

use std::sync::Arc;

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use lmi_crds::capacity_provider::ProvisioningMode;
use lmi_crds::common::instance_selector;
use lmi_crds::{CapacityProvider, Function, FunctionVersion};

use crate::context::Context;
use crate::controllers::trigger_set::{Seen, TriggerSet};
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
    + serde::Serialize
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
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// Where a reflector's task sends each object it applied to its store (as `trim` left it), after
/// the store has it, so a reconcile it triggers never reads a store without the change.
enum Output<K> {
    /// The objects themselves: a controller's own kind (`Controller::for_stream`).
    Objects(tokio::sync::mpsc::UnboundedSender<K>),
    /// The objects they name, queued once each in a controller's [`TriggerSet`].
    Triggers {
        push: Box<dyn Fn(&K) + Send + Sync>,
        consumer: Arc<dyn Consumer>,
    },
}

/// A [`TriggerSet`] of any kind, as far as a reflector needs it: whether its controller is gone.
trait Consumer: Send + Sync {
    fn gone(&self) -> futures::future::BoxFuture<'_, ()>;
}

impl<R> Consumer for TriggerSet<R>
where
    R: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    fn gone(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(self.closed())
    }
}

/// An [`Output`] that queues in `set` what `names` says each object names.
fn triggers<K, R, I>(
    set: &Arc<TriggerSet<R>>,
    names: impl Fn(&K) -> I + Send + Sync + 'static,
) -> Output<K>
where
    R: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    I: IntoIterator<Item = R>,
{
    let target = set.clone();
    Output::Triggers {
        push: Box::new(move |object| {
            for name in names(object) {
                target.push(name);
            }
        }),
        consumer: set.clone(),
    }
}

/// A controller's own objects: the [`Output`] for its reflector and the stream it takes.
fn objects<K>() -> (
    Output<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|object| (Ok(object), rx))
    });
    (Output::Objects(tx), stream)
}

/// Starts the task that keeps the store of `api` current, keeping of each object what `trim`
/// leaves (see [`crate::trim`]), and sends what it applies to `outputs`.
///
/// The store must not depend on a controller polling its triggers: a controller holds back
/// triggers for an object it is reconciling, and the planner waits for complete stores inside
/// that reconcile; were the reflector driven by the trigger stream, the two would wait on each
/// other. The task ends when every output's controller is gone.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
    outputs: Vec<Output<K>>,
) -> Store<K>
where
    K: Reflected,
{
    let (reader, writer) = reflector::store();
    let trimmed = watcher(api, config).modify(trim);
    let reflected = reflector::reflector(writer, trimmed)
        .default_backoff()
        .touched_objects();
    let store = reader.clone();
    tokio::spawn(async move {
        let mut reflected = std::pin::pin!(reflected);
        let mut seen = Seen::default();
        loop {
            let all_gone = async {
                for output in &outputs {
                    match output {
                        Output::Objects(tx) => tx.closed().await,
                        Output::Triggers { consumer, .. } => consumer.gone().await,
                    }
                }
            };
            tokio::select! {
                item = reflected.next() => match item {
                    Some(Ok(object)) => {
                        let present = store.get(&ObjectRef::from_obj(&object)).is_some();
                        let changed = seen.changed(&object, present);
                        for output in &outputs {
                            match output {
                                Output::Objects(tx) => {
                                    let _ = tx.send(object.clone());
                                }
                                Output::Triggers { push, .. } if changed => push(&object),
                                Output::Triggers { .. } => {}
                            }
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

/// The capacity providers `store` holds that `pick` picks.
fn providers_where(
    store: &Store<CapacityProvider>,
    pick: impl Fn(&CapacityProvider) -> bool,
) -> Vec<ObjectRef<CapacityProvider>> {
    store
        .state()
        .iter()
        .filter(|cp| pick(cp))
        .map(|cp| ObjectRef::from_obj(cp.as_ref()))
        .collect()
}

/// The provider a version or function names.
fn provider_of(config: &lmi_crds::function::FunctionConfiguration) -> ObjectRef<CapacityProvider> {
    ObjectRef::new(&config.capacity_provider_config.capacity_provider_name)
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
    // What each controller is to reconcile, queued once each however many events name it.
    let provider_triggers = TriggerSet::<ObjectRef<CapacityProvider>>::new();
    let function_triggers = TriggerSet::<ObjectRef<Function>>::new();

    // One watch per kind. The two controllers run on the stores of their own kinds, so the
    // planner and the controllers never see one kind at two moments.
    let (provider_objects, provider_stream) = objects();
    let (function_objects, function_stream) = objects();
    let functions = reflect(
        Api::<Function>::all(client.clone()),
        scoped(),
        crate::trim::managed_fields,
        vec![
            function_objects,
            triggers(&provider_triggers, |f: &Function| {
                [provider_of(&f.spec.configuration)]
            }),
        ],
    );
    let functions_for_providers = functions.clone();
    let capacity_providers = reflect(
        Api::<CapacityProvider>::all(client.clone()),
        scoped(),
        crate::trim::managed_fields,
        vec![
            provider_objects,
            // A provider's change (created, its instance label, its namespace rule) may change
            // what its functions are allowed.
            triggers(&function_triggers, move |cp: &CapacityProvider| {
                let name = cp.name_any();
                functions_for_providers
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
            }),
        ],
    );
    let versions = reflect(
        Api::<FunctionVersion>::all(client.clone()),
        scoped(),
        crate::trim::managed_fields,
        vec![
            triggers(&provider_triggers, |v: &FunctionVersion| {
                [provider_of(&v.spec.configuration)]
            }),
            // A version's status (Active, its EEs) goes into its function's status.
            triggers(&function_triggers, |v: &FunctionVersion| {
                let namespace = v.namespace().unwrap_or_default();
                v.owner_references()
                    .iter()
                    .filter(|o| o.controller == Some(true) && o.kind == "Function")
                    .map(|o| ObjectRef::new(&o.name).within(&namespace))
                    .collect::<Vec<_>>()
            }),
        ],
    );
    let pods = reflect(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY},{selector}")),
        crate::trim::ee_pod,
        vec![triggers(&provider_triggers, |p: &Pod| {
            capacity_provider::by_label(p)
        })],
    );
    // Karpenter nodes name their provider; a Static provider's nodes are found by its selector,
    // so any node change replans the Static providers.
    let providers_for_nodes = capacity_providers.clone();
    let nodes = reflect(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        crate::trim::node,
        vec![triggers(&provider_triggers, move |n: &Node| {
            let mut refs: Vec<_> = capacity_provider::by_label(n).into_iter().collect();
            refs.extend(providers_where(&providers_for_nodes, |cp| {
                cp.spec.provisioning.mode == ProvisioningMode::Static
            }));
            refs
        })],
    );
    // A namespace's labels decide which providers may place its versions (namespaceSelector).
    let providers_for_namespaces = capacity_providers.clone();
    let namespaces = reflect(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
        crate::trim::managed_fields,
        vec![triggers(&provider_triggers, move |_: &Namespace| {
            providers_where(&providers_for_namespaces, |cp| {
                cp.spec.namespace_selector.is_some()
            })
        })],
    );
    let claims = reflect(
        Api::<NodeClaim>::all(client.clone()),
        scoped(),
        crate::trim::managed_fields,
        vec![triggers(&provider_triggers, |c: &NodeClaim| {
            capacity_provider::by_label(c)
        })],
    );
    // The operator's own EC2NodeClasses; another provider's node class is not its to watch.
    let node_classes = match settings.node_class {
        NodeClassChoice::Ec2PerProvider => Some(reflect(
            Api::<EC2NodeClass>::all(client.clone()),
            scoped(),
            crate::trim::managed_fields,
            vec![triggers(&provider_triggers, |c: &EC2NodeClass| {
                [ObjectRef::new(&c.name_any())]
            })],
        )),
        NodeClassChoice::Shared { .. } => None,
    };
    let stores = Stores {
        functions: functions.clone(),
        capacity_providers: capacity_providers.clone(),
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

    // The autoscaler asks for a new plan of a capacity provider when a version's wish changes.
    let (replan_tx, replan_rx) = tokio::sync::mpsc::unbounded_channel();
    let replans = futures::stream::unfold(replan_rx, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    let autoscaler = crate::controllers::autoscaler::run(
        ctx.clone(),
        capacity_providers.clone(),
        source,
        replan_tx,
    );
    let queued_events = ctx.settings.nats_url.clone().map(|url| {
        let ctx = ctx.clone();
        async move { crate::controllers::event_queue::run(ctx, url).await }
    });
    let cp_controller = Controller::for_stream(provider_stream, capacity_providers)
        .reconcile_on(replans)
        .reconcile_on(provider_triggers.stream())
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

    let fn_controller = Controller::for_stream(function_stream, functions)
        .reconcile_on(function_triggers.stream())
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
