//! Benchmark of the operator on the local cluster (kwok nodes launched by the cluster's real
//! Karpenter, its kwok provider, with no registration delay): publish-to-Active time with capacity present and with new NodeClaims, and the
//! operator's memory and reconcile rate with many functions. Prints numbers; asserts nothing.
//!
//! Run with `bash scripts/bench-operator.sh` (builds the release operator, brings the cluster up).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use lmi_crds::{CapacityProvider, Function, FunctionVersion, State};
use lmi_e2e::error::{Error, Result};
use lmi_e2e::harness;
use lmi_e2e::operator_harness::{create, force_remove};
use serde_json::json;

const NAMESPACE: &str = "lmi-bench";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match bench().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lmi-bench-operator: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == format!("--{name}"))
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

/// The operator as its own process, so its memory is its own.
/// A benchmarked process (the operator, or the router), killed when dropped.
struct Process {
    child: Child,
}

impl Process {
    fn operator(binary: &PathBuf, kubeconfig: &PathBuf, log: &PathBuf) -> Result<Self> {
        let zones = lmi_e2e::karpenter::ZONES.join(",");
        Self::spawn(
            binary,
            kubeconfig,
            log,
            &[
                "--sidecar-image",
                lmi_e2e::images::SIDECAR_IMAGE,
                "--no-leader-election",
                // The tests' operator instance: `create` labels every object for it, and the
                // main job's operator (no instance) leaves them alone, so both may run.
                "--instance",
                lmi_e2e::harness::E2E_INSTANCE,
                "--metrics-addr",
                METRICS_ADDR,
                "--empty-claim-cooldown-seconds",
                "30",
                "--node-class",
                lmi_e2e::karpenter::NODE_CLASS,
                "--zones",
                &zones,
            ],
        )
    }

    /// The router on [`ROUTER_ADDR`], reading the cluster's catalog (every EE pod).
    fn router(binary: &PathBuf, kubeconfig: &PathBuf, log: &PathBuf) -> Result<Self> {
        Self::spawn(
            binary,
            kubeconfig,
            log,
            &["--listen", ROUTER_ADDR, "--system-namespace", "lmi-system"],
        )
    }

    /// `binary` with `args` on the cluster of `kubeconfig`, warnings logged to `log`.
    fn spawn(binary: &PathBuf, kubeconfig: &PathBuf, log: &PathBuf, args: &[&str]) -> Result<Self> {
        let log_file = std::fs::File::create(log).map_err(Error::io("creating", log))?;
        let child = Command::new(binary)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            // They log to stdout; `LMI_BENCH_LOG` sets their filter (default warn).
            .env(
                "RUST_LOG",
                std::env::var("LMI_BENCH_LOG").unwrap_or_else(|_| "warn".to_string()),
            )
            .stdout(log_file.try_clone().map_err(Error::io("opening", log))?)
            .stderr(log_file)
            .spawn()
            .map_err(Error::io("starting", binary))?;
        Ok(Self { child })
    }

    /// Resident and peak resident memory in MiB, from /proc.
    fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Functions per capacity provider in the many-functions case (Lambda allows 100 versions per
/// provider).
const PER_PROVIDER: usize = 90;

/// The benchmarked operator's metrics (away from the main job's router on 18080 and operator on
/// 18081).
const METRICS_ADDR: &str = "127.0.0.1:18095";

/// The benchmarked router (its Invoke API and `/metrics`), when `LMI_ROUTER_BIN` is set.
const ROUTER_ADDR: &str = "127.0.0.1:18096";

async fn reconciles() -> f64 {
    counter_sum("lmi_operator_reconciles_total", |_| true).await
}

/// The sum of counter `name`'s series whose line passes `keep`.
async fn counter_sum(name: &str, keep: impl Fn(&str) -> bool) -> f64 {
    sum_at(METRICS_ADDR, name, keep).await
}

/// The sum of the series of metric `name` at `addr` whose line passes `keep`.
async fn sum_at(addr: &str, name: &str, keep: impl Fn(&str) -> bool) -> f64 {
    let Ok(text) = metrics_text(addr).await else {
        return 0.0;
    };
    text.lines()
        .filter(|l| l.starts_with(name) && keep(l))
        .filter_map(|l| {
            l.split_whitespace()
                .last()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .sum()
}

/// The operator's API requests so far, by verb (`lmi_operator_api_requests_total`).
async fn api_requests() -> BTreeMap<String, f64> {
    let mut by_verb = BTreeMap::new();
    for verb in [
        "get", "create", "update", "patch", "delete", "watch", "other",
    ] {
        let label = format!("verb=\"{verb}\"");
        let n = counter_sum("lmi_operator_api_requests_total", |l| l.contains(&label)).await;
        by_verb.insert(verb.to_string(), n);
    }
    by_verb
}

async fn metrics_text(addr: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}

fn provider(name: &str, allowed: &[&str]) -> serde_json::Value {
    json!({
        "apiVersion": "lmi.dev/v1alpha1", "kind": "CapacityProvider", "metadata": {"name": name},
        "spec": {
            "vpcConfig": {"subnetIds": ["subnet-a", "subnet-b", "subnet-c"]},
            "instanceRole": "bench", "instanceRequirements": {"architectures": ["arm64"], "allowedInstanceTypes": allowed},
            "scalingConfig": {"maxVCpuCount": 15000}
        }
    })
}

fn function(name: &str, cp: &str, min: i32) -> serde_json::Value {
    json!({
        "apiVersion": "lmi.dev/v1alpha1", "kind": "Function", "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "capacityProviderConfig": {"capacityProviderName": cp},
            "code": {"imageUri": "localhost/lmi/example:dev"}, "architecture": "arm64",
            "publish": true, "scalingConfig": {"minExecutionEnvironments": min}
        }
    })
}

async fn active_count(client: &Client) -> Result<usize> {
    let versions: Api<FunctionVersion> = Api::namespaced(client.clone(), NAMESPACE);
    let list = versions.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|v| v.status.as_ref().and_then(|s| s.state) == Some(State::Active))
        .count())
}

/// One publication's times, in seconds from creating the function.
struct Publication {
    /// Until its version 1 is Active (its EEs Ready).
    active: f64,
    /// Until all its EEs exist: the operator's part, before the kubelet (here kwok) starts them.
    ees_created: f64,
}

/// Times from creating `name` until its EEs exist and until its version 1 is Active.
async fn publish_to_active(client: &Client, name: &str, cp: &str, min: i32) -> Result<Publication> {
    let functions: Api<Function> = Api::namespaced(client.clone(), NAMESPACE);
    let versions: Api<FunctionVersion> = Api::namespaced(client.clone(), NAMESPACE);
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let of_function = ListParams::default().labels(&format!("lmi.dev/function={name}"));
    let started = Instant::now();
    create(&functions, function(name, cp, min)).await?;
    let version = FunctionVersion::object_name(name, 1);
    let mut ees_created = None;
    let mut polls = 0_u32;
    loop {
        // The pods are listed every fifth poll only: a label-selected list walks all 10,000.
        if ees_created.is_none() && polls.is_multiple_of(5) {
            let created = pods.list_metadata(&of_function).await?.items.len();
            if created >= usize::try_from(min).unwrap_or(0) {
                ees_created = Some(started.elapsed().as_secs_f64());
            }
        }
        polls += 1;
        let state = versions
            .get_opt(&version)
            .await?
            .and_then(|v| v.status)
            .and_then(|s| s.state);
        if state == Some(State::Active) {
            let active = started.elapsed().as_secs_f64();
            if active > 3.0 {
                print_stages(client, name, &version).await;
            }
            return Ok(Publication {
                active,
                // Active implies its EEs exist; a list that had not seen them yet counts as now.
                ees_created: ees_created.unwrap_or(active),
            });
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(Error::Timeout {
                what: format!("{version} to be Active"),
                seconds: 120,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// For a slow publication: when each step happened, by the API server's clock (whole seconds):
/// which step waited.
async fn print_stages(client: &Client, function: &str, version: &str) {
    let functions: Api<Function> = Api::namespaced(client.clone(), NAMESPACE);
    let versions: Api<FunctionVersion> = Api::namespaced(client.clone(), NAMESPACE);
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let created = |meta: &kube::api::ObjectMeta| {
        meta.creation_timestamp
            .as_ref()
            .map_or("?".to_string(), |t| t.0.to_string())
    };
    let mut stages = Vec::new();
    if let Ok(f) = functions.get(function).await {
        stages.push(format!("function created {}", created(&f.metadata)));
    }
    if let Ok(v) = versions.get(version).await {
        stages.push(format!("version created {}", created(&v.metadata)));
        for c in v.status.iter().flat_map(|s| s.conditions.iter()) {
            stages.push(format!(
                "version {}={} at {}",
                c.type_, c.status, c.last_transition_time.0
            ));
        }
    }
    if let Ok(list) = pods
        .list(&ListParams::default().labels(&format!("lmi.dev/function={function}")))
        .await
    {
        for p in list.items {
            let ready = p
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .find(|c| c.type_ == "Ready")
                .and_then(|c| c.last_transition_time.as_ref())
                .map_or("?".to_string(), |t| t.0.to_string());
            stages.push(format!(
                "EE {} created {}, Ready {ready}",
                p.name_any(),
                created(&p.metadata)
            ));
        }
    }
    println!("  slow publication of {function}: {}", stages.join("; "));
}

/// Publish-to-Active, and the operator's part of it (until the EEs exist) on a line of its own:
/// the rest is the kubelet's (here kwok's, one process for every node) starting them.
fn publications(label: &str, runs: &[Publication]) {
    summary(label, runs.iter().map(|p| p.active).collect());
    summary(
        "  of which the operator's part (function created to its EEs created)",
        runs.iter().map(|p| p.ees_created).collect(),
    );
}

fn summary(label: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    let median = samples.get(samples.len() / 2).copied().unwrap_or(0.0);
    // Nearest rank: the smallest sample at or above 99% of them.
    let p99 = samples
        .get((samples.len() * 99).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or(0.0);
    let max = samples.last().copied().unwrap_or(0.0);
    println!(
        "{label}: median {median:.3} s, p99 {p99:.3} s, max {max:.3} s over {} runs",
        samples.len()
    );
}

async fn bench() -> Result<()> {
    let kubeconfig = harness::kubeconfig().await?;
    let client = harness::client().await?;
    lmi_e2e::operator_harness::prepare(&client).await?;
    let binary = std::env::var_os("LMI_OPERATOR_BIN")
        .map(PathBuf::from)
        .ok_or_else(|| Error::Other("set LMI_OPERATOR_BIN to the release lmi-operator".into()))?;
    let runs = arg("runs", 5);
    let functions_n = arg("functions", 200);
    let ees = arg("ees", 5);

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let _ = create(
        &namespaces,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )
    .await;
    let log = std::env::temp_dir().join("lmi-bench-operator.log");
    let operator = Process::operator(&binary, &kubeconfig, &log)?;
    let cps: Api<CapacityProvider> = Api::all(client.clone());

    // 1. New NodeClaims: each function on a fresh provider, min 3 (one instance per zone).
    let mut fresh = Vec::new();
    for i in 0..runs {
        let cp = format!("bench-fresh-{i}");
        create(&cps, provider(&cp, &["c7g.large"])).await?;
        fresh.push(publish_to_active(&client, &format!("fresh-{i}"), &cp, 3).await?);
    }
    publications(
        "publish-to-Active, new NodeClaims (Karpenter, kwok)",
        &fresh,
    );

    // 2. Capacity present: large nodes launched by a first function, then one more each time.
    let cp = "bench-warm";
    create(&cps, provider(cp, &["c7g.16xlarge"])).await?;
    publish_to_active(&client, "warm-up", cp, 3).await?;
    let mut present = Vec::new();
    for i in 0..runs {
        present.push(publish_to_active(&client, &format!("present-{i}"), cp, 3).await?);
    }
    publications("publish-to-Active, capacity present", &present);

    // 3. Many functions at once, spread over providers: a provider holds at most Lambda's 100
    // function versions (the operator holds a 101st publication back), so each gets at most
    // PER_PROVIDER functions.
    let providers = functions_n.div_ceil(PER_PROVIDER).max(1);
    let many: Vec<String> = (0..providers).map(|p| format!("bench-many-{p}")).collect();
    for cp in &many {
        create(&cps, provider(cp, &["c7g.16xlarge"])).await?;
    }
    let functions: Api<Function> = Api::namespaced(client.clone(), NAMESPACE);
    let before = reconciles().await;
    let started = Instant::now();
    for i in 0..functions_n {
        create(
            &functions,
            function(
                &format!("many-{i}"),
                &many[i % providers],
                i32::try_from(ees).unwrap_or(5),
            ),
        )
        .await?;
    }
    let target = functions_n + 1 + runs * 2;
    loop {
        let active = active_count(&client).await?;
        if active >= target {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            println!("only {active} of {target} versions Active after 900 s");
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let reconciled = reconciles().await - before;
    let (rss, peak) = operator.memory_mib();
    println!(
        "{functions_n} functions x {ees} EEs: all Active after {elapsed:.1} s; {reconciled:.0} reconciles ({:.1}/s); operator memory {rss:.1} MiB resident, {peak:.1} MiB peak",
        reconciled / elapsed
    );
    let mut claims = 0;
    for cp in &many {
        claims += lmi_e2e::operator_harness::claims_of(&client, cp)
            .await?
            .len();
    }
    println!(
        "  {claims} NodeClaims (c7g.16xlarge) for {} EEs on {providers} capacity providers",
        functions_n * ees
    );

    // 4. Steady state: nothing changes, so the operator should send nothing but its watches.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let window = arg("steady-seconds", 60);
    let first = api_requests().await;
    tokio::time::sleep(Duration::from_secs(u64::try_from(window).unwrap_or(60))).await;
    let second = api_requests().await;
    #[allow(clippy::cast_precision_loss)]
    let per_second: Vec<String> = second
        .iter()
        .map(|(verb, n)| {
            let delta = n - first.get(verb).copied().unwrap_or(0.0);
            format!("{verb} {:.2}/s ({delta:.0})", delta / window as f64)
        })
        .collect();
    let (rss, peak) = operator.memory_mib();
    println!(
        "steady state over {window} s: API requests {}; operator memory {rss:.1} MiB resident, {peak:.1} MiB peak",
        per_second.join(", ")
    );

    // 5. One more function at a time while all of that runs (capacity present on `bench-warm`).
    let extra = arg("extra", 20);
    let mut during = Vec::new();
    for i in 0..extra {
        during.push(publish_to_active(&client, &format!("during-{i}"), cp, 3).await?);
    }
    publications(
        &format!("publish-to-Active beside {} EEs", functions_n * ees),
        &during,
    );

    // 6. The router with every EE in its tables: memory, and how soon a new EE is routable.
    if let Some(router_bin) = std::env::var_os("LMI_ROUTER_BIN").map(PathBuf::from) {
        bench_router(&client, &kubeconfig, &router_bin, cp, functions_n * ees).await?;
    }

    // Clean up while the operator still runs.
    let _ = namespaces
        .delete(NAMESPACE, &DeleteParams::foreground())
        .await;
    harness::eventually(
        "the benchmark namespace to go",
        // 10,000 EE pods take the apiserver and kwok several minutes to delete.
        Duration::from_secs(1200),
        || async { Ok(namespaces.get_opt(NAMESPACE).await?.is_none().then_some(())) },
    )
    .await?;
    for cp in bench_providers(&cps).await? {
        let _ = cps.delete(&cp, &DeleteParams::default()).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(operator);
    for cp in bench_providers(&cps).await? {
        force_remove(&client, &cp).await;
    }
    println!("operator log: {}", log.display());
    Ok(())
}

/// Names of the capacity providers this benchmark created.
async fn bench_providers(cps: &Api<CapacityProvider>) -> Result<Vec<String>> {
    Ok(cps
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|c| c.name_any())
        .filter(|name| name.starts_with("bench-"))
        .collect())
}

/// Ready EEs in the router's catalog (`lmi_router_execution_environments`).
async fn routable() -> f64 {
    sum_at(ROUTER_ADDR, "lmi_router_execution_environments", |_| true).await
}

/// Starts the router beside the benchmark's EEs: its memory once its catalog holds them all, then
/// 20 times (`--router-tries`) one more function of one EE on `cp`, from its EE being Ready in the
/// API to the router counting it routable. (The EEs are kwok pods: nothing is invoked, their
/// addresses lead nowhere.)
async fn bench_router(
    client: &Client,
    kubeconfig: &PathBuf,
    binary: &PathBuf,
    cp: &str,
    ees: usize,
) -> Result<()> {
    let log = std::env::temp_dir().join("lmi-bench-router.log");
    let router = Process::router(binary, kubeconfig, &log)?;
    let started = Instant::now();
    #[allow(clippy::cast_precision_loss)]
    let all = ees as f64;
    while routable().await < all {
        if started.elapsed() > Duration::from_secs(300) {
            println!(
                "the router holds {} of {ees} EEs after 300 s",
                routable().await
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let loaded = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (rss, peak) = router.memory_mib();
    println!(
        "router with {} EEs in its tables (all listed after {loaded:.1} s): {rss:.1} MiB resident, {peak:.1} MiB peak",
        routable().await
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let mut latencies = Vec::new();
    for i in 0..arg("router-tries", 20) {
        let before = routable().await;
        let name = format!("routed-{i}");
        create(
            &Api::<Function>::namespaced(client.clone(), NAMESPACE),
            function(&name, cp, 1),
        )
        .await?;
        let selector = format!("lmi.dev/function={name}");
        let ready_at = poll_until(&format!("an EE of {name} to be Ready"), 120, || async {
            let list = pods.list(&ListParams::default().labels(&selector)).await?;
            Ok(list.items.iter().any(lmi_e2e::operator_harness::pod_ready))
        })
        .await?;
        let routed_at = poll_until(&format!("the router to route {name}"), 60, || async {
            Ok(routable().await > before)
        })
        .await?;
        latencies.push(routed_at.saturating_duration_since(ready_at).as_secs_f64());
    }
    summary(
        &format!("router: EE Ready to routable, beside {ees} EEs"),
        latencies,
    );
    let (rss, peak) = router.memory_mib();
    println!(
        "router memory after: {rss:.1} MiB resident, {peak:.1} MiB peak; log {}",
        log.display()
    );
    Ok(())
}

/// When `done` first said yes, asking every 10 ms (finer than the harness's `eventually`: these
/// are latencies), for at most `seconds`.
async fn poll_until<F, Fut>(what: &str, seconds: u64, done: F) -> Result<Instant>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let started = Instant::now();
    loop {
        if done().await? {
            return Ok(Instant::now());
        }
        if started.elapsed() > Duration::from_secs(seconds) {
            return Err(Error::Timeout {
                what: what.to_string(),
                seconds,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
