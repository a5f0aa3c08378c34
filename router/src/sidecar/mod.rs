//! `lmi-sidecar`: the Lambda Runtime API for the function's runtime, and admission control in front
//! of it. See docs/data-plane.md.

pub mod config;
pub mod invoke;
pub mod metrics;
pub mod runtime_api;
pub mod state;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::Error;
use crate::http_server;
use crate::usage::{self, Limits, Meter, Selector};
pub use config::Config;
use state::State;

/// Idle (and header read) timeout of the router-facing endpoint.
pub const SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Run the sidecar until SIGTERM (or SIGINT), then drain. With `command`, the sidecar starts the
/// function itself (local runs, tests, benchmarks) and measures that process tree; without, it
/// measures every other process in the pod's shared PID namespace.
pub async fn run(config: Config, command: Option<Vec<String>>) -> Result<(), Error> {
    let state = Arc::new(State::new(config, metrics::Metrics::new()?));
    let cfg = state.config.clone();

    let runtime_listener = http_server::bind(cfg.runtime_api_addr).await?;
    let runtime_addr = runtime_listener.local_addr()?;
    let listener = http_server::bind(cfg.listen_addr).await?;
    tracing::info!(runtime_api = %runtime_addr, listen = %listener.local_addr()?, max_concurrency = cfg.max_concurrency, "sidecar started");

    let s = state.clone();
    tokio::spawn(http_server::serve(runtime_listener, None, move |req| {
        runtime_api::handle(s.clone(), req)
    }));
    let s = state.clone();
    // Longer than the router's pool idle timeout, so the router closes idle connections first and
    // never sends on one the sidecar is closing.
    tokio::spawn(http_server::serve(
        listener,
        Some(SERVER_IDLE_TIMEOUT),
        move |req| invoke::handle(s.clone(), req),
    ));

    let mut child = match command {
        Some(cmd) => Some(spawn_function(&cmd, &cfg, &runtime_addr.to_string())?),
        None => None,
    };
    let selector = match child.as_ref().and_then(Child::id) {
        Some(pid) => Selector::Tree(pid),
        None => Selector::AllButSelf,
    };
    let pgid = child.as_ref().and_then(Child::id);

    tokio::spawn(sample_usage(state.clone(), selector));
    let s = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(s.config.init_timeout).await;
        s.check_init_timeout();
    });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
        status = wait_child(&mut child) => {
            let msg = format!("the runtime process exited: {status}");
            let reason = match state.lifecycle() {
                state::Lifecycle::Failed { .. } => None,
                state::Lifecycle::Initializing => Some("FunctionError.RuntimeInitError"),
                state::Lifecycle::Ready => Some("Runtime.ExitError"),
            };
            if let Some(reason) = reason {
                state.mark_failed(reason, "Runtime.ExitError", &msg);
            }
            // Keep serving (refusing as NotReady, reporting the error) until told to stop, as a
            // pod's sidecar would while the kubelet restarts the function container.
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
    }
    if !state.drain().await {
        tracing::warn!(in_flight = state.in_flight(), "drain grace period over");
    }
    if let Some(pgid) = pgid {
        kill_group(pgid).await;
    }
    tracing::info!("drained, exiting");
    Ok(())
}

async fn wait_child(child: &mut Option<Child>) -> String {
    match child {
        Some(c) => match c.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
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

async fn sample_usage(state: Arc<State>, selector: Selector) {
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
        let totals = tokio::task::spawn_blocking(move || {
            usage::total(&usage::read_proc(), selector, self_pid)
        })
        .await;
        if let Ok((ticks, rss)) = totals {
            state.set_usage(meter.update(Instant::now(), ticks, rss));
        }
    }
}
