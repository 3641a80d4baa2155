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
fn lint_refuses_the_common_mistakes_naming_file_document_and_field() {
    let output = policyctl(&["lint", "--policies", "tests/fixtures/mistakes"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let k = "tests/fixtures/mistakes/kyverno.yaml";
    let r = "tests/fixtures/mistakes/undefined.rego";
    let c = "tests/fixtures/mistakes/cel.yaml";
    for line in [
        format!("error: {c}, document 1: spec.validations[0].expression: CEL expression is invalid: unknown method startWith (did you mean startsWith?)"),
        format!("error: {c}, document 2: spec.validations[0].expression: CEL expression is invalid: size takes 1 argument, not 2"),
        format!("error: {c}, document 3: spec.mutations[0].jsonPatch.expression: variables.teem is not declared in spec.variables (did you mean \"team\"?)"),
        format!("error: {c}, document 4: spec.rules[team].validate.cel.expressions[0].expression: CEL expression is invalid: undeclared identifier objet (did you mean object?)"),
        format!("error: {k}, document 1: spec.validationFailureActon: unknown field \"validationFailureActon\" (did you mean \"validationFailureAction\"?)"),
        format!("error: {k}, document 2: spec.rules[deny-default].validate.deny.conditions.any[0].key: unbalanced \"{{{{\""),
        format!("error: {k}, document 3: spec.rules[label].validate.message: expression \"to_upper(request.object.metadata.name, 'x')\" does not compile"),
        format!("error: {k}, document 4: spec.rules[signed]: policyctl does not run this rule (validate.manifests rules are not supported) and the policy enforces it"),
        format!("error: {k}, document 5: spec.rules[no-host-network].validate.cel.expressions[0].expression: CEL expression does not compile"),
        format!("error: {r}: line 3: import data.lib.missing: no package or rule of the policy set defines it"),
        format!("error: {r}: line 7: undefined function is_privilegd"),
    ] {
        assert!(text.lines().any(|l| l.starts_with(&line)), "missing {line:?} in:\n{text}");
    }
    // The kind typo is a warning: a CRD could define such a kind.
    assert!(
        text.contains(&format!("warning: {k}, document 1: spec.rules[no-privileged].match.any[0].resources.kinds[0]: kind \"Pdo\"")),
        "{text}"
    );
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
fn eval_json_shows_the_mutated_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("pod.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default, labels: {team: a}}\nspec:\n  containers: [{name: app, image: nginx:1.27}]\n",
    )
    .expect("write");
    let output = policyctl(&[
        "eval",
        "--policies",
        "tests/fixtures/mpol",
        &manifest.to_string_lossy(),
        "-o",
        "json",
    ]);
    assert!(output.status.success(), "{}", stdout(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).expect("json");
    let mutated = &report[0]["mutated"];
    assert_eq!(
        mutated["metadata"]["annotations"]["example.com/team"], "a",
        "{report}"
    );
    assert_eq!(
        mutated["spec"]["containers"][0]["imagePullPolicy"], "Always",
        "{report}"
    );
    assert_eq!(
        mutated["spec"]["containers"][1]["name"], "proxy",
        "{report}"
    );
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

    // The keys are not replaced by accident; --force replaces them.
    let key = std::fs::read(out.join("tls.key")).expect("key");
    let out_arg = out.to_string_lossy().to_string();
    let again = policyctl(&[
        "certs",
        "--out",
        &out_arg,
        "--dns",
        "policyctl.policyctl.svc",
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(std::fs::read(out.join("tls.key")).expect("key"), key);
    let forced = policyctl(&[
        "certs",
        "--out",
        &out_arg,
        "--dns",
        "policyctl.policyctl.svc",
        "--force",
    ]);
    assert!(forced.status.success());
    assert_ne!(std::fs::read(out.join("tls.key")).expect("key"), key);
}

#[test]
fn certs_rejects_invalid_names_and_validity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("certs").to_string_lossy().to_string();
    let bad_name = policyctl(&["certs", "--out", &out, "--dns", "policyctl_svc"]);
    assert_eq!(bad_name.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad_name.stderr).contains("invalid DNS name \"policyctl_svc\"")
    );
    let zero = policyctl(&["certs", "--out", &out, "--dns", "a.svc", "--days", "0"]);
    assert_eq!(zero.status.code(), Some(2), "a usage error");
    let negative = policyctl(&["certs", "--out", &out, "--dns", "a.svc", "--days", "-5"]);
    assert_eq!(negative.status.code(), Some(2), "a usage error");
    assert!(!Path::new(&out).exists());
}

#[test]
fn lint_and_eval_take_files_and_directories() {
    // Files and directories together, positional or with --policies repeated: one set.
    let output = policyctl(&[
        "lint",
        "policies/rego",
        "--policies",
        "policies/kyverno/disallow-latest-tag.yaml",
        "--policies",
        "policies/gatekeeper",
    ]);
    assert!(output.status.success(), "{}", stdout(&output));
    let output = policyctl(&["lint", "tests/fixtures/mistakes/undefined.rego"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("undefined function is_privilegd"));
    let output = policyctl(&["lint", "no/such/dir"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("no/such/dir: no such file or directory"));

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("a.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("b.json"),
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}"#,
    )
    .expect("write");
    let output = policyctl(&[
        "eval",
        "--policies",
        "policies/rego/guardrails.rego",
        &dir.path().to_string_lossy(),
        "-o",
        "json",
    ]);
    assert!(output.status.success(), "{}", stdout(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert_eq!(report.as_array().map(Vec::len), Some(2));
}

#[test]
fn test_output_fail_only_detailed_and_yaml() {
    let output = policyctl(&["test", "policies", "--fail-only", "--output", "yaml"]);
    assert!(output.status.success(), "{}", stdout(&output));
    let report: Value = serde_yaml::from_str(&stdout(&output)).expect("yaml");
    assert!(
        report["summary"]["passed"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    assert_eq!(report["cases"].as_array().map(Vec::len), Some(0));
    let output = policyctl(&["test", "policies", "--detailed"]);
    assert!(output.status.success());
    assert!(stdout(&output).starts_with("SUITE"));
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

#[test]
fn bench_reports_latency_throughput_and_per_policy_costs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pod = dir.path().join("pod.yaml");
    std::fs::write(
        &pod,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec:\n  containers:\n    - {name: app, image: nginx:latest}\n",
    )
    .expect("write");
    let saved = dir.path().join("baseline.json");
    let (pod, saved) = (pod.to_string_lossy(), saved.to_string_lossy());
    let output = policyctl(&[
        "bench",
        "--policies",
        "policies",
        &pod,
        "--warmup",
        "1",
        "--iterations",
        "5",
        "--concurrency",
        "2",
        "-o",
        "json",
        "--save",
        &saved,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout(&output)).expect("json report");
    for key in ["p50_us", "p95_us", "p99_us", "min_us", "mean_us", "max_us"] {
        assert!(
            report["review"][key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {report}"
        );
    }
    assert!(report["decode_floor"]["p50_us"]
        .as_f64()
        .is_some_and(|v| v > 0.0));
    assert!(report["throughput_per_s"].as_f64().is_some_and(|v| v > 0.0));
    assert!(report["setup_ms"].as_f64().is_some_and(|v| v > 0.0));
    if cfg!(target_os = "linux") {
        // Memory from /proc/self/status: the peak is at least what was resident after loading.
        let setup = report["rss_after_setup_kib"].as_u64().unwrap_or(0);
        let peak = report["peak_rss_kib"].as_u64().unwrap_or(0);
        assert!(setup > 0 && peak >= setup, "{report}");
    }
    assert_eq!(report["concurrency"], 2);
    let per_policy = report["per_policy"].as_array().expect("per_policy");
    // The bundled Kyverno and Gatekeeper latest-tag policies both run on the Pod, each with its own cost.
    for name in ["disallow-latest-tag", "k8s-disallow-latest-tag"] {
        let entry = per_policy
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {report}"));
        assert!(entry["p50_us"].as_f64().is_some_and(|v| v > 0.0), "{entry}");
        assert_eq!(
            entry["runs"], 6,
            "5 rounds split over 2 threads, rounded up: {entry}"
        );
    }
    let saved_report: Value =
        serde_json::from_str(&std::fs::read_to_string(&*saved).expect("saved")).expect("json");
    assert_eq!(saved_report, report);

    // The table names the policies too.
    let table = policyctl(&[
        "bench",
        "--policies",
        "policies",
        &pod,
        "--warmup",
        "0",
        "--iterations",
        "2",
    ]);
    assert!(table.status.success());
    assert!(
        stdout(&table).contains("k8s-disallow-latest-tag"),
        "{}",
        stdout(&table)
    );
}

#[test]
fn bench_compare_fails_on_a_regression_beyond_the_threshold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pod = dir.path().join("pod.yaml");
    std::fs::write(
        &pod,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec:\n  containers:\n    - {name: app, image: nginx:1.27}\n",
    )
    .expect("write");
    let pod = pod.to_string_lossy().into_owned();
    let baseline = |p50: f64| {
        let path = dir.path().join(format!("baseline-{p50}.json"));
        let report = serde_json::json!({
            "policies": "policies", "policy_count": 13, "reviews": 1, "webhook": "validate",
            "iterations": 1, "concurrency": 1, "setup_ms": 1.0,
            "review": {"min_us": p50, "mean_us": p50, "p50_us": p50, "p95_us": p50, "p99_us": p50, "max_us": p50},
            "decode_floor": {"min_us": 1.0, "mean_us": 1.0, "p50_us": 1.0, "p95_us": 1.0, "p99_us": 1.0, "max_us": 1.0},
            "ratio_to_floor": p50, "throughput_per_s": 1.0, "per_policy": []
        });
        std::fs::write(&path, report.to_string()).expect("write");
        path.to_string_lossy().into_owned()
    };
    let run = |baseline: &str| {
        policyctl(&[
            "bench",
            "--policies",
            "policies",
            &pod,
            "--warmup",
            "0",
            "--iterations",
            "3",
            "--compare",
            baseline,
            "--threshold",
            "10",
        ])
    };
    // A baseline a million times slower: no regression.
    let ok = run(&baseline(1e12));
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(stdout(&ok).contains(": ok"), "{}", stdout(&ok));
    // A baseline far faster than anything real: a regression, exit 1.
    let slow = run(&baseline(1e-3));
    assert_eq!(slow.status.code(), Some(1), "{}", stdout(&slow));
    assert!(stdout(&slow).contains("REGRESSION"), "{}", stdout(&slow));
    // Not a report: an error naming the file.
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{}").expect("write");
    let bad = run(&junk.to_string_lossy());
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not a policyctl bench report"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

const JSON_MODE_POLICY: &str = "apiVersion: policies.kyverno.io/v1\nkind: ValidatingPolicy\nmetadata: {name: tf-version}\nspec:\n  evaluation: {mode: JSON}\n  validations:\n  - expression: \"object.terraform_version == '1.5.9'\"\n    message: terraform 1.5.9 is required\n";

#[test]
fn json_mode_policies_check_payloads_in_eval_and_test_never_manifests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).to_string_lossy().to_string();
    std::fs::write(path("policy.yaml"), JSON_MODE_POLICY).expect("write");
    std::fs::write(path("old.json"), r#"{"terraform_version": "1.5.8"}"#).expect("write");
    std::fs::write(path("new.json"), r#"{"terraform_version": "1.5.9"}"#).expect("write");

    // Lint: loads, with a warning that the webhook does not run it.
    let output = policyctl(&["lint", &path("policy.yaml")]);
    assert!(output.status.success(), "{}", stdout(&output));
    let text = format!(
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("never admission requests"), "{text}");

    let output = policyctl(&[
        "eval",
        "--policies",
        &path("policy.yaml"),
        "--payload",
        "json",
        &path("old.json"),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("terraform 1.5.9 is required"),
        "{}",
        stdout(&output)
    );
    let output = policyctl(&[
        "eval",
        "--policies",
        &path("policy.yaml"),
        "--payload",
        "json",
        &path("new.json"),
    ]);
    assert!(output.status.success(), "{}", stdout(&output));
    // An HTTP payload run finds no policy of its mode; a manifest never meets a JSON-mode policy.
    let output = policyctl(&[
        "eval",
        "--policies",
        &path("policy.yaml"),
        "--payload",
        "http",
        &path("old.json"),
    ]);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("no policy evaluates payloads"),
        "{}",
        stdout(&output)
    );
    std::fs::write(
        path("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: default}\nterraform_version: '1'\n",
    )
    .expect("write");
    let output = policyctl(&["eval", "--policies", &path("policy.yaml"), &path("cm.yaml")]);
    assert!(output.status.success(), "{}", stdout(&output));

    // policyctl test: jsonPayloads are cases named by their files; results without resources cover every payload.
    std::fs::write(
        path("kyverno-test.yaml"),
        "apiVersion: cli.kyverno.io/v1alpha1\nkind: Test\nmetadata: {name: t}\npolicies: [policy.yaml]\n\
         jsonPayloads: [./old.json, new.json]\nresults:\n\
         - {kind: '', policy: tf-version, resources: [old.json], result: fail}\n\
         - {kind: '', policy: tf-version, resources: [new.json], result: pass}\n",
    )
    .expect("write");
    let output = policyctl(&["test", &dir.path().to_string_lossy()]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("2 cases: 2 passed"), "{text}");
    std::fs::write(
        path("kyverno-test.yaml"),
        "apiVersion: cli.kyverno.io/v1alpha1\nkind: Test\nmetadata: {name: t}\npolicies: [policy.yaml]\n\
         jsonPayloads: [old.json, new.json]\nresults:\n- {kind: '', policy: tf-version, result: pass}\n",
    )
    .expect("write");
    let output = policyctl(&["test", &dir.path().to_string_lossy()]);
    let text = stdout(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("2 cases: 1 passed, 1 failed"), "{text}");
}

/// A reader that goes away (`policyctl eval ... | head`): no panic, and the exit code is still the command's own
/// (eval denies here: 1); `test`'s verdict likewise survives a closed pipe.
#[test]
fn a_closed_stdout_pipe_keeps_the_exit_code_and_does_not_panic() {
    let run = |args: &[&str]| {
        let (reader, writer) = std::io::pipe().expect("pipe");
        // Closed before the command writes anything: its first write fails with a broken pipe.
        drop(reader);
        Command::new(env!("CARGO_BIN_EXE_policyctl"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run policyctl")
    };
    let output = run(&[
        "eval",
        "--policies",
        "policies",
        "examples/privileged-pod-review.json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");

    let output = run(&["test", "policies", "-o", "json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}
