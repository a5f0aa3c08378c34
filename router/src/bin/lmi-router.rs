//! `lmi-router [--static FILE | --sidecar-port PORT] [--listen ADDR] [--default-namespace NS]
//! [--region R] [--max-attempts N] [--retry-after SECONDS] [--payload-budget-mib MIB]
//! [--max-connections N] [--max-in-flight N] [--ee-connections N]`
//!
//! `LMI_MEMORY_LIMIT_MIB` (the container's memory limit) sizes the payload budget to fit it.
//!
//! With `--static`, the catalog comes from a file (local runs, benchmarks); otherwise from the
//! cluster (in-cluster config or KUBECONFIG).

use std::process::ExitCode;

fn main() -> ExitCode {
    lmi_router::return_freed_memory();
    lmi_router::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config =
        match lmi_router::router::Config::from_args_and_env(&args, |k| std::env::var(k).ok()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("lmi-router: {e}");
                return ExitCode::from(2);
            }
        };
    let rt = match lmi_router::runtime("LMI_ROUTER_THREADS") {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lmi-router: {e}");
            return ExitCode::from(2);
        }
    };
    // Freed memory goes back to the system after each burst of load (lmi_router::heap).
    rt.spawn(lmi_router::heap::trim_after_bursts());
    match rt.block_on(lmi_router::router::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lmi-router: {e}");
            ExitCode::FAILURE
        }
    }
}
