//! How many EEs of a version a capacity provider's `maxVCpuCount` can hold.
//!
//! The ceiling counts instance vCPUs, not EE vCPUs: a node keeps some CPU for itself, and every EE
//! carries a sidecar. The count here packs the room other versions leave greedily with the densest
//! permitted instance types; the planner enforces the exact ceiling when it
//! launches (and reports `VcpuLimitExceeded`). Its purpose is to keep the wish from asking for what
//! could never be placed.

use lmi_crds::capacity_provider::InstanceRequirements;
use lmi_crds::catalog::Catalog;
use lmi_crds::rules::EeShape;

/// Most EEs of `shape` that fit in `max_vcpu` instance vCPUs of which `others_vcpu` are taken by
/// other versions' EEs, on the instance types of `catalog`. Zero when no permitted instance type
/// holds the shape.
pub fn vcpu_ceiling_ees(
    catalog: &Catalog,
    max_vcpu: u32,
    others_vcpu: u32,
    shape: &EeShape,
    requirements: &InstanceRequirements,
) -> u32 {
    let room = max_vcpu.saturating_sub(others_vcpu);
    let Ok(mut candidates) = catalog.select(requirements, shape) else {
        return 0;
    };
    // Greedy by density (EEs per vCPU): whole instances of the densest type, then the rest of
    // the room with the densest type that still fits in it.
    let density = |c: &lmi_crds::catalog::Candidate<'_>| {
        f64::from(c.ees_per_instance) / f64::from(c.instance_type.vcpu.max(1))
    };
    candidates.sort_by(|a, b| density(b).total_cmp(&density(a)));
    let mut left = room;
    let mut ees = 0;
    for c in candidates.iter().filter(|c| c.instance_type.vcpu > 0) {
        let k = left / c.instance_type.vcpu;
        ees += k * c.ees_per_instance;
        left -= k * c.instance_type.vcpu;
    }
    ees
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmi_crds::Architecture;
    use lmi_crds::rules::Category;

    fn shape(vcpus: u32) -> EeShape {
        EeShape {
            vcpus,
            memory_mib: vcpus * 2048,
            category: Category::Compute,
            max_concurrency: 8,
        }
    }

    fn arm(allowed: &[&str]) -> InstanceRequirements {
        InstanceRequirements {
            architectures: vec![Architecture::Arm64],
            allowed_instance_types: allowed.iter().map(|s| s.to_string()).collect(),
            excluded_instance_types: vec![],
        }
    }

    #[test]
    fn large_instances_hold_one_small_ee_each() {
        // c7g.large: 2 vCPUs, room for one 1-vCPU EE after the node's overhead.
        assert_eq!(
            vcpu_ceiling_ees(Catalog::builtin(), 10, 0, &shape(1), &arm(&["c7g.large"])),
            5
        );
        assert_eq!(
            vcpu_ceiling_ees(Catalog::builtin(), 10, 4, &shape(1), &arm(&["c7g.large"])),
            3
        );
        assert_eq!(
            vcpu_ceiling_ees(Catalog::builtin(), 10, 20, &shape(1), &arm(&["c7g.large"])),
            0
        );
    }

    #[test]
    fn never_more_ees_than_vcpus() {
        for max in [2, 16, 64, 400] {
            let n = vcpu_ceiling_ees(Catalog::builtin(), max, 0, &shape(1), &arm(&[]));
            assert!(n <= max && n > 0, "max {max}: {n}");
            let n2 = vcpu_ceiling_ees(Catalog::builtin(), max, 0, &shape(2), &arm(&[]));
            assert!(n2 * 2 <= max, "max {max}: {n2}");
        }
    }

    #[test]
    fn nothing_fits_means_zero() {
        assert_eq!(
            vcpu_ceiling_ees(Catalog::builtin(), 400, 0, &shape(4), &arm(&["c7g.large"])),
            0
        );
    }
}
