//! The LMI control plane: reconciles CapacityProviders, Functions and FunctionVersions into
//! EC2NodeClasses, NodeClaims and execution-environment pods.
//!
//! Planning (`plan`) is pure and unit-tested; `observe` builds its input from the reflector
//! stores; the controllers apply its output and write status.
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
pub mod observe;
pub mod plan;
pub mod quantity;
pub mod settings;
pub mod sim;
pub mod utilization;
