//! The commands as a user or a CI pipeline runs them: output and exit codes.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn policyctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_policyctl"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run policyctl")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn test_command_runs_the_bundled_rego_tests() {
    let output = policyctl(&["test", "policies", "-o", "json"]);
    assert!(output.status.success(), "{}", stdout(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).expect("json report");
    assert_eq!(report["summary"]["failed"], 0);
    assert!(
        report["summary"]["passed"].as_u64().unwrap_or(0) >= 4,
        "{report}"
    );
}

#[test]
fn test_command_fails_on_a_failing_case_and_writes_junit() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.rego"),
        "package p\n\ndeny contains \"x\" if input.bad\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("p_test.rego"),
        "package p_test\n\nimport data.p\n\ntest_ok if { count(p.deny) == 1 with input as {\"bad\": true} }\n\ntest_wrong if { count(p.deny) == 1 with input as {} }\n",
    )
    .expect("write");
    let path = dir.path().to_string_lossy().into_owned();
    let output = policyctl(&["test", &path, "-o", "junit"]);
    assert_eq!(output.status.code(), Some(1));
    let xml = stdout(&output);
    assert!(
        xml.contains("tests=\"2\" failures=\"1\" errors=\"0\""),
        "{xml}"
    );
    assert!(xml.contains("name=\"test_wrong\">"), "{xml}");

    // Listed as a known failure, the same run passes; the table says so.
    let known = dir.path().join("known.yaml");
    std::fs::write(
        &known,
        "- suite: p_test.rego\n  test: p_test\n  case: test_wrong\n  reason: kept for the demo\n",
    )
    .expect("write");
    let output = policyctl(&["test", &path, "--known-failures", &known.to_string_lossy()]);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("known-failure  kept for the demo"),
        "{}",
        stdout(&output)
    );

    // --run selects cases.
    let output = policyctl(&["test", &path, "--run", "//test_ok$", "-o", "json"]);
    assert!(output.status.success());
    let report: Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert_eq!(report["summary"]["total"], 1);
}

#[test]
fn lint_names_file_and_fails_on_errors() {
    let output = policyctl(&["lint", "--policies", "tests/fixtures/broken"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains("error: tests/fixtures/broken/broken.rego: Rego does not compile"),
        "{text}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("x.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
    )
    .expect("write");
    let output = policyctl(&[
        "lint",
        "--policies",
        &dir.path().to_string_lossy(),
        "-o",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert_eq!(report["errors"][0]["location"]["document"], 1);
    assert_eq!(report["errors"][0]["field"], "kind");

    let output = policyctl(&["lint", "--policies", "policies"]);
    assert!(output.status.success(), "{}", stdout(&output));
}

#[test]
fn eval_prints_decisions_and_exits_1_on_denial() {
    let output = policyctl(&[
        "eval",
        "--policies",
        "policies",
        "examples/privileged-pod-review.json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.starts_with("DENY  Pod default/debug"), "{text}");
    assert!(text.contains("must not be privileged"), "{text}");

    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("ok.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: ok, namespace: default}\nspec:\n  containers: [{name: c, image: nginx:1.27}]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n",
    )
    .expect("write");
    let output = policyctl(&[
        "eval",
        "--policies",
        "policies",
        &manifest.to_string_lossy(),
        "-o",
        "json",
    ]);
    assert!(output.status.success(), "{}", stdout(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert_eq!(report.as_array().map(Vec::len), Some(2));
    assert_eq!(report[0]["decision"], "allow");
}

#[test]
fn certs_writes_the_files_and_prints_the_ca_bundle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("certs");
    let output = policyctl(&[
        "certs",
        "--out",
        &out.to_string_lossy(),
        "--dns",
        "policyctl.policyctl.svc",
        "--ip",
        "127.0.0.1",
    ]);
    assert!(output.status.success());
    for file in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(Path::new(&out).join(file).is_file(), "{file}");
    }
    use base64::Engine as _;
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(stdout(&output).trim())
        .expect("base64 caBundle");
    assert_eq!(bundle, std::fs::read(out.join("ca.crt")).expect("ca"));
}

#[test]
fn finding_no_test_case_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.rego"), "package p\n").expect("write");
    let output = policyctl(&["test", &dir.path().to_string_lossy()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no test cases found"));
    let output = policyctl(&["test", "policies", "--run", "no-such-test-name//"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a filter that selects nothing fails too"
    );
}

#[test]
fn unknown_paths_are_errors() {
    let output = policyctl(&["test", "does/not/exist"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("no such file or directory"));
}
