//! The regorus VM against its interpreter on the bundled Gatekeeper templates: the input is an object under review
//! (JSON); every template, with its bundled constraint's parameters, must give the same results (or an error) on both
//! evaluators. A disagreement is a crash. Seeds are the bundled sample objects (seeds.py).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use policyctl_engines::policy::source::documents;
use policyctl_engines::policy::SourceFile;
use policyctl_gatekeeper::review;
use policyctl_gatekeeper::Template;

/// The bundled templates and their constraints' parameters.
const BUNDLED: [(&str, &str); 6] = [
    (
        include_str!("../../policies/gatekeeper/allowed-repos/template.yaml"),
        include_str!("../../policies/gatekeeper/allowed-repos/constraint.yaml"),
    ),
    (
        include_str!("../../policies/gatekeeper/container-limits/template.yaml"),
        include_str!("../../policies/gatekeeper/container-limits/constraint.yaml"),
    ),
    (
        include_str!("../../policies/gatekeeper/disallow-latest-tag/template.yaml"),
        include_str!("../../policies/gatekeeper/disallow-latest-tag/constraint.yaml"),
    ),
    (
        include_str!("../../policies/gatekeeper/pss-baseline/template.yaml"),
        include_str!("../../policies/gatekeeper/pss-baseline/constraint.yaml"),
    ),
    (
        include_str!("../../policies/gatekeeper/pss-restricted/template.yaml"),
        include_str!("../../policies/gatekeeper/pss-restricted/constraint.yaml"),
    ),
    (
        include_str!("../../policies/gatekeeper/required-labels/template.yaml"),
        include_str!("../../policies/gatekeeper/required-labels/constraint.yaml"),
    ),
];

const TIMEOUT: Duration = Duration::from_secs(5);

fn first_document(origin: &str, content: &str) -> Option<serde_json::Value> {
    let file = SourceFile {
        origin: origin.to_string(),
        content: content.to_string(),
    };
    documents(&file).0.into_iter().next().map(|d| d.value)
}

fn templates() -> &'static [(Template, regorus::Value)] {
    static TEMPLATES: OnceLock<Vec<(Template, regorus::Value)>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let mut out = Vec::new();
        for (template, constraint) in BUNDLED {
            let file = SourceFile {
                origin: "template.yaml".to_string(),
                content: template.to_string(),
            };
            let Some(doc) = documents(&file).0.into_iter().next() else {
                continue;
            };
            let Ok((template, _)) = Template::load_with(&doc, TIMEOUT, true) else {
                continue;
            };
            let parameters = first_document("constraint.yaml", constraint)
                .map(|c| c["spec"]["parameters"].clone())
                .unwrap_or(serde_json::Value::Null);
            out.push((template, policyctl_regorus::to_rego(&parameters)));
        }
        assert!(!out.is_empty(), "no bundled template loaded");
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(object) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(request) = review::gator_request(object) else {
        return;
    };
    let shared = policyctl_regorus::to_rego(&serde_json::json!({ "request": request }));
    let Ok(served) = review::served_review(&shared, &request, None) else {
        return;
    };
    for (template, parameters) in templates() {
        let input = review::input(&served, parameters);
        if let Err(disagreement) = template.cross_check(&input, None, TIMEOUT) {
            panic!("{disagreement}");
        }
    }
});
