//! The Rego and Gatekeeper loaders: the input as a plain Rego policy file (inputs of even length) or as the Rego of a
//! ConstraintTemplate with a constraint of its kind (odd length), through every engine. Loading reports errors; it
//! must never panic. (One path per input: compiling is the cost of an execution.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use policyctl_engines::engine::LoadOptions;
use policyctl_engines::policy::loader::compile;
use policyctl_engines::policy::SourceFile;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(rego) = std::str::from_utf8(data) else {
        return;
    };
    let options = LoadOptions::default();
    if rego.len() % 2 == 0 {
        let plain = SourceFile {
            origin: "fuzz/policy.rego".to_string(),
            content: rego.to_string(),
        };
        let _ = compile(&[plain], &options).into_set(1);
        return;
    }

    let template = json!({
        "apiVersion": "templates.gatekeeper.sh/v1",
        "kind": "ConstraintTemplate",
        "metadata": {"name": "k8sfuzz"},
        "spec": {
            "crd": {"spec": {"names": {"kind": "K8sFuzz"}}},
            "targets": [{"target": "admission.k8s.gatekeeper.sh", "rego": rego}]
        }
    });
    let constraint = json!({
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": "K8sFuzz",
        "metadata": {"name": "fuzz"},
        "spec": {"match": {"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]}}
    });
    let (Ok(template), Ok(constraint)) = (
        serde_yaml::to_string(&template),
        serde_yaml::to_string(&constraint),
    ) else {
        return;
    };
    let file = SourceFile {
        origin: "fuzz/template.yaml".to_string(),
        content: format!("{template}---\n{constraint}"),
    };
    let _ = compile(&[file], &options).into_set(1);
});
