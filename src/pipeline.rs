//! A review's path through a policy set: select → evaluate → decide.
//!
//! Pure and synchronous: the server runs it on a blocking thread, `policyctl eval` and the test runners call it
//! directly. A panic inside one policy is contained and becomes that policy's evaluation error.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::admission::Review;
use crate::decide::{decide, Decision};
use crate::policy::{
    EvalContext, EvalError, FailurePolicy, Mutation, Policy, PolicySet, Violation,
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

/// What one policy did with a review.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// No violation (or no change, for a mutation).
    Pass,
    /// Violations found.
    Violations(Vec<Violation>),
    /// The object was changed.
    Mutated {
        /// Warnings from the mutation.
        warnings: Vec<String>,
    },
    /// The policy could not be evaluated.
    Error(EvalError),
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
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Context for every evaluation (time limit).
    pub context: EvalContext,
    /// Failure policy for policies that do not set their own.
    pub failure_policy: FailurePolicy,
}

/// Run a review through the policies of `set` that may match it, and decide.
pub fn run(set: &PolicySet, review: &Review, webhook: Webhook, settings: &Settings) -> Decision {
    match webhook {
        Webhook::Validate => {
            let runs = validate(set, review, &settings.context);
            decide(runs, None, settings.failure_policy)
        }
        Webhook::Mutate => {
            let (runs, patch) = mutate(set, review, &settings.context);
            decide(runs, patch, settings.failure_policy)
        }
    }
}

/// Evaluate every validating policy that may match.
pub fn validate(set: &PolicySet, review: &Review, ctx: &EvalContext) -> Vec<PolicyRun> {
    set.select(review)
        .into_iter()
        .filter(|p| p.validates())
        .map(|policy| {
            let start = Instant::now();
            let result = contained(|| policy.validate(review, ctx));
            let outcome = match result {
                Ok(v) if v.is_empty() => Outcome::Pass,
                Ok(v) => Outcome::Violations(v),
                Err(e) => Outcome::Error(e),
            };
            PolicyRun {
                policy: policy.clone(),
                outcome,
                duration: start.elapsed(),
            }
        })
        .collect()
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
    let Some(original) = review.object() else {
        return (Vec::new(), None);
    };
    let mut current: Option<Value> = None;
    let mut runs = Vec::new();
    for policy in set.select(review).into_iter().filter(|p| p.mutates()) {
        let start = Instant::now();
        let object = current.as_ref().unwrap_or(original);
        let result = contained(|| policy.mutate(review, object, ctx));
        let outcome = match result {
            Ok(Mutation {
                object: Some(mutated),
                warnings,
            }) => {
                current = Some(mutated);
                Outcome::Mutated { warnings }
            }
            Ok(Mutation {
                object: None,
                warnings,
            }) if warnings.is_empty() => Outcome::Pass,
            Ok(Mutation {
                object: None,
                warnings,
            }) => Outcome::Mutated { warnings },
            Err(e) => Outcome::Error(e),
        };
        runs.push(PolicyRun {
            policy: policy.clone(),
            outcome,
            duration: start.elapsed(),
        });
    }
    (runs, current)
}

/// Run `f`, turning a panic into an evaluation error.
fn contained<T>(f: impl FnOnce() -> Result<T, EvalError>) -> Result<T, EvalError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
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
