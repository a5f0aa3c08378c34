//! `lmi-sidecar`: the Lambda Runtime API for the function's runtime, and admission control in front
//! of it. See docs/data-plane.md.

pub mod access;
pub mod config;
pub mod exit_watch;
pub mod invoke;
pub mod memory;
pub mod metrics;
pub mod payload;
pub mod runtime_api;
pub mod state;
pub mod stream;

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::Error;
use crate::usage::{self, Limits, Meter, Selector};
use crate::{http_server, lambda_error};
pub use config::Config;
use state::State;

/// Idle (and header read) timeout of the router-facing endpoint.
pub const SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Run the sidecar until SIGTERM (or SIGINT), then drain. With `command`, the sidecar starts the
/// function itself (local runs, tests, benchmarks), measures that process tree and restarts it when
/// it exits after it was ready (as the kubelet restarts a pod's container); without, it measures
/// every other process in the pod's shared PID namespace and watches them for the runtime's exit.
pub async fn run(config: Config, command: Option<Vec<String>>) -> Result<(), Error> {
    let access = access::Access::new(
        config.invoke_token.clone(),
        config.drain_token.clone(),
        command.is_some(),
    );
    for warning in access.warnings() {
        tracing::warn!("{warning}");
    }
    let state = Arc::new(State::new(config, metrics::Metrics::new()?, access));
    let cfg = state.config.clone();

    let runtime_listener = http_server::bind(cfg.runtime_api_addr).await?;
    let runtime_addr = runtime_listener.local_addr()?;
    let listener = http_server::bind(cfg.listen_addr).await?;
    tracing::info!(runtime_api = %runtime_addr, listen = %listener.local_addr()?, max_concurrency = cfg.max_concurrency, "sidecar started");

    let runtime_cap = memory::runtime_connections(cfg.max_concurrency);
    let s = state.clone();
    let gate_state = state.clone();
    tokio::spawn(http_server::serve(
        runtime_listener,
        None,
        move || RuntimeConnection::open(&gate_state, runtime_cap),
        move |req| runtime_api::handle(s.clone(), req),
    ));
    let s = state.clone();
    // Longer than the router's pool idle timeout, so the router closes idle connections first and
    // never sends on one the sidecar is closing.
    tokio::spawn(http_server::serve(
        listener,
        Some(SERVER_IDLE_TIMEOUT),
        http_server::capped_gate(cfg.max_connections, TOO_MANY_CONNECTIONS),
        move |req| invoke::handle(s.clone(), req),
    ));

    let mut child = match command {
        Some(cmd) => Some((spawn_function(&cmd, &cfg, &runtime_addr.to_string())?, cmd)),
        None => None,
    };
    match child.as_ref().and_then(|(c, _)| c.id()) {
        Some(pid) => state.set_selector(Selector::Tree(pid)),
        None => {
            state.set_selector(Selector::AllButSelf);
            // A local run waits for its child instead, which also tells the exit status.
            tokio::spawn(exit_watch::run(state.clone(), cfg.sample_interval));
        }
    }

    tokio::spawn(sample_usage(state.clone()));
    let s = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(s.config.init_timeout).await;
        s.check_init_timeout();
    });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: draining"); break; }
            (code, signal) = wait_child(&mut child) => {
                let reason = lambda_error::exit_reason(code, signal);
                if state.runtime_exited(&reason) {
                    // It had been serving: start it again, as the kubelet restarts a crashed
                    // container, after a pause that keeps a crash loop from spinning.
                    tokio::time::sleep(RESTART_DELAY).await;
                    if let Some((old, cmd)) = child.take() {
                        drop(old);
                        let next = spawn_function(&cmd, &cfg, &runtime_addr.to_string())?;
                        if let Some(pid) = next.id() {
                            state.set_selector(Selector::Tree(pid));
                        }
                        child = Some((next, cmd));
                    }
                    continue;
                }
                if state.lifecycle() == state::Lifecycle::Initializing {
                    state.mark_failed(
                        "FunctionError.RuntimeInitError",
                        lambda_error::RUNTIME_EXIT_ERROR,
                        &reason,
                    );
                }
                // Keep serving (refusing as NotReady, reporting the error) until told to stop, as
                // a pod's sidecar would while the function container cannot start.
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
                break;
            }
        }
    }
    if !state.drain().await {
        tracing::warn!(in_flight = state.in_flight(), "drain grace period over");
    }
    if let Some(pgid) = child.as_ref().and_then(|(c, _)| c.id()) {
        kill_group(pgid).await;
    }
    tracing::info!("drained, exiting");
    Ok(())
}

/// Pause before a local run starts its crashed function again.
const RESTART_DELAY: Duration = Duration::from_millis(300);

/// One open Runtime API connection: counted while open; its closing asks the exit watch to look
/// whether the runtime is still there.
struct RuntimeConnection(Arc<State>);

impl RuntimeConnection {
    /// At most `cap` at once: a runtime keeps one or two per concurrent invocation, so more can
    /// only be a misbehaving one; it gets a 503 it can retry.
    fn open(state: &Arc<State>, cap: usize) -> Result<Self, &'static [u8]> {
        let open = state.runtime_connections.fetch_add(1, Ordering::AcqRel);
        let guard = Self(state.clone());
        if open >= cap {
            return Err(RUNTIME_API_BUSY);
        }
        Ok(guard)
    }
}

/// The answer to a connection past the sidecar's cap: a refusal the router takes like any other
/// (it tries another EE), written without reading the request; the connection is closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
content-type: application/json\r\n\
lmi-refusal-reason: Concurrency\r\n\
connection: close\r\n\
content-length: 45\r\n\r\n\
{\"message\":\"refused\",\"reason\":\"Concurrency\"}\n";

/// The answer to a Runtime API connection past its cap.
const RUNTIME_API_BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
connection: close\r\n\
content-length: 85\r\n\r\n\
{\"errorMessage\":\"Too many Runtime API connections\",\"errorType\":\"TooManyConnections\"}\n";

impl Drop for RuntimeConnection {
    fn drop(&mut self) {
        self.0.runtime_connections.fetch_sub(1, Ordering::AcqRel);
        self.0.runtime_check.notify_one();
    }
}

/// The exit code or signal of the function process (neither if it could not be waited for).
async fn wait_child(child: &mut Option<(Child, Vec<String>)>) -> (Option<i32>, Option<i32>) {
    match child {
        Some((c, _)) => match c.wait().await {
            Ok(s) => (s.code(), s.signal()),
            Err(_) => (None, None),
        },
        None => std::future::pending().await,
    }
}

/// Start the function with the environment a Lambda runtime expects. It gets its own process group
/// so that on exit the sidecar can stop it together with the workers it forked (awslambdaric forks
/// one process per concurrent invocation).
fn spawn_function(cmd: &[String], cfg: &Config, runtime_api: &str) -> Result<Child, Error> {
    let (prog, args) = cmd
        .split_first()
        .ok_or_else(|| Error::Config("empty function command".to_string()))?;
    let mut c = Command::new(prog);
    c.args(args)
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env(
            "AWS_LAMBDA_MAX_CONCURRENCY",
            cfg.max_concurrency.to_string(),
        )
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances")
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    // The sidecar's own malloc settings are not the function's.
    if std::env::var_os(crate::MALLOC_TUNED).is_some() {
        for k in [
            crate::MALLOC_TUNED,
            "MALLOC_MMAP_THRESHOLD_",
            "MALLOC_ARENA_MAX",
        ] {
            c.env_remove(k);
        }
    }
    // Defaults the runtime clients insist on, unless the caller set them.
    for (k, v) in [
        ("AWS_LAMBDA_FUNCTION_NAME", "function"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "1"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048"),
        ("AWS_REGION", "us-east-1"),
    ] {
        if std::env::var_os(k).is_none() {
            c.env(k, v);
        }
    }
    c.spawn().map_err(Error::Spawn)
}

async fn kill_group(pgid: u32) {
    // No signal API without unsafe code or another crate; the `kill` utility is everywhere.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status()
        .await;
}

async fn sample_usage(state: Arc<State>) {
    let limits = Limits {
        cpu_cores: state.config.cpu_limit_cores.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as f64)
                .unwrap_or(1.0)
        }),
        memory_bytes: state.config.memory_limit_bytes.unwrap_or(0),
    };
    // alpha 0.3 at a 1 s interval: a sustained change shows within about 3 s, a one-second spike
    // moves the average by under a third.
    let mut meter = Meter::new(limits, 0.3);
    let self_pid = std::process::id();
    let mut tick = tokio::time::interval(state.config.sample_interval);
    loop {
        tick.tick().await;
        let selector = state.selector();
        let totals = tokio::task::spawn_blocking(move || {
            usage::total(&usage::read_proc(), selector, self_pid)
        })
        .await;
        if let Ok((ticks, rss)) = totals {
            state.set_usage(meter.update(Instant::now(), ticks, rss));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canned_refusals_are_complete_responses() {
        assert!(http_server::is_complete_json_response(TOO_MANY_CONNECTIONS));
        assert!(
            String::from_utf8_lossy(TOO_MANY_CONNECTIONS)
                .contains("lmi-refusal-reason: Concurrency\r\n")
        );
        assert!(http_server::is_complete_json_response(RUNTIME_API_BUSY));
    }
}
