//! Test harness: start real sidecars, runtimes and routers as local processes, and talk HTTP to
//! them with a tiny blocking client (no mocks; the only fakes are the addresses).
#![allow(dead_code)]

/// The nats-server the event tests run (shared with the benchmark).
#[path = "../../examples/support/nats.rs"]
pub mod nats;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The package directory. Taken from the environment cargo sets when it runs the test, not the
/// one compiled in: a test binary built from another checkout sharing the target directory (same
/// hash) would otherwise look for files there.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// What the tests share with the benchmark programs: one allocator of free ports.
#[path = "../../examples/support/mod.rs"]
mod support;
pub use support::free_port;

/// A built example binary (cargo test builds the examples of the package before running tests).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> -> target/debug/examples/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("examples");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run the tests with `cargo test -p lmi-router` (which builds examples) or \
         `cargo build -p lmi-router --examples` first",
        p.display()
    );
    // `cargo test --test X` does not rebuild examples: refuse to test against a stale one.
    let src = manifest_dir().join(format!("examples/{name}.rs"));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    assert!(
        modified(&p) >= modified(&src),
        "{} is older than its source: run `cargo build -p lmi-router --examples` (or plain \
         `cargo test -p lmi-router`)",
        p.display()
    );
    p
}

/// A child process stopped with SIGTERM (so a sidecar drains and stops its runtime) on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn log_file(name: &str) -> std::fs::File {
    let dir = std::env::temp_dir().join("lmi-router-tests");
    std::fs::create_dir_all(&dir).expect("log dir");
    std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file")
}

pub struct Ee {
    pub proc: Proc,
    pub port: u16,
}

/// Start a sidecar that runs `cmd` as the function.
pub fn start_ee(
    name: &str,
    max_concurrency: usize,
    timeout_s: f64,
    cmd: &[&str],
    cwd: Option<&Path>,
    env: &[(&str, &str)],
) -> Ee {
    let port = free_port();
    let rapi = free_port();
    let log = log_file(name);
    let mut c = Command::new(env!("CARGO_BIN_EXE_lmi-sidecar"));
    c.arg("--")
        .args(cmd)
        .env("LMI_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("LMI_RUNTIME_API_ADDR", format!("127.0.0.1:{rapi}"))
        .env("AWS_LAMBDA_MAX_CONCURRENCY", max_concurrency.to_string())
        .env("LMI_FUNCTION_TIMEOUT_SECONDS", timeout_s.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "hello")
        .env("EE_NAME", name)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let child = c.spawn().expect("start lmi-sidecar");
    let mut ee = Ee {
        proc: Proc {
            child,
            name: name.to_string(),
        },
        port,
    };
    wait_for(&mut ee.proc, port, "/readyz", Duration::from_secs(60));
    ee
}

pub struct RouterProc {
    pub proc: Proc,
    pub port: u16,
    pub catalog: PathBuf,
}

/// Start a router on a static catalog listing `endpoints` as version 1 of `default/hello`.
pub fn start_router(name: &str, endpoints: &[u16], timeout_s: f64) -> RouterProc {
    start_router_with(name, endpoints, timeout_s, &[])
}

/// [`start_router`] with extra command-line flags.
pub fn start_router_with(
    name: &str,
    endpoints: &[u16],
    timeout_s: f64,
    extra: &[&str],
) -> RouterProc {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    let catalog = format!(
        "functions:\n  - name: hello\n    versions:\n      - {{version: 1, timeoutSeconds: {timeout_s}, endpoints: [{}]}}\n      - {{version: 2, state: Pending}}\n",
        eps.join(", ")
    );
    start_router_on(name, &catalog, extra)
}

/// Start a router on a static catalog with the given text (`router/src/router/catalog.rs`'s
/// `CatalogSpec`), with extra command-line flags.
pub fn start_router_on(name: &str, catalog_text: &str, extra: &[&str]) -> RouterProc {
    start_router_with_env(name, catalog_text, extra, &[])
}

/// [`start_router_on`] with environment variables set for the router.
pub fn start_router_with_env(
    name: &str,
    catalog_text: &str,
    extra: &[&str],
    env: &[(&str, String)],
) -> RouterProc {
    let port = free_port();
    let dir = std::env::temp_dir().join("lmi-router-tests");
    std::fs::create_dir_all(&dir).expect("dir");
    let catalog = dir.join(format!("{name}-{port}.yaml"));
    std::fs::write(&catalog, catalog_text).expect("catalog");
    let log = log_file(name);
    let child = Command::new(env!("CARGO_BIN_EXE_lmi-router"))
        // Events only where a test asks for them (`--nats-url`), whatever the shell exported
        // (`lmi-dev env` exports the local cluster's LMI_NATS_URL).
        .env_remove("LMI_NATS_URL")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(["--static", &catalog.display().to_string(), "--auth", "off"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start lmi-router");
    let mut r = RouterProc {
        proc: Proc {
            child,
            name: name.to_string(),
        },
        port,
        catalog,
    };
    wait_for(&mut r.proc, port, "/healthz", Duration::from_secs(30));
    r
}

/// A catalog whose function `hello` has version 1 on the EE at `v1`, version 2 on the one at `v2`,
/// a Pending version 3, and aliases: `live` (version 1, `weight` of the invocations to version
/// 2), `next` (version 3) and `gone` (a missing version 9).
pub fn alias_catalog(v1: u16, v2: u16, weight: f64) -> String {
    format!(
        r#"functions:
  - name: hello
    versions:
      - {{version: 1, timeoutSeconds: 10, endpoints: ["127.0.0.1:{v1}"]}}
      - {{version: 2, timeoutSeconds: 10, endpoints: ["127.0.0.1:{v2}"]}}
      - {{version: 3, state: Pending}}
    aliases:
      - {{name: live, version: 1, additionalVersion: {{version: 2, weight: {weight}}}}}
      - {{name: next, version: 3}}
      - {{name: gone, version: 9}}
"#
    )
}

/// Wait until `port` answers `path` with 200 and `proc` still runs: a child that could not bind
/// its port exits, and whatever else answers there is not the process under test.
fn wait_for(proc: &mut Proc, port: u16, path: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if http("GET", port, path, &[], b"").is_ok_and(|r| r.status == 200) {
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!(
                    "{} exited ({status}) though 127.0.0.1:{port} answers",
                    proc.name
                );
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "127.0.0.1:{port}{path} not ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn http(
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    // A server may answer (e.g. 413) and close before taking the whole body: still read the answer.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Send `request` as is (any bytes) and read one answer: its head and as much body as its
/// Content-Length says (or until the server closes), as a client that does not wait for the
/// connection to end.
pub fn raw(port: u16, request: &[u8]) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let _ = s.write_all(request);
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Ok(r) = parse_response(&raw) {
            let want = r
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok());
            if want.is_some_and(|n| r.body.len() >= n) {
                return Ok(r);
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if raw.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Resp> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Resp {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Resident memory of a process now and at its peak (`VmRSS`, `VmHWM` of `/proc/PID/status`), in
/// bytes.
pub fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("{name} missing in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub fn invoke(router_port: u16, name: &str, payload: &str) -> Resp {
    http(
        "POST",
        router_port,
        &format!("/2015-03-31/functions/{name}/invocations"),
        &[],
        payload.as_bytes(),
    )
    .expect("invoke")
}

/// A sidecar's /utilization document.
pub fn utilization(ee_port: u16) -> serde_json::Value {
    http("GET", ee_port, "/utilization", &[], b"")
        .expect("utilization")
        .json()
}

/// The value of one sample in a Prometheus text page (0 if absent).
pub fn metric(port: u16, sample: &str) -> f64 {
    let page = http("GET", port, "/metrics", &[], b"").expect("metrics");
    String::from_utf8_lossy(&page.body)
        .lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Python clients (awslambdaric, boto3, the AWS CLI) in their own virtualenv (under
/// `$HOME/.cache/lmi/venv`), made from PyPI on first use.
///
/// One list for the tests and the main job (`scripts/run.sh`).
const REQUIREMENTS: &str = include_str!("../../../scripts/python-clients.txt");

fn python_packages() -> Vec<&'static str> {
    REQUIREMENTS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

pub fn python_venv() -> PathBuf {
    let home = std::env::var("HOME").expect("HOME");
    let dir = PathBuf::from(home).join(".cache/lmi/venv");
    let py = dir.join("bin/python");
    let ready = || {
        Command::new(&py)
            .args(["-c", "import awslambdaric, boto3, awscli"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready() {
        let ok = Command::new("python3")
            .args(["-m", "venv", &dir.display().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "python3 -m venv failed");
        let ok = Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(python_packages())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok && ready(), "pip install {:?} failed", python_packages());
    }
    dir
}

pub fn python_dir() -> PathBuf {
    manifest_dir().join("tests/python")
}

/// The example Python function (`examples/functions/hello-python`, handler `app.handler`).
pub fn example_function_dir() -> PathBuf {
    manifest_dir().join("../examples/functions/hello-python")
}
