//! Who may use an EE's sidecar port: real sidecars (with the fixture function) and routers as
//! child processes. Invoking needs the function's token, which the router derives from the
//! invoke key; draining needs the pod's drain token; a request id in flight cannot be used again.

mod common;

use std::thread;
use std::time::Duration;

use common::*;
use lmi_crds::invoke_token::InvokeKey;

fn fixture() -> String {
    example("fixture_fn").display().to_string()
}

fn key() -> InvokeKey {
    InvokeKey::new(vec![42u8; 32]).expect("key")
}

/// The key in a file, for the router's `--invoke-key-file`.
fn key_file(name: &str) -> String {
    let dir = std::env::temp_dir().join("lmi-router-tests");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(format!("{name}-{}.key", free_port()));
    std::fs::write(&path, [42u8; 32]).expect("key file");
    path.display().to_string()
}

/// An EE of function `default/hello` that requires its tokens, as the operator would set them up.
fn protected_ee(name: &str) -> (Ee, String, String) {
    let token = key().function_token("default", "hello");
    let drain = key().drain_token("default", name);
    let f = fixture();
    let ee = start_ee(
        name,
        2,
        10.0,
        &[&f],
        None,
        &[("LMI_INVOKE_TOKEN", &token), ("LMI_DRAIN_TOKEN", &drain)],
    );
    (ee, token, drain)
}

fn invocations(ee_port: u16) -> u64 {
    utilization(ee_port)["invocations"]
        .as_u64()
        .expect("invocations")
}

#[test]
fn only_the_router_with_the_functions_token_can_invoke_the_ee() {
    let (ee, token, _) = protected_ee("access-invoke");

    // Straight to the EE's port, without the token or with another function's: refused before
    // anything runs.
    let bare = http("POST", ee.port, "/invoke", &[], br#"{"x":1}"#).expect("invoke");
    assert_eq!(bare.status, 403, "{}", String::from_utf8_lossy(&bare.body));
    assert_eq!(bare.json()["errorType"], "AccessDenied");
    let other = key().function_token("default", "other");
    let wrong = http(
        "POST",
        ee.port,
        "/invoke",
        &[("x-lmi-invoke-token", &other)],
        b"{}",
    )
    .expect("invoke");
    assert_eq!(wrong.status, 403);
    assert_eq!(invocations(ee.port), 0, "the function did not run");
    assert_eq!(
        metric(
            ee.port,
            "lmi_ee_rejected_requests_total{reason=\"invoke_token\"}"
        ),
        2.0
    );

    // The read-only endpoints stay open (probes, scraping, the autoscaler).
    for path in ["/healthz", "/readyz", "/utilization", "/metrics"] {
        let r = http("GET", ee.port, path, &[], b"").expect(path);
        assert_eq!(r.status, 200, "{path}");
    }

    // With the token, directly: it runs.
    let direct = http(
        "POST",
        ee.port,
        "/invoke",
        &[("x-lmi-invoke-token", &token)],
        br#"{"direct":true}"#,
    )
    .expect("invoke");
    assert_eq!(
        direct.status,
        200,
        "{}",
        String::from_utf8_lossy(&direct.body)
    );
    assert_eq!(direct.json()["echo"]["direct"], true);

    // Through a router that knows the key: end to end.
    let keyed = start_router_with(
        "access-router",
        &[ee.port],
        10.0,
        &["--invoke-key-file", &key_file("access-router")],
    );
    let answer = invoke(keyed.port, "hello", r#"{"via":"router"}"#);
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["echo"]["via"], "router");
    assert_eq!(invocations(ee.port), 2);

    // A router without the key is refused too (and says the EE refused).
    let keyless = start_router("access-router-keyless", &[ee.port], 10.0);
    let refused = invoke(keyless.port, "hello", "{}");
    assert_eq!(
        refused.status,
        500,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert!(
        String::from_utf8_lossy(&refused.body).contains("403"),
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert_eq!(invocations(ee.port), 2, "the function did not run");
}

#[test]
fn only_the_pods_drain_token_drains_the_ee() {
    let (ee, token, drain) = protected_ee("access-drain");
    let ready = || {
        http("GET", ee.port, "/readyz", &[], b"")
            .expect("readyz")
            .status
    };

    for headers in [
        vec![],
        vec![("x-lmi-drain-token", token.as_str())],
        vec![("x-lmi-drain-token", "0000")],
    ] {
        let r = http("GET", ee.port, "/drain", &headers, b"").expect("drain");
        assert_eq!(r.status, 403, "{headers:?}");
        assert_eq!(r.json()["errorType"], "AccessDenied");
    }
    assert_eq!(ready(), 200, "still Ready: nothing drained");
    assert_eq!(utilization(ee.port)["draining"], false);

    let r = http(
        "GET",
        ee.port,
        "/drain",
        &[("x-lmi-drain-token", &drain)],
        b"",
    )
    .expect("drain");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["drained"], true);
    assert_eq!(ready(), 503, "drained: not Ready");
}

#[test]
fn a_request_id_in_flight_is_refused_and_the_first_invocation_still_succeeds() {
    let (ee, token, _) = protected_ee("access-request-id");
    let port = ee.port;
    let send = move |token: String, body: &'static str| {
        http(
            "POST",
            port,
            "/invoke",
            &[
                ("x-lmi-invoke-token", &token),
                ("lambda-runtime-aws-request-id", "same-id"),
            ],
            body.as_bytes(),
        )
        .expect("invoke")
    };
    let t = token.clone();
    let first = thread::spawn(move || send(t, r#"{"sleepMs":1500,"call":"first"}"#));
    wait_until(Duration::from_secs(5), "the first in flight", || {
        utilization(port)["inFlight"] == 1
    });

    let second = send(token.clone(), r#"{"call":"second"}"#);
    assert_eq!(
        second.status,
        409,
        "{}",
        String::from_utf8_lossy(&second.body)
    );
    assert_eq!(second.json()["errorType"], "RequestIdInUse");
    assert_eq!(utilization(port)["inFlight"], 1, "the second took no slot");

    let first = first.join().expect("join");
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let doc = first.json();
    assert_eq!(doc["echo"]["call"], "first", "the first got its own answer");
    assert_eq!(doc["requestId"], "same-id");
    assert_eq!(invocations(port), 1, "the second never ran");

    // Once the first has answered, its id is free again.
    let again = send(token, r#"{"call":"again"}"#);
    assert_eq!(
        again.status,
        200,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(again.json()["echo"]["call"], "again");
}
