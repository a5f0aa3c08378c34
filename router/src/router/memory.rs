//! The router's memory budget: what each bound may cost at most, and the container limit that
//! holds them all with room to spare. Pure arithmetic; the chart computes the same
//! (`charts/lmi/templates/_helpers.tpl`, `lmi.router.memoryLimit`) and docs/data-plane.md shows it.

use super::Config;

/// Resident memory of an idle router (code, runtime, catalog, metrics), rounded up from the
/// release build's measure (docs/benchmarks.md).
pub const BASELINE_MIB: u64 = 16;
/// What one open client connection may hold: its request head buffer (at most
/// [`crate::http_server::MAX_HEAD_BYTES`]) plus the connection's own state (an idle one measures
/// about 8 KiB).
pub const PER_CONNECTION_BYTES: u64 = crate::http_server::MAX_HEAD_BYTES as u64 + 8 * 1024;
/// An EE's answer streams through the router in pieces of at most this size; one piece may wait
/// on the client's side while the next is read, so an invocation holds two.
pub const ANSWER_BUFFER_BYTES: usize = 64 * 1024;
pub const PER_IN_FLIGHT_BYTES: u64 = 2 * ANSWER_BUFFER_BYTES as u64;

pub const DEFAULT_PAYLOAD_BUDGET_MIB: usize = 160;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// The limit is the worst case plus this share of it, for the allocator's slack (freed memory
/// it has not given back yet).
pub const HEADROOM_PERCENT: u64 = 25;

const MIB: u64 = 1024 * 1024;

/// The most the bounds of `c` let the router hold, in MiB.
pub fn worst_case_mib(c: &Config) -> u64 {
    let connections = (c.max_connections as u64 * PER_CONNECTION_BYTES).div_ceil(MIB);
    let answers = (c.max_in_flight as u64 * PER_IN_FLIGHT_BYTES).div_ceil(MIB);
    BASELINE_MIB + connections + c.payload_budget_mib as u64 + answers
}

/// The container memory limit for `c`: the worst case plus headroom, in MiB.
pub fn limit_mib(c: &Config) -> u64 {
    let worst = worst_case_mib(c);
    worst + (worst * HEADROOM_PERCENT).div_ceil(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_fit_the_charts_512_mib_limit() {
        let c = Config::default();
        // 16 + 4096 x 24 KiB (96) + 160 + 1024 x 128 KiB (128)
        assert_eq!(worst_case_mib(&c), 400);
        assert_eq!(limit_mib(&c), 500);
        assert!(limit_mib(&c) <= 512);
    }

    #[test]
    fn each_bound_moves_the_limit() {
        let base = limit_mib(&Config::default());
        let more = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            limit_mib(&c)
        };
        assert!(more(|c| c.payload_budget_mib += 100) > base);
        assert!(more(|c| c.max_connections *= 2) > base);
        assert!(more(|c| c.max_in_flight *= 2) > base);
    }
}
