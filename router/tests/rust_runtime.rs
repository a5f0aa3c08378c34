//! The sidecar and the router with the real Rust runtime client (`lambda_runtime`,
//! `run_concurrent`) as local processes.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn fixture() -> String {
    example("fixture_fn").display().to_string()
}

/// Send `n` invocations at once; returns the responses and the wall time of the slowest.
fn burst(router: u16, n: usize, payload: &str) -> (Vec<Resp>, Duration) {
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let p = payload.to_string();
            thread::spawn(move || invoke(router, "hello", &p))
        })
        .collect();
    let out = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    (out, start.elapsed())
}

#[test]
fn eight_in_one_second_then_spill_then_throttle() {
    let f = fixture();
    let ee1 = start_ee("rust-ee1", 8, 10.0, &[&f], None, &[]);
    let ee2 = start_ee("rust-ee2", 8, 10.0, &[&f], None, &[]);
    // Two router replicas, as in a cluster: A only knows EE1, B knows both. A's traffic fills EE1
    // behind B's back, so B's picks meet a full EE and must go elsewhere.
    let a = start_router("rust-router-a", &[ee1.port], 10.0);
    let b = start_router("rust-router-b", &[ee1.port, ee2.port], 10.0);

    // 8 invocations sleeping 1 s finish in about 1 s on one EE with max concurrency 8.
    let (resps, took) = burst(a.port, 8, r#"{"sleepMs":1000}"#);
    for r in &resps {
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["ee"], "rust-ee1");
        assert_eq!(r.header("x-amz-executed-version"), Some("1"));
    }
    assert!(took < Duration::from_millis(1800), "8 x 1 s took {took:?}");

    // Fill EE1 through A.
    let fill = thread::spawn(move || burst(a.port, 8, r#"{"sleepMs":3000}"#));
    wait_until(Duration::from_secs(5), "EE1 full", || {
        utilization(ee1.port)["inFlight"] == 8
    });
    let refused_before = metric(ee1.port, r#"lmi_ee_throttles_total{reason="Concurrency"}"#);

    // 9 more through B: EE1 refuses each one B sends it, EE2 serves 8, the last finds both full.
    let (resps, _) = burst(b.port, 9, r#"{"sleepMs":1000}"#);
    let ok: Vec<&Resp> = resps.iter().filter(|r| r.status == 200).collect();
    let throttled: Vec<&Resp> = resps.iter().filter(|r| r.status == 429).collect();
    assert_eq!(ok.len(), 8, "{resps:?}");
    assert_eq!(throttled.len(), 1, "{resps:?}");
    assert!(ok.iter().all(|r| r.json()["ee"] == "rust-ee2"));
    let t = throttled[0];
    assert_eq!(
        t.header("x-amzn-errortype"),
        Some("TooManyRequestsException")
    );
    assert_eq!(t.header("retry-after"), Some("1"));
    assert_eq!(t.json()["Reason"], "Concurrency");
    assert_eq!(t.json()["message"], "Rate Exceeded.");
    // EE1 refused at least once (p2c sends B's first picks to the EE B thinks is idle), and B
    // absorbed those refusals by retrying.
    assert!(metric(ee1.port, r#"lmi_ee_throttles_total{reason="Concurrency"}"#) > refused_before);
    assert!(metric(b.port, r#"lmi_router_retries_total{reason="Concurrency"}"#) >= 1.0);
    assert!(
        metric(
            b.port,
            r#"lmi_router_throttles_total{function="hello",function_namespace="default",reason="Concurrency"}"#
        ) >= 1.0
    );

    let (fill, _) = fill.join().expect("fill");
    assert!(fill.iter().all(|r| r.status == 200));
}

#[test]
fn errors_and_timeouts_come_back_as_lambda_returns_them() {
    let f = fixture();
    let ee = start_ee("rust-ee-errors", 2, 1.0, &[&f], None, &[]);
    let r = start_router("rust-router-errors", &[ee.port], 1.0);

    // Function error: 200, X-Amz-Function-Error: Unhandled, the runtime's error document.
    let resp = invoke(r.port, "hello", r#"{"fail":"boom"}"#);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-amz-function-error"), Some("Unhandled"));
    assert_eq!(resp.json()["errorMessage"], "boom");
    assert!(resp.json()["errorType"].is_string());

    // Timeout: Lambda's Sandbox.Timedout document, and the slot is free again at once.
    let started = Instant::now();
    let resp = invoke(r.port, "hello", r#"{"sleepMs":3000}"#);
    let took = started.elapsed();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-amz-function-error"), Some("Unhandled"));
    let body = resp.json();
    assert_eq!(body["errorType"], "Sandbox.Timedout");
    let rid = resp.header("x-amzn-requestid").expect("request id");
    assert_eq!(
        body["errorMessage"],
        format!("RequestId: {rid} Error: Task timed out after 1.00 seconds")
    );
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    assert_eq!(utilization(ee.port)["inFlight"], 0);
    assert!(metric(ee.port, r#"lmi_ee_invocations_total{outcome="timeout"}"#) >= 1.0);
    // The other runtime worker still serves while the timed-out one sleeps; its late answer is
    // dropped (the runtime gets 400 for an unknown request id and carries on).
    let resp = invoke(r.port, "hello", r#"{"x":1}"#);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["echo"]["x"], 1);
    thread::sleep(Duration::from_millis(2500));
    let resp = invoke(r.port, "hello", r#"{"x":2}"#);
    assert_eq!(
        resp.json()["echo"]["x"],
        2,
        "runtime survived the dropped late answer"
    );

    // Headers reach the runtime: request id, ARN with qualifier, trace id, client context.
    let cc = "eyJjdXN0b20iOnsiayI6InYifSwiZW52Ijp7fX0="; // {"custom":{"k":"v"},"env":{}}
    let resp = http(
        "POST",
        r.port,
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3Adefault%3Afunction%3Ahello%3A1/invocations",
        &[("X-Amz-Client-Context", cc), ("X-Amzn-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")],
        b"{}",
    )
    .expect("invoke");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let body = resp.json();
    assert_eq!(
        body["requestId"],
        resp.header("x-amzn-requestid").expect("rid")
    );
    assert_eq!(
        body["invokedFunctionArn"],
        "arn:aws:lambda:us-east-1:default:function:hello:1"
    );
    assert_eq!(
        body["xrayTraceId"],
        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    );
    assert_eq!(body["clientContext"]["custom"]["k"], "v");
    let deadline = body["deadlineMs"].as_u64().expect("deadline");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    assert!(
        deadline > now && deadline <= now + 1000,
        "deadline {deadline} now {now}"
    );

    // API-level errors.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [u8], u16, &'a str);
    let cases: &[Case] = &[
        ("nope", &[], b"{}", 404, "ResourceNotFoundException"),
        ("hello:7", &[], b"{}", 404, "ResourceNotFoundException"),
        ("hello:2", &[], b"{}", 502, "ResourceNotReadyException"),
        (
            "hello",
            &[],
            b"{not json",
            400,
            "InvalidRequestContentException",
        ),
        (
            "hello",
            &[("X-Amz-Invocation-Type", "Event")],
            b"{}",
            400,
            "InvalidParameterValueException",
        ),
        (
            "hello",
            &[("X-Amz-Invocation-Type", "Bogus")],
            b"{}",
            400,
            "InvalidParameterValueException",
        ),
        (
            "bad%20name",
            &[],
            b"{}",
            400,
            "InvalidParameterValueException",
        ),
    ];
    for (name, headers, body, status, ty) in cases {
        let resp = http(
            "POST",
            r.port,
            &format!("/2015-03-31/functions/{name}/invocations"),
            headers,
            body,
        )
        .expect("invoke");
        assert_eq!(
            resp.status,
            *status,
            "{name}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_eq!(resp.header("x-amzn-errortype"), Some(*ty), "{name}");
        assert!(resp.json()["message"].is_string());
    }
    let event = http(
        "POST",
        r.port,
        "/2015-03-31/functions/hello/invocations",
        &[("X-Amz-Invocation-Type", "Event")],
        b"{}",
    )
    .expect("event");
    assert!(
        event.json()["message"]
            .as_str()
            .unwrap_or("")
            .contains("needs the event queue")
    );
    // Malformed or oversized requests are cut off by the HTTP layer, and the router keeps serving.
    let huge = "x".repeat(100 * 1024);
    let resp = http(
        "POST",
        r.port,
        "/2015-03-31/functions/hello/invocations",
        &[("X-Big", &huge)],
        b"{}",
    );
    let status = resp.as_ref().map(|r| r.status).ok();
    assert!(
        matches!(status, None | Some(431) | Some(400)),
        "oversized head: {status:?}"
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", r.port)).expect("connect");
    std::io::Write::write_all(&mut s, b"GARBAGE \x01\x02 NOT-HTTP\r\n\r\n").expect("write");
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut buf);
    assert!(
        buf.is_empty() || buf.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    let resp = http(
        "GET",
        r.port,
        "/2015-03-31/functions/hello/invocations",
        &[],
        b"",
    )
    .expect("get");
    assert_eq!(
        resp.header("x-amzn-errortype"),
        Some("UnknownOperationException")
    );
    assert_eq!(invoke(r.port, "hello", r#"{"still":"up"}"#).status, 200);
    // DryRun: 204, nothing runs.
    let resp = http(
        "POST",
        r.port,
        "/2015-03-31/functions/hello/invocations",
        &[("X-Amz-Invocation-Type", "DryRun")],
        b"",
    )
    .expect("dry run");
    assert_eq!(resp.status, 204);
    // Over 6 MB: 413 (after reading and dropping the body, so the client sees the answer).
    let big = vec![b' '; 6 * 1024 * 1024 + 1];
    let resp = http(
        "POST",
        r.port,
        "/2015-03-31/functions/hello/invocations",
        &[],
        &big,
    )
    .expect("big");
    assert_eq!(resp.status, 413);
    assert_eq!(
        resp.header("x-amzn-errortype"),
        Some("RequestTooLargeException")
    );
}

#[test]
fn init_error_and_draining() {
    // A "runtime" that reports an init error through the Runtime API, like a real client whose
    // handler fails to import.
    let script = r#"curl -s -X POST -H 'Lambda-Runtime-Function-Error-Type: Runtime.ImportModuleError' \
        -d '{"errorMessage":"No module named handler","errorType":"Runtime.ImportModuleError"}' \
        "http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error"; sleep 30"#;
    let port = free_port();
    let rapi = free_port();
    let log = log_file("init-error");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_lmi-sidecar"))
        .args(["--", "sh", "-c", script])
        .env("LMI_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("LMI_RUNTIME_API_ADDR", format!("127.0.0.1:{rapi}"))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("sidecar");
    let _p = Proc {
        child,
        name: "init-error".into(),
    };
    wait_until(Duration::from_secs(10), "init error reported", || {
        http("GET", port, "/readyz", &[], b"")
            .is_ok_and(|r| r.status == 503 && r.json()["lifecycle"]["state"] == "failed")
    });
    let life = utilization(port)["lifecycle"].clone();
    assert_eq!(life["reasonCode"], "FunctionError.RuntimeInitError");
    assert_eq!(life["errorType"], "Runtime.ImportModuleError");
    assert_eq!(life["errorMessage"], "No module named handler");
    let resp = http("POST", port, "/invoke", &[], b"{}").expect("invoke");
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("lmi-refusal-reason"), Some("NotReady"));

    // Init timeout: a runtime that never asks for work.
    let port = free_port();
    let rapi = free_port();
    let log = log_file("init-timeout");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_lmi-sidecar"))
        .args(["--", "sleep", "30"])
        .env("LMI_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("LMI_RUNTIME_API_ADDR", format!("127.0.0.1:{rapi}"))
        .env("LMI_INIT_TIMEOUT_SECONDS", "0.5")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("sidecar");
    let _p2 = Proc {
        child,
        name: "init-timeout".into(),
    };
    wait_until(Duration::from_secs(10), "init timeout", || {
        http("GET", port, "/utilization", &[], b"")
            .is_ok_and(|r| r.json()["lifecycle"]["reasonCode"] == "FunctionError.InitTimeout")
    });

    // SIGTERM drain: in-flight work finishes, new work is refused, then the sidecar exits.
    let f = fixture();
    let mut ee = start_ee("rust-ee-drain", 4, 10.0, &[&f], None, &[]);
    let p = ee.port;
    let running = thread::spawn(move || {
        http("POST", p, "/invoke", &[], br#"{"sleepMs":1500}"#).expect("invoke")
    });
    wait_until(Duration::from_secs(5), "in flight", || {
        utilization(p)["inFlight"] == 1
    });
    std::process::Command::new("kill")
        .args(["-TERM", &ee.proc.child.id().to_string()])
        .status()
        .expect("kill");
    wait_until(Duration::from_secs(5), "draining", || {
        utilization(p)["draining"] == true
    });
    let refused = http("POST", p, "/invoke", &[], b"{}").expect("invoke");
    assert_eq!(refused.header("lmi-refusal-reason"), Some("Draining"));
    assert_eq!(
        http("GET", p, "/readyz", &[], b"").expect("readyz").status,
        503
    );
    let done = running.join().expect("join");
    assert_eq!(done.status, 200, "in-flight work finished during the drain");
    let status = ee.proc.child.wait().expect("wait");
    assert!(status.success());
}

#[test]
fn cpu_and_memory_pressure_refuse_with_their_reason() {
    let f = fixture();
    // Memory: a 1 MB limit is below any process's resident set, so the first sample is pressure.
    let ee = start_ee(
        "rust-ee-memory",
        8,
        10.0,
        &[&f],
        None,
        &[
            ("LMI_MEMORY_LIMIT_BYTES", "1000000"),
            ("LMI_SAMPLE_INTERVAL_MS", "100"),
        ],
    );
    let r = start_router("rust-router-memory", &[ee.port], 10.0);
    wait_until(Duration::from_secs(5), "memory measured", || {
        utilization(ee.port)["memoryUtilization"]
            .as_f64()
            .unwrap_or(0.0)
            > 1.0
    });
    let resp = invoke(r.port, "hello", "{}");
    assert_eq!(resp.status, 429, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["Reason"], "Memory");
    // The autoscaler reads the refusals (their share drives scale-out) from /utilization.
    let refusals = utilization(ee.port)["refusals"].as_u64().unwrap_or(0);
    assert!(refusals >= 1, "refusals in /utilization: {refusals}");

    // CPU: a 0.1-core limit and one invocation burning a core for 3 s.
    let ee = start_ee(
        "rust-ee-cpu",
        8,
        10.0,
        &[&f],
        None,
        &[
            ("LMI_CPU_LIMIT_MILLICORES", "100"),
            ("LMI_SAMPLE_INTERVAL_MS", "100"),
        ],
    );
    let r = start_router("rust-router-cpu", &[ee.port], 10.0);
    let port = r.port;
    let spinning = thread::spawn(move || invoke(port, "hello", r#"{"spinMs":3000}"#));
    wait_until(Duration::from_secs(3), "CPU pressure measured", || {
        utilization(ee.port)["cpuUtilization"]
            .as_f64()
            .unwrap_or(0.0)
            >= 0.9
    });
    let resp = invoke(r.port, "hello", "{}");
    assert_eq!(resp.status, 429, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["Reason"], "CPU");
    assert!(metric(ee.port, r#"lmi_ee_throttles_total{reason="CPU"}"#) >= 1.0);
    assert_eq!(spinning.join().expect("join").status, 200);
}

#[test]
fn payload_memory_is_bounded_by_the_budget() {
    let f = fixture();
    let ee = start_ee("rust-ee-budget", 8, 10.0, &[&f], None, &[]);
    let r = start_router_with(
        "rust-router-budget",
        &[ee.port],
        10.0,
        &["--payload-budget-mib", "7"],
    );
    let pad = "x".repeat(5 * 1024 * 1024);
    let big = format!(r#"{{"sleepMs":2000,"pad":"{pad}"}}"#);
    let port = r.port;
    let first = {
        let big = big.clone();
        thread::spawn(move || invoke(port, "hello", &big))
    };
    wait_until(Duration::from_secs(5), "first payload held", || {
        utilization(ee.port)["inFlight"] == 1
    });
    // A second 5 MB payload does not fit in the 7 MiB the router may hold: throttled, not buffered.
    let second = invoke(r.port, "hello", &big);
    assert_eq!(
        second.status,
        429,
        "{}",
        String::from_utf8_lossy(&second.body[..second.body.len().min(200)])
    );
    assert_eq!(second.json()["Reason"], "Concurrency");
    assert_eq!(first.join().expect("join").status, 200);
    // Budget released: the same payload goes through now.
    assert_eq!(
        invoke(r.port, "hello", &big.replace("2000", "0")).status,
        200
    );
}
