//! Event invocations end to end on a real nats-server (JetStream, file storage): routers on a
//! static catalog, real sidecars with the Rust fixture function. An event is answered 202 once
//! stored, runs, and its outcome record reaches the destinations in Lambda's shape; function
//! errors are retried with the same request id; too large payloads are refused; with NATS down
//! events are refused with a 5xx and nothing acknowledged is lost.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use futures::StreamExt;

/// The nats-server `lmi-dev` builds (`LMI_NATS_SERVER` names another).
fn nats_server_binary() -> PathBuf {
    nats::nats_server_binary().unwrap_or_else(|| {
        panic!("no nats-server built: `scripts/lmi-dev up` builds it (or set LMI_NATS_SERVER)")
    })
}

/// A nats-server with JetStream on a store directory that outlives restarts.
struct Nats {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
}

impl Nats {
    fn start() -> Self {
        let port = free_port();
        let store = std::env::temp_dir().join(format!("lmi-nats-test-{port}"));
        let _ = std::fs::remove_dir_all(&store);
        let mut nats = Nats {
            child: None,
            port,
            store,
        };
        nats.restart();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        self.stop();
        let log = log_file(&format!("nats-{}", self.port));
        let args = nats::nats_server_args(self.port, &self.store).expect("nats-server config");
        let child = Command::new(nats_server_binary())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        wait_until(Duration::from_secs(20), "nats-server to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A catalog of `hello` (version 1 on `ee`) with retries and both destinations on NATS.
fn catalog(ee: u16, max_age: u32) -> String {
    format!(
        "functions:
  - name: hello
    versions:
      - {{version: 1, timeoutSeconds: 10, endpoints: [\"127.0.0.1:{ee}\"]}}
    eventInvokeConfig:
      maximumRetryAttempts: 2
      maximumEventAgeInSeconds: {max_age}
      destinationConfig:
        onSuccess: {{destination: \"nats:records.success\"}}
        onFailure: {{destination: \"nats:records.failure\"}}
"
    )
}

/// Records published to `records.>`, read back from the stream that keeps them (so none is
/// missed, across a server restart too).
struct Records {
    rt: tokio::runtime::Runtime,
    messages: async_nats::jetstream::consumer::pull::Stream,
}

impl Records {
    fn open(nats: &Nats) -> Self {
        use async_nats::jetstream::{consumer, stream};
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let url = nats.url();
        let messages = rt.block_on(async {
            let client = async_nats::connect(url).await.expect("connect");
            let js = async_nats::jetstream::new(client);
            let records = js
                .get_or_create_stream(stream::Config {
                    name: "RECORDS".to_string(),
                    subjects: vec!["records.>".to_string()],
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .expect("records stream");
            let reader = records
                .create_consumer(consumer::pull::Config {
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_policy: consumer::AckPolicy::None,
                    ..Default::default()
                })
                .await
                .expect("records consumer");
            reader.messages().await.expect("records")
        });
        Records { rt, messages }
    }

    /// The next record on `subject` within `limit`.
    fn next(&mut self, subject: &str, limit: Duration) -> serde_json::Value {
        let messages = &mut self.messages;
        self.rt.block_on(async {
            tokio::time::timeout(limit, async {
                loop {
                    let Some(Ok(m)) = messages.next().await else {
                        continue;
                    };
                    if m.subject.as_str() == subject {
                        return serde_json::from_slice(&m.payload).expect("a JSON record");
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("no record on {subject} within {limit:?}"))
        })
    }
}

/// What most event tests run: a nats-server, the reader of its records, an EE with `slots`
/// running the fixture function, and a router on it with short retry delays.
struct Setup {
    nats: Nats,
    records: Records,
    ee: Ee,
    router: RouterProc,
}

fn setup(name: &str, slots: usize) -> Setup {
    let nats = Nats::start();
    let records = Records::open(&nats);
    let f = example("fixture_fn").display().to_string();
    let ee = start_ee(&format!("{name}-ee"), slots, 10.0, &[&f], None, &[]);
    let url = nats.url();
    let router = start_router_on(
        &format!("{name}-router"),
        &catalog(ee.port, 600),
        &["--nats-url", &url, "--event-retry-delays-seconds", "0.5,1"],
    );
    Setup {
        nats,
        records,
        ee,
        router,
    }
}

/// Once the router's dispatcher has set up the stream, one event stored and run to its record.
fn warm_up(router: u16, records: &mut Records) {
    wait_until(Duration::from_secs(20), "the first event stored", || {
        event(router, r#"{"warm": true}"#).status == 202
    });
    records.next("records.success", Duration::from_secs(30));
}

fn event(router: u16, payload: &str) -> Resp {
    http(
        "POST",
        router,
        "/2015-03-31/functions/hello/invocations",
        &[("X-Amz-Invocation-Type", "Event")],
        payload.as_bytes(),
    )
    .expect("invoke")
}

#[test]
fn events_run_retry_with_one_request_id_and_reach_their_destinations() {
    let Setup {
        nats: _nats,
        mut records,
        ee,
        router: r,
    } = setup("event", 8);

    // Success: 202 with the request id, then a Success record carrying the answer.
    let accepted = event(r.port, r#"{"order": 1}"#);
    assert_eq!(
        accepted.status,
        202,
        "{}",
        String::from_utf8_lossy(&accepted.body)
    );
    assert!(accepted.body.is_empty());
    let id = accepted
        .header("x-amzn-requestid")
        .expect("request id")
        .to_string();
    let record = records.next("records.success", Duration::from_secs(30));
    assert_eq!(record["version"], "1.0");
    assert_eq!(record["requestContext"]["requestId"], id.as_str());
    assert_eq!(record["requestContext"]["condition"], "Success");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 1);
    assert_eq!(
        record["requestContext"]["functionArn"],
        "arn:aws:lambda:us-east-1:default:function:hello"
    );
    assert_eq!(record["requestPayload"]["order"], 1);
    assert_eq!(record["responseContext"]["statusCode"], 200);
    assert_eq!(record["responseContext"]["executedVersion"], "1");
    assert_eq!(record["responsePayload"]["requestId"], id.as_str());
    assert!(
        record["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    // A function error: run 3 times (2 retries) with the same request id, then RetriesExhausted.
    let failing = event(r.port, r#"{"fail": "boom", "withRequestId": true}"#);
    assert_eq!(failing.status, 202);
    let id = failing
        .header("x-amzn-requestid")
        .expect("request id")
        .to_string();
    let record = records.next("records.failure", Duration::from_secs(60));
    assert_eq!(record["requestContext"]["requestId"], id.as_str());
    assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    let message = record["responsePayload"]["errorMessage"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.ends_with(&id),
        "the last attempt saw the same request id: {message}"
    );
    assert_eq!(
        metric(ee.port, r#"lmi_ee_invocations_total{outcome="error"}"#),
        3.0,
        "the function ran the failing event three times"
    );
    assert_eq!(
        metric(
            r.port,
            r#"lmi_router_event_retries_total{function="hello",function_namespace="default"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            r.port,
            r#"lmi_router_events_dropped_total{function="hello",function_namespace="default",reason="RetriesExhausted"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            r.port,
            r#"lmi_router_events_received_total{function="hello",function_namespace="default"}"#
        ),
        2.0
    );

    // At most 1 MiB: one byte more is refused, with or without a Content-Length up front.
    let big = format!("\"{}\"", "x".repeat(1024 * 1024 - 1));
    assert_eq!(event(r.port, &big).status, 413);
    let fits = format!("\"{}\"", "x".repeat(1024 * 1024 - 2));
    assert_eq!(event(r.port, &fits).status, 202);
    // An unknown function is refused at once, as a synchronous call would be.
    let unknown = http(
        "POST",
        r.port,
        "/2015-03-31/functions/nope/invocations",
        &[("X-Amz-Invocation-Type", "Event")],
        b"{}",
    )
    .expect("invoke");
    assert_eq!(unknown.status, 404);
}

#[test]
fn with_nats_down_events_are_refused_and_those_stored_run_once_it_is_back() {
    let mut nats = Nats::start();
    let f = example("fixture_fn").display().to_string();
    let ee = start_ee("event-ee-restart", 8, 10.0, &[&f], None, &[]);
    let url = nats.url();
    let r = start_router_on(
        "event-router-restart",
        &catalog(ee.port, 600),
        &["--nats-url", &url, "--event-retry-delays-seconds", "0.5,1"],
    );
    let mut records = Records::open(&nats);
    // Wait until the dispatcher has set up the stream: the first event is stored.
    warm_up(r.port, &mut records);

    // Ten events that take a while each, then NATS goes down with them stored or running.
    let mut ids = Vec::new();
    for i in 0..10 {
        let resp = event(r.port, &format!(r#"{{"sleepMs": 1500, "n": {i}}}"#));
        assert_eq!(resp.status, 202);
        ids.push(
            resp.header("x-amzn-requestid")
                .unwrap_or_default()
                .to_string(),
        );
    }
    nats.stop();
    let refused = event(r.port, r#"{"late": true}"#);
    assert!(
        refused.status >= 500,
        "an event that cannot be stored is refused with a 5xx, not {}: {}",
        refused.status,
        String::from_utf8_lossy(&refused.body)
    );
    assert_eq!(refused.header("x-amzn-errortype"), Some("ServiceException"));
    nats.restart();
    let mut records = Records::open(&nats);
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    while !ids.iter().all(|id| seen.contains_key(id)) {
        let record = records.next("records.success", Duration::from_secs(90));
        let id = record["requestContext"]["requestId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *seen.entry(id).or_default() += 1;
    }
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    println!(
        "after the restart: {} events ran, {duplicates} records more than once",
        seen.len()
    );
}

/// `kill -9` of the router that holds events mid-dispatch: a second router takes them over once
/// their ack wait has passed, and every accepted event runs at least once.
#[test]
fn a_killed_dispatcher_loses_no_event() {
    const EVENTS: usize = 1_000;
    let nats = Nats::start();
    let f = example("fixture_fn").display().to_string();
    let ee = start_ee("event-ee-kill", 16, 10.0, &[&f], None, &[]);
    let url = nats.url();
    let flags = [
        "--nats-url",
        url.as_str(),
        "--event-retry-delays-seconds",
        "0.5,1",
    ];
    let mut first = start_router_on("event-router-killed", &catalog(ee.port, 600), &flags);
    let mut records = Records::open(&nats);
    warm_up(first.port, &mut records);
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..EVENTS {
        let resp = event(
            first.port,
            &format!(r#"{{"sleepMs": 300, "noEcho": true, "n": {i}}}"#),
        );
        assert_eq!(resp.status, 202, "{}", String::from_utf8_lossy(&resp.body));
        ids.insert(
            resp.header("x-amzn-requestid")
                .unwrap_or_default()
                .to_string(),
        );
    }
    // SIGKILL while it dispatches (16 at a time, 0.3 s each: most are still queued or running),
    // so what it holds is neither finished nor given back.
    let done = metric(first.port, "lmi_router_event_age_seconds_count");
    assert!(
        done < EVENTS as f64,
        "still dispatching when killed: {done} done"
    );
    let in_flight = utilization(ee.port)["inFlight"].as_u64().unwrap_or(0);
    first.proc.child.kill().expect("kill -9 the router");
    let _ = first.proc.child.wait();
    let second = start_router_on("event-router-survivor", &catalog(ee.port, 600), &flags);
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    while !ids.iter().all(|id| seen.contains_key(id)) {
        let record = records.next("records.success", Duration::from_secs(120));
        let id = record["requestContext"]["requestId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *seen.entry(id).or_default() += 1;
    }
    let duplicates: u32 = seen
        .iter()
        .filter(|(id, _)| ids.contains(*id))
        .map(|(_, n)| n - 1)
        .sum();
    // The invocations in flight at the EE lost their router: their answers went nowhere, and
    // JetStream gave those events to the second router after the ack wait.
    println!(
        "kill -9 mid-dispatch ({done} done, {in_flight} running at the EE): {EVENTS} accepted, all {EVENTS} recorded; {duplicates} recorded twice"
    );
    drop(second);
}

/// An EE lost mid-invocation (its sidecar killed, as when a node goes): the event is not counted
/// as an attempt and runs again once there is an EE, with the same request id.
#[test]
fn an_event_whose_ee_is_lost_mid_invocation_runs_again_uncounted() {
    let nats = Nats::start();
    let mut records = Records::open(&nats);
    let f = example("fixture_fn").display().to_string();
    let mut lost = start_ee("event-ee-lost", 8, 10.0, &[&f], None, &[]);
    let url = nats.url();
    let r = start_router_on(
        "event-router-lost",
        &catalog(lost.port, 600),
        &["--nats-url", &url, "--event-retry-delays-seconds", "0.5,1"],
    );
    warm_up(r.port, &mut records);

    let accepted = event(r.port, r#"{"sleepMs": 3000, "name": "lost"}"#);
    assert_eq!(accepted.status, 202);
    let id = accepted
        .header("x-amzn-requestid")
        .unwrap_or_default()
        .to_string();
    wait_until(
        Duration::from_secs(10),
        "the event running on the EE",
        || utilization(lost.port)["inFlight"] == 1,
    );
    // SIGKILL the sidecar first (no drain, no answer), then what it ran.
    let sidecar = lost.proc.child.id().to_string();
    let children = Command::new("pgrep")
        .args(["-P", &sidecar])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    lost.proc.child.kill().expect("kill -9 the sidecar");
    let _ = lost.proc.child.wait();
    for pid in children.split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    // A new EE takes its place (the router reads its catalog file again).
    let replacement = start_ee("event-ee-replacement", 8, 10.0, &[&f], None, &[]);
    std::fs::write(&r.catalog, catalog(replacement.port, 600)).expect("catalog");
    let record = records.next("records.success", Duration::from_secs(60));
    assert_eq!(record["requestContext"]["requestId"], id.as_str());
    assert_eq!(
        record["requestContext"]["approximateInvokeCount"], 1,
        "the run lost with its EE is not counted: {record}"
    );
    assert_eq!(record["responsePayload"]["ee"], "event-ee-replacement");
    assert_eq!(record["responsePayload"]["requestId"], id.as_str());
}

/// A burst of events takes only the room synchronous callers do not need: with 4 slots in the
/// EE, events run at most 3 at a time and the rest wait in the queue, so a synchronous caller
/// running beside the burst is never throttled, and every event still runs.
#[test]
fn a_burst_of_events_waits_for_room_and_throttles_no_synchronous_caller() {
    const EVENTS: usize = 30;
    let Setup {
        nats: _nats,
        mut records,
        ee,
        router: r,
    } = setup("event-burst", 4);
    warm_up(r.port, &mut records);

    let mut ids = std::collections::BTreeSet::new();
    for i in 0..EVENTS {
        let resp = event(r.port, &format!(r#"{{"sleepMs": 400, "n": {i}}}"#));
        assert_eq!(resp.status, 202, "{}", String::from_utf8_lossy(&resp.body));
        ids.insert(
            resp.header("x-amzn-requestid")
                .unwrap_or_default()
                .to_string(),
        );
    }
    // One synchronous caller, one call after another, while the events run.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let caller = {
        let (stop, port) = (stop.clone(), r.port);
        std::thread::spawn(move || {
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let resp = invoke(port, "hello", r#"{"sleepMs": 50, "noEcho": true}"#);
                *statuses.entry(resp.status).or_default() += 1;
            }
            statuses
        })
    };
    let mut most_in_flight = 0;
    let mut seen = std::collections::BTreeSet::new();
    while !ids.iter().all(|id| seen.contains(id)) {
        let record = records.next("records.success", Duration::from_secs(60));
        seen.insert(
            record["requestContext"]["requestId"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        most_in_flight = most_in_flight.max(utilization(ee.port)["inFlight"].as_u64().unwrap_or(0));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = caller.join().expect("the synchronous caller");
    let deferred = metric(ee.port, r#"lmi_ee_throttles_total{reason="EventDeferred"}"#);
    println!(
        "{EVENTS} events beside a synchronous caller: sync answers {statuses:?}, {deferred} times an event waited for room, at most {most_in_flight} in flight"
    );
    assert!(
        statuses.keys().all(|s| *s == 200) && statuses.get(&200).is_some_and(|n| *n > 10),
        "the synchronous caller was never refused: {statuses:?}"
    );
    assert!(deferred > 0.0, "the burst had to wait for room");
    assert_eq!(
        metric(ee.port, r#"lmi_ee_throttles_total{reason="Concurrency"}"#),
        0.0,
        "the EE throttled no one"
    );
    assert_eq!(
        utilization(ee.port)["refusals"].as_u64(),
        Some(0),
        "waiting events are not throttles to the autoscaler"
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
fn nats_pki(dir: &std::path::Path) -> [PathBuf; 5] {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    std::fs::create_dir_all(dir).expect("pki dir");
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("signed");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()]);
    let (client_cert, client_key) = leaf(vec!["lmi-router".into()]);
    let files = [
        ("ca.crt", ca_cert.pem()),
        ("server.crt", server_cert),
        ("server.key", server_key),
        ("client.crt", client_cert),
        ("client.key", client_key),
    ];
    files.map(|(name, pem)| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("pem");
        path
    })
}

/// NATS over mutual TLS: a router given the CA and a client certificate (`LMI_NATS_*_FILE`)
/// stores and runs events; one without them cannot store any and answers a 5xx, never a 202.
#[test]
fn events_reach_a_nats_that_requires_mutual_tls() {
    let port = free_port();
    let store = std::env::temp_dir().join(format!("lmi-nats-tls-{port}"));
    let _ = std::fs::remove_dir_all(&store);
    let [ca, server_cert, server_key, client_cert, client_key] = nats_pki(&store.join("pki"));
    let args = nats::nats_server_args(port, &store).expect("nats-server config");
    // The config file nats_server_args wrote, with TLS that verifies clients.
    let config = PathBuf::from(&args[1]);
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\n",
        server_cert.display(),
        server_key.display(),
        ca.display()
    ));
    std::fs::write(&config, text).expect("config");
    let log = log_file(&format!("nats-tls-{port}"));
    let mut server = Command::new(nats_server_binary())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start nats-server");
    wait_until(Duration::from_secs(20), "nats-server to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    let f = example("fixture_fn").display().to_string();
    let ee = start_ee("event-ee-tls", 8, 10.0, &[&f], None, &[]);
    let url = format!("tls://127.0.0.1:{port}");
    let catalog = format!(
        "functions:\n  - name: hello\n    versions:\n      - {{version: 1, timeoutSeconds: 10, endpoints: [\"127.0.0.1:{}\"]}}\n",
        ee.port
    );
    let files = [
        ("LMI_NATS_CA_FILE", ca.display().to_string()),
        (
            "LMI_NATS_CLIENT_CERT_FILE",
            client_cert.display().to_string(),
        ),
        ("LMI_NATS_CLIENT_KEY_FILE", client_key.display().to_string()),
    ];
    let secured =
        start_router_with_env("event-router-tls", &catalog, &["--nats-url", &url], &files);
    wait_until(Duration::from_secs(30), "an event stored over TLS", || {
        event(secured.port, r#"{"over": "tls"}"#).status == 202
    });
    wait_until(Duration::from_secs(30), "the event to run", || {
        metric(ee.port, r#"lmi_ee_invocations_total{outcome="success"}"#) >= 1.0
    });

    // Without the client certificate the server refuses the connection: no event is stored, and
    // the caller hears so.
    let bare = start_router_with_env(
        "event-router-no-tls-files",
        &catalog,
        &["--nats-url", &url],
        &files[..1],
    );
    let refused = event(bare.port, r#"{"over": "nothing"}"#);
    assert!(
        refused.status >= 500,
        "an event that cannot be stored is refused with a 5xx, not {}: {}",
        refused.status,
        String::from_utf8_lossy(&refused.body)
    );
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&store);
}
