//! The controllers and how they are wired to their watches.

pub mod autoscaler;
pub mod capacity_provider;
pub mod event_queue;
pub mod function;
pub mod launch_refusals;
pub mod run;
pub mod trigger_set;
