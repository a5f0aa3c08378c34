//! The LMI control plane: reconciles CapacityProviders, Functions and FunctionVersions into
//! EC2NodeClasses, NodeClaims and execution-environment pods.
//!
//! Planning (`plan`) and the autoscaler's decision (`autoscale`) are pure and unit-tested;
//! `version_view` builds the one view of a version that the planner, the autoscaler and the
//! simulator share; `observe` builds the planner's input from the reflector `stores`; the
//! controllers apply its output and write status; `sim` drives `autoscale` and `plan` in virtual
//! time. Modules import downwards only: nothing below `controllers` imports it.
#![forbid(unsafe_code)]

pub mod autoscale;
pub mod conditions;
pub mod context;
pub mod controllers;
pub mod error;
pub mod http;
pub mod invoke_key;
pub mod karpenter;
pub mod leader;
pub mod metrics;
pub mod object_key;
pub mod observe;
pub mod plan;
pub mod quantity;
pub mod settings;
pub mod sim;
pub mod stores;
pub mod trim;
pub mod utilization;
pub mod version_view;
