//! The sidecar with the real Python runtime client (`awslambdaric`, multi-concurrent mode), called
//! through the router with boto3 and the AWS CLI. The test makes its own virtualenv (under
//! `$HOME/.cache/lmi/venv`) with the clients from PyPI. `LMI_SKIP_PYTHON_TESTS=1` skips it.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

fn python_ee(venv: &Path, name: &str, max: usize, timeout_s: f64) -> Ee {
    let py = venv.join("bin/python").display().to_string();
    start_ee(
        name,
        max,
        timeout_s,
        &[&py, "-m", "awslambdaric", "handler.handler"],
        Some(&python_dir()),
        &[("PYTHONDONTWRITEBYTECODE", "1")],
    )
}

fn boto3(venv: &Path, router: u16, count: usize, payload: &str) -> Command {
    let mut c = Command::new(venv.join("bin/python"));
    c.arg(python_dir().join("invoke.py"))
        .arg(format!("http://127.0.0.1:{router}"))
        .arg(count.to_string())
        .arg(payload);
    c
}

fn run_json(mut c: Command) -> Value {
    let out = c.output().expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from invoke.py")
}

fn aws(venv: &Path, router: u16, args: &[&str], outfile: &Path) -> Output {
    Command::new(venv.join("bin/aws"))
        .args([
            "lambda",
            "invoke",
            "--endpoint-url",
            &format!("http://127.0.0.1:{router}"),
        ])
        .args(args)
        .arg(outfile)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .expect("aws cli")
}

#[test]
fn python_runtime_with_boto3_and_the_aws_cli() {
    if std::env::var("LMI_SKIP_PYTHON_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("skipped: LMI_SKIP_PYTHON_TESTS=1");
        return;
    }
    let venv = python_venv();
    let ee1 = python_ee(&venv, "py-ee1", 8, 10.0);
    let ee2 = python_ee(&venv, "py-ee2", 8, 10.0);
    let a = start_router("py-router-a", &[ee1.port], 10.0);
    let b = start_router("py-router-b", &[ee1.port, ee2.port], 10.0);

    // 8 x 1 s in about 1 s on one EE (awslambdaric forks 8 workers, one per concurrent invocation).
    let v = run_json(boto3(&venv, a.port, 8, r#"{"sleepMs":1000}"#));
    let results = v["results"].as_array().expect("results");
    for r in results {
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["payload"]["ee"], "py-ee1");
        assert_eq!(r["executedVersion"], "1");
    }
    let elapsed = v["elapsed"].as_f64().expect("elapsed");
    assert!(elapsed < 1.9, "8 x 1 s took {elapsed} s");

    // Fill EE1 through router A, then 9 through router B: 8 served by EE2, 1 throttled.
    let fill = boto3(&venv, a.port, 8, r#"{"sleepMs":4000}"#)
        .stdout(Stdio::piped())
        .spawn()
        .expect("fill");
    wait_until(Duration::from_secs(10), "EE1 full", || {
        utilization(ee1.port)["inFlight"] == 8
    });
    let v = run_json(boto3(&venv, b.port, 9, r#"{"sleepMs":1000}"#));
    let results = v["results"].as_array().expect("results");
    let ok: Vec<&Value> = results.iter().filter(|r| r["status"] == 200).collect();
    let throttled: Vec<&Value> = results.iter().filter(|r| r["status"] == 429).collect();
    assert_eq!((ok.len(), throttled.len()), (8, 1), "{v}");
    assert!(ok.iter().all(|r| r["payload"]["ee"] == "py-ee2"), "{v}");
    assert_eq!(throttled[0]["code"], "TooManyRequestsException");
    assert_eq!(throttled[0]["reason"], "Concurrency");
    assert_eq!(throttled[0]["retryAfter"], "1");
    assert!(metric(ee1.port, r#"lmi_ee_throttles_total{reason="Concurrency"}"#) >= 1.0);
    let fill = fill.wait_with_output().expect("fill");
    let fill: Value = serde_json::from_slice(&fill.stdout).expect("fill json");
    assert!(
        fill["results"]
            .as_array()
            .expect("r")
            .iter()
            .all(|r| r["status"] == 200),
        "{fill}"
    );

    // Function error and timeout, as Lambda returns them to boto3.
    let ee3 = python_ee(&venv, "py-ee3", 2, 1.0);
    let c = start_router("py-router-c", &[ee3.port], 1.0);
    let v = run_json(boto3(&venv, c.port, 1, r#"{"fail":"boom"}"#));
    let r = &v["results"][0];
    assert_eq!(r["status"], 200);
    assert_eq!(r["functionError"], "Unhandled");
    assert_eq!(r["payload"]["errorType"], "ValueError");
    assert_eq!(r["payload"]["errorMessage"], "boom");
    assert!(r["payload"]["stackTrace"].is_array(), "{r}");
    let v = run_json(boto3(&venv, c.port, 1, r#"{"sleepMs":2500}"#));
    let r = &v["results"][0];
    assert_eq!(r["functionError"], "Unhandled");
    assert_eq!(r["payload"]["errorType"], "Sandbox.Timedout");
    assert!(
        r["payload"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.ends_with("Error: Task timed out after 1.00 seconds")),
        "{r}"
    );

    // The AWS CLI, with the function named in its various forms.
    let dir = std::env::temp_dir().join("lmi-router-tests");
    let out = dir.join("cli-out.json");
    for name in [
        "hello",
        "hello:1",
        "default/hello",
        "arn:aws:lambda:us-east-1:default:function:hello",
        "arn:aws:lambda:us-east-1:123456789012:function:hello:1",
        "default:function:hello",
    ] {
        let o = aws(
            &venv,
            c.port,
            &["--function-name", name, "--payload", r#"{"k":"v"}"#],
            &out,
        );
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let meta: Value = serde_json::from_slice(&o.stdout).expect("cli json");
        assert_eq!(meta["StatusCode"], 200, "{name}");
        assert_eq!(meta["ExecutedVersion"], "1", "{name}");
        let body: Value = serde_json::from_slice(&std::fs::read(&out).expect("out")).expect("json");
        assert_eq!(body["echo"]["k"], "v", "{name}");
        assert_eq!(body["ee"], "py-ee3");
    }
    let o = aws(
        &venv,
        c.port,
        &[
            "--function-name",
            "hello",
            "--qualifier",
            "1",
            "--payload",
            r#"{"fail":"cli boom"}"#,
        ],
        &out,
    );
    let meta: Value = serde_json::from_slice(&o.stdout).expect("cli json");
    assert_eq!(meta["FunctionError"], "Unhandled");
    let body: Value = serde_json::from_slice(&std::fs::read(&out).expect("out")).expect("json");
    assert_eq!(body["errorMessage"], "cli boom");
    let o = aws(
        &venv,
        c.port,
        &["--function-name", "hello", "--invocation-type", "DryRun"],
        &out,
    );
    let meta: Value = serde_json::from_slice(&o.stdout).expect("cli json");
    assert_eq!(meta["StatusCode"], 204);
    let o = aws(&venv, c.port, &["--function-name", "missing"], &out);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("ResourceNotFoundException"));
    let o = aws(&venv, c.port, &["--function-name", "hello:2"], &out);
    assert!(String::from_utf8_lossy(&o.stderr).contains("ResourceNotReadyException"));
    let o = aws(
        &venv,
        c.port,
        &["--function-name", "hello", "--invocation-type", "Event"],
        &out,
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("needs the event queue"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// boto3 invokes an alias whose routing config sends a tenth of the invocations to version 2: the
/// split follows the weight, and `ExecutedVersion` names the version whose EE answered. The EEs
/// run the Rust fixture function (only boto3 is needed from the virtualenv).
#[test]
fn boto3_invokes_an_alias_split_by_weight() {
    if std::env::var("LMI_SKIP_PYTHON_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("skipped: LMI_SKIP_PYTHON_TESTS=1");
        return;
    }
    let venv = python_venv();
    let f = example("fixture_fn").display().to_string();
    let ee1 = start_ee("py-alias-v1", 16, 10.0, &[&f], None, &[]);
    let ee2 = start_ee("py-alias-v2", 16, 10.0, &[&f], None, &[]);
    let r = start_router_on(
        "py-alias-router",
        &alias_catalog(ee1.port, ee2.port, 0.1),
        &[],
    );
    let count = 2_000;
    let mut c = boto3(&venv, r.port, count, r#"{"noEcho": true}"#);
    // Eight at a time: fewer than either EE admits, so none is throttled.
    c.args(["hello:live", "8"]);
    let v = run_json(c);
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), count);
    let mut on_2 = 0;
    for r in results {
        assert_eq!(r["status"], 200, "{r}");
        let version = r["executedVersion"].as_str().expect("ExecutedVersion");
        assert_eq!(
            r["payload"]["ee"],
            format!("py-alias-v{version}"),
            "the EE that answered"
        );
        if version == "2" {
            on_2 += 1;
        }
    }
    let share = f64::from(on_2) / count as f64;
    assert!((share - 0.1).abs() <= 0.03, "version 2 ran {share:.3}");
}
