//! Response streaming end to end: InvokeWithResponseStream through the router, called with boto3
//! (the unmodified AWS SDK), to a sidecar whose function streams its answer through the Runtime
//! API: the Rust fixture on `lambda_runtime`'s streaming support, and a custom runtime that
//! reports an error after the first bytes in the trailers. `LMI_SKIP_PYTHON_TESTS=1` skips them.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn skipped() -> bool {
    let skip = std::env::var("LMI_SKIP_PYTHON_TESTS").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("skipped: LMI_SKIP_PYTHON_TESTS=1");
    }
    skip
}

/// boto3's `invoke_with_response_stream`, as `tests/python/invoke_stream.py` reports it.
fn stream_with_boto3(venv: &Path, router: u16, payload: &str) -> Value {
    let out = Command::new(venv.join("bin/python"))
        .arg(python_dir().join("invoke_stream.py"))
        .arg(format!("http://127.0.0.1:{router}"))
        .arg(payload)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "invoke_stream.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from invoke_stream.py")
}

/// The time the first chunk holding `text` arrived.
fn arrival(v: &Value, text: &str) -> f64 {
    v["chunks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["text"].as_str().is_some_and(|t| t.contains(text)))
        .and_then(|c| c["at"].as_f64())
        .unwrap_or_else(|| panic!("no chunk with {text:?}: {v}"))
}

#[test]
fn boto3_receives_each_chunk_as_the_function_writes_it() {
    if skipped() {
        return;
    }
    let venv = python_venv();
    let f = example("fixture_fn").display().to_string();
    let ee = start_ee("stream-ee", 8, 10.0, &[&f], None, &[]);
    let r = start_router("stream-router", &[ee.port], 10.0);

    let v = stream_with_boto3(
        &venv,
        r.port,
        r#"{"stream": ["first", "second"], "gapMs": 1000}"#,
    );
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["executedVersion"], "1", "{v}");
    let (first, second) = (arrival(&v, "first"), arrival(&v, "second"));
    println!("first chunk at {first:.3} s, second at {second:.3} s");
    assert!(
        second - first >= 0.9,
        "the first chunk reached the caller {:.3} s before the second: {v}",
        second - first
    );
    assert_eq!(v["complete"]["ErrorCode"], Value::Null, "{v}");
    assert!(v["completeAt"].as_f64() >= Some(second));

    // A function that answers whole is one chunk and a clean end.
    let v = stream_with_boto3(&venv, r.port, r#"{"noEcho": true}"#);
    assert_eq!(v["totalBytes"], r#"{"ee":"stream-ee"}"#.len(), "{v}");
    assert_eq!(v["complete"]["ErrorCode"], Value::Null, "{v}");
    // And an error it reports before any byte ends the stream with it.
    let v = stream_with_boto3(&venv, r.port, r#"{"fail": "no luck"}"#);
    assert_eq!(v["totalBytes"], 0, "{v}");
    assert_eq!(v["complete"]["ErrorCode"], "Unhandled", "{v}");
    assert_eq!(v["complete"]["ErrorDetails"], "no luck", "{v}");
}

#[test]
fn an_error_after_the_first_bytes_reaches_boto3_in_invoke_complete() {
    if skipped() {
        return;
    }
    let venv = python_venv();
    let py = venv.join("bin/python").display().to_string();
    let runtime = python_dir()
        .join("streaming_runtime.py")
        .display()
        .to_string();
    let ee = start_ee("stream-error-ee", 4, 10.0, &[&py, &runtime], None, &[]);
    let r = start_router("stream-error-router", &[ee.port], 10.0);
    let v = stream_with_boto3(
        &venv,
        r.port,
        r#"{"chunks": ["partial answer"], "gapMs": 0, "failWith": "the database went away"}"#,
    );
    assert!(arrival(&v, "partial answer") >= 0.0);
    assert_eq!(v["complete"]["ErrorCode"], "Runtime.StreamError", "{v}");
    assert_eq!(
        v["complete"]["ErrorDetails"], "the database went away",
        "{v}"
    );
    // The EE serves on.
    let v = stream_with_boto3(&venv, r.port, r#"{"chunks": ["again"]}"#);
    assert!(arrival(&v, "again") >= 0.0);
    assert_eq!(v["complete"]["ErrorCode"], Value::Null, "{v}");
}

/// Lambda's limits on a streamed answer, shortened: at most 1 MiB (then
/// `Function.ResponseSizeTooLarge`), and the function timeout ends a stream too.
#[test]
fn a_stream_past_its_size_or_time_is_cut_off_with_lambdas_error() {
    if skipped() {
        return;
    }
    let venv = python_venv();
    let f = example("fixture_fn").display().to_string();
    let ee = start_ee(
        "stream-limit-ee",
        4,
        2.0,
        &[&f],
        None,
        &[("LMI_STREAM_MAX_MIB", "1")],
    );
    let r = start_router("stream-limit-router", &[ee.port], 2.0);
    let v = stream_with_boto3(&venv, r.port, r#"{"streamBytes": 2097152}"#);
    assert_eq!(
        v["complete"]["ErrorCode"], "Function.ResponseSizeTooLarge",
        "{v}"
    );
    assert!(v["totalBytes"].as_u64() <= Some(1024 * 1024), "{v}");
    let v = stream_with_boto3(
        &venv,
        r.port,
        r#"{"stream": ["early", "too late"], "gapMs": 3000}"#,
    );
    assert!(arrival(&v, "early") >= 0.0);
    assert_eq!(v["complete"]["ErrorCode"], "Sandbox.Timedout", "{v}");
    assert!(
        !v["chunks"].to_string().contains("too late"),
        "nothing after the timeout: {v}"
    );
}

/// A 20 MiB streamed answer arrives whole, the part past the first 6 MiB at Lambda's 2 MiB/s,
/// and the router holds none of it: its memory stays flat.
#[test]
fn a_20_mib_stream_arrives_whole_at_lambdas_rate_with_the_router_memory_flat() {
    if skipped() {
        return;
    }
    const BYTES: u64 = 20 * 1024 * 1024;
    let venv = python_venv();
    let f = example("fixture_fn").display().to_string();
    let ee = start_ee("stream-big-ee", 4, 60.0, &[&f], None, &[]);
    let r = start_router("stream-big-router", &[ee.port], 60.0);
    let pid = r.proc.child.id();
    let rss = move || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let before = rss();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss());
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            peak
        })
    };
    let v = stream_with_boto3(&venv, r.port, &format!(r#"{{"streamBytes": {BYTES}}}"#));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");
    let seconds = v["completeAt"].as_f64().unwrap_or(0.0);
    println!(
        "20 MiB streamed in {seconds:.2} s; router RSS {before} kB before, peak {peak} kB ({} kB more)",
        peak.saturating_sub(before)
    );
    // Every byte the function wrote, after the HTTP-integration prelude lambda_runtime sends
    // first (a short JSON line and 8 NUL bytes).
    assert_eq!(v["xBytes"], BYTES, "{}", v["complete"]);
    let prelude = v["totalBytes"].as_u64().unwrap_or(0).saturating_sub(BYTES);
    assert!(prelude < 256, "{prelude} bytes besides the function's");
    assert_eq!(v["complete"]["ErrorCode"], Value::Null, "{}", v["complete"]);
    // 14 MiB past the uncapped 6 MiB at 2 MiB/s: at least 7 s.
    assert!(seconds >= 6.5, "the bandwidth cap held: {seconds:.2} s");
    assert!(
        peak.saturating_sub(before) < 24 * 1024,
        "the router held the stream: {before} kB -> {peak} kB"
    );
}
