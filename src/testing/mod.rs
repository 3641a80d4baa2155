//! `policyctl test`: find test files under the given paths, run them, and report.
//!
//! Each kind of test file has a [`SuiteRunner`]; [`rego`] runs `*_test.rego` files the way `opa test` does. Every
//! runner reports [`CaseResult`]s into one [`Report`], rendered as a table, JSON or JUnit.

pub mod gator;
pub mod known;
pub mod kyverno;
pub mod rego;
pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::Value;
use walkdir::WalkDir;

use crate::policy::source::yaml_documents;
use crate::policy::SourceFile;
pub use known::KnownFailures;
pub use report::{CaseResult, Outcome, Report};

/// Options of a test run.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Only cases whose `test//case` matches.
    pub filter: Option<Regex>,
}

impl TestOptions {
    /// Whether a case is selected by the filter.
    pub fn selected(&self, test: &str, case: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|re| re.is_match(&format!("{test}//{case}")))
    }
}

/// A kind of YAML test file (gator `Suite`, kyverno `Test`).
pub trait SuiteRunner: Send + Sync {
    /// Short name, e.g. `gator`.
    fn name(&self) -> &'static str;

    /// A cheap look at the raw text: could this file be one of mine? Files that say no are not even parsed.
    fn sniff(&self, content: &str) -> bool;

    /// Whether the parsed documents are a suite of this runner.
    fn detect(&self, documents: &[Value]) -> bool;

    /// Run every case of the suite in `path`.
    fn run(&self, path: &Path, documents: Vec<Value>, options: &TestOptions) -> Vec<CaseResult>;
}

/// Every YAML suite runner.
pub fn runners() -> Vec<Box<dyn SuiteRunner>> {
    vec![Box::new(gator::GatorRunner), Box::new(kyverno::KyvernoRunner)]
}

/// Find and run every test under `paths`.
pub fn run(paths: &[PathBuf], options: &TestOptions) -> Vec<CaseResult> {
    let runners = runners();
    let mut results = Vec::new();
    for root in paths {
        if !root.exists() {
            results.push(CaseResult::error(
                &root.display().to_string(),
                "no such file or directory",
            ));
            continue;
        }
        let mut rego_tests: BTreeMap<PathBuf, ()> = BTreeMap::new();
        for entry in WalkDir::new(root)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with(".."))
        {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    let origin = err.path().unwrap_or(root).display().to_string();
                    results.push(CaseResult::error(&origin, format!("cannot read: {err}")));
                    continue;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy();
            if name.ends_with("_test.rego") {
                rego_tests.insert(entry.path().to_path_buf(), ());
                continue;
            }
            if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
                continue;
            }
            results.extend(run_yaml(entry.path(), &runners, options));
        }
        if !rego_tests.is_empty() {
            let tests: Vec<PathBuf> = rego_tests.into_keys().collect();
            results.extend(rego::run(root, &tests, options));
        }
    }
    results
}

fn run_yaml(
    path: &Path,
    runners: &[Box<dyn SuiteRunner>],
    options: &TestOptions,
) -> Vec<CaseResult> {
    let origin = path.display().to_string();
    let Ok(content) = std::fs::read_to_string(path) else {
        // Unreadable files that no runner would want are not test files; only report the ones that look like tests.
        return Vec::new();
    };
    let interested: Vec<&Box<dyn SuiteRunner>> =
        runners.iter().filter(|r| r.sniff(&content)).collect();
    if interested.is_empty() {
        return Vec::new();
    }
    let documents = match yaml_documents(&SourceFile {
        origin: origin.clone(),
        content,
    }) {
        Ok(docs) => docs.into_iter().map(|(_, value)| value).collect::<Vec<_>>(),
        Err(err) => return vec![CaseResult::error(&origin, err.to_string())],
    };
    match interested.into_iter().find(|r| r.detect(&documents)) {
        Some(runner) => runner.run(path, documents, options),
        None => Vec::new(),
    }
}
