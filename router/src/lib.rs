//! The LMI data plane.
//!
//! - [`sidecar`]: runs in every execution environment (EE) pod; serves the Lambda Runtime API to the
//!   function's runtime and an invoke endpoint to the router, with admission control.
//! - [`router`]: the front door; serves the Lambda Invoke API and spreads invocations over EEs.
//!
//! Pure logic (admission, EE picking, function-name parsing, Lambda error shapes) lives in its own
//! modules without I/O so it can be unit-tested directly.
#![forbid(unsafe_code)]

pub mod admission;
pub mod error;
pub mod function_name;
pub mod http_server;
pub mod ids;
pub mod lambda_error;
pub mod pick;
pub mod router;
pub mod sidecar;
pub mod usage;
pub mod wire;

pub use error::Error;

/// Log to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
