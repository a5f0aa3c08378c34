//! Pure planning: from a snapshot of one capacity provider's world (nodes, NodeClaims, versions
//! and their EEs) to what should change. No I/O here; the controllers observe and apply.

pub mod capacity;
pub mod consolidation;
pub mod ee_pod;
pub mod invoke_secrets;
pub mod karpenter_objects;
pub mod retirement;
pub mod snapshot;
pub mod version_state;

pub use capacity::{CapacityPlan, NewClaim, NewEe, plan_capacity};
pub use snapshot::{ClaimView, EeView, NodeView, Provisioner, Snapshot, VersionView};
