//! Kyverno validation patterns: `<pattern JSON>\0<resource JSON>`. Variable substitution in the pattern, `$(...)`
//! references and the match itself (anchors, operators, wildcards, quantities, durations) must never panic.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use policyctl_kyverno::pattern::match_pattern;
use policyctl_kyverno::variables::{resolve_references, substitute_pattern, Context, Mode};
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, resource) = text.split_once('\0').unwrap_or((text, "{}"));
    let (Ok(pattern), Ok(resource)) = (
        serde_json::from_str::<Value>(pattern),
        serde_json::from_str::<Value>(resource),
    ) else {
        return;
    };
    let _ = match_pattern(&resource, &pattern);
    let Ok(pattern) = resolve_references(&pattern) else {
        return;
    };
    let document = json!({"request": {"operation": "CREATE", "object": resource.clone()}});
    let ctx = Context::new(Arc::new(document), false)
        .until(Some(Instant::now() + Duration::from_secs(2)));
    for mode in [Mode::Strict, Mode::Lenient] {
        if let Ok(pattern) = substitute_pattern(&pattern, Some(&resource), &ctx, mode) {
            let _ = match_pattern(&resource, &pattern);
        }
    }
});
