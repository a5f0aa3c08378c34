//! Benchmark of the data plane: latency added by router + sidecar, and their CPU, against a minimal
//! echo server called directly. A program, not a test; results go in docs/benchmarks.md.
//!
//! ```text
//! cargo build --release -p lmi-router --bins --examples
//! $CARGO_TARGET_DIR/release/examples/bench [SECONDS_PER_PHASE]
//! ```
//!
//! It starts (from the directory of its own binary) `echo_server`, `proxy_floor` in front of a
//! second echo server (the least a hyper proxy hop costs, for comparison with the router),
//! `lmi-sidecar` running `fixture_fn` (the trivial Rust runtime) and `lmi-router` on loopback,
//! then for each target
//! rate (open loop: requests are sent on a fixed schedule, whatever the answers do) and at
//! saturation (closed loop: a fixed number of callers back to back) records per-request latency
//! and each process's CPU time from /proc.
//!
//! `bench SECONDS events` compares `Event` invocations (stored in NATS JetStream, then
//! dispatched) with synchronous ones (see `bench/events.rs`; it needs a nats-server).
//!
//! `bench SECONDS stream` compares InvokeWithResponseStream and function URLs with Invoke: time
//! to first byte of a streamed answer, and CPU per 1k/s (see `bench/stream.rs`).
//!
//! `bench SECONDS queue-proxy` compares Knative's queue-proxy with the bare hop, when
//! `lmi-dev queue-proxy` has built it (see `bench/queue_proxy.rs`).
//!
//! `bench SECONDS auth` compares the router with SigV4 authentication and RBAC on against off
//! (see `bench/auth.rs`; it needs a cluster in KUBECONFIG).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Mutex;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

#[path = "bench/auth.rs"]
mod auth;
#[path = "bench/events.rs"]
mod events;
#[path = "support/nats.rs"]
mod nats;
#[path = "bench/queue_proxy.rs"]
mod queue_proxy;
#[path = "bench/stream.rs"]
mod stream;
#[path = "support/mod.rs"]
mod support;
use support::{Proc, free_port};

const PAYLOAD: &str = r#"{"k":"v"}"#;
const SATURATION_CALLERS: usize = 32;

/// CPU seconds (user + system) of a process and its descendants, from /proc.
fn cpu_seconds(root: u32) -> f64 {
    let procs = lmi_router::usage::read_proc();
    let (ticks, _) = lmi_router::usage::total(&procs, lmi_router::usage::Selector::Tree(root), 0);
    ticks as f64 / 100.0
}

#[derive(Default)]
struct Run {
    sent: usize,
    ok: usize,
    errors: usize,
    latencies_us: Vec<f64>,
    seconds: f64,
    /// First few error messages, to tell throttles from transport failures.
    error_samples: Vec<String>,
}

impl Run {
    fn sorted(mut self) -> Self {
        self.latencies_us.sort_by(|a, b| a.total_cmp(b));
        self
    }

    fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i]
    }
}

/// One request; signed with SigV4 when a signer is given (each request at its own time, as a
/// caller's SDK signs).
async fn one(
    client: &HttpClient,
    uri: &hyper::Uri,
    signer: Option<&auth::Signer>,
) -> Result<Duration, String> {
    one_of(client, uri, signer, false).await
}

/// One request, synchronous (200 expected) or an `Event` (202 expected).
async fn one_of(
    client: &HttpClient,
    uri: &hyper::Uri,
    signer: Option<&auth::Signer>,
    event: bool,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut req = hyper::Request::post(uri.clone()).header("content-type", "application/json");
    if event {
        req = req.header("x-amz-invocation-type", "Event");
    }
    if let Some(signer) = signer {
        for (name, value) in signer.headers(uri.path(), PAYLOAD.as_bytes()) {
            req = req.header(name, value);
        }
    }
    let req = req
        .body(Full::new(Bytes::from_static(PAYLOAD.as_bytes())))
        .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status != if event { 202 } else { 200 } {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(start.elapsed())
}

/// Open loop at `rate` per second for `secs`.
async fn open_loop(
    client: &HttpClient,
    uri: &hyper::Uri,
    rate: u64,
    secs: f64,
    signer: Option<Arc<auth::Signer>>,
) -> Run {
    open_loop_of(client, uri, rate, secs, signer, false).await
}

/// [`open_loop`] of synchronous calls or of `Event`s.
async fn open_loop_of(
    client: &HttpClient,
    uri: &hyper::Uri,
    rate: u64,
    secs: f64,
    signer: Option<Arc<auth::Signer>>,
    event: bool,
) -> Run {
    open_loop_with(rate, secs, |_| {
        let (c, u, s) = (client.clone(), uri.clone(), signer.clone());
        async move { one_of(&c, &u, s.as_deref(), event).await }
    })
    .await
}

/// Open loop at `rate` per second for `secs` of the requests `call(i)` makes.
async fn open_loop_with<F, Fut>(rate: u64, secs: f64, call: F) -> Run
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Duration, String>> + Send + 'static,
{
    let results = Arc::new(Mutex::new(Run::default()));
    let total = (rate as f64 * secs) as usize;
    let start = Instant::now();
    let mut handles = Vec::with_capacity(total);
    for i in 0..total {
        // Send each request at its scheduled time (tokio timers have 1 ms granularity, so at high
        // rates requests go out in small bursts each millisecond; the average rate is exact).
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let (request, r) = (call(i), results.clone());
        handles.push(tokio::spawn(async move {
            let res = request.await;
            let mut r = r.lock().await;
            r.sent += 1;
            match res {
                Ok(d) => {
                    r.ok += 1;
                    r.latencies_us.push(d.as_secs_f64() * 1e6);
                }
                Err(e) => {
                    r.errors += 1;
                    if r.error_samples.len() < 3 {
                        r.error_samples.push(e);
                    }
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    let mut r = std::mem::take(&mut *results.lock().await);
    r.seconds = start.elapsed().as_secs_f64();
    r
}

/// Closed loop: `callers` back-to-back callers for `secs`.
async fn closed_loop(client: &HttpClient, uri: &hyper::Uri, callers: usize, secs: f64) -> Run {
    let results = Arc::new(Mutex::new(Run::default()));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..callers)
        .map(|_| {
            let (c, u, r) = (client.clone(), uri.clone(), results.clone());
            tokio::spawn(async move {
                let mut local = Run::default();
                while Instant::now() < end {
                    local.sent += 1;
                    match one(&c, &u, None).await {
                        Ok(d) => {
                            local.ok += 1;
                            local.latencies_us.push(d.as_secs_f64() * 1e6);
                        }
                        Err(_) => local.errors += 1,
                    }
                }
                let mut r = r.lock().await;
                r.sent += local.sent;
                r.ok += local.ok;
                r.errors += local.errors;
                r.latencies_us.extend(local.latencies_us);
            })
        })
        .collect();
    for h in handles {
        let _ = h.await;
    }
    let mut r = std::mem::take(&mut *results.lock().await);
    r.seconds = start.elapsed().as_secs_f64();
    r
}

fn spawn(bin: &Path, args: &[&str], env: &[(&str, String)]) -> Proc {
    let mut c = Command::new(bin);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    match c.spawn() {
        Ok(child) => Proc(child),
        Err(e) => {
            eprintln!(
                "cannot start {}: {e} (build with `cargo build --release -p lmi-router --bins --examples`)",
                bin.display()
            );
            std::process::exit(2);
        }
    }
}

/// The sidecar running the trivial Rust function (up to 64 invocations at once).
fn start_sidecar(bins: &Path, examples: &Path, port: u16, runtime_api_port: u16) -> Proc {
    spawn(
        &bins.join("lmi-sidecar"),
        &["--", &examples.join("fixture_fn").display().to_string()],
        &[
            ("LMI_LISTEN_ADDR", format!("127.0.0.1:{port}")),
            (
                "LMI_RUNTIME_API_ADDR",
                format!("127.0.0.1:{runtime_api_port}"),
            ),
            ("AWS_LAMBDA_MAX_CONCURRENCY", "64".to_string()),
            ("LMI_FUNCTION_TIMEOUT_SECONDS", "10".to_string()),
            ("RUST_LOG", "warn".to_string()),
        ],
    )
}

/// A static catalog (in the temp dir) of function `bench` in `namespace`, version 1 on the sidecar
/// at `sidecar_port`.
fn write_catalog(what: &str, namespace: &str, sidecar_port: u16) -> PathBuf {
    let catalog = std::env::temp_dir().join(format!("lmi-bench-{what}-{sidecar_port}.yaml"));
    let _ = std::fs::write(
        &catalog,
        format!(
            "functions:\n  - name: bench\n    namespace: {namespace}\n    versions:\n      - {{version: 1, timeoutSeconds: 10, endpoints: [\"127.0.0.1:{sidecar_port}\"]}}\n"
        ),
    );
    catalog
}

/// `lmi-router` on `catalog` at 127.0.0.1:`port`, authentication `auth` ("on" or "off"), with
/// `extra` flags.
fn start_router(bins: &Path, catalog: &Path, port: u16, auth: &str, extra: &[&str]) -> Proc {
    let catalog = catalog.display().to_string();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["--static", &catalog, "--auth", auth, "--listen", &listen];
    args.extend_from_slice(extra);
    spawn(
        &bins.join("lmi-router"),
        &args,
        &[("RUST_LOG", "warn".to_string())],
    )
}

/// The load generator's HTTP client: enough pooled connections for the open loops.
fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http()
}

async fn wait_up(client: &HttpClient, uri: &hyper::Uri, signer: Option<&auth::Signer>) {
    for _ in 0..200 {
        if one(client, uri, signer).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("{uri} did not come up");
    std::process::exit(1);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // A single-threaded load generator keeps its own CPU use to one core at most.
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let me = std::env::current_exe().unwrap_or_default();
    let examples = me.parent().map(Path::to_path_buf).unwrap_or_default();
    let bins: PathBuf = examples.parent().map(Path::to_path_buf).unwrap_or_default();
    if std::env::args().nth(2).as_deref() == Some("auth") {
        auth::compare(secs, &bins, &examples).await;
        return;
    }
    if std::env::args().nth(2).as_deref() == Some("events") {
        events::compare(secs, &bins, &examples).await;
        return;
    }
    if std::env::args().nth(2).as_deref() == Some("stream") {
        stream::compare(secs, &bins, &examples).await;
        return;
    }
    if std::env::args().nth(2).as_deref() == Some("queue-proxy") {
        queue_proxy::compare(secs, &examples).await;
        return;
    }

    let echo_port = free_port();
    let (sidecar_port, rapi_port) = (free_port(), free_port());
    let router_port = free_port();
    let echo = spawn(
        &examples.join("echo_server"),
        &[&format!("127.0.0.1:{echo_port}")],
        &[],
    );
    // The floor's own upstream, so the echo server's CPU figure stays that of one exchange.
    let floor_echo_port = free_port();
    let floor_port = free_port();
    let _floor_echo = spawn(
        &examples.join("echo_server"),
        &[&format!("127.0.0.1:{floor_echo_port}")],
        &[],
    );
    let floor = spawn(
        &examples.join("proxy_floor"),
        &[
            &format!("127.0.0.1:{floor_port}"),
            &format!("http://127.0.0.1:{floor_echo_port}/"),
        ],
        &[],
    );
    let sidecar = start_sidecar(&bins, &examples, sidecar_port, rapi_port);
    let catalog = write_catalog("main", "default", sidecar_port);
    let router = start_router(&bins, &catalog, router_port, "off", &[]);

    let client = http_client();
    let echo_uri: hyper::Uri = format!("http://127.0.0.1:{echo_port}/")
        .parse()
        .unwrap_or_default();
    let floor_uri: hyper::Uri = format!("http://127.0.0.1:{floor_port}/")
        .parse()
        .unwrap_or_default();
    let lambda_uri: hyper::Uri =
        format!("http://127.0.0.1:{router_port}/2015-03-31/functions/bench/invocations")
            .parse()
            .unwrap_or_default();
    let util_uri = format!("http://127.0.0.1:{sidecar_port}/utilization");
    wait_up(&client, &echo_uri, None).await;
    wait_up(&client, &floor_uri, None).await;
    wait_up(&client, &lambda_uri, None).await;
    // Warm up connection pools and the runtime.
    let _ = closed_loop(&client, &echo_uri, 8, 1.0).await;
    let _ = closed_loop(&client, &floor_uri, 8, 1.0).await;
    let _ = closed_loop(&client, &lambda_uri, 8, 1.0).await;

    let pids = [
        ("router", router.0.id()),
        ("sidecar", sidecar.0.id()),
        ("echo", echo.0.id()),
        ("floor", floor.0.id()),
    ];
    let runtime_pid = {
        // The runtime is the sidecar's child; measure sidecar-only as tree minus runtime.
        let procs = lmi_router::usage::read_proc();
        procs
            .iter()
            .find(|p| p.ppid == sidecar.0.id())
            .map(|p| p.pid)
            .unwrap_or(0)
    };

    println!(
        "| load | target | achieved/s | errors | p50 µs | p99 µs | added p50 µs | added p99 µs | router (proxy) vCPU | sidecar vCPU | runtime vCPU | echo vCPU | router (proxy) vCPU per 1k/s | sidecar vCPU per 1k/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    // Optional second argument: the phases to run, e.g. "1000,5000,sat".
    let phases: Vec<String> = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "1000,5000,sat".to_string())
        .split(',')
        .map(str::to_string)
        .collect();
    for phase in &phases {
        let phase = match phase.as_str() {
            "sat" | "saturation" => "saturation".to_string(),
            rate => format!("{rate}/s"),
        };
        let mut runs = Vec::new();
        for uri in [&echo_uri, &floor_uri, &lambda_uri] {
            let before: Vec<f64> = pids.iter().map(|(_, p)| cpu_seconds(*p)).collect();
            let rt_before = cpu_seconds(runtime_pid);
            let run = match phase.strip_suffix("/s").and_then(|r| r.parse::<u64>().ok()) {
                Some(rate) => open_loop(&client, uri, rate, secs, None).await,
                None => closed_loop(&client, uri, SATURATION_CALLERS, secs).await,
            };
            let after: Vec<f64> = pids.iter().map(|(_, p)| cpu_seconds(*p)).collect();
            let rt = (cpu_seconds(runtime_pid) - rt_before) / run.seconds;
            let cpu: Vec<f64> = before
                .iter()
                .zip(&after)
                .map(|(b, a)| (a - b) / run.seconds)
                .collect();
            runs.push((run.sorted(), cpu, rt));
        }
        let (base, base_cpu, _) = runs.remove(0);
        let (fl, fl_cpu, _) = runs.remove(0);
        let (lam, cpu, rt) = runs.remove(0);
        let rate = lam.ok as f64 / lam.seconds;
        // The sidecar's own view after the phase (in flight, runtime workers polling).
        if let Ok(u) = util_uri.parse::<hyper::Uri>()
            && let Ok(r) = client.get(u).await
            && let Ok(b) = r.into_body().collect().await
        {
            eprintln!(
                "{phase}: sidecar after the run: {}",
                String::from_utf8_lossy(&b.to_bytes())
            );
        }
        for e in base
            .error_samples
            .iter()
            .chain(&fl.error_samples)
            .chain(&lam.error_samples)
        {
            eprintln!("{phase}: error: {e}");
        }
        // The sidecar's tree includes the runtime; report the sidecar alone.
        let sidecar_alone = (cpu[1] - rt).max(0.0);
        println!(
            "| direct echo | {phase} | {:.0} | {} | {:.0} | {:.0} | | | | | | {:.3} | | |",
            base.ok as f64 / base.seconds,
            base.errors,
            base.pct(0.5),
            base.pct(0.99),
            base_cpu[2],
        );
        let fl_rate = fl.ok as f64 / fl.seconds;
        println!(
            "| minimal proxy + echo | {phase} | {fl_rate:.0} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} | | | | {:.3} | |",
            fl.errors,
            fl.pct(0.5),
            fl.pct(0.99),
            fl.pct(0.5) - base.pct(0.5),
            fl.pct(0.99) - base.pct(0.99),
            fl_cpu[3],
            fl_cpu[3] / (fl_rate / 1000.0),
        );
        println!(
            "| router + sidecar + runtime | {phase} | {rate:.0} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | | {:.3} | {:.3} |",
            lam.errors,
            lam.pct(0.5),
            lam.pct(0.99),
            lam.pct(0.5) - base.pct(0.5),
            lam.pct(0.99) - base.pct(0.99),
            cpu[0],
            sidecar_alone,
            rt,
            cpu[0] / (rate / 1000.0),
            sidecar_alone / (rate / 1000.0),
        );
    }
    let _ = std::fs::remove_file(&catalog);
}
