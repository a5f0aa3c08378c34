//! Hostile input against the router and the sidecar as child processes on 127.0.0.1: floods of
//! connections, slow clients, malformed requests, oversize and concurrent payloads, Runtime API
//! misuse. Each process's resident memory is read from `/proc/PID/status` and must stay under the
//! budget its bounds promise (`router::memory`, `sidecar::memory`). Bounded: a few hundred
//! connections and requests, each phase a few seconds.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use lmi_router::router::{Config, memory};

const MIB: u64 = 1024 * 1024;
/// The largest payload Lambda takes synchronously.
const MAX_PAYLOAD: usize = 6 * 1024 * 1024;

fn fixture() -> String {
    example("fixture_fn").display().to_string()
}

/// A JSON payload of exactly `size` bytes that the fixture answers briefly after `sleep_ms`.
fn payload_of(size: usize, sleep_ms: u64) -> String {
    let head = format!(r#"{{"noEcho":true,"sleepMs":{sleep_ms},"pad":""#);
    let pad = size - head.len() - 2;
    format!("{head}{}\"}}", "x".repeat(pad))
}

fn invoke_path(name: &str) -> String {
    format!("/2015-03-31/functions/{name}/invocations")
}

/// `n` invocations of `payload` at once; their statuses.
fn concurrent(port: u16, n: usize, payload: &str) -> Vec<u16> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let p = payload.to_string();
            thread::spawn(move || {
                http("POST", port, &invoke_path("hello"), &[], p.as_bytes())
                    .map(|r| r.status)
                    .unwrap_or(0)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect()
}

/// Open `n` connections to a server capped at `cap` and wait until it has answered every one past
/// the cap with a 429 carrying `marker`; the connections it keeps, and how many it refused.
fn flood(port: u16, n: usize, cap: usize, marker: &str) -> (Vec<TcpStream>, usize) {
    let mut pending: Vec<TcpStream> = (0..n)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect();
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while pending.len() > cap && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        pending.retain(|s| {
            let mut buf = [0u8; 512];
            match (&*s).read(&mut buf) {
                Ok(k) if k > 0 => {
                    let text = String::from_utf8_lossy(&buf[..k]);
                    assert!(
                        text.starts_with("HTTP/1.1 429") && text.contains(marker),
                        "{text}"
                    );
                    refused += 1;
                    false
                }
                _ => true,
            }
        });
    }
    // Whatever is left is held open by the server: no answer comes to those.
    thread::sleep(Duration::from_millis(200));
    for s in &pending {
        let mut buf = [0u8; 1];
        assert!(
            matches!((&*s).read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a connection within the cap was answered or closed"
        );
    }
    (pending, refused)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

#[test]
fn router_memory_stays_within_its_bounds_under_floods() {
    let f = fixture();
    let ee = start_ee("hostile-ee", 8, 10.0, &[&f], None, &[]);
    // Small bounds, so that the floods below reach every one of them.
    let bounds = Config {
        payload_budget_mib: 32,
        max_connections: 256,
        max_in_flight: 32,
        ..Config::default()
    };
    let limit = memory::limit_mib(&bounds) * MIB;
    let r = start_router_with(
        "hostile-router",
        &[ee.port],
        10.0,
        &[
            "--payload-budget-mib",
            "32",
            "--max-connections",
            "256",
            "--max-in-flight",
            "32",
        ],
    );
    let pid = r.proc.child.id();
    let (idle, _) = rss(pid);
    eprintln!("router idle: {:.1} MiB", mib(idle));

    // A flood of idle connections: past the cap each one gets a 429 at once and is closed.
    let (open, refused) = flood(
        r.port,
        600,
        256,
        "x-amzn-errortype: TooManyRequestsException",
    );
    assert_eq!(
        open.len(),
        256,
        "the cap holds exactly 256 open connections"
    );
    assert_eq!(refused, 600 - 256);
    let (with_idle, _) = rss(pid);
    eprintln!(
        "router with 256 idle connections: {:.1} MiB",
        mib(with_idle)
    );
    // A full connection table still answers fast: a refusal, not a hang.
    let started = Instant::now();
    let resp = invoke(r.port, "hello", "{}");
    assert_eq!(resp.status, 429);
    assert_eq!(
        resp.header("x-amzn-errortype"),
        Some("TooManyRequestsException")
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(open);
    wait_until(Duration::from_secs(5), "connections closed", || {
        invoke(r.port, "hello", "{}").status == 200
    });

    // Slow clients: heads that never finish hold a connection each, within the cap, and cost no
    // more than their head buffer.
    let slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", r.port)).expect("connect");
            let _ = s.write_all(b"POST /2015-03-31/functions/hello/invocations HTTP/1.1\r\nX-A: ");
            let _ = s.write_all(&vec![b'a'; 8 * 1024]);
            s
        })
        .collect();
    // An announced 7 MB payload that never comes is refused at once (no 30 s wait for it).
    let started = Instant::now();
    let resp = raw(
        r.port,
        b"POST /2015-03-31/functions/hello/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 7000000\r\n\r\n",
    )
    .expect("oversize");
    assert_eq!(resp.status, 413);
    assert_eq!(
        resp.header("x-amzn-errortype"),
        Some("RequestTooLargeException")
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Concurrent 6 MiB payloads, far past the 32 MiB budget and the EE's 8 slots: each is
    // answered (a result or a throttle), and memory stays within the bounds.
    let big = payload_of(MAX_PAYLOAD, 300);
    let statuses = concurrent(r.port, 24, &big);
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(ok + throttled, statuses.len(), "{statuses:?}");
    assert!(ok >= 1 && throttled >= 1, "{statuses:?}");
    drop(slow);
    let (after, peak) = rss(pid);
    eprintln!(
        "router: peak {:.1} MiB, after the load {:.1} MiB, bound {:.0} MiB",
        mib(peak),
        mib(after),
        mib(limit)
    );
    assert!(peak < limit, "peak {peak} over the bound {limit}");
    // Freed payload memory goes back to the system (see `lmi_router::return_freed_memory`).
    assert!(
        after < idle + 12 * MIB,
        "{after} after the load, {idle} idle"
    );
    assert_eq!(invoke(r.port, "hello", r#"{"still":"up"}"#).status, 200);
}

/// The open files a flood of `n` connections needs here, if the limit allows them.
fn open_files_allow(n: usize) -> bool {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<usize>().ok());
    soft.is_none_or(|soft| soft > n + 256)
}

#[test]
fn router_memory_goes_back_near_idle_after_a_connection_flood() {
    // 2,000 connections held then closed: they cost about 29 MiB (debug build), which stayed
    // resident for good before the router trimmed its heap after a burst (`lmi_router::heap`;
    // this test then timed out); now it is back within a second. The bound leaves room for a
    // busy machine's noise, far below the 29 MiB.
    const CONNECTIONS: usize = 2000;
    if !open_files_allow(CONNECTIONS) {
        eprintln!("skipped: the open-files limit is below {CONNECTIONS} connections");
        return;
    }
    let r = start_router_with(
        "hostile-flood",
        &[free_port()],
        10.0,
        &["--max-connections", &CONNECTIONS.to_string()],
    );
    let pid = r.proc.child.id();
    let (idle, _) = rss(pid);
    let (open, refused) = flood(
        r.port,
        CONNECTIONS + 200,
        CONNECTIONS,
        "x-amzn-errortype: TooManyRequestsException",
    );
    assert_eq!((open.len(), refused), (CONNECTIONS, 200));
    let (held, _) = rss(pid);
    eprintln!(
        "router idle {:.1} MiB, with {CONNECTIONS} connections {:.1} MiB",
        mib(idle),
        mib(held)
    );
    assert!(
        held > idle + 12 * MIB,
        "the connections should cost memory to give back: {held} held, {idle} idle"
    );
    drop(open);
    let started = Instant::now();
    wait_until(Duration::from_secs(15), "memory back near idle", || {
        rss(pid).0 < idle + 6 * MIB
    });
    eprintln!(
        "router back to {:.1} MiB {:?} after the connections closed",
        mib(rss(pid).0),
        started.elapsed()
    );
}

#[test]
fn sidecar_memory_stays_within_its_bounds_and_refusals_hold_no_body() {
    let f = fixture();
    let ee = start_ee("hostile-sidecar", 8, 10.0, &[&f], None, &[]);
    let pid = ee.proc.child.id();
    let limit = u64::from(lmi_crds::catalog::SIDECAR_MEMORY_MIB) * MIB;
    let (idle, _) = rss(pid);
    eprintln!("sidecar idle: {:.1} MiB", mib(idle));

    // Past its 128 router-facing connections the sidecar refuses at once, as a full EE does.
    let (open, refusals) = flood(ee.port, 160, 128, "lmi-refusal-reason: Concurrency");
    assert_eq!(open.len(), 128);
    assert_eq!(refusals, 160 - 128);
    drop(open);
    thread::sleep(Duration::from_millis(200));

    // 24 concurrent 6 MiB invocations straight at the sidecar (as many routers would send): the
    // request budget admits four at a time, the rest are refused before their bodies are read.
    let big = payload_of(MAX_PAYLOAD, 300);
    let handles: Vec<_> = (0..24)
        .map(|_| {
            let p = big.clone();
            let port = ee.port;
            thread::spawn(move || {
                http("POST", port, "/invoke", &[], p.as_bytes())
                    .map(|r| (r.status, r.header("lmi-refusal-reason").map(str::to_string)))
                    .unwrap_or((0, None))
            })
        })
        .collect();
    let answers: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let refused = answers.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!(ok + refused, answers.len(), "{answers:?}");
    assert!(ok >= 4, "{answers:?}");
    // Large answers too: the response budget makes the runtime wait rather than overrun.
    let answers = concurrent_invoke(ee.port, 8, r#"{"answerBytes":6000000}"#);
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    let (after, peak) = rss(pid);
    eprintln!(
        "sidecar: peak {:.1} MiB, after the load {:.1} MiB, limit {:.0} MiB",
        mib(peak),
        mib(after),
        mib(limit)
    );
    assert!(peak < limit, "peak {peak} over the sidecar's limit {limit}");
    assert!(
        after < idle + 12 * MIB,
        "{after} after the load, {idle} idle"
    );
    assert_eq!(utilization(ee.port)["inFlight"], 0);
}

fn concurrent_invoke(ee_port: u16, n: usize, payload: &'static str) -> Vec<u16> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            thread::spawn(move || {
                http("POST", ee_port, "/invoke", &[], payload.as_bytes())
                    .map(|r| r.status)
                    .unwrap_or(0)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect()
}

/// Requests Lambda answers with a 400 naming the bad field, and what it must name.
#[test]
fn malformed_requests_are_400s_naming_the_field() {
    let f = fixture();
    let ee = start_ee("hostile-400", 2, 5.0, &[&f], None, &[]);
    let r = start_router("hostile-400-router", &[ee.port], 5.0);
    let post = |path: &str, extra: &[u8], body: &[u8]| {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(extra);
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        raw(r.port, &req).expect("request")
    };
    // path, extra header lines, body, error type, the field the message must name
    type Case<'a> = (&'a str, &'a [u8], &'a [u8], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            "/2015-03-31/functions/hello/invocations",
            b"X-Amz-Invocation-Type: Event\xff\r\n",
            b"{}",
            "InvalidParameterValueException",
            "invocationType",
        ),
        (
            "/2015-03-31/functions/hello/invocations",
            b"X-Amz-Log-Type: Tail\xe9\r\n",
            b"{}",
            "InvalidParameterValueException",
            "logType",
        ),
        (
            "/2015-03-31/functions/hello/invocations?Qualifier=%zz",
            b"",
            b"{}",
            "InvalidParameterValueException",
            "qualifier",
        ),
        (
            "/2015-03-31/functions/hello:/invocations",
            b"",
            b"{}",
            "InvalidParameterValueException",
            "functionName",
        ),
        (
            "/2015-03-31/functions/hello/invocations",
            b"",
            b"{\"a\":\"\xff\xfe\"}",
            "InvalidRequestContentException",
            "UTF-8",
        ),
    ];
    for (path, extra, body, ty, field) in cases {
        let resp = post(path, extra, body);
        let text = String::from_utf8_lossy(&resp.body).to_string();
        assert_eq!(resp.status, 400, "{path}: {text}");
        assert_eq!(resp.header("x-amzn-errortype"), Some(*ty), "{path}: {text}");
        assert!(text.contains(field), "{path}: {text} should name {field}");
    }
    // A client context whose JSON is pretty-printed (line breaks) and holds UTF-8 works.
    let cc = base64_encode("{\n  \"custom\": {\"name\": \"Zoë\"},\n  \"env\": {}\n}");
    let resp = http(
        "POST",
        r.port,
        &invoke_path("hello"),
        &[("X-Amz-Client-Context", &cc)],
        b"{}",
    )
    .expect("client context");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["clientContext"]["custom"]["name"], "Zoë");
    // Garbage and half requests leave the router serving.
    for junk in [
        &b"\x00\x01\x02\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST /2015-03-31/functions/hello/invocations HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let _ = raw(r.port, junk);
    }
    assert_eq!(invoke(r.port, "hello", r#"{"ok":1}"#).status, 200);
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A runtime that misuses the Runtime API: wrong ids, an init error after it is ready, answers
/// over the limit.
#[test]
fn runtime_api_misuse_is_refused_and_the_ee_keeps_serving() {
    let f = fixture();
    let rapi = free_port();
    let ee = start_ee(
        "hostile-rapi",
        4,
        5.0,
        &[&f],
        None,
        &[("LMI_RUNTIME_API_ADDR", &format!("127.0.0.1:{rapi}"))],
    );
    let r = start_router("hostile-rapi-router", &[ee.port], 5.0);
    let api = |method: &str, path: &str, body: &[u8]| {
        http(
            method,
            rapi,
            &format!("/2018-06-01/runtime/{path}"),
            &[],
            body,
        )
        .expect("runtime api")
    };
    assert_eq!(api("POST", "invocation/nope/response", b"{}").status, 400);
    assert_eq!(api("POST", "invocation/nope/error", b"{}").status, 400);
    assert_eq!(api("GET", "unknown", b"").status, 404);
    // An init error once the runtime is ready: refused (403), and the EE stays ready.
    let late = api(
        "POST",
        "init/error",
        br#"{"errorType":"X","errorMessage":"late"}"#,
    );
    assert_eq!(late.status, 403, "{}", String::from_utf8_lossy(&late.body));
    assert_eq!(
        http("GET", ee.port, "/readyz", &[], b"")
            .expect("readyz")
            .status,
        200
    );
    // An /error body over 6 MB fails the invocation at once (not at its timeout).
    let started = Instant::now();
    let resp = invoke(
        r.port,
        "hello",
        &format!(r#"{{"fail":"big","answerBytes":{}}}"#, MAX_PAYLOAD + 10),
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-amz-function-error"), Some("Unhandled"));
    assert_eq!(resp.json()["errorType"], "Function.ResponseSizeTooLarge");
    // A /response announcing more than 6 MB is refused without being read.
    let resp = raw(
        rapi,
        b"POST /2018-06-01/runtime/invocation/x/response HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
    )
    .expect("oversize response");
    assert_eq!(resp.status, 413);
    assert_eq!(invoke(r.port, "hello", r#"{"ok":1}"#).status, 200);
}
