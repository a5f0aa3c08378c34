//! The `lmi.dev` API: `CapacityProvider`, `Function`, `FunctionVersion` and `FunctionAlias`; the
//! Lambda Managed Instances rules as pure functions; and the EC2 instance catalog with instance
//! selection.
//!
//! Everything here is free of I/O so that the operator, the router, the simulator and the tests
//! share one definition of the rules.
#![forbid(unsafe_code)]
// kube-derive expands every `printcolumn(...)` into sibling attributes with the same keys.
#![allow(clippy::duplicated_attributes)]

pub mod access;
pub mod admission;
pub mod capacity_provider;
pub mod catalog;
pub mod common;
pub mod crdgen;
pub mod ee_contract;
pub mod event_queue;
pub mod function;
pub mod function_alias;
pub mod function_url;
pub mod function_version;
pub mod invoke_token;
pub mod namespace_selector;
pub mod rules;

pub use capacity_provider::{CapacityProvider, CapacityProviderSpec, CapacityProviderStatus};
pub use common::{Architecture, ScalingConfig};
pub use function::{
    Destination, DestinationConfig, EventInvokeConfig, Function, FunctionConfiguration,
    FunctionSpec, FunctionStatus, State,
};
pub use function_alias::{AliasRoutingConfig, FunctionAlias, FunctionAliasSpec};
pub use function_url::{FunctionUrlConfig, UrlAuthType, UrlInvokeMode};
pub use function_version::{FunctionVersion, FunctionVersionSpec, FunctionVersionStatus};
