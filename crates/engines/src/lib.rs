//! The policy languages policyctl loads, composed: the engine registry and the loader entry points that use it.
//!
//! Everything above the engines (the server, the test runners, the CLI) reaches the core and the engines through
//! this crate's modules, which keep the paths of the one-crate layout: [`engine::engines`],
//! [`policy::loader::compile`], [`engine::kyverno`], ...
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub use policyctl_core::{admission, decide, pipeline, select};
pub use policyctl_jmespath as jmespath;

/// Stage 3: the engine contract and every engine.
pub mod engine {
    pub use policyctl_core::engine::*;
    pub use policyctl_gatekeeper as gatekeeper;
    pub use policyctl_kyverno as kyverno;
    pub use policyctl_mpol as mpol;
    pub use policyctl_rego as rego;
    pub use policyctl_vpol as vpol;

    /// Every engine, in the order their policies appear in a set.
    pub fn engines() -> Vec<Box<dyn Engine>> {
        vec![
            Box::new(gatekeeper::GatekeeperEngine),
            Box::new(kyverno::KyvernoEngine),
            Box::new(rego::RegoEngine),
            Box::new(vpol::ValidatingPolicyEngine),
            Box::new(vpol::vap::ValidatingAdmissionPolicyEngine),
            Box::new(mpol::MutatingPolicyEngine),
            Box::new(mpol::map::MutatingAdmissionPolicyEngine),
        ]
    }
}

/// The policy model, with the loader entry points that know every engine.
pub mod policy {
    pub use policyctl_core::policy::*;

    /// Loading policy sources with every engine.
    pub mod loader {
        use std::path::Path;

        pub use policyctl_core::policy::loader::*;

        use crate::engine::{engines, LoadOptions};
        use crate::policy::SourceFile;

        /// Build policies from source files with every engine (see [`compile_with`]).
        pub fn compile(files: &[SourceFile], options: &LoadOptions) -> Compiled {
            compile_with(&engines(), files, options)
        }

        /// Read and compile a directory with every engine.
        pub fn compile_dir(dir: &Path, options: &LoadOptions) -> Compiled {
            compile_dir_with(&engines(), dir, options)
        }

        /// Read and compile files and directories with every engine (see [`read_paths`]).
        pub fn compile_paths(paths: &[impl AsRef<Path>], options: &LoadOptions) -> Compiled {
            compile_paths_with(&engines(), paths, options)
        }
    }
}
