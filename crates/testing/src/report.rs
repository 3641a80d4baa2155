//! Test results and their three renderings: a table, JSON and JUnit XML.

use std::fmt::Write as _;

use serde::Serialize;

/// The result of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The case held.
    Pass,
    /// The case did not hold.
    Fail,
    /// The case was skipped (by its file, or because nothing matched it).
    Skip,
    /// The case could not be run (a broken file, a policy that does not load).
    Error,
    /// The case needs a feature policyctl does not support; never counted as passing.
    Unsupported,
    /// The case failed as a checked-in known-failures list expects.
    KnownFailure,
}

impl Outcome {
    /// Lower-case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Skip => "skip",
            Outcome::Error => "error",
            Outcome::Unsupported => "unsupported",
            Outcome::KnownFailure => "known-failure",
        }
    }
}

/// One case's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    /// The test file.
    pub suite: String,
    /// The test within the file (a gator test, a kyverno policy/rule, a Rego package).
    pub test: String,
    /// The case within the test (a gator case, a kyverno resource, a Rego test rule).
    pub case: String,
    /// The result.
    pub result: Outcome,
    /// Why, when it is not a plain pass.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl CaseResult {
    /// A result.
    pub fn new(
        suite: &str,
        test: &str,
        case: &str,
        result: Outcome,
        reason: impl Into<String>,
    ) -> CaseResult {
        CaseResult {
            suite: suite.into(),
            test: test.into(),
            case: case.into(),
            result,
            reason: reason.into(),
        }
    }

    /// A file-level error (the suite could not be read or its policies did not load).
    pub fn error(suite: &str, reason: impl Into<String>) -> CaseResult {
        CaseResult::new(suite, "", "", Outcome::Error, reason)
    }
}

/// Counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// All cases.
    pub total: usize,
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Could not run.
    pub errors: usize,
    /// Need unsupported features.
    pub unsupported: usize,
    /// Failed as the known-failures list expects.
    pub known_failures: usize,
}

/// All results of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Counts.
    pub summary: Summary,
    /// Every case, in the order they ran.
    pub cases: Vec<CaseResult>,
}

impl Report {
    /// A report over these results.
    pub fn new(cases: Vec<CaseResult>) -> Report {
        let mut summary = Summary {
            total: cases.len(),
            ..Summary::default()
        };
        for case in &cases {
            match case.result {
                Outcome::Pass => summary.passed += 1,
                Outcome::Fail => summary.failed += 1,
                Outcome::Skip => summary.skipped += 1,
                Outcome::Error => summary.errors += 1,
                Outcome::Unsupported => summary.unsupported += 1,
                Outcome::KnownFailure => summary.known_failures += 1,
            }
        }
        Report { summary, cases }
    }

    /// Whether the run succeeded: no failure and no error.
    pub fn success(&self) -> bool {
        self.summary.failed == 0 && self.summary.errors == 0
    }

    /// One line of counts.
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        format!(
            "{} cases: {} passed, {} failed, {} skipped, {} errors, {} unsupported, {} known failures",
            s.total, s.passed, s.failed, s.skipped, s.errors, s.unsupported, s.known_failures
        )
    }

    /// The same report listing only the cases that failed or errored (`test --fail-only`); the summary still
    /// counts every case.
    pub fn failures_only(&self) -> Report {
        Report {
            summary: self.summary,
            cases: self
                .cases
                .iter()
                .filter(|c| matches!(c.result, Outcome::Fail | Outcome::Error))
                .cloned()
                .collect(),
        }
    }

    /// The report as YAML: `summary` and `cases`.
    pub fn yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_else(|e| format!("error: {e}\n"))
    }

    /// The report as a table with a summary line; reasons are cut to their first line.
    pub fn table(&self) -> String {
        self.table_with(false)
    }

    /// The report as a table; with `detailed`, each case's whole reason follows its row, indented
    /// (`test --detailed`).
    pub fn table_with(&self, detailed: bool) -> String {
        let headers = ["SUITE", "TEST", "CASE", "RESULT", "REASON"];
        let rows: Vec<[String; 5]> = self
            .cases
            .iter()
            .map(|c| {
                let reason = c.reason.lines().next().unwrap_or("").to_string();
                [
                    c.suite.clone(),
                    c.test.clone(),
                    c.case.clone(),
                    c.result.as_str().to_string(),
                    reason,
                ]
            })
            .collect();
        let mut widths = headers.map(str::len);
        for row in &rows {
            for (i, cell) in row.iter().enumerate().take(4) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: [&str; 5]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i < 4 {
                    let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
                } else {
                    text.push_str(cell);
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&mut out, headers);
        for (row, case) in rows.iter().zip(&self.cases) {
            line(&mut out, [&row[0], &row[1], &row[2], &row[3], &row[4]]);
            if detailed {
                for extra in case.reason.lines().skip(1) {
                    out.push_str("    ");
                    out.push_str(extra);
                    out.push('\n');
                }
            }
        }
        out.push_str(&self.summary_line());
        out.push('\n');
        out
    }

    /// The report as one JSON object: `summary` and `cases`.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The report as JUnit XML, one `testsuite` per test file.
    pub fn junit(&self) -> String {
        let mut suites: Vec<(&str, Vec<&CaseResult>)> = Vec::new();
        for case in &self.cases {
            match suites.iter_mut().find(|(name, _)| *name == case.suite) {
                Some((_, cases)) => cases.push(case),
                None => suites.push((&case.suite, vec![case])),
            }
        }
        let s = &self.summary;
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"policyctl\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">",
            s.total,
            s.failed,
            s.errors,
            s.skipped + s.unsupported + s.known_failures
        );
        for (name, cases) in suites {
            let count = |o: &[Outcome]| cases.iter().filter(|c| o.contains(&c.result)).count();
            let _ = writeln!(
                out,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">",
                xml(name),
                cases.len(),
                count(&[Outcome::Fail]),
                count(&[Outcome::Error]),
                count(&[Outcome::Skip, Outcome::Unsupported, Outcome::KnownFailure]),
            );
            for case in cases {
                let classname = if case.test.is_empty() {
                    name.to_string()
                } else {
                    format!("{name}/{}", case.test)
                };
                let case_name = if case.case.is_empty() {
                    "(suite)"
                } else {
                    case.case.as_str()
                };
                let open = format!(
                    "    <testcase classname=\"{}\" name=\"{}\"",
                    xml(&classname),
                    xml(case_name)
                );
                let reason = xml(&case.reason);
                let first = xml(case.reason.lines().next().unwrap_or(""));
                let _ = match case.result {
                    Outcome::Pass => writeln!(out, "{open}/>"),
                    Outcome::Fail => {
                        writeln!(out, "{open}>\n      <failure message=\"{first}\">{reason}</failure>\n    </testcase>")
                    }
                    Outcome::Error => {
                        writeln!(out, "{open}>\n      <error message=\"{first}\">{reason}</error>\n    </testcase>")
                    }
                    Outcome::Skip | Outcome::Unsupported | Outcome::KnownFailure => writeln!(
                        out,
                        "{open}>\n      <skipped message=\"{}: {first}\"/>\n    </testcase>",
                        case.result.as_str()
                    ),
                };
            }
            out.push_str("  </testsuite>\n");
        }
        out.push_str("</testsuites>\n");
        out
    }
}

/// Escape text for XML attributes and content.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report::new(vec![
            CaseResult::new("a/suite.yaml", "t1", "ok", Outcome::Pass, ""),
            CaseResult::new(
                "a/suite.yaml",
                "t1",
                "bad",
                Outcome::Fail,
                "got 0 violations but want at least 1",
            ),
            CaseResult::new(
                "b/kyverno-test.yaml",
                "p/r",
                "ns/pod",
                Outcome::Unsupported,
                "generate rule",
            ),
            CaseResult::error("c/broken.yaml", "invalid YAML <here> & \"there\""),
        ])
    }

    #[test]
    fn summary_counts_and_success() {
        let report = sample();
        assert_eq!(
            report.summary,
            Summary {
                total: 4,
                passed: 1,
                failed: 1,
                skipped: 0,
                errors: 1,
                unsupported: 1,
                known_failures: 0
            }
        );
        assert!(!report.success());
        assert!(Report::new(vec![CaseResult::new(
            "s",
            "t",
            "c",
            Outcome::Unsupported,
            ""
        )])
        .success());
    }

    #[test]
    fn table_has_headers_rows_and_summary() {
        let table = sample().table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("SUITE"));
        assert!(
            lines[2].contains("bad")
                && lines[2].contains("fail")
                && lines[2].contains("want at least 1")
        );
        assert_eq!(
            lines.last().copied(),
            Some(sample().summary_line().as_str())
        );
    }

    #[test]
    fn fail_only_keeps_the_summary_and_lists_failures_and_errors() {
        let report = sample().failures_only();
        assert_eq!(report.summary.total, sample().summary.total);
        assert!(report
            .cases
            .iter()
            .all(|c| matches!(c.result, Outcome::Fail | Outcome::Error)));
        assert_eq!(report.cases.len(), 2);
    }

    #[test]
    fn detailed_tables_show_every_line_of_a_reason_and_yaml_has_the_cases() {
        let report = Report::new(vec![CaseResult::new(
            "s",
            "t",
            "c",
            Outcome::Fail,
            "first line\nsecond line",
        )]);
        assert!(!report.table().contains("second line"));
        assert!(report.table_with(true).contains("\n    second line\n"));
        let yaml: serde_json::Value = serde_yaml::from_str(&report.yaml()).expect("yaml");
        assert_eq!(yaml["cases"][0]["result"], "fail");
        assert_eq!(yaml["summary"]["failed"], 1);
    }

    #[test]
    fn json_has_summary_and_cases() {
        let value: serde_json::Value = serde_json::from_str(&sample().json()).expect("json");
        assert_eq!(value["summary"]["failed"], 1);
        assert_eq!(value["summary"]["errors"], 1);
        assert_eq!(value["cases"][1]["result"], "fail");
        assert_eq!(value["cases"][2]["result"], "unsupported");
    }

    #[test]
    fn junit_is_escaped_and_grouped_by_file() {
        let xml = sample().junit();
        assert!(xml.contains(
            "<testsuites name=\"policyctl\" tests=\"4\" failures=\"1\" errors=\"1\" skipped=\"1\">"
        ));
        assert_eq!(xml.matches("<testsuite ").count(), 3);
        assert!(xml.contains("invalid YAML &lt;here&gt; &amp; &quot;there&quot;"));
        assert!(xml.contains("<failure message=\"got 0 violations but want at least 1\">"));
        assert!(xml.contains("<skipped message=\"unsupported: generate rule\"/>"));
    }
}
