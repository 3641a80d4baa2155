//! Stage 4 of a request: turn the policies' outcomes into one decision.
//!
//! - any violation with action `deny` denies; the message lists every denial, each `[policy] message`, one per line;
//! - `warn` violations become response warnings, `[policy] message`;
//! - `audit` violations are only recorded (metrics, logs);
//! - a policy that could not be evaluated follows its failure policy (or the server's): `Fail` denies with
//!   `[policy] <error>`; `Ignore` allows and adds a warning saying the policy was skipped.
//!
//! Every line that reaches the API server (denials, warnings) is one line of at most [`MAX_LINE`] bytes (longer ones
//! are cut with [`TRUNCATED`]). An error's line is its first line, without file paths or source snippets: the full
//! text stays in [`Decision::errors`], for the log and `policyctl eval`.

use crate::admission::Response;
use crate::pipeline::PolicyRun;
use crate::policy::{Action, FailurePolicy, PolicyError};

/// Longest line, in bytes, that the API server gets for one denial or warning.
pub const MAX_LINE: usize = 1024;

/// Longest denial message, in bytes (all lines together); further lines are dropped with a count.
pub const MAX_MESSAGE: usize = 8 * 1024;

/// What ends a line that was cut.
pub const TRUNCATED: &str = "… [truncated]";

/// A message as the API server gets it: whitespace runs with line breaks become one space, and at most
/// [`MAX_LINE`] bytes, cut on a character boundary and marked with [`TRUNCATED`].
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_LINE));
    let mut words = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty());
    if let Some(first) = words.next() {
        out.push_str(first);
    }
    for line in words {
        out.push(' ');
        out.push_str(line);
    }
    truncate(out, MAX_LINE)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut cut = max.saturating_sub(TRUNCATED.len());
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(TRUNCATED);
    text
}

/// An evaluation error as the API server gets it: its first line, with every token that looks like a local file
/// path (`/…/x.rego:12:3:`, `policies/p.yaml`) replaced by `<source>`, on one bounded line. Compilers put the
/// source snippet on the lines after the first, so dropping them drops the snippet.
pub fn public_error(text: &str) -> String {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let words: Vec<String> = first
        .split(' ')
        .map(|word| {
            if looks_like_path(word) {
                "<source>".to_string()
            } else {
                word.to_string()
            }
        })
        .collect();
    one_line(&words.join(" "))
}

/// Whether a word names a local file: it contains a `/` and, before any `:line:col` suffix, ends in a policy file
/// extension, or starts with `/`, `./` or `../`.
fn looks_like_path(word: &str) -> bool {
    let word =
        word.trim_matches(|c: char| matches!(c, '"' | '\'' | '`' | '(' | ')' | ',' | '[' | ']'));
    let base = word.split(':').next().unwrap_or(word);
    let extension = [".rego", ".yaml", ".yml", ".json"]
        .iter()
        .any(|e| base.ends_with(e));
    (extension && (base.contains('/') || word.contains(':')))
        || ((word.starts_with('/') || word.starts_with("./") || word.starts_with("../"))
            && word.len() > 1
            && word[1..].contains('/'))
}

/// The decision for one review.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// Denial lines, `[policy] message`.
    pub denials: Vec<String>,
    /// Warning lines, `[policy] message`.
    pub warnings: Vec<String>,
    /// Audit (record-only) lines, `[policy] message`.
    pub audits: Vec<String>,
    /// Evaluation errors, `[policy] error`, whatever their failure policy.
    pub errors: Vec<String>,
    /// The patch, on `/mutate`.
    pub patch: Option<json_patch::Patch>,
    /// The status reason of the first denial, when its policy named one (ValidatingAdmissionPolicy `reason`).
    pub reason: Option<crate::admission::Reason>,
    /// What every policy did.
    pub runs: Vec<PolicyRun>,
}

/// The decision's label for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed with no warning.
    Allow,
    /// Allowed with warnings.
    Warn,
    /// Denied.
    Deny,
}

impl Verdict {
    /// `allow`, `warn` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Warn => "warn",
            Verdict::Deny => "deny",
        }
    }
}

impl Decision {
    /// The label of the decision.
    pub fn verdict(&self) -> Verdict {
        if !self.allowed {
            Verdict::Deny
        } else if !self.warnings.is_empty() {
            Verdict::Warn
        } else {
            Verdict::Allow
        }
    }

    /// Whether a policy failed to evaluate (a time-out included), whatever its failure policy.
    pub fn has_errors(&self) -> bool {
        self.runs.iter().any(|run| !run.outcome.errors.is_empty())
    }

    /// The denial message: every denial line joined by newlines, at most [`MAX_MESSAGE`] bytes (the lines that do
    /// not fit are counted on a last line).
    pub fn message(&self) -> String {
        let mut out = String::new();
        for (i, line) in self.denials.iter().enumerate() {
            if out.len() + line.len() + 1 > MAX_MESSAGE {
                let left = self.denials.len() - i;
                out.push_str(&format!(
                    "\n{TRUNCATED} {left} more denials (see the webhook log)"
                ));
                break;
            }
            if i > 0 {
                out.push('\n');
            }
            out.push_str(line);
        }
        out
    }

    /// The webhook answer.
    pub fn response(&self) -> Response {
        Response {
            allowed: self.allowed,
            message: self.message(),
            warnings: self.warnings.clone(),
            patch: if self.allowed {
                self.patch.clone()
            } else {
                None
            },
            reason: self.reason,
        }
    }
}

/// Combine policy runs into a decision. `default_failure_policy` applies to policies without their own.
///
/// This is the only place where facts become an answer:
/// - violations by their action: `deny` denies, `warn` warns, `audit` records;
/// - errors by the action of the rule or constraint that failed: `deny` follows the failure policy (the policy's
///   own, else `default_failure_policy`), `warn` warns, `audit` records; every error is listed in
///   [`Decision::errors`] whatever happens to it;
/// - mutation warnings are returned as warnings;
/// - the first denial's status reason (a ValidatingAdmissionPolicy `reason`) becomes the response's status.
pub fn decide(
    runs: Vec<PolicyRun>,
    patch: Option<json_patch::Patch>,
    default_failure_policy: FailurePolicy,
) -> Decision {
    let mut decision = Decision {
        patch,
        ..Decision::default()
    };
    for run in &runs {
        let name = &run.policy.info().name;
        let outcome = &run.outcome;
        for violation in &outcome.violations {
            let line = one_line(&format!("[{name}] {}", violation.message));
            match violation.action {
                Action::Deny => {
                    // The first denial's reason sets the response status, as the API server answers with the
                    // first failing validation's.
                    if decision.denials.is_empty() {
                        decision.reason = violation.reason;
                    }
                    decision.denials.push(line)
                }
                Action::Warn => decision.warnings.push(line),
                Action::Audit => decision.audits.push(line),
            }
        }
        decision.warnings.extend(
            outcome
                .warnings
                .iter()
                .map(|w| one_line(&format!("[{name}] {w}"))),
        );
        for PolicyError { error, action } in &outcome.errors {
            // The full text for the log; the API server gets one line without paths or source.
            decision.errors.push(format!("[{name}] {error}"));
            let error = public_error(&error.to_string());
            let line = format!("[{name}] {error}");
            match action {
                Action::Deny => match run
                    .policy
                    .info()
                    .failure_policy
                    .unwrap_or(default_failure_policy)
                {
                    FailurePolicy::Fail => decision.denials.push(line),
                    FailurePolicy::Ignore => decision.warnings.push(one_line(&format!(
                        "[{name}] policy skipped (failure policy Ignore): {error}"
                    ))),
                },
                Action::Warn => decision.warnings.push(line),
                Action::Audit => decision.audits.push(line),
            }
        }
    }
    decision.allowed = decision.denials.is_empty();
    decision.runs = runs;
    decision
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pipeline::Outcome;
    use crate::policy::inert::Inert;
    use crate::policy::{EvalError, Evaluation, Violation};

    fn run(name: &str, failure_policy: Option<FailurePolicy>, outcome: Outcome) -> PolicyRun {
        PolicyRun {
            policy: Inert::policy(name, failure_policy),
            outcome,
            duration: Duration::ZERO,
        }
    }

    fn found(violations: Vec<Violation>) -> Outcome {
        Outcome::from_evaluation(Evaluation::found(violations))
    }

    fn pass() -> Outcome {
        Outcome::from_evaluation(Evaluation::found(Vec::new()))
    }

    fn error(text: &str, action: Action) -> Outcome {
        Outcome {
            applied: true,
            errors: vec![PolicyError {
                error: EvalError::Engine(text.into()),
                action,
            }],
            ..Outcome::default()
        }
    }

    fn violation(message: &str, action: Action) -> Violation {
        Violation {
            message: message.into(),
            action,
            reason: None,
        }
    }

    #[test]
    fn the_first_denial_reason_becomes_the_response_status() {
        let with = |message: &str, action, reason| Violation {
            message: message.into(),
            action,
            reason,
        };
        let decision = decide(
            vec![
                run(
                    "a",
                    None,
                    found(vec![with(
                        "w",
                        Action::Warn,
                        Some(crate::admission::Reason::Unauthorized),
                    )]),
                ),
                run(
                    "b",
                    None,
                    found(vec![with(
                        "too big",
                        Action::Deny,
                        Some(crate::admission::Reason::RequestEntityTooLarge),
                    )]),
                ),
                run(
                    "c",
                    None,
                    found(vec![with(
                        "bad",
                        Action::Deny,
                        Some(crate::admission::Reason::Invalid),
                    )]),
                ),
            ],
            None,
            FailurePolicy::Fail,
        );
        assert!(!decision.allowed);
        assert_eq!(
            decision.response().reason,
            Some(crate::admission::Reason::RequestEntityTooLarge)
        );
        // Denials without a reason answer Forbidden (none recorded).
        let decision = decide(
            vec![run("a", None, found(vec![violation("no", Action::Deny)]))],
            None,
            FailurePolicy::Fail,
        );
        assert_eq!(decision.response().reason, None);
    }

    #[test]
    fn denials_are_prefixed_and_joined_by_newlines() {
        let decision = decide(
            vec![
                run(
                    "a",
                    None,
                    found(vec![
                        violation("one", Action::Deny),
                        violation("w", Action::Warn),
                    ]),
                ),
                run("b", None, pass()),
                run("c", None, found(vec![violation("two", Action::Deny)])),
                run("d", None, found(vec![violation("quiet", Action::Audit)])),
            ],
            None,
            FailurePolicy::Fail,
        );
        assert!(!decision.allowed);
        assert_eq!(decision.verdict(), Verdict::Deny);
        assert_eq!(decision.message(), "[a] one\n[c] two");
        assert_eq!(decision.warnings, ["[a] w"]);
        assert_eq!(decision.audits, ["[d] quiet"]);
        assert_eq!(decision.response().message, "[a] one\n[c] two");
    }

    #[test]
    fn warnings_and_audits_alone_allow() {
        let decision = decide(
            vec![run(
                "a",
                None,
                found(vec![
                    violation("w", Action::Warn),
                    violation("x", Action::Audit),
                ]),
            )],
            None,
            FailurePolicy::Fail,
        );
        assert!(decision.allowed);
        assert_eq!(decision.verdict(), Verdict::Warn);
    }

    #[test]
    fn errors_follow_the_policy_then_the_default_failure_policy() {
        let err = || error("boom", Action::Deny);
        let closed = decide(vec![run("a", None, err())], None, FailurePolicy::Fail);
        assert!(!closed.allowed);
        assert_eq!(closed.message(), "[a] boom");

        let open = decide(vec![run("a", None, err())], None, FailurePolicy::Ignore);
        assert!(open.allowed);
        assert_eq!(open.errors, ["[a] boom"]);
        assert_eq!(
            open.warnings,
            ["[a] policy skipped (failure policy Ignore): boom"]
        );

        let own = decide(
            vec![run("a", Some(FailurePolicy::Ignore), err())],
            None,
            FailurePolicy::Fail,
        );
        assert!(own.allowed);
        let own_closed = decide(
            vec![run("a", Some(FailurePolicy::Fail), err())],
            None,
            FailurePolicy::Ignore,
        );
        assert!(!own_closed.allowed);
    }

    #[test]
    fn a_denied_mutation_carries_no_patch() {
        let patch = json_patch::Patch(vec![]);
        let decision = decide(
            vec![run("a", None, error("x", Action::Deny))],
            Some(patch),
            FailurePolicy::Fail,
        );
        assert!(decision.response().patch.is_none());
    }

    #[test]
    fn errors_of_warn_and_audit_rules_never_deny() {
        let decision = decide(
            vec![
                run("w", None, error("broken", Action::Warn)),
                run("a", None, error("broken too", Action::Audit)),
            ],
            None,
            FailurePolicy::Fail,
        );
        assert!(decision.allowed);
        assert_eq!(decision.warnings, ["[w] broken"]);
        assert_eq!(decision.audits, ["[a] broken too"]);
        assert_eq!(decision.errors, ["[w] broken", "[a] broken too"]);
    }

    #[test]
    fn lines_for_the_api_server_are_single_and_bounded() {
        let long = "x".repeat(5000);
        let decision = decide(
            vec![run(
                "p",
                None,
                found(vec![
                    violation("first line\n  second line\n", Action::Deny),
                    violation(&long, Action::Warn),
                ]),
            )],
            None,
            FailurePolicy::Fail,
        );
        assert_eq!(decision.denials, ["[p] first line second line"]);
        assert_eq!(decision.warnings[0].len(), MAX_LINE);
        assert!(decision.warnings[0].ends_with(TRUNCATED));
    }

    #[test]
    fn errors_reach_the_api_server_without_paths_or_source() {
        let compiler = "/etc/policies/rego/bad.rego:7:3: error: could not find function nope\n   |\n 7 |   nope(input)\n   |   ^^^^";
        let decision = decide(
            vec![run("pkg", None, error(compiler, Action::Deny))],
            None,
            FailurePolicy::Fail,
        );
        assert_eq!(
            decision.message(),
            "[pkg] <source> error: could not find function nope"
        );
        assert_eq!(decision.errors, [format!("[pkg] {compiler}")]);
        let open = decide(
            vec![run(
                "pkg",
                None,
                error("policies/x.yaml: boom", Action::Deny),
            )],
            None,
            FailurePolicy::Ignore,
        );
        assert_eq!(
            open.warnings,
            ["[pkg] policy skipped (failure policy Ignore): <source> boom"]
        );
    }

    #[test]
    fn a_long_denial_message_is_bounded_and_says_how_many_lines_were_left_out() {
        let many: Vec<Violation> = (0..100)
            .map(|i| violation(&format!("{i} {}", "y".repeat(200)), Action::Deny))
            .collect();
        let decision = decide(vec![run("p", None, found(many))], None, FailurePolicy::Fail);
        let message = decision.message();
        assert!(message.len() <= MAX_MESSAGE + 100, "{}", message.len());
        assert!(
            message.ends_with("more denials (see the webhook log)"),
            "{message}"
        );
    }

    #[test]
    fn a_policy_can_report_violations_and_errors_together() {
        let mut outcome = found(vec![violation("bad", Action::Deny)]);
        outcome.errors.push(PolicyError {
            error: EvalError::Timeout(Duration::from_secs(2)),
            action: Action::Deny,
        });
        let decision = decide(vec![run("p", None, outcome)], None, FailurePolicy::Ignore);
        assert!(!decision.allowed);
        assert_eq!(decision.denials, ["[p] bad"]);
        assert_eq!(decision.errors.len(), 1);
        assert!(decision.warnings[0].contains("request deadline"));
    }
}
