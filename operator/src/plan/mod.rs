//! Pure planning: from a snapshot of one capacity provider's world (nodes, NodeClaims, versions
//! and their EEs) to what should change. No I/O here; the controllers observe and apply.
//!
//! The capacity plan's modules build on each other one way: `snapshot` (the input, with
//! `consolidation_times`) and `capacity_plan` (the output) are plain data; `room` and
//! `fresh_names` work on them; `consolidation` and `replacement` use those; `capacity` (the planner) uses all of
//! them; `version_state` reads the output. The object builders (`ee_pod`, `invoke_secrets`,
//! `karpenter_objects`, `publication`) and `retirement` stand beside them. Nothing here imports
//! the observer, the controllers or the simulator; the instance catalog comes in as a parameter.

pub mod capacity;
pub mod capacity_plan;
pub mod consolidation;
pub mod consolidation_times;
pub mod ee_pod;
mod fresh_names;
pub mod invoke_secrets;
pub mod karpenter_objects;
pub mod publication;
pub mod replacement;
pub mod retirement;
mod room;
pub mod snapshot;
pub mod version_state;

pub use capacity::plan_capacity;
pub use capacity_plan::{CapacityPlan, ClaimMark, EeRef, NewClaim, NewEe};
pub use snapshot::{ClaimView, EeView, NodeView, Provisioner, Snapshot, VersionView};
