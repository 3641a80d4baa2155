//! `*_test.rego` files, run as `opa test` runs them: every `.rego` file under the path is loaded into one engine, and
//! every rule named `test_*` in a test file is a case that passes when it evaluates to `true`. Rules named `todo_test_*`
//! are skipped. Modules use the same `# policyctl:` directives as policies (`rego.v0`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use walkdir::WalkDir;

use super::report::{CaseResult, Outcome};
use super::TestOptions;
use crate::engine::rego::{directives, support};
use crate::policy::SourceFile;

/// Time limit of one test rule.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A test module: its file, its package and its test rules (name, whether it is a `todo_` test).
struct TestModule {
    origin: String,
    package: String,
    rules: Vec<(String, bool)>,
}

/// Run the Rego tests `tests` (paths of `*_test.rego` files under `root`).
pub fn run(root: &Path, tests: &[PathBuf], options: &TestOptions) -> Vec<CaseResult> {
    let mut results = Vec::new();
    let mut engine = support::new_engine(TEST_TIMEOUT);
    let mut test_modules: Vec<TestModule> = Vec::new();
    let Ok(rule_head) = Regex::new(r"(?m)^\s*((?:todo_)?test_[A-Za-z0-9_]*)\b") else {
        return results;
    };
    for path in rego_files(root) {
        let origin = path.display().to_string();
        let content = match std::fs::read_to_string(&path) {
            Ok(content) => content,
            Err(err) => {
                results.push(CaseResult::error(&origin, format!("cannot read: {err}")));
                continue;
            }
        };
        let file = SourceFile {
            origin: origin.clone(),
            content,
        };
        let directives = match directives(&file) {
            Ok(d) => d,
            Err(err) => {
                results.push(CaseResult::error(&origin, err.to_string()));
                continue;
            }
        };
        // The webhook's rewrites of regorus/OPA divergences, so a test sees what the webhook evaluates (and what
        // `opa test` gives); they keep the line count and never add `test_` rules.
        let checked = support::divergence::check(&file.content, directives.rego_v0);
        engine.set_rego_v0(directives.rego_v0);
        let package = match engine.add_policy(origin.clone(), checked.source) {
            Ok(package) => package,
            Err(err) => {
                results.push(CaseResult::error(
                    &origin,
                    format!("Rego does not compile: {err}"),
                ));
                continue;
            }
        };
        if tests.iter().any(|t| t == &path) {
            let mut seen = BTreeSet::new();
            let rules: Vec<(String, bool)> = rule_head
                .captures_iter(&file.content)
                .filter_map(|c| c.get(1).map(|m| m.as_str().to_string()))
                .filter(|name| seen.insert(name.clone()))
                .map(|name| {
                    let todo = name.starts_with("todo_");
                    (name, todo)
                })
                .collect();
            test_modules.push(TestModule {
                origin,
                package,
                rules,
            });
        }
    }
    if results.iter().any(|r| r.result == Outcome::Error) {
        return results;
    }
    for TestModule {
        origin,
        package,
        rules,
    } in test_modules
    {
        let test_name = package
            .strip_prefix("data.")
            .unwrap_or(&package)
            .to_string();
        for (rule, todo) in rules {
            if !options.selected(&test_name, &rule) {
                continue;
            }
            if todo {
                results.push(CaseResult::new(
                    &origin,
                    &test_name,
                    &rule,
                    Outcome::Skip,
                    "todo test",
                ));
                continue;
            }
            let outcome = engine.eval_rule(format!("{package}.{rule}"));
            let (result, reason) = match outcome {
                Ok(regorus::Value::Bool(true)) => (Outcome::Pass, String::new()),
                Ok(regorus::Value::Undefined) => {
                    (Outcome::Fail, "test rule is undefined".to_string())
                }
                Ok(other) => (
                    Outcome::Fail,
                    format!("test rule is {}", support::to_json(&other)),
                ),
                Err(err) => (
                    Outcome::Error,
                    support::eval_error(err, TEST_TIMEOUT).to_string(),
                ),
            };
            results.push(CaseResult::new(&origin, &test_name, &rule, result, reason));
        }
    }
    results
}

/// Every `.rego` file under `root` (or `root` itself), sorted, skipping Kubernetes' `..data` copies.
fn rego_files(root: &Path) -> Vec<PathBuf> {
    WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with(".."))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.file_name().to_string_lossy().ends_with(".rego"))
        .map(|e| e.path().to_path_buf())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_see_the_modules_as_the_webhook_rewrites_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A sprintf with a missing argument: undefined in regorus as it is, rendered as in OPA after the rewrite (D3).
        std::fs::write(
            dir.path().join("p.rego"),
            "package p\n\ndeny contains msg if {\n  input.bad\n  msg := sprintf(\"%v of %v\", [input.bad])\n}\n",
        )
        .expect("write");
        let test = dir.path().join("p_test.rego");
        std::fs::write(
            &test,
            "package p_test\n\nimport data.p\n\ntest_message if { p.deny == {\"x of %!v(MISSING)\"} with input as {\"bad\": \"x\"} }\n",
        )
        .expect("write");
        let results = run(dir.path(), &[test], &TestOptions::default());
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].result, Outcome::Pass, "{results:?}");
    }
}
