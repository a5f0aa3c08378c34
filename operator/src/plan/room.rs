//! Room for EEs: what each node (or NodeClaim still launching) has free, and which one a new EE
//! takes. Shared by placement and consolidation, which both fill room the same way.

use lmi_crds::catalog::ee_pod_resources;
use lmi_crds::rules::EeShape;

/// Room on a node, or on a NodeClaim that is still launching.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    /// Node name (real) or NodeClaim name (launching).
    pub(super) name: String,
    pub(super) zone: String,
    pub(super) free_cpu: i64,
    pub(super) free_memory: i64,
    pub(super) real: bool,
    /// EEs of this plan that wait for this launching claim.
    pub(super) planned: u32,
}

impl Slot {
    pub(super) fn fits(&self, cpu: i64, memory: i64) -> bool {
        self.free_cpu >= cpu && self.free_memory >= memory
    }

    pub(super) fn take(&mut self, cpu: i64, memory: i64) {
        self.free_cpu -= cpu;
        self.free_memory -= memory;
    }
}

/// CPU (millicores) and memory (MiB) one EE pod of `shape` takes, sidecar included.
pub(super) fn resources(shape: &EeShape) -> (i64, i64) {
    let (cpu, memory) = ee_pod_resources(shape);
    (i64::from(cpu), i64::try_from(memory).unwrap_or(i64::MAX))
}

/// The fullest slot in `zone` that still fits an EE: real nodes before launching ones.
pub(super) fn best_slot(slots: &[Slot], zone: &str, cpu: i64, memory: i64) -> Option<usize> {
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.zone == zone && s.fits(cpu, memory))
        .min_by(|(_, a), (_, b)| {
            b.real
                .cmp(&a.real)
                .then(a.free_cpu.cmp(&b.free_cpu))
                .then(a.name.cmp(&b.name))
        })
        .map(|(i, _)| i)
}
