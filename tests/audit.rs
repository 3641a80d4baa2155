//! `policyctl audit` on rendered manifests: PolicyReports per namespace and for the cluster, background semantics,
//! severity and category from annotations, and the exit code that gates a pipeline.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn policyctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_policyctl"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run policyctl")
}

const POLICIES: &str = "tests/fixtures/audit/policies";
const RESOURCES: &str = "tests/fixtures/audit/resources/manifests.yaml";

fn reports() -> (Output, Value) {
    let output = policyctl(&["audit", "--policies", POLICIES, RESOURCES, "-o", "json"]);
    let list: Value = serde_json::from_slice(&output.stdout).expect("json");
    (output, list)
}

fn report<'a>(list: &'a Value, kind: &str, namespace: Option<&str>) -> &'a Value {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|r| r["kind"] == kind && r["metadata"]["namespace"].as_str() == namespace)
        .unwrap_or_else(|| panic!("no {kind} for {namespace:?} in {list}"))
}

#[test]
fn reports_per_namespace_and_for_the_cluster() {
    let (output, list) = reports();
    // An enforcing policy fails on one Pod: the pipeline gate fails.
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "cluster + shop + web: {list}");
    for item in items {
        assert_eq!(item["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(
            item["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "policyctl"
        );
    }

    let shop = report(&list, "PolicyReport", Some("shop"));
    assert_eq!(shop["metadata"]["name"], "policyctl-shop");
    assert_eq!(
        shop["summary"],
        serde_json::json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0})
    );
    let results = shop["results"].as_array().expect("results");
    let failed = results
        .iter()
        .find(|r| r["result"] == "fail")
        .expect("a failure");
    assert_eq!(failed["policy"], "require-team");
    assert_eq!(failed["rule"], "team-label");
    assert_eq!(failed["source"], "kyverno");
    assert_eq!(failed["severity"], "medium");
    assert_eq!(failed["category"], "Best Practices");
    assert_eq!(
        failed["resources"],
        serde_json::json!([{"apiVersion": "v1", "kind": "Pod", "name": "unlabelled", "namespace": "shop"}])
    );
    assert!(failed["message"]
        .as_str()
        .unwrap_or("")
        .contains("Pods need a team label"));
    let passed = results
        .iter()
        .find(|r| r["result"] == "pass")
        .expect("a pass");
    assert_eq!(
        passed["resources"][0]["uid"],
        "11111111-1111-1111-1111-111111111111"
    );
    // background: false is left out of audits.
    assert!(
        !items
            .iter()
            .any(|r| r.to_string().contains("admission-only")),
        "{list}"
    );

    let web = report(&list, "PolicyReport", Some("web"));
    assert_eq!(web["summary"]["pass"], 1);

    // The cluster-scoped Namespace meets the Gatekeeper constraint (dryrun: a failure, but not enforcing).
    let cluster = report(&list, "ClusterPolicyReport", None);
    assert_eq!(cluster["metadata"]["name"], "policyctl-cluster");
    assert_eq!(cluster["summary"]["fail"], 1);
    let result = &cluster["results"][0];
    assert_eq!(
        (&result["policy"], &result["source"], &result["result"]),
        (
            &Value::from("namespaces-need-owner"),
            &Value::from("gatekeeper"),
            &Value::from("fail")
        )
    );
    assert_eq!(result["resources"][0]["kind"], "Namespace");
}

#[test]
fn record_only_failures_do_not_fail_the_gate_and_stdin_works() {
    // Only the labelled Pod and the Namespace: the one failure left is the dryrun constraint's.
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(RESOURCES))
            .expect("resources");
    let first = text.split("\n---\n").next().expect("first document");
    let input =
        format!("{first}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_policyctl"))
        .args(["audit", "--policies", POLICIES, "-", "-o", "yaml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write");
    }
    let output = child.wait_with_output().expect("wait");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let yaml = String::from_utf8_lossy(&output.stdout);
    assert!(yaml.contains("kind: ClusterPolicyReport"), "{yaml}");
    assert!(yaml.contains("kind: PolicyReport"), "{yaml}");
    assert!(yaml.contains("result: fail"), "{yaml}");
}

#[test]
fn the_table_lists_failures_and_a_summary() {
    let output = policyctl(&[
        "audit",
        "--policies",
        POLICIES,
        "tests/fixtures/audit/resources",
    ]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL  Pod shop/unlabelled: require-team/team-label (enforcing):"),
        "{text}"
    );
    assert!(
        text.contains("4 resources: 2 pass, 2 fail, 0 warn, 0 error, 0 skip; 1 enforcing failures"),
        "{text}"
    );
}
