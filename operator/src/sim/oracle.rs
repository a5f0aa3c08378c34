//! The oracle the autoscaler is measured against: it knows the load in advance, so at every second
//! it holds exactly the EEs that put the load at the target (never fewer than min), packed on the
//! cheapest instances the capacity provider permits, with no launch or start-up delay and no
//! cool-down. Like the planner, it spreads the version's first EEs over the zones.

use lmi_crds::catalog::{Candidate, Catalog};
use lmi_crds::rules::EeShape;

use super::scenario::SimProvider;

/// Prices the oracle's capacity for one EE shape.
#[derive(Debug, Clone)]
pub struct Oracle {
    /// (ees per instance, price per hour, vCPUs) of every permitted type.
    types: Vec<(u32, f64, u32)>,
}

impl Oracle {
    /// The oracle for EEs of `shape` on the types of `catalog` that `provider` permits.
    pub fn new(catalog: &Catalog, provider: &SimProvider, shape: &EeShape) -> Self {
        let types = catalog
            .select(&provider.requirements, shape)
            .map(|cs| {
                cs.iter()
                    .map(|c: &Candidate<'_>| {
                        (
                            c.ees_per_instance,
                            c.instance_type.price_per_hour,
                            c.instance_type.vcpu,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self { types }
    }

    /// The cheapest (instances, vCPUs, on-demand USD per hour) that hold `ees` EEs over at least
    /// `spread` instances (one per zone for the first EEs).
    pub fn capacity(&self, ees: u32, spread: u32) -> (u32, u32, f64) {
        if ees == 0 {
            return (0, 0, 0.0);
        }
        self.types
            .iter()
            .filter(|(per, _, _)| *per > 0)
            .map(|(per, price, vcpu)| {
                let n = ees.div_ceil(*per).max(spread.min(ees));
                (n, n * vcpu, f64::from(n) * price)
            })
            .min_by(|a, b| a.2.total_cmp(&b.2))
            .unwrap_or((0, 0, 0.0))
    }
}

/// EEs that run `rate` invocations per second of `cpu_seconds` each at `target` percent CPU.
pub fn ees_for(rate: f64, cpu_seconds: f64, shape: &EeShape, target: f64) -> u32 {
    let vcpus = rate * cpu_seconds;
    let per_ee = f64::from(shape.vcpus) * target / 100.0;
    let n = (vcpus / per_ee.max(1e-9) - 1e-9).ceil().max(0.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = n.min(f64::from(u32::MAX)) as u32;
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::scenario::{default_function, default_provider};

    #[test]
    fn the_oracle_packs_and_spreads() {
        let f = default_function();
        let o = Oracle::new(Catalog::builtin(), &default_provider(), &f.shape);
        let (n3, _, _) = o.capacity(3, 3);
        assert_eq!(n3, 3);
        let (n1, _, p1) = o.capacity(1, 3);
        assert_eq!(n1, 1);
        let (n100, _, p100) = o.capacity(100, 3);
        assert!(n100 < 100 && p100 > p1);
        assert_eq!(ees_for(200.0, 0.05, &f.shape, 50.0), 20);
        assert_eq!(ees_for(0.0, 0.05, &f.shape, 50.0), 0);
    }
}
