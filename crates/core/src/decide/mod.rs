//! Stage 4 of a request: turn the policies' outcomes into one decision.
//!
//! - any violation with action `deny` denies; the message lists every denial, each `[policy] message`, one per line;
//! - `warn` violations become response warnings, `[policy] message`;
//! - `audit` violations are only recorded (metrics, logs);
//! - a policy that could not be evaluated follows its failure policy (or the server's): `Fail` denies with
//!   `[policy] <error>`; `Ignore` allows and adds a warning saying the policy was skipped.

use crate::admission::Response;
use crate::pipeline::PolicyRun;
use crate::policy::{Action, FailurePolicy, PolicyError};

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

    /// The denial message: every denial line joined by newlines.
    pub fn message(&self) -> String {
        self.denials.join("\n")
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
/// - mutation warnings are returned as warnings.
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
            let line = format!("[{name}] {}", violation.message);
            match violation.action {
                Action::Deny => decision.denials.push(line),
                Action::Warn => decision.warnings.push(line),
                Action::Audit => decision.audits.push(line),
            }
        }
        decision
            .warnings
            .extend(outcome.warnings.iter().map(|w| format!("[{name}] {w}")));
        for PolicyError { error, action } in &outcome.errors {
            let line = format!("[{name}] {error}");
            decision.errors.push(line.clone());
            match action {
                Action::Deny => match run
                    .policy
                    .info()
                    .failure_policy
                    .unwrap_or(default_failure_policy)
                {
                    FailurePolicy::Fail => decision.denials.push(line),
                    FailurePolicy::Ignore => decision.warnings.push(format!(
                        "[{name}] policy skipped (failure policy Ignore): {error}"
                    )),
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
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::admission::Review;
    use crate::pipeline::Outcome;
    use crate::policy::{
        EvalContext, EvalError, Evaluation, Policy, PolicyInfo, SourceRef, Violation,
    };
    use crate::select::Scope;

    #[derive(Debug)]
    struct Fixed(PolicyInfo);

    impl Policy for Fixed {
        fn info(&self) -> &PolicyInfo {
            &self.0
        }
        fn scope(&self) -> Scope {
            Scope::any()
        }
        fn validate(&self, _: &Review, _: &EvalContext) -> Evaluation {
            Evaluation::skip()
        }
    }

    fn run(name: &str, failure_policy: Option<FailurePolicy>, outcome: Outcome) -> PolicyRun {
        let info = PolicyInfo {
            name: name.into(),
            kind: "Test".into(),
            engine: "test",
            source: SourceRef::file("t"),
            failure_policy,
            annotations: Default::default(),
        };
        PolicyRun {
            policy: Arc::new(Fixed(info)),
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
        }
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
