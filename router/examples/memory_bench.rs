//! Memory of the data plane under pressure: the resident set (VmRSS, and the peak VmHWM) of
//! `lmi-router` and `lmi-sidecar` at idle, with 10,000 idle connections, at their maximum
//! concurrency with 6 MiB payloads, and after the load is gone. A program, not a test; results go
//! in docs/benchmarks.md.
//!
//! ```text
//! cargo build --release -p lmi-router --bins --examples
//! $CARGO_TARGET_DIR/release/examples/memory_bench
//! ```
//!
//! It starts (from the directory of its own binary) `lmi-sidecar -- fixture_fn` (concurrency 8,
//! the default budgets) and `lmi-router --static` (the default bounds, payload budget as for the
//! chart's 512Mi limit) on loopback, with the settings a pod gets. Needs about 20,000 open files
//! (`ulimit -n`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;
use support::{Proc, free_port};

const MIB: f64 = 1024.0 * 1024.0;
const MAX_PAYLOAD: usize = 6 * 1024 * 1024;
const IDLE_CONNECTIONS: usize = 10_000;

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/release/examples/memory_bench -> target/release
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// (VmRSS, VmHWM) in MiB.
fn rss(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb * 1024.0 / MIB)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One request on a fresh connection; the status (0 when it failed).
fn post(port: u16, path: &str, body: &[u8]) -> u16 {
    let go = || -> std::io::Result<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes())?;
        let _ = s.write_all(body);
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(String::from_utf8_lossy(&out)
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0))
    };
    go().unwrap_or(0)
}

fn wait_ready(port: u16, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let ok = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )?;
            let mut out = Vec::new();
            s.read_to_end(&mut out)?;
            Ok(out.starts_with(b"HTTP/1.1 200"))
        });
        if ok.unwrap_or(false) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("127.0.0.1:{port}{path} not ready");
    std::process::exit(1);
}

/// A JSON payload of exactly `size` bytes that the fixture answers briefly after `sleep_ms`.
fn payload_of(size: usize, sleep_ms: u64) -> Vec<u8> {
    let head = format!(r#"{{"noEcho":true,"sleepMs":{sleep_ms},"pad":""#);
    let pad = size - head.len() - 2;
    format!("{head}{}\"}}", "x".repeat(pad)).into_bytes()
}

/// `n` requests at once; how many got each status.
fn burst(port: u16, path: &'static str, n: usize, body: &[u8]) -> String {
    let body = std::sync::Arc::new(body.to_vec());
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let b = body.clone();
            std::thread::spawn(move || post(port, path, &b))
        })
        .collect();
    let mut counts = std::collections::BTreeMap::new();
    for h in handles {
        *counts.entry(h.join().unwrap_or(0)).or_insert(0) += 1;
    }
    counts
        .iter()
        .map(|(s, n)| format!("{n} x {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Open `n` connections and keep them idle; how many the server left open after a moment (the
/// others got a refusal and were closed).
fn idle_connections(port: u16, n: usize) -> (Vec<TcpStream>, usize) {
    let conns: Vec<TcpStream> = (0..n)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    let mut open = 0;
    for s in &conns {
        let _ = s.set_nonblocking(true);
        let mut b = [0u8; 1];
        if matches!((&*s).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            open += 1;
        }
    }
    (conns, open)
}

fn row(what: &str, router: u32, sidecar: u32, note: &str) {
    let (r, rp) = rss(router);
    let (s, sp) = rss(sidecar);
    println!("| {what} | {r:.1} ({rp:.1}) | {s:.1} ({sp:.1}) | {note} |");
}

fn main() {
    let dir = bin_dir();
    let sidecar_port = free_port();
    let runtime_port = free_port();
    let router_port = free_port();
    let sidecar = Command::new(dir.join("lmi-sidecar"))
        .arg("--")
        .arg(dir.join("examples/fixture_fn"))
        .env("LMI_LISTEN_ADDR", format!("127.0.0.1:{sidecar_port}"))
        .env("LMI_RUNTIME_API_ADDR", format!("127.0.0.1:{runtime_port}"))
        .env("AWS_LAMBDA_MAX_CONCURRENCY", "8")
        .env("LMI_FUNCTION_TIMEOUT_SECONDS", "30")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .map(Proc);
    let Ok(sidecar) = sidecar else {
        eprintln!("cannot start lmi-sidecar from {}", dir.display());
        std::process::exit(1);
    };
    wait_ready(sidecar_port, "/readyz");
    let catalog = std::env::temp_dir().join(format!("lmi-memory-bench-{router_port}.yaml"));
    let _ = std::fs::write(
        &catalog,
        format!(
            "functions:\n  - name: hello\n    versions:\n      - {{version: 1, timeoutSeconds: 30, endpoints: [\"127.0.0.1:{sidecar_port}\"]}}\n"
        ),
    );
    let router = Command::new(dir.join("lmi-router"))
        .args(["--static", &catalog.display().to_string(), "--auth", "off"])
        .args(["--listen", &format!("127.0.0.1:{router_port}")])
        // As the chart runs it: the payload budget from the 512Mi limit.
        .env("LMI_MEMORY_LIMIT_MIB", "512")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .map(Proc);
    let Ok(router) = router else {
        eprintln!("cannot start lmi-router from {}", dir.display());
        std::process::exit(1);
    };
    wait_ready(router_port, "/healthz");
    let (r, s) = (router.0.id(), sidecar.0.id());
    let invoke = "/2015-03-31/functions/hello/invocations";
    // Warm up both paths once.
    post(router_port, invoke, b"{}");

    println!("RSS in MiB, now (peak so far):\n");
    println!("| state | lmi-router | lmi-sidecar | requests |");
    println!("|---|---|---|---|");
    row("idle", r, s, "");

    // One process at a time: the bench's own open files are limited too.
    let (conns, open) = idle_connections(router_port, IDLE_CONNECTIONS);
    row(
        "10,000 idle connections to the router",
        r,
        s,
        &format!("kept {open}, refused {}", conns.len() - open),
    );
    drop(conns);
    let (conns, open) = idle_connections(sidecar_port, IDLE_CONNECTIONS);
    row(
        "10,000 idle connections to the sidecar",
        r,
        s,
        &format!("kept {open}, refused {}", conns.len() - open),
    );
    drop(conns);
    std::thread::sleep(Duration::from_millis(2000));
    row("2 s after the connections closed", r, s, "");

    let big = payload_of(MAX_PAYLOAD, 1000);
    let through_router = burst(router_port, invoke, 64, &big);
    row(
        "64 concurrent 6 MiB invocations through the router",
        r,
        s,
        &through_router,
    );
    let direct = burst(sidecar_port, "/invoke", 8, &big);
    row(
        "8 concurrent 6 MiB invocations (its concurrency) straight to the sidecar",
        r,
        s,
        &direct,
    );
    let answers = burst(
        sidecar_port,
        "/invoke",
        8,
        format!(r#"{{"answerBytes":{}}}"#, MAX_PAYLOAD - 16).as_bytes(),
    );
    row(
        "8 concurrent 6 MiB answers from the function",
        r,
        s,
        &answers,
    );
    std::thread::sleep(Duration::from_secs(3));
    row("3 s after the load", r, s, "");
    // Memory freed after a flood is kept by the allocator for reuse: a second flood of each kind
    // must not add to it much.
    let (conns, _) = idle_connections(router_port, IDLE_CONNECTIONS);
    drop(conns);
    let again = burst(router_port, invoke, 64, &big);
    std::thread::sleep(Duration::from_secs(3));
    row(
        "3 s after the same floods again",
        r,
        s,
        &format!("10,000 connections, then 64 x 6 MiB: {again}"),
    );
    let _ = std::fs::remove_file(&catalog);
}
