//! `lmi-sidecar [-- FUNCTION COMMAND...]`: configured by environment variables (docs/data-plane.md).

use std::process::ExitCode;

fn main() -> ExitCode {
    lmi_router::return_freed_memory();
    lmi_router::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match args.split_first() {
        None => None,
        Some((dash, cmd)) if dash == "--" && !cmd.is_empty() => Some(cmd.to_vec()),
        Some(_) => {
            eprintln!(
                "usage: lmi-sidecar [-- FUNCTION COMMAND...]  (settings come from the environment)"
            );
            return ExitCode::from(2);
        }
    };
    let config = match lmi_router::sidecar::config::from_lookup(|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lmi-sidecar: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match lmi_router::runtime("LMI_SIDECAR_THREADS") {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lmi-sidecar: {e}");
            return ExitCode::from(2);
        }
    };
    // Freed memory goes back to the system after each burst of load (lmi_router::heap).
    rt.spawn(lmi_router::heap::trim_after_bursts());
    match rt.block_on(lmi_router::sidecar::run(config, command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lmi-sidecar: {e}");
            ExitCode::FAILURE
        }
    }
}
