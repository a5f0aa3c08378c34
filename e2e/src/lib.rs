//! Local cluster and end-to-end test harness (see issue "Local Kubernetes cluster").
#![forbid(unsafe_code)]
