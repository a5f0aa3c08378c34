//! `bench SECONDS events`: what an `Event` invocation costs against a synchronous one. One
//! router in front of one sidecar, with a nats-server (JetStream, file storage; the binary
//! `lmi-dev` builds, or `LMI_NATS_SERVER`): first synchronous calls at 1000/s for SECONDS, then
//! Events at 1000/s for SECONDS while the same router dispatches them to the sidecar. Prints the
//! caller's latency (for Events: until JetStream stored it, the 202), the router's CPU per 1k/s
//! (for Events: storing and dispatching), and the events' age from acceptance to outcome.

use super::*;

const RATE: u64 = 1000;

/// Samples of one histogram in a /metrics page: (upper bound, cumulative count).
async fn histogram(client: &HttpClient, port: u16, name: &str) -> Vec<(f64, f64)> {
    let Ok(uri) = format!("http://127.0.0.1:{port}/metrics").parse::<hyper::Uri>() else {
        return Vec::new();
    };
    let Ok(response) = client.get(uri).await else {
        return Vec::new();
    };
    let Ok(body) = response.into_body().collect().await else {
        return Vec::new();
    };
    let prefix = format!("{name}_bucket{{le=\"");
    String::from_utf8_lossy(&body.to_bytes())
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.parse().ok()?))
        })
        .collect()
}

/// The bucket bound under which a share `p` of the observations fall.
fn quantile(buckets: &[(f64, f64)], p: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets
        .iter()
        .find(|(_, count)| *count >= total * p)
        .map_or(f64::NAN, |b| b.0)
}

pub async fn compare(secs: f64, bins: &Path, examples: &Path) {
    let Some(nats_bin) = nats::nats_server_binary() else {
        eprintln!(
            "no nats-server: run `scripts/lmi-dev up` once (it builds one) or set LMI_NATS_SERVER"
        );
        std::process::exit(2);
    };
    let nats_port = free_port();
    let store = std::env::temp_dir().join(format!("lmi-bench-nats-{nats_port}"));
    let args = match nats::nats_server_args(nats_port, &store) {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "cannot write the nats-server config in {}: {e}",
                store.display()
            );
            std::process::exit(2);
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let nats = spawn(&nats_bin, &args, &[]);
    let (sidecar_port, rapi_port) = (free_port(), free_port());
    let _sidecar = start_sidecar(bins, examples, sidecar_port, rapi_port);
    let catalog = write_catalog("events", "default", sidecar_port);
    let port = free_port();
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    let router = start_router(bins, &catalog, port, "off", &["--nats-url", &nats_url]);
    let client = http_client();
    let uri: hyper::Uri = format!("http://127.0.0.1:{port}/2015-03-31/functions/bench/invocations")
        .parse()
        .unwrap_or_default();
    wait_up(&client, &uri, None).await;
    // The stream exists once the first event is stored.
    for _ in 0..100 {
        if one_of(&client, &uri, None, true).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "| invocation | achieved/s | errors | caller p50 µs | caller p99 µs | router vCPU | router vCPU per 1k/s | nats-server vCPU |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut age = Vec::new();
    for event in [false, true] {
        let _ = open_loop_of(&client, &uri, RATE, 1.0, None, event).await;
        let cpu_before = cpu_seconds(router.0.id());
        let nats_before = cpu_seconds(nats.0.id());
        let run = open_loop_of(&client, &uri, RATE, secs, None, event)
            .await
            .sorted();
        if event {
            // Until the queue has drained: the dispatching is part of an event's cost.
            // (The warm-up second's events count too.)
            for _ in 0..300 {
                age = histogram(&client, port, "lmi_router_event_age_seconds").await;
                let total = age.last().map_or(0.0, |b| b.1);
                if total >= (run.ok + RATE as usize) as f64 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let cpu = (cpu_seconds(router.0.id()) - cpu_before) / run.seconds;
        let nats_cpu = (cpu_seconds(nats.0.id()) - nats_before) / run.seconds;
        for e in &run.error_samples {
            eprintln!("error: {e}");
        }
        let rate = run.ok as f64 / run.seconds;
        println!(
            "| {} | {rate:.0} | {} | {:.0} | {:.0} | {cpu:.3} | {:.3} | {nats_cpu:.3} |",
            if event {
                "Event (stored, 202; then dispatched)"
            } else {
                "RequestResponse"
            },
            run.errors,
            run.pct(0.5),
            run.pct(0.99),
            cpu / (rate / 1000.0),
        );
    }
    println!(
        "\nevent age, acceptance to outcome (histogram bucket bounds): p50 <= {} s, p99 <= {} s",
        quantile(&age, 0.5),
        quantile(&age, 0.99)
    );
    let _ = std::fs::remove_file(&catalog);
    let _ = std::fs::remove_dir_all(&store);
}
