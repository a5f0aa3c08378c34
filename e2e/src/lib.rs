//! Local cluster and end-to-end test harness (see issue "Local Kubernetes cluster").
//!
//! `lmi-dev up` builds (once per pinned version) and starts etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, kwok and a NATS server with JetStream ([`nats`]) on
//! 127.0.0.1; [`harness`] lets integration tests share that cluster; [`nodes`] makes kwok nodes
//! that look like EC2 instances.
#![forbid(unsafe_code)]

pub mod access;
pub mod adopt;
pub mod certs;
pub mod cluster;
pub mod crds;
pub mod error;
pub mod gateway_crds;
pub mod gobuild;
pub mod gomod;
pub mod harness;
pub mod health;
pub mod helm;
pub mod images;
pub mod karpenter;
pub mod karpenter_crds;
pub mod kubeconfig;
pub mod logs;
pub mod manifests;
pub mod monitoring_crds;
pub mod nats;
pub mod node;
pub mod nodes;
pub mod operator_harness;
pub mod paths;
pub mod process;
pub mod progress;
pub mod prometheus;
pub mod queue_proxy;
pub mod versions;

pub use error::{Error, Result};
