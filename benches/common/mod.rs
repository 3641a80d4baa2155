//! The review the benches measure: one Pod CREATE with three hardened containers and an init container, as an
//! AdmissionReview's bytes. Shared by `benches/bundled.rs` and `benches/libraries.rs`.

use serde_json::{json, Value};

/// The review; `extra` is merged into every container (e.g. probes and a read-only root filesystem, which the
/// library best-practices policies ask for).
pub fn review_bytes(extra: Value) -> Vec<u8> {
    let container = |name: &str, image: &str| {
        let mut c = json!({
            "name": name,
            "image": image,
            "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true,
                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
        });
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                match (c.get_mut(k), v) {
                    (Some(Value::Object(inner)), Value::Object(add)) => {
                        inner.extend(add.clone());
                    }
                    _ => {
                        c.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        c
    };
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop",
            "labels": {"app.kubernetes.io/name": "web", "team": "shop", "owner": "shop"}},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [container("init", "registry.example.com/shop/init:1.0.0")],
            "containers": [
                container("app", "registry.example.com/shop/web:1.4.2"),
                container("proxy", "registry.example.com/shop/proxy:2.0.1"),
                container("metrics", "registry.example.com/shop/metrics:0.9.0")
            ]
        }
    });
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "name": "web",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:shop:deployer"},
            "object": pod,
            "oldObject": null
        }
    }))
    .unwrap_or_default()
}
