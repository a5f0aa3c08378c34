//! `bench SECONDS stream`: InvokeWithResponseStream and function URLs against Invoke, one router
//! in front of one sidecar running `fixture_fn` (its streaming goes through `lambda_runtime`'s
//! support). Two functions share the sidecar: `bench` with a BUFFERED URL, `bench-stream` with a
//! RESPONSE_STREAM one (path form, on the router's `--url-listen`).
//!
//! - Time to first byte: 50 calls one after another of a function that writes a piece, works
//!   200 ms, and writes another, streamed (InvokeWithResponseStream, and the streaming URL);
//!   against the same 200 ms answered whole (Invoke). The caller's clock: until the first body
//!   bytes, and until the end.
//! - CPU: 1000/s for SECONDS of small answers, Invoke, InvokeWithResponseStream, then the BUFFERED
//!   and the RESPONSE_STREAM URL; the router's and the sidecar's (with the function) vCPU per
//!   1k/s.

use super::*;

const RATE: u64 = 1000;
const GAP_MS: u64 = 200;

/// One call: (time to the first body bytes, time to the end).
async fn call(
    client: &HttpClient,
    uri: &hyper::Uri,
    payload: &'static str,
) -> Result<(Duration, Duration), String> {
    let start = Instant::now();
    let req = hyper::Request::post(uri.clone())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(payload.as_bytes())))
        .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("status {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut first = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if frame.data_ref().is_some_and(|d| !d.is_empty()) && first.is_none() {
            first = Some(start.elapsed());
        }
    }
    let total = start.elapsed();
    Ok((first.unwrap_or(total), total))
}

fn millis(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    let i = ((v.len().max(1) - 1) as f64 * p).round() as usize;
    v.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

pub async fn compare(secs: f64, bins: &Path, examples: &Path) {
    let (sidecar_port, rapi_port) = (free_port(), free_port());
    let sidecar = start_sidecar(bins, examples, sidecar_port, rapi_port);
    let catalog = write_catalog("stream", "default", sidecar_port);
    // The function's URL, and a second function on the same EE with a streaming one.
    let urls = format!(
        "    url: {{authType: NONE}}\n  - name: bench-stream\n    namespace: default\n    versions:\n      - {{version: 1, timeoutSeconds: 10, endpoints: [\"127.0.0.1:{sidecar_port}\"]}}\n    url: {{authType: NONE, invokeMode: RESPONSE_STREAM}}\n"
    );
    let appended = std::fs::read_to_string(&catalog)
        .map(|c| c + &urls)
        .and_then(|c| std::fs::write(&catalog, c));
    if let Err(e) = appended {
        eprintln!("writing the catalog: {e}");
        return;
    }
    let (port, url_port) = (free_port(), free_port());
    let url_listen = format!("127.0.0.1:{url_port}");
    let router = start_router(bins, &catalog, port, "off", &["--url-listen", &url_listen]);
    let url_of = |name: &str| -> hyper::Uri {
        format!(
            "http://{url_listen}/{}/",
            lmi_router::url::url_id("default", name)
        )
        .parse()
        .unwrap_or_default()
    };
    let (url, stream_url) = (url_of("bench"), url_of("bench-stream"));
    let client = http_client();
    let invoke: hyper::Uri =
        format!("http://127.0.0.1:{port}/2015-03-31/functions/bench/invocations")
            .parse()
            .unwrap_or_default();
    let stream: hyper::Uri = format!(
        "http://127.0.0.1:{port}/2021-11-15/functions/bench/response-streaming-invocations"
    )
    .parse()
    .unwrap_or_default();
    wait_up(&client, &invoke, None).await;

    println!("time to first byte, {GAP_MS} ms of work between two pieces (50 calls, ms):\n");
    println!("| call | first byte p50 | first byte p99 | whole answer p50 |");
    println!("|---|---|---|---|");
    for (what, uri, payload) in [
        (
            "Invoke (answered whole)",
            &invoke,
            r#"{"sleepMs": 200, "noEcho": true}"#,
        ),
        (
            "InvokeWithResponseStream (streamed)",
            &stream,
            r#"{"stream": ["first", "second"], "gapMs": 200}"#,
        ),
        (
            "function URL, RESPONSE_STREAM (streamed)",
            &stream_url,
            r#"{"stream": ["first", "second"], "gapMs": 200}"#,
        ),
    ] {
        let (mut firsts, mut totals) = (Vec::new(), Vec::new());
        for _ in 0..50 {
            match call(&client, uri, payload).await {
                Ok((first, total)) => {
                    firsts.push(first);
                    totals.push(total);
                }
                Err(e) => eprintln!("error: {e}"),
            }
        }
        println!(
            "| {what} | {:.1} | {:.1} | {:.1} |",
            millis(firsts.clone(), 0.5),
            millis(firsts, 0.99),
            millis(totals, 0.5)
        );
    }

    println!("\nCPU at {RATE}/s of small answers ({secs} s each):\n");
    println!(
        "| call | achieved/s | errors | p50 µs | p99 µs | router vCPU per 1k/s | sidecar + function vCPU per 1k/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (what, uri, payload) in [
        ("Invoke", &invoke, r#"{"noEcho": true}"#),
        (
            "InvokeWithResponseStream",
            &stream,
            r#"{"stream": ["hello"]}"#,
        ),
        ("function URL, BUFFERED", &url, r#"{"noEcho": true}"#),
        (
            "function URL, RESPONSE_STREAM",
            &stream_url,
            r#"{"stream": ["hello"]}"#,
        ),
    ] {
        let load = |_| {
            let (c, u) = (client.clone(), uri.clone());
            async move { call(&c, &u, payload).await.map(|(_, total)| total) }
        };
        let _ = open_loop_with(RATE, 1.0, load).await;
        let (router_before, sidecar_before) =
            (cpu_seconds(router.0.id()), cpu_seconds(sidecar.0.id()));
        let run = open_loop_with(RATE, secs, load).await.sorted();
        let per_1k = |before: f64, pid: u32| {
            (cpu_seconds(pid) - before) / run.seconds / (run.ok as f64 / run.seconds / 1000.0)
        };
        for e in &run.error_samples {
            eprintln!("error: {e}");
        }
        println!(
            "| {what} | {:.0} | {} | {:.0} | {:.0} | {:.3} | {:.3} |",
            run.ok as f64 / run.seconds,
            run.errors,
            run.pct(0.5),
            run.pct(0.99),
            per_1k(router_before, router.0.id()),
            per_1k(sidecar_before, sidecar.0.id()),
        );
    }
    let _ = std::fs::remove_file(&catalog);
}
