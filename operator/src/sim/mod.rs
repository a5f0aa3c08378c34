//! `lmi-sim`: a deterministic, virtual-time simulation of one capacity provider, driving the
//! operator's own autoscaling decision ([`crate::autoscale`]), placement and provisioning plan
//! ([`crate::plan::plan_capacity`]) and instance catalog (`lmi_crds::catalog`) with load
//! profiles. No cluster, no clock: a run is a function of its scenario and seed.
//!
//! The pure parts (`engine`, `world`, `oracle`, `report`, `svg`) take and return data; `cli` reads
//! files and writes results. The engine fills an `outcome` that `report` and `svg` read, so none of
//! them imports another back.

pub mod cli;
pub mod engine;
pub mod oracle;
pub mod outcome;
pub mod profile;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod svg;
pub mod world;
