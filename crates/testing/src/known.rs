//! Known failures: a checked-in list of cases expected to fail, each with a reason.
//!
//! ```yaml
//! - suite: general/horizontalpodautoscaler/suite.yaml   # a suffix of the test file's path
//!   test: hpa-with-replica-spread                        # optional: every test of the file
//!   case: example-disallowed-hpa-replicas                # optional: every case of the test
//!   reason: regorus renders a sprintf verb/argument mismatch as undefined
//! ```
//!
//! A failing or erroring case that an entry covers becomes a known failure. A passing case that an entry names
//! exactly (suite, test and case) becomes a failure, so the list cannot go stale silently.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::report::{CaseResult, Outcome};

/// One entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KnownFailure {
    /// A suffix of the test file's path (compared on `/`-separated components).
    pub suite: String,
    /// The test; absent for all tests of the file.
    #[serde(default)]
    pub test: Option<String>,
    /// The case; absent for all cases of the test.
    #[serde(default)]
    pub case: Option<String>,
    /// Why it fails.
    pub reason: String,
}

impl KnownFailure {
    fn covers(&self, case: &CaseResult) -> bool {
        path_ends_with(&case.suite, &self.suite)
            && self.test.as_deref().is_none_or(|t| t == case.test)
            && self.case.as_deref().is_none_or(|c| c == case.case)
    }

    fn names_exactly(&self, case: &CaseResult) -> bool {
        self.test.is_some() && self.case.is_some() && self.covers(case)
    }
}

fn path_ends_with(path: &str, suffix: &str) -> bool {
    let path: Vec<&str> = path
        .split(['/', '\\'])
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let suffix: Vec<&str> = suffix
        .split(['/', '\\'])
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    !suffix.is_empty() && path.ends_with(&suffix)
}

/// Why a known-failures list cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KnownFailuresError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a YAML list of entries.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the YAML reader found.
        #[source]
        source: serde_yaml::Error,
    },
    /// An entry gives no reason: every known failure must say why it is accepted.
    #[error("{}: entry for {suite} has no reason", path.display())]
    NoReason {
        /// The file.
        path: PathBuf,
        /// The entry's suite.
        suite: String,
    },
}

/// A known-failures list.
#[derive(Debug, Clone, Default)]
pub struct KnownFailures {
    entries: Vec<KnownFailure>,
    origin: String,
}

impl KnownFailures {
    /// Read a list from a YAML file.
    pub fn load(path: &Path) -> Result<KnownFailures, KnownFailuresError> {
        let text = std::fs::read_to_string(path).map_err(|source| KnownFailuresError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let entries: Vec<KnownFailure> =
            serde_yaml::from_str(&text).map_err(|source| KnownFailuresError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        if let Some(empty) = entries.iter().find(|e| e.reason.trim().is_empty()) {
            return Err(KnownFailuresError::NoReason {
                path: path.to_path_buf(),
                suite: empty.suite.clone(),
            });
        }
        Ok(KnownFailures {
            entries,
            origin: path.display().to_string(),
        })
    }

    /// Apply the list to results; returns the entries that matched no case (stale or filtered out).
    pub fn apply(&self, cases: &mut [CaseResult]) -> Vec<KnownFailure> {
        let mut used = vec![false; self.entries.len()];
        for case in cases.iter_mut() {
            match case.result {
                Outcome::Fail | Outcome::Error => {
                    if let Some((i, entry)) = self
                        .entries
                        .iter()
                        .enumerate()
                        .find(|(_, e)| e.covers(case))
                    {
                        used[i] = true;
                        case.reason = format!("{} (was: {})", entry.reason, case.reason);
                        case.result = Outcome::KnownFailure;
                    }
                }
                Outcome::Pass => {
                    if let Some((i, _)) = self
                        .entries
                        .iter()
                        .enumerate()
                        .find(|(_, e)| e.names_exactly(case))
                    {
                        used[i] = true;
                        case.result = Outcome::Fail;
                        case.reason = format!(
                            "listed as a known failure in {} but passes: remove the entry",
                            self.origin
                        );
                    }
                }
                _ => {}
            }
        }
        self.entries
            .iter()
            .zip(used)
            .filter(|(_, used)| !used)
            .map(|(e, _)| e.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: Vec<KnownFailure>) -> KnownFailures {
        KnownFailures {
            entries,
            origin: "known.yaml".into(),
        }
    }

    fn entry(suite: &str, test: Option<&str>, case: Option<&str>) -> KnownFailure {
        KnownFailure {
            suite: suite.into(),
            test: test.map(Into::into),
            case: case.map(Into::into),
            reason: "r".into(),
        }
    }

    #[test]
    fn covered_failures_become_known_and_exact_passes_fail() {
        let known = list(vec![
            entry("hpa/suite.yaml", Some("t"), Some("c1")),
            entry("hpa/suite.yaml", Some("t"), Some("c2")),
            entry("other/suite.yaml", None, None),
        ]);
        let mut cases = vec![
            CaseResult::new(
                "lib/general/hpa/suite.yaml",
                "t",
                "c1",
                Outcome::Fail,
                "got 0",
            ),
            CaseResult::new("lib/general/hpa/suite.yaml", "t", "c2", Outcome::Pass, ""),
            CaseResult::new(
                "lib/general/xhpa/suite.yaml",
                "t",
                "c1",
                Outcome::Fail,
                "got 0",
            ),
        ];
        let unused = known.apply(&mut cases);
        assert_eq!(cases[0].result, Outcome::KnownFailure);
        assert_eq!(cases[0].reason, "r (was: got 0)");
        assert_eq!(cases[1].result, Outcome::Fail);
        assert_eq!(
            cases[2].result,
            Outcome::Fail,
            "path components must match exactly"
        );
        assert_eq!(unused, vec![entry("other/suite.yaml", None, None)]);
    }

    #[test]
    fn load_requires_reasons() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.yaml");
        std::fs::write(&path, "- suite: a.yaml\n  reason: ''\n").expect("write");
        let error = KnownFailures::load(&path).expect_err("no reason");
        assert!(
            matches!(error, KnownFailuresError::NoReason { ref suite, .. } if suite == "a.yaml")
        );
        assert_eq!(
            error.to_string(),
            format!("{}: entry for a.yaml has no reason", path.display())
        );
        std::fs::write(&path, "- suite: a.yaml\n  reason: because\n  cas: typo\n").expect("write");
        assert!(
            matches!(
                KnownFailures::load(&path),
                Err(KnownFailuresError::Parse { .. })
            ),
            "unknown fields are rejected"
        );
        assert!(matches!(
            KnownFailures::load(&dir.path().join("missing.yaml")),
            Err(KnownFailuresError::Read { .. })
        ));
        std::fs::write(&path, "- suite: a.yaml\n  reason: because\n").expect("write");
        assert!(KnownFailures::load(&path).is_ok());
    }
}
