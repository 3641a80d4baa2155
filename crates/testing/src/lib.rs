//! `policyctl test`: find test files under the given paths, run them, and report.
//!
//! Each kind of test file has a [`SuiteRunner`]; [`rego`] runs `*_test.rego` files the way `opa test` does. Every
//! runner reports [`CaseResult`]s into one [`Report`], rendered as a table, JSON or JUnit.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

// The composed modules under their usual names, so paths read `crate::policy::…` as before the split.
use policyctl_engines::{admission, engine, pipeline, policy};

pub mod gator;
pub mod known;
pub mod kyverno;
pub mod progress;
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
    /// How the tests' policies are loaded (`prefer_rego`; each runner sets its own time limit).
    pub load: crate::engine::LoadOptions,
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
    vec![
        Box::new(gator::GatorRunner),
        Box::new(kyverno::KyvernoRunner),
    ]
}

/// Where a test run is, reported just before each test file (or each directory's group of Rego tests) runs.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// 1-based position of the file about to run.
    pub current: usize,
    /// Number of test files found.
    pub total: usize,
    /// The test file (for Rego tests: the directory whose `*_test.rego` files run together).
    pub path: &'a Path,
}

/// Find and run every test under `paths`.
pub fn run(paths: &[PathBuf], options: &TestOptions) -> Vec<CaseResult> {
    run_with_progress(paths, options, &mut |_| {})
}

/// One unit of a test run, in report order.
enum Work {
    /// Results known while searching (a missing path, an unreadable directory).
    Done(CaseResult),
    /// A YAML file that a runner recognised, with its content.
    Yaml(PathBuf, String),
    /// The `*_test.rego` files under one root.
    Rego(PathBuf, Vec<PathBuf>),
}

/// [`run`], calling `progress` before each test file runs. Files are found first, so `total` is known from the
/// start; a YAML file counts only if a runner recognises it.
pub fn run_with_progress(
    paths: &[PathBuf],
    options: &TestOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Vec<CaseResult> {
    let runners = runners();
    let mut work = Vec::new();
    for root in paths {
        if !root.exists() {
            work.push(Work::Done(CaseResult::error(
                &root.display().to_string(),
                "no such file or directory",
            )));
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
                    work.push(Work::Done(CaseResult::error(
                        &origin,
                        format!("cannot read: {err}"),
                    )));
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
            // Unreadable files that no runner would want are not test files; only the ones that look like tests run.
            let Ok(content) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            if runners.iter().any(|r| r.sniff(&content)) {
                work.push(Work::Yaml(entry.path().to_path_buf(), content));
            }
        }
        if !rego_tests.is_empty() {
            work.push(Work::Rego(root.clone(), rego_tests.into_keys().collect()));
        }
    }
    let total = work.iter().filter(|w| !matches!(w, Work::Done(_))).count();
    let mut current = 0;
    let mut results = Vec::new();
    for item in work {
        match item {
            Work::Done(result) => results.push(result),
            Work::Yaml(path, content) => {
                current += 1;
                progress(Progress {
                    current,
                    total,
                    path: &path,
                });
                results.extend(run_yaml(&path, content, &runners, options));
            }
            Work::Rego(root, tests) => {
                current += 1;
                progress(Progress {
                    current,
                    total,
                    path: &root,
                });
                results.extend(rego::run(&root, &tests, options));
            }
        }
    }
    results
}

fn run_yaml(
    path: &Path,
    content: String,
    runners: &[Box<dyn SuiteRunner>],
    options: &TestOptions,
) -> Vec<CaseResult> {
    let origin = path.display().to_string();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_test_files_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, content: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, content).expect("write");
        };
        write("p/a.rego", "package a\n\nallow := true\n");
        write(
            "p/a_test.rego",
            "package a_test\n\nimport data.a\n\ntest_allow if a.allow\n",
        );
        write("p/policy.yaml", "apiVersion: v1\nkind: ConfigMap\n");
        let missing = dir.path().join("missing");
        let mut seen = Vec::new();
        let results = run_with_progress(
            &[dir.path().join("p"), missing.clone()],
            &TestOptions::default(),
            &mut |p| seen.push((p.current, p.total, p.path.to_path_buf())),
        );
        // The Rego tests of p/ are one unit; a plain YAML file no runner recognises is not counted; a missing path
        // is an error result, not a unit of progress.
        assert_eq!(seen, vec![(1, 1, dir.path().join("p"))]);
        assert_eq!(results.len(), 2, "{results:?}");
        assert_eq!(results[0].result, Outcome::Pass);
        assert_eq!(results[1].result, Outcome::Error);
        assert_eq!(results[1].suite, missing.display().to_string());
    }
}
