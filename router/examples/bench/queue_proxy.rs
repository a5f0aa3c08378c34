//! `bench SECONDS queue-proxy`: Knative Serving's queue-proxy (the per-pod proxy a Knative user
//! knows) against the bare hyper hop (`proxy_floor`), each in front of its own `echo_server`, in
//! one run: at 1000/s and at saturation, the proxy's vCPU per 1k/s and the p50 it adds over
//! calling the echo server directly. The router's and the sidecar's ratios to the same floor come
//! from the main run (`bench SECONDS`).
//!
//! The queue-proxy binary is built from its Go module by `lmi-dev queue-proxy` (cached in
//! `$HOME/.cache/lmi/queue-proxy-<version>/bin/queue`), or named by `LMI_QUEUE_PROXY`; without
//! it this mode says so and stops. Settings: container concurrency 0 (unlimited) and 64, revision
//! timeout 300 s, logging at error level, no TLS certificate (plain HTTP), no readiness probe.

use super::*;

const RATE: u64 = 1000;

/// Where the queue-proxy binary is, if anywhere.
fn queue_binary() -> Option<PathBuf> {
    let named = std::env::var_os("LMI_QUEUE_PROXY").map(PathBuf::from);
    let cached = || {
        let home = std::env::var_os("HOME").map(PathBuf::from)?;
        let cache = std::env::var_os("LMI_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".cache/lmi"));
        std::fs::read_dir(&cache)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("queue-proxy-"))
            })
            .map(|p| p.join("bin/queue"))
            .find(|p| p.is_file())
    };
    named.filter(|p| p.is_file()).or_else(cached)
}

/// queue-proxy on `port` in front of 127.0.0.1:`user_port`, with `concurrency` (0: unlimited).
fn start_queue(queue: &Path, port: u16, user_port: u16, concurrency: u32) -> Proc {
    let env: Vec<(&str, String)> = vec![
        ("QUEUE_SERVING_PORT", port.to_string()),
        ("QUEUE_SERVING_TLS_PORT", free_port().to_string()),
        ("USER_PORT", user_port.to_string()),
        ("CONTAINER_CONCURRENCY", concurrency.to_string()),
        ("REVISION_TIMEOUT_SECONDS", "300".to_string()),
        ("SERVING_LOGGING_CONFIG", String::new()),
        ("SERVING_LOGGING_LEVEL", "error".to_string()),
        ("SERVING_NAMESPACE", "bench".to_string()),
        ("SERVING_CONFIGURATION", "bench".to_string()),
        ("SERVING_REVISION", "bench-00001".to_string()),
        ("SERVING_POD", "bench".to_string()),
        ("SERVING_POD_IP", "127.0.0.1".to_string()),
    ];
    spawn(queue, &[], &env)
}

pub async fn compare(secs: f64, examples: &Path) {
    let Some(queue) = queue_binary() else {
        eprintln!(
            "no queue-proxy: build it with `lmi-dev queue-proxy` (Go, from knative.dev/serving), or set LMI_QUEUE_PROXY"
        );
        return;
    };
    let client = http_client();
    let echo = |port: u16| {
        spawn(
            &examples.join("echo_server"),
            &[&format!("127.0.0.1:{port}")],
            &[],
        )
    };
    let uri = |port: u16| -> hyper::Uri {
        format!("http://127.0.0.1:{port}/")
            .parse()
            .unwrap_or_default()
    };
    println!(
        "{} in front of an echo server, against the bare hop:\n",
        queue.display()
    );
    println!(
        "| proxy | load | achieved/s | errors | p50 µs | added p50 µs | proxy vCPU per 1k/s | x floor |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for load in ["1000/s", "saturation"] {
        let mut floor_cpu = f64::NAN;
        let mut floor_added = f64::NAN;
        // A fresh echo server and proxy per row, so no row sees another's connections.
        for what in ["proxy_floor", "queue-proxy cc=0", "queue-proxy cc=64"] {
            let (echo_port, proxy_port) = (free_port(), free_port());
            let _echo = echo(echo_port);
            let proxy = match what {
                "proxy_floor" => spawn(
                    &examples.join("proxy_floor"),
                    &[
                        &format!("127.0.0.1:{proxy_port}"),
                        &format!("http://127.0.0.1:{echo_port}/"),
                    ],
                    &[],
                ),
                "queue-proxy cc=0" => start_queue(&queue, proxy_port, echo_port, 0),
                _ => start_queue(&queue, proxy_port, echo_port, 64),
            };
            let (direct, through) = (uri(echo_port), uri(proxy_port));
            wait_up(&client, &direct, None).await;
            wait_up(&client, &through, None).await;
            let _ = closed_loop(&client, &through, 8, 1.0).await;
            let measure = |u: hyper::Uri| {
                let c = client.clone();
                async move {
                    match load {
                        "1000/s" => open_loop(&c, &u, RATE, secs, None).await,
                        _ => closed_loop(&c, &u, SATURATION_CALLERS, secs).await,
                    }
                    .sorted()
                }
            };
            let base = measure(direct).await;
            let before = cpu_seconds(proxy.0.id());
            let run = measure(through).await;
            let per_second = (cpu_seconds(proxy.0.id()) - before) / run.seconds;
            let rate = run.ok as f64 / run.seconds;
            let per_1k = per_second / (rate / 1000.0);
            let added = run.pct(0.5) - base.pct(0.5);
            if what == "proxy_floor" {
                (floor_cpu, floor_added) = (per_1k, added);
            }
            for e in &run.error_samples {
                eprintln!("{what} {load}: error: {e}");
            }
            println!(
                "| {what} | {load} | {rate:.0} | {} | {:.0} | {added:.0} ({:.2}x floor) | {per_1k:.3} | {:.2} |",
                run.errors,
                run.pct(0.5),
                added / floor_added,
                per_1k / floor_cpu,
            );
        }
    }
}
