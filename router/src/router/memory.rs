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

/// The payload budget that makes the worst case of `c` (its other bounds) fit a container limit of
/// `limit_mib` with the headroom: what the router takes when it is told its limit
/// (`LMI_MEMORY_LIMIT_MIB`, from the downward API) and no `--payload-budget-mib`.
pub fn payload_budget_for_limit(limit_mib: u64, c: &Config) -> Result<usize, String> {
    let usable = limit_mib * 100 / (100 + HEADROOM_PERCENT);
    let others = worst_case_mib(c) - c.payload_budget_mib as u64;
    let budget = usable.saturating_sub(others);
    // At least one payload of the largest size (6 MB) must fit; more than 4 GiB is pointless.
    if budget < 7 {
        return Err(format!(
            "a memory limit of {limit_mib} MiB leaves {budget} MiB for payloads after \
             {others} MiB of connections and answers and {HEADROOM_PERCENT}% headroom; need 7: \
             raise the limit or lower --max-connections / --max-in-flight"
        ));
    }
    Ok(budget.min(4096) as usize)
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
    fn the_budget_follows_the_containers_limit() {
        let c = Config::default();
        // 512 / 1.25 = 409 MiB usable, less 240 for the rest.
        assert_eq!(payload_budget_for_limit(512, &c), Ok(169));
        let budget = payload_budget_for_limit(1024, &c).expect("fits");
        let with = Config {
            payload_budget_mib: budget,
            ..Config::default()
        };
        assert!(limit_mib(&with) <= 1024);
        assert!(payload_budget_for_limit(256, &c).is_err());
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
