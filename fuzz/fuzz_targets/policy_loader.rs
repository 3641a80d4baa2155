//! The policy loader: one YAML file of any kind (Gatekeeper ConstraintTemplates and constraints, Kyverno
//! ClusterPolicy / Policy / PolicyException / ValidatingPolicy, anything else) through every engine. Loading reports
//! errors; it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policyctl_engines::engine::LoadOptions;
use policyctl_engines::policy::loader::compile;
use policyctl_engines::policy::SourceFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = SourceFile {
        origin: "fuzz/policy.yaml".to_string(),
        content: text.to_string(),
    };
    let _ = compile(&[file], &LoadOptions::default()).into_set(1);
});
