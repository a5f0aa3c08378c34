//! A runtime process that exits mid-invocation (the real Rust client, `std::process::exit` from
//! the handler): the invocations in flight fail at once with Lambda's `Runtime.ExitError`, the EE
//! is not ready until a runtime asks for work again, and the exit is counted.

mod common;

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn fixture() -> String {
    example("fixture_fn").display().to_string()
}

/// Both answers are Lambda's `Runtime.ExitError` for their own request id.
fn assert_exit_error(r: &Resp, reason: &str) {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-amz-function-error"), Some("Unhandled"));
    let rid = r.header("x-amzn-requestid").expect("request id");
    let body = r.json();
    assert_eq!(body["errorType"], "Runtime.ExitError", "{body}");
    assert_eq!(
        body["errorMessage"],
        format!("RequestId: {rid} Error: {reason}")
    );
}

/// A crash with one other invocation in flight, through a router.
fn crash_with_one_in_flight(router: u16, ee: u16) -> (Resp, Resp, Duration) {
    let slow = thread::spawn(move || invoke(router, "hello", r#"{"sleepMs":8000}"#));
    wait_until(Duration::from_secs(5), "one invocation in flight", || {
        utilization(ee)["inFlight"] == 1
    });
    let started = Instant::now();
    let crash = invoke(router, "hello", r#"{"exit":3}"#);
    let slow = slow.join().expect("join");
    (crash, slow, started.elapsed())
}

#[test]
fn local_run_fails_in_flight_invocations_with_the_exit_status_and_restarts() {
    let f = fixture();
    let ee = start_ee("exit-local", 4, 10.0, &[&f], None, &[]);
    let r = start_router("exit-local-router", &[ee.port], 10.0);

    let (crash, slow, took) = crash_with_one_in_flight(r.port, ee.port);
    // At once, not after the 10 s timeout (the slow one would have run 8 s).
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let reason = "Runtime exited with error: exit status 3";
    assert_exit_error(&crash, reason);
    assert_exit_error(&slow, reason);
    assert_eq!(metric(ee.port, "lmi_ee_runtime_exits_total"), 1.0);

    // The sidecar starts the function again; once it asks for work the EE is ready and serves.
    wait_until(Duration::from_secs(10), "ready again", || {
        http("GET", ee.port, "/readyz", &[], b"").is_ok_and(|r| r.status == 200)
    });
    let ok = invoke(r.port, "hello", r#"{"after":"restart"}"#);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["echo"]["after"], "restart");
    assert_eq!(utilization(ee.port)["inFlight"], 0);
}

/// `unshare` can give the sidecar a PID namespace of its own, as a pod's: only as root.
fn can_unshare() -> bool {
    Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// As in a pod: the sidecar has no child (it runs beside the function, in one PID namespace whose
/// PID 1 restarts the function after a second, as the kubelet restarts a container), so only the
/// runtime's connections closing and `/proc` tell it the runtime is gone.
#[test]
fn pod_sidecar_notices_the_exit_from_connections_and_proc() {
    if !can_unshare() {
        eprintln!("skipped: needs root for a PID namespace (unshare --pid)");
        return;
    }
    let port = free_port();
    let rapi = free_port();
    let log = log_file("exit-pod");
    let script = format!(
        "{sidecar} & while :; do {f}; sleep 1; done",
        sidecar = env!("CARGO_BIN_EXE_lmi-sidecar"),
        f = fixture(),
    );
    let child = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "sh",
            "-c",
        ])
        .arg(&script)
        .env("LMI_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("LMI_RUNTIME_API_ADDR", format!("127.0.0.1:{rapi}"))
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{rapi}"))
        .env("AWS_LAMBDA_MAX_CONCURRENCY", "4")
        .env("LMI_FUNCTION_TIMEOUT_SECONDS", "10")
        .env("AWS_LAMBDA_FUNCTION_NAME", "hello")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")
        .env("AWS_REGION", "us-east-1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("unshare");
    let _pod = Proc {
        child,
        name: "exit-pod".into(),
    };
    wait_until(Duration::from_secs(30), "pod EE ready", || {
        http("GET", port, "/readyz", &[], b"").is_ok_and(|r| r.status == 200)
    });
    let r = start_router("exit-pod-router", &[port], 10.0);

    let (crash, slow, took) = crash_with_one_in_flight(r.port, port);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // No child to wait for, so no status: Lambda's words for that.
    let reason = "Runtime exited without providing a reason";
    assert_exit_error(&crash, reason);
    assert_exit_error(&slow, reason);

    // Not ready while the function is down (PID 1 restarts it after a second) ...
    let ready = http("GET", port, "/readyz", &[], b"").expect("readyz");
    assert_eq!(
        ready.status,
        503,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );
    assert_eq!(ready.json()["lifecycle"]["reasonCode"], "Runtime.ExitError");
    assert_eq!(metric(port, "lmi_ee_runtime_exits_total"), 1.0);
    // ... and ready again once the restarted runtime calls /next.
    wait_until(Duration::from_secs(10), "ready again", || {
        http("GET", port, "/readyz", &[], b"").is_ok_and(|r| r.status == 200)
    });
    let ok = invoke(r.port, "hello", r#"{"after":"restart"}"#);
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));

    // The restarted runtime is watched as well: its own crash is found and counted.
    let exit_again = invoke(r.port, "hello", r#"{"exit":0}"#);
    assert_eq!(exit_again.json()["errorType"], "Runtime.ExitError");
    assert_eq!(metric(port, "lmi_ee_runtime_exits_total"), 2.0);
}
