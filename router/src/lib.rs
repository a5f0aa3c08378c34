//! The LMI data plane: router and sidecar (see issue "Data plane"). Nothing here yet.
#![forbid(unsafe_code)]
