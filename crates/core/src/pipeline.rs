//! A review's path through a policy set: select → evaluate → decide.
//!
//! Pure and synchronous: the server runs it on a blocking thread, `policyctl eval` and the test runners call it
//! directly. Every run has one [`Deadline`], shared by all the policies of the review: the pipeline checks it
//! before each policy and engines check it inside their loops. A policy that starts after the deadline, or whose
//! evaluation was still running when it passed, reports [`EvalError::Timeout`], which the decide stage handles
//! under the failure policy. A panic inside one policy is contained and becomes that policy's evaluation error.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::admission::Review;
use crate::decide::{decide, Decision};
use crate::policy::{
    Action, ClusterContext, Deadline, EvalContext, EvalError, Evaluation, FailurePolicy, Mutation,
    NoCluster, PayloadMode, Policy, PolicyError, PolicySet, RuleResult, Violation,
    DEFAULT_REQUEST_TIMEOUT,
};

/// Which webhook a review came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Webhook {
    /// `/validate`: find violations.
    Validate,
    /// `/mutate`: apply mutations and answer with a patch.
    Mutate,
}

impl Webhook {
    /// `validate` or `mutate`, as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Webhook::Validate => "validate",
            Webhook::Mutate => "mutate",
        }
    }
}

/// What one policy reported about a review: the facts the decide stage turns into an answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Whether the policy applied (matched). `false` is a skip, never a pass.
    pub applied: bool,
    /// Violations, each with the action its policy declares.
    pub violations: Vec<Violation>,
    /// Evaluation errors, each with the action of the rule that failed.
    pub errors: Vec<PolicyError>,
    /// Whether the policy changed the object (on `/mutate`).
    pub mutated: bool,
    /// Warnings from a mutation.
    pub warnings: Vec<String>,
    /// Per-rule results, when the run explains ([`EvalContext::explain`]).
    pub rules: Vec<RuleResult>,
}

impl Outcome {
    /// The outcome of a validating policy.
    pub fn from_evaluation(e: Evaluation) -> Self {
        Outcome {
            applied: e.applied || !e.violations.is_empty() || !e.errors.is_empty(),
            violations: e.violations,
            errors: e.errors,
            rules: e.rules,
            ..Outcome::default()
        }
    }

    /// An outcome that is only an error of an enforcing rule.
    pub fn failed(error: EvalError) -> Self {
        Outcome {
            applied: true,
            errors: vec![PolicyError::enforced(error)],
            ..Outcome::default()
        }
    }

    /// Whether the policy applied and found nothing and changed nothing.
    pub fn is_pass(&self) -> bool {
        self.applied
            && self.violations.is_empty()
            && self.errors.is_empty()
            && !self.mutated
            && self.warnings.is_empty()
    }

    /// Whether the outcome blocks the request by itself (a deny violation or an enforced error).
    pub fn denies(&self) -> bool {
        self.violations.iter().any(|v| v.action == Action::Deny)
            || self.errors.iter().any(|e| e.action == Action::Deny)
    }

    /// The result labels for metrics: `skip`, `pass`, one per distinct violation action (`deny`, `warn`, `audit`),
    /// `mutate`, and `error` / `timeout` for evaluation failures.
    pub fn labels(&self) -> Vec<&'static str> {
        if !self.applied {
            return vec!["skip"];
        }
        let mut out: Vec<&'static str> = Vec::new();
        for action in [Action::Deny, Action::Warn, Action::Audit] {
            if self.violations.iter().any(|v| v.action == action) {
                out.push(action.as_str());
            }
        }
        if self.mutated {
            out.push("mutate");
        }
        for e in &self.errors {
            let label = e.error.label();
            if !out.contains(&label) {
                out.push(label);
            }
        }
        if out.is_empty() {
            out.push("pass");
        }
        out
    }
}

/// One policy's run on one review.
#[derive(Debug, Clone)]
pub struct PolicyRun {
    /// The policy.
    pub policy: Arc<dyn Policy>,
    /// What it found.
    pub outcome: Outcome,
    /// How long it took.
    pub duration: Duration,
}

/// Settings of a pipeline run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The deadline of one request, counted from its arrival.
    pub request_timeout: Duration,
    /// Cluster data for every evaluation.
    pub cluster: Arc<dyn ClusterContext>,
    /// Failure policy for policies that do not set their own.
    pub failure_policy: FailurePolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            cluster: Arc::new(NoCluster),
            failure_policy: FailurePolicy::default(),
        }
    }
}

impl Settings {
    /// The evaluation context of a request that arrived at `start`.
    pub fn context(&self, start: Instant) -> EvalContext {
        EvalContext {
            deadline: Deadline::starting(start, self.request_timeout),
            cluster: self.cluster.clone(),
            explain: false,
            point: crate::policy::EnforcementPoint::Webhook,
        }
    }
}

/// Run a review through the policies of `set` that may match it, and decide. The deadline starts now.
pub fn run(set: &PolicySet, review: &Review, webhook: Webhook, settings: &Settings) -> Decision {
    run_with(
        set,
        review,
        webhook,
        &settings.context(Instant::now()),
        settings.failure_policy,
    )
}

/// Like [`run`], with the request's own context (its deadline started when the request arrived).
pub fn run_with(
    set: &PolicySet,
    review: &Review,
    webhook: Webhook,
    ctx: &EvalContext,
    failure_policy: FailurePolicy,
) -> Decision {
    match webhook {
        Webhook::Validate => {
            let runs = validate(set, review, ctx);
            decide(runs, None, failure_policy)
        }
        Webhook::Mutate => {
            let (runs, patch) = mutate(set, review, ctx);
            decide(runs, patch, failure_policy)
        }
    }
}

/// Evaluate every validating policy that may match (every policy that may match, when the context explains).
pub fn validate(set: &PolicySet, review: &Review, ctx: &EvalContext) -> Vec<PolicyRun> {
    let selected: Vec<Arc<dyn Policy>> = set
        .select(review)
        .into_iter()
        .filter(|p| ctx.explain || p.validates())
        .cloned()
        .collect();
    validate_policies(&selected, review, ctx)
}

/// Evaluate `policies` on the review without selecting them: for callers that already know which policies apply
/// (gator runs one constraint on each of its cases, whatever the case's operation).
pub fn validate_policies(
    policies: &[Arc<dyn Policy>],
    review: &Review,
    ctx: &EvalContext,
) -> Vec<PolicyRun> {
    run_each(policies, ctx, &|policy| policy.validate(review, ctx))
}

/// Evaluate the policies of `set` whose payload mode is `mode` on a payload that is not an admission request
/// (`policyctl test`'s `jsonPayloads`, `httpPayloads` and `envoyPayloads`, `policyctl eval --payload`), under the
/// same deadline, panic containment and facts as a review. Admission policies never see payloads.
pub fn validate_payload(
    set: &PolicySet,
    payload: &Value,
    mode: PayloadMode,
    ctx: &EvalContext,
) -> Vec<PolicyRun> {
    let selected: Vec<Arc<dyn Policy>> = set
        .policies()
        .iter()
        .filter(|p| p.payload_mode() == Some(mode))
        .cloned()
        .collect();
    run_each(&selected, ctx, &|policy| {
        policy.validate_payload(payload, ctx)
    })
}

/// Run `evaluate` on each policy in turn, each checked against the deadline and contained.
fn run_each(
    policies: &[Arc<dyn Policy>],
    ctx: &EvalContext,
    evaluate: &dyn Fn(&Arc<dyn Policy>) -> Evaluation,
) -> Vec<PolicyRun> {
    policies
        .iter()
        .map(|policy| {
            let start = Instant::now();
            let outcome = match ctx.deadline.check() {
                Err(e) => Outcome::failed(e),
                Ok(()) => {
                    let outcome = match contained(|| evaluate(policy)) {
                        Ok(evaluation) => Outcome::from_evaluation(evaluation),
                        Err(e) => Outcome::failed(e),
                    };
                    within_deadline(outcome, ctx)
                }
            };
            PolicyRun {
                policy: policy.clone(),
                outcome,
                duration: start.elapsed(),
            }
        })
        .collect()
}

/// An evaluation that was still running when the deadline passed may have been cut short by its engine: whatever
/// it returned is replaced by the time-out.
fn within_deadline(outcome: Outcome, ctx: &EvalContext) -> Outcome {
    match ctx.deadline.check() {
        Ok(()) => outcome,
        Err(e) => Outcome::failed(e),
    }
}

/// Apply every mutating policy that may match, in set order, each on the result of the one before. Returns the runs
/// and the JSON patch from the original object to the final one (`None` when nothing changed or there is no object).
pub fn mutate(
    set: &PolicySet,
    review: &Review,
    ctx: &EvalContext,
) -> (Vec<PolicyRun>, Option<json_patch::Patch>) {
    let (runs, object) = mutate_object(set, review, ctx);
    let patch = match (review.object(), object) {
        (Some(original), Some(mutated)) if *original != mutated => {
            Some(json_patch::diff(original, &mutated))
        }
        _ => None,
    };
    (runs, patch)
}

/// Like [`mutate`], returning the mutated object itself (`None` when nothing changed).
pub fn mutate_object(
    set: &PolicySet,
    review: &Review,
    ctx: &EvalContext,
) -> (Vec<PolicyRun>, Option<Value>) {
    if review.object().is_none() {
        return (Vec::new(), None);
    }
    // The review as changed so far: rebuilt once per change, so later policies see the new object and nothing
    // else is redone for policies that change nothing.
    let mut current: Option<Review> = None;
    let mut runs = Vec::new();
    for policy in set
        .select(review)
        .into_iter()
        .filter(|p| ctx.explain || p.mutates())
    {
        let start = Instant::now();
        let subject = current.as_ref().unwrap_or(review);
        let outcome = match ctx.deadline.check() {
            Err(e) => Outcome::failed(e),
            Ok(()) => match contained(|| policy.mutate(subject, ctx)) {
                Err(e) => Outcome::failed(e),
                Ok(_) if ctx.deadline.expired() => {
                    Outcome::failed(EvalError::Timeout(ctx.deadline.budget()))
                }
                Ok(Mutation {
                    applied,
                    object: mutated,
                    warnings,
                    errors,
                    rules,
                }) => {
                    let changed = mutated.is_some();
                    if let Some(mutated) = mutated {
                        current = Some(review.with_object(mutated));
                    }
                    Outcome {
                        applied: applied || changed || !errors.is_empty(),
                        mutated: changed,
                        warnings,
                        errors,
                        rules,
                        violations: Vec::new(),
                    }
                }
            },
        };
        runs.push(PolicyRun {
            policy: policy.clone(),
            outcome,
            duration: start.elapsed(),
        });
    }
    (runs, current.and_then(Review::into_object))
}

/// Both webhooks in the order the API server calls them, as `policyctl eval` and the test runners apply them:
/// mutations, then validations of the mutated object. Returns every run and the mutated object (`None` when
/// nothing changed).
pub fn mutate_then_validate(
    set: &PolicySet,
    review: &Review,
    ctx: &EvalContext,
) -> (Vec<PolicyRun>, Option<Value>) {
    let (mut runs, mutated) = mutate_object(set, review, ctx);
    match &mutated {
        Some(object) => runs.extend(validate(set, &review.with_object(object.clone()), ctx)),
        None => runs.extend(validate(set, review, ctx)),
    }
    (runs, mutated)
}

/// Run `f`, turning a panic into an evaluation error.
fn contained<T>(f: impl FnOnce() -> T) -> Result<T, EvalError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => Ok(result),
        Err(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            Err(EvalError::Panic(text))
        }
    }
}
