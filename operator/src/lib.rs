//! The LMI control plane (see issue "Operator"). Nothing here yet: binaries come with their issue.
#![forbid(unsafe_code)]
