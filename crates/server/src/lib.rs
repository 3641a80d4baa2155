//! The webhook server and everything it runs on: the TLS listener and admin endpoints ([`server`]), the policy
//! sources it watches ([`sources`]), the cluster context ([`cluster`]), metrics ([`metrics`]) and certificates
//! ([`certs`]).
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

// The composed modules under their usual names, so paths read `crate::policy::…` as before the split.
use policyctl_engines::{admission, decide, engine, pipeline, policy};

pub mod certs;
pub mod cluster;
pub mod logtext;
pub mod metrics;
pub mod server;
pub mod sources;
