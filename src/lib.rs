//! policyctl: a policy-as-code admission webhook for Kubernetes.
//!
//! The workspace is layered, bottom to top, and the compiler enforces it (crates cannot depend on each other in a
//! cycle):
//!
//! | crate | what |
//! |---|---|
//! | `policyctl-jmespath` | Kyverno's JMESPath dialect |
//! | `policyctl-core` | admission model, select, the policy/engine contract, decide, pipeline, loader |
//! | `policyctl-regorus` | regorus plumbing shared by the Rego engines |
//! | `policyctl-cel` | the CEL layer shared by the CEL policy kinds (compile guard, bindings, cost budget) |
//! | `policyctl-gatekeeper`, `policyctl-kyverno`, `policyctl-rego`, `policyctl-vpol` | one crate per policy language (`vpol`: Kyverno ValidatingPolicy) |
//! | `policyctl-engines` | the engine registry and the loader entry points that use it |
//! | `policyctl-testing` | `policyctl test` runners (gator suites, kyverno tests, Rego tests) |
//! | `policyctl-server` | webhook server, policy sources, cluster context, metrics, certificates |
//! | `policyctl-audit` | audits of existing resources, PolicyReports |
//! | `policyctl` (this crate) | the command line: [`cli`], [`commands`], [`telemetry`] |
//!
//! This crate re-exports them under the module paths of the one-crate layout (`policyctl::policy::loader::compile`,
//! `policyctl::engine::kyverno`, `policyctl::server`, ...).
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub use policyctl_audit as audit;
pub use policyctl_engines::{admission, decide, engine, jmespath, pipeline, policy, select};
pub use policyctl_server::{certs, cluster, metrics, server, sources};
pub use policyctl_testing as testing;

pub mod cli;
pub mod commands;
pub mod telemetry;
