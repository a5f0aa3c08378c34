//! The sidecar's memory budget: what each bound may cost at most, against the memory every EE pod
//! gives its sidecar (`lmi_crds::catalog::SIDECAR_MEMORY_MIB`, the container's limit). Pure
//! arithmetic; docs/data-plane.md shows it.

use lmi_crds::catalog::SIDECAR_MEMORY_MIB;

const MIB: u64 = 1024 * 1024;

/// Resident memory of an idle sidecar, rounded up from the release build's measure
/// (docs/benchmarks.md).
pub const BASELINE_MIB: u64 = 8;
/// What one open connection may hold (request head buffer and the connection's own state).
pub const PER_CONNECTION_BYTES: u64 = crate::http_server::MAX_HEAD_BYTES as u64 + 8 * 1024;
/// Invocation payloads held at once: four of the largest (6 MB) at a time.
pub const DEFAULT_REQUEST_BUDGET_MIB: u64 = 24;
/// The runtime's answers held at once, until the router takes them: two of the largest.
pub const DEFAULT_RESPONSE_BUDGET_MIB: u64 = 12;
/// Router-facing connections open at once (routers keep a small pool per EE).
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
/// The limit must exceed the worst case by at least this share of it (allocator slack).
pub const HEADROOM_PERCENT: u64 = 25;

/// Runtime API connections a runtime of `max_concurrency` may open at once: a `/next` and a spare
/// per concurrent invocation, plus a few.
pub fn runtime_connections(max_concurrency: usize) -> usize {
    2 * max_concurrency + 16
}

/// The most the sidecar may hold with these bounds, in MiB.
pub fn worst_case_mib(
    max_concurrency: usize,
    max_connections: usize,
    request_budget: u64,
    response_budget: u64,
) -> u64 {
    let connections = (max_connections + runtime_connections(max_concurrency)) as u64;
    BASELINE_MIB
        + (connections * PER_CONNECTION_BYTES).div_ceil(MIB)
        + (request_budget + response_budget).div_ceil(MIB)
}

/// Whether the worst case plus headroom fits the sidecar's container limit.
pub fn fits(worst_mib: u64) -> bool {
    worst_mib + (worst_mib * HEADROOM_PERCENT).div_ceil(100) <= u64::from(SIDECAR_MEMORY_MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_fit_the_sidecars_64_mib_with_room() {
        let worst = worst_case_mib(
            8,
            DEFAULT_MAX_CONNECTIONS,
            DEFAULT_REQUEST_BUDGET_MIB * MIB,
            DEFAULT_RESPONSE_BUDGET_MIB * MIB,
        );
        // 8 + (128 + 32) x 24 KiB (4) + 24 + 12
        assert_eq!(worst, 48);
        assert!(fits(worst), "{worst} MiB");
        // Concurrency costs connections only: 64 per EE still fits.
        assert!(fits(worst_case_mib(
            64,
            DEFAULT_MAX_CONNECTIONS,
            DEFAULT_REQUEST_BUDGET_MIB * MIB,
            DEFAULT_RESPONSE_BUDGET_MIB * MIB,
        )));
    }
}
