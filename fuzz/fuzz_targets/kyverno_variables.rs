//! Kyverno variables: a string with `{{ ... }}` expressions substituted against a review's context document, in the
//! strict and the lenient mode, and the helpers that find and check expressions. Must never panic.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use policyctl_kyverno::variables::{
    expressions_in, has_variables, image_info, substitute_str, unbalanced, Context, Mode,
};
use serde_json::{json, Value};

fn document() -> Arc<Value> {
    static DOCUMENT: OnceLock<Arc<Value>> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            Arc::new(json!({
                "request": {
                    "operation": "CREATE",
                    "namespace": "default",
                    "userInfo": {"username": "alice", "groups": ["dev", "system:authenticated"]},
                    "object": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "a", "team": "x"},
                                     "annotations": {"a.example.com/b": "1"}},
                        "spec": {"containers": [
                            {"name": "app", "image": "nginx:1.27", "resources": {"limits": {"memory": "128Mi", "cpu": "500m"}}},
                            {"name": "side", "image": "ghcr.io/org/side@sha256:0123456789abcdef", "ports": [{"containerPort": 80}]}
                        ]}
                    },
                    "oldObject": null
                },
                "serviceAccountName": "default",
                "serviceAccountNamespace": "default",
                "images": {"containers": {"app": {"registry": "docker.io", "name": "nginx", "tag": "1.27"}}},
                "element": {"name": "app", "image": "nginx:1.27"},
                "elementIndex": 0
            }))
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = has_variables(text);
    let _ = unbalanced(text);
    let _ = expressions_in(text);
    let _ = image_info(text);
    let ctx = Context::new(document(), false).until(Some(Instant::now() + Duration::from_secs(2)));
    let _ = substitute_str(text, &ctx, Mode::Strict);
    let _ = substitute_str(text, &ctx, Mode::Lenient);
});
