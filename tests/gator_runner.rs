//! `policyctl test` over gator Suite fixtures written for policyctl (tests/fixtures/gatekeeper).

use std::path::PathBuf;

use policyctl::testing::{self, CaseResult, Outcome, TestOptions};

fn run(dir: &str, options: &TestOptions) -> Vec<CaseResult> {
    testing::run(&[PathBuf::from(dir)], options)
}

fn outcome<'a>(results: &'a [CaseResult], test: &str, case: &str) -> &'a CaseResult {
    results
        .iter()
        .find(|r| r.test == test && r.case == case)
        .unwrap_or_else(|| panic!("no result for {test}//{case} in {results:?}"))
}

#[test]
fn passing_suite_passes_every_case() {
    let results = run(
        "tests/fixtures/gatekeeper/policies",
        &TestOptions::default(),
    );
    assert_eq!(results.len(), 12, "{results:?}");
    for r in &results {
        let expected = if r.case == "skipped" {
            Outcome::Skip
        } else {
            Outcome::Pass
        };
        assert_eq!(r.result, expected, "{r:?}");
        assert!(r.suite.ends_with("policies/.gator/suite.yaml"), "{r:?}");
    }
    assert_eq!(
        outcome(&results, "bad-parameters", "").result,
        Outcome::Pass,
        "invalid: true wants a schema error"
    );
}

#[test]
fn failures_explain_themselves() {
    let results = run("tests/fixtures/gatekeeper/failing", &TestOptions::default());
    let none = outcome(&results, "wrong-expectations", "expects-none");
    assert_eq!(none.result, Outcome::Fail);
    assert!(
        none.reason.starts_with(
            "got 1 violations but want none; got messages [\"Pod web is missing labels"
        ),
        "{none:?}"
    );
    let message = outcome(&results, "wrong-expectations", "expects-message");
    assert_eq!(message.result, Outcome::Fail);
    assert!(
        message
            .reason
            .starts_with("got 0 violations containing \"owner\" but want at least 1"),
        "{message:?}"
    );
    let two = outcome(&results, "wrong-expectations", "two-documents");
    assert_eq!(two.result, Outcome::Error);
    assert!(
        two.reason.contains("exactly one document, found 2"),
        "{two:?}"
    );
    let invalid = outcome(&results, "invalid-but-valid", "");
    assert_eq!(invalid.result, Outcome::Fail);
    let mismatch = outcome(&results, "kind-mismatch", "any");
    assert_eq!(mismatch.result, Outcome::Error);
    assert!(
        mismatch
            .reason
            .contains("does not match the template's kind"),
        "{mismatch:?}"
    );
}

#[test]
fn run_filter_selects_test_and_case() {
    let options = TestOptions {
        filter: Some(regex::Regex::new("^allowed-repos//trusted$").expect("regex")),
        ..TestOptions::default()
    };
    let results = run("tests/fixtures/gatekeeper/policies", &options);
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(
        (results[0].test.as_str(), results[0].case.as_str()),
        ("allowed-repos", "trusted")
    );
}
