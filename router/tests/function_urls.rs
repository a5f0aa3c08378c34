//! Function URLs end to end: the router's URL listener (`--url-listen`, path form) in front of
//! the real Python runtime client running the example function
//! (`examples/functions/hello-python`), called with curl and with Python's urllib
//! (`tests/python/url_client.py`); and a
//! RESPONSE_STREAM URL in front of the Rust fixture's streamed answer. `LMI_SKIP_PYTHON_TESTS=1`
//! skips them.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn curl(args: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rest, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
    let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    (
        code.trim().parse().unwrap_or(0),
        head.to_ascii_lowercase(),
        body.to_string(),
    )
}

fn catalog(ee: u16, url: &str) -> String {
    format!(
        "functions:\n  - name: web\n    versions:\n      - {{version: 1, timeoutSeconds: 10, endpoints: [\"127.0.0.1:{ee}\"]}}\n    url: {url}\n"
    )
}

#[test]
fn a_url_turns_http_into_lambda_events_and_answers_back() {
    if std::env::var("LMI_SKIP_PYTHON_TESTS").is_ok_and(|v| v == "1") {
        return;
    }
    let venv = python_venv();
    let py = venv.join("bin/python").display().to_string();
    let ee = start_ee(
        "url-ee",
        4,
        10.0,
        &[&py, "-m", "awslambdaric", "app.handler"],
        Some(&example_function_dir()),
        &[("PYTHONDONTWRITEBYTECODE", "1")],
    );
    let url_port = free_port();
    let listen = format!("127.0.0.1:{url_port}");
    let r = start_router_on(
        "url-router",
        &catalog(
            ee.port,
            r#"{authType: NONE, cors: {allowOrigins: ["https://app.example.com"], allowMethods: ["GET", "POST"], maxAge: 60}}"#,
        ),
        &["--url-listen", &listen],
    );
    let _ = &r;
    let id = lmi_router::url::url_id("default", "web");
    let base = format!("http://{listen}/{id}");

    // GET with a query and cookies.
    let (status, head, body) = curl(&[
        "-H",
        "Cookie: a=1; b=2",
        &format!("{base}/hello/world?x=1&x=2&y=a%20b"),
    ]);
    assert_eq!(status, 201, "{head}{body}");
    assert!(head.contains("x-seen-by: hello-python"), "{head}");
    assert!(head.contains("set-cookie: visited=yes; path=/"), "{head}");
    assert!(head.contains("set-cookie: theme=dark"), "{head}");
    let seen: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(seen["version"], "2.0");
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["rawPath"], "/hello/world");
    assert_eq!(seen["rawQueryString"], "x=1&x=2&y=a%20b");
    assert_eq!(seen["query"]["x"], "1,2");
    assert_eq!(seen["query"]["y"], "a b");
    assert_eq!(seen["cookies"], serde_json::json!(["a=1", "b=2"]));

    // POST with a binary body: base64 in the event.
    let file = std::env::temp_dir().join(format!("lmi-url-body-{url_port}"));
    std::fs::write(&file, [0u8, 1, 2, 255]).expect("body file");
    let (status, _, body) = curl(&[
        "-H",
        "content-type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{base}/upload"),
    ]);
    assert_eq!(status, 201);
    let seen: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(seen["isBase64Encoded"], true);
    assert_eq!(seen["body"], "000102ff");

    // A binary answer and a plain JSON one.
    let (status, head, _) = curl(&[&format!("{base}/binary")]);
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/octet-stream"),
        "{head}"
    );
    let (status, head, body) = curl(&[&format!("{base}/plain?name=curl")]);
    assert_eq!(status, 200, "{body}");
    let plain: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(plain["message"], "Hello, curl!");
    assert!(head.contains("content-type: application/json"), "{head}");

    // CORS: a preflight from the allowed origin, and none for another.
    let (status, head, _) = curl(&[
        "-X",
        "OPTIONS",
        "-H",
        "Origin: https://app.example.com",
        "-H",
        "Access-Control-Request-Method: POST",
        &format!("{base}/hello"),
    ]);
    assert_eq!(status, 200);
    assert!(
        head.contains("access-control-allow-origin: https://app.example.com"),
        "{head}"
    );
    assert!(head.contains("access-control-max-age: 60"), "{head}");
    let (_, head, _) = curl(&[
        "-X",
        "OPTIONS",
        "-H",
        "Origin: https://evil.example.com",
        "-H",
        "Access-Control-Request-Method: POST",
        &format!("{base}/hello"),
    ]);
    assert!(!head.contains("access-control-allow-origin"), "{head}");

    // No such URL.
    let (status, _, _) = curl(&[&format!(
        "http://{listen}/0123456789abcdef0123456789abcdef/x"
    )]);
    assert_eq!(status, 404);
    let _ = std::fs::remove_file(&file);

    // The same calls from Python's urllib.
    let missing = format!("http://{listen}/0123456789abcdef0123456789abcdef");
    let out = Command::new(&py)
        .arg(python_dir().join("url_client.py"))
        .args([&base, &missing, "https://app.example.com"])
        .output()
        .expect("url_client.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("url_client.py prints JSON");
    let get = &report["get"];
    assert_eq!(get["status"], 201, "{get}");
    assert_eq!(get["headers"]["x-seen-by"], "hello-python");
    assert_eq!(
        get["cookies"],
        serde_json::json!(["visited=yes; Path=/", "theme=dark"])
    );
    let seen: Value = serde_json::from_str(get["body"].as_str().unwrap_or("")).expect("json");
    assert_eq!(seen["query"]["x"], "1,2");
    assert_eq!(seen["cookies"], serde_json::json!(["a=1", "b=2"]));
    let post = &report["post"];
    let seen: Value = serde_json::from_str(post["body"].as_str().unwrap_or("")).expect("json");
    assert_eq!(
        (seen["method"].as_str(), seen["body"].as_str()),
        (Some("POST"), Some("000102ff"))
    );
    let plain: Value =
        serde_json::from_str(report["plain"]["body"].as_str().unwrap_or("")).expect("json");
    assert_eq!(plain["message"], "Hello, urllib!");
    assert_eq!(report["missing"]["status"], 404, "{report}");
    let preflight = &report["preflight"];
    assert_eq!(preflight["status"], 200);
    assert_eq!(
        preflight["headers"]["access-control-allow-origin"],
        "https://app.example.com"
    );
}

#[test]
fn a_response_stream_url_sends_the_first_piece_before_the_function_ends() {
    let f = example("fixture_fn").display().to_string();
    let ee = start_ee("url-stream-ee", 4, 10.0, &[&f], None, &[]);
    let url_port = free_port();
    let listen = format!("127.0.0.1:{url_port}");
    let _r = start_router_on(
        "url-stream-router",
        &catalog(ee.port, "{authType: NONE, invokeMode: RESPONSE_STREAM}"),
        &["--url-listen", &listen],
    );
    let id = lmi_router::url::url_id("default", "web");
    // curl's -N: print bytes as they come; the time of each is measured by reading its output.
    let started = std::time::Instant::now();
    let mut child = Command::new("curl")
        .args([
            "-s",
            "-N",
            "-X",
            "POST",
            "-d",
            r#"{"stream": ["first", "second"], "gapMs": 1000}"#,
        ])
        .arg(format!("http://{listen}/{id}/"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    use std::io::Read;
    let mut out = child.stdout.take().expect("stdout");
    let mut seen = String::new();
    let mut first_at = None;
    let mut buf = [0u8; 256];
    loop {
        let n = out.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if first_at.is_none() && seen.contains("first") {
            first_at = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    let _ = child.wait();
    assert!(
        seen.contains("first") && seen.contains("second"),
        "{seen:?}"
    );
    assert!(
        !seen.contains('\u{0}'),
        "the prelude is not part of the body: {seen:?}"
    );
    let first_at = first_at.expect("the first piece");
    println!("first piece at {first_at:?}, whole answer at {total:?}");
    assert!(total - first_at >= std::time::Duration::from_millis(900));
}
