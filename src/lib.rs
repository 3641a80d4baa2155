//! policyctl: a policy-as-code admission webhook for Kubernetes.
//!
//! A request travels through the crate in this order, one folder per stage:
//!
//! 1. [`admission`]: decode an `AdmissionReview` into a [`admission::Review`];
//! 2. [`select`]: pick the policies that can match it from the policy set's [`select::Index`];
//! 3. [`engine`]: evaluate each policy with the engine of its language, behind the [`policy::Policy`] trait, under
//!    the request's one [`policy::Deadline`]; engines report facts ([`policy::Evaluation`]: applied or not,
//!    violations with their declared action, errors with the action of the failing rule);
//! 4. [`decide`]: the only place facts become one [`decide::Decision`] (enforcement actions, failure policy);
//! 5. [`admission::respond`]: encode the decision as an `AdmissionReview` response.
//!
//! [`pipeline`] strings stages 2–4 together; [`server`] puts the pipeline behind TLS, and the [`commands`]
//! (`serve`, `test`, `eval`, `lint`, `certs`) are what the binary runs. Policies are loaded by [`policy::loader`] into
//! an immutable [`policy::PolicySet`], which the server swaps atomically.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub mod admission;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod decide;
pub mod engine;
pub mod jmespath;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod select;
pub mod server;
pub mod sources;
pub mod telemetry;
pub mod testing;
pub mod util;
