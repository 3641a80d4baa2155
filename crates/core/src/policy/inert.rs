//! A policy that never applies, for tests that need a policy only as a name: in a run, a decision, a set or a
//! metric. Compiled with the `test-util` feature.

use std::sync::Arc;

use super::{EvalContext, Evaluation, FailurePolicy, Policy, PolicyInfo, SourceRef};
use crate::admission::Review;
use crate::select::Scope;

/// A policy of kind `Test` (engine `test`, from the file `t`) that selects every request and never applies.
#[derive(Debug)]
pub struct Inert(PolicyInfo);

impl Inert {
    /// An inert policy named `name`, with its own failure policy.
    pub fn policy(name: &str, failure_policy: Option<FailurePolicy>) -> Arc<dyn Policy> {
        Arc::new(Inert(PolicyInfo {
            name: name.into(),
            kind: "Test".into(),
            engine: "test",
            source: SourceRef::file("t"),
            failure_policy,
            annotations: Default::default(),
        }))
    }
}

impl Policy for Inert {
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
