//! Noticing that the runtime process exited, in a pod, where the sidecar has no child to wait for.
//!
//! The signal is the runtime's Runtime API connections closing (a process that exits closes its
//! sockets, and a `/next` long-poll is dropped with them); the proof is `/proc` (the pod shares one
//! PID namespace): every process the function had while its runtime was ready has exited. A
//! closed connection alone proves nothing, since runtimes may open one connection per request (the
//! `curl` runtimes of the Lambda docs) or let idle pooled connections go; a `curl` process ending
//! is not the runtime ending while the shell around it lives on.
//!
//! The check also runs on a timer, so an exit is found even if no connection was open (every
//! worker busy on a runtime that does not keep connections).

use std::sync::Arc;
use std::time::Duration;

use super::state::{Lifecycle, State};
use crate::lambda_error;
use crate::usage::{self, ProcStat, Selector};

/// A process closes its sockets a moment before the kernel shows it as exited: look again a few
/// times after a connection closes, for about half a second in all.
const RECHECKS: [Duration; 5] = [
    Duration::from_millis(5),
    Duration::from_millis(20),
    Duration::from_millis(50),
    Duration::from_millis(150),
    Duration::from_millis(300),
];

/// Watch until the sidecar stops. `every` is the timer of the fallback check.
pub async fn run(state: Arc<State>, every: Duration) {
    let self_pid = std::process::id();
    loop {
        let prompted = tokio::select! {
            _ = state.runtime_check.notified() => true,
            _ = tokio::time::sleep(every) => false,
        };
        let delays: &[Duration] = if prompted {
            &RECHECKS
        } else {
            &[Duration::ZERO]
        };
        for delay in delays {
            tokio::time::sleep(*delay).await;
            if check(&state, self_pid).await {
                break;
            }
        }
    }
}

/// Compare `/proc` with the processes last seen, then remember the current ones. True when it
/// found the runtime gone.
async fn check(state: &State, self_pid: u32) -> bool {
    let selector = state.selector();
    let Ok(procs) = tokio::task::spawn_blocking(usage::read_proc).await else {
        return false;
    };
    let exited = decide(state, &procs, selector, self_pid);
    if exited {
        state.runtime_exited(lambda_error::EXIT_WITHOUT_REASON);
    }
    exited
}

fn decide(state: &State, procs: &[ProcStat], selector: Selector, self_pid: u32) -> bool {
    let now = usage::function_processes(procs, selector, self_pid);
    let Ok(mut last) = state.runtime_processes.lock() else {
        return false;
    };
    let ready = state.lifecycle() == Lifecycle::Ready;
    let exited = ready && usage::all_exited(&last, procs);
    // Remember only a ready runtime's processes: those of a runtime still starting or already
    // failed say nothing about the next one.
    *last = if ready && !exited { now } else { Vec::new() };
    exited
}
