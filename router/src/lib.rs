//! The LMI data plane.
//!
//! - [`sidecar`]: runs in every execution environment (EE) pod; serves the Lambda Runtime API to the
//!   function's runtime and an invoke endpoint to the router, with admission control.
//! - [`router`]: the front door; serves the Lambda Invoke API and spreads invocations over EEs.
//!
//! Pure logic (admission, EE picking, function-name parsing, Lambda error shapes) lives in its own
//! modules without I/O so it can be unit-tested directly.
// Denied, not forbidden, so that `glibc` alone can allow it for its one call (`malloc_trim`).
#![deny(unsafe_code)]

pub mod admission;
pub mod auth;
pub mod body;
pub mod client_context;
pub mod error;
pub mod event_stream;
pub mod function_name;
mod glibc;
pub mod heap;
pub mod http_server;
pub mod ids;
pub mod lambda_error;
pub mod pick;
pub mod router;
pub mod sidecar;
pub mod url;
pub mod usage;
pub mod wire;

pub use error::Error;

/// glibc's malloc serves an allocation above its mmap threshold with its own mapping, returned to
/// the system when freed; but it raises that threshold up to 32 MiB after the first such free, so
/// later payload buffers (up to 6 MB) land on the heap, where freed memory mostly stays resident.
/// A threshold set in the environment stays fixed: without it, the program runs itself again with
/// one, so memory goes back once a burst of large payloads is over (docs/benchmarks.md), and
/// with at most two malloc arenas (each worker thread would otherwise keep one of its own).
/// An `exec` keeps the process id; if it fails the program goes on as it is.
pub fn return_freed_memory() {
    const VAR: &str = "MALLOC_MMAP_THRESHOLD_";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(VAR, "131072")
        .env("MALLOC_ARENA_MAX", "2")
        .env(MALLOC_TUNED, "1")
        .exec();
    eprintln!("cannot restart with {VAR} set ({err}); going on without it");
}

/// Set when [`return_freed_memory`] set the malloc variables, so that a function the sidecar
/// starts does not inherit them.
pub const MALLOC_TUNED: &str = "LMI_MALLOC_TUNED";

/// Log to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The async runtime of a data-plane binary, sized by the environment variable `var`: unset, empty
/// or `1` gives a single-threaded runtime, `N` a multi-threaded one with `N` workers, `0` one
/// worker per core.
///
/// One thread is the default because it costs up to a third less CPU per invocation
/// (docs/benchmarks.md):
/// a multi-threaded runtime wakes idle workers to steal each new task, and on a small or virtual
/// machine those wake-ups cost more than the request itself. The sidecar's CPU share is a fraction
/// of a core anyway, and the router scales out by replicas.
pub fn runtime(var: &str) -> Result<tokio::runtime::Runtime, Error> {
    let value = std::env::var(var).unwrap_or_default();
    let threads = match value.trim() {
        "" => 1,
        v => v.parse::<usize>().map_err(|_| {
            Error::Config(format!(
                "{var}={value}: need a number of worker threads (0 = one per core)"
            ))
        })?,
    };
    let mut builder = match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("cannot start the async runtime: {e}")))
}
