//! The policy model shared by every engine: what a policy is, what it returns, and how policies are loaded into an
//! immutable [`PolicySet`].

pub mod loader;
mod set;
pub mod source;
pub mod store;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::admission::Review;
use crate::select::Scope;

pub use set::{content_hash, PolicySet, PolicySummary};
pub use source::{LoadError, SourceFile, SourceRef};

/// What happens to a request when a policy's violation is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The request is denied.
    Deny,
    /// The request is allowed with a warning.
    Warn,
    /// The violation is only recorded (metrics, logs): Gatekeeper's `dryrun`, Kyverno's `Audit`.
    Audit,
}

impl Action {
    /// Lower-case name, used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deny => "deny",
            Action::Warn => "warn",
            Action::Audit => "audit",
        }
    }
}

/// What happens to a request when a policy cannot be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Deny the request with the error text (fail closed). The default.
    #[default]
    Fail,
    /// Allow the request and record the error (fail open).
    Ignore,
}

impl FromStr for FailurePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fail" => Ok(FailurePolicy::Fail),
            "ignore" => Ok(FailurePolicy::Ignore),
            other => Err(format!(
                "failure policy must be Fail or Ignore, got {other:?}"
            )),
        }
    }
}

/// Identity of a loaded policy.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInfo {
    /// The name used in messages (`[name] message`) and metrics.
    pub name: String,
    /// The policy's kind as written, e.g. `Rego`, `K8sRequiredLabels`, `ClusterPolicy`.
    pub kind: String,
    /// The engine that evaluates it, e.g. `rego`.
    pub engine: &'static str,
    /// Where it was loaded from.
    pub source: SourceRef,
    /// Its own failure policy; `None` means the server's default.
    pub failure_policy: Option<FailurePolicy>,
}

/// One violation found by a policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// The message, without the `[policy]` prefix.
    pub message: String,
    /// What to do about it.
    pub action: Action,
}

impl Violation {
    /// A violation that denies.
    pub fn deny(message: impl Into<String>) -> Self {
        Violation {
            message: message.into(),
            action: Action::Deny,
        }
    }

    /// A violation that warns.
    pub fn warn(message: impl Into<String>) -> Self {
        Violation {
            message: message.into(),
            action: Action::Warn,
        }
    }
}

/// The result of a mutating policy on one object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mutation {
    /// The mutated object, or `None` when the policy changed nothing.
    pub object: Option<Value>,
    /// Warnings to return to the client.
    pub warnings: Vec<String>,
}

/// Why a policy could not give an answer. The display text is what a fail-closed denial shows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The evaluation ran past its time limit.
    #[error("evaluation exceeded the time limit of {0:?}")]
    Timeout(Duration),
    /// The engine reported an error.
    #[error("{0}")]
    Engine(String),
    /// The policy needs data that is not available (for example cluster context).
    #[error("{0}")]
    MissingContext(String),
    /// The engine panicked; the panic was contained.
    #[error("internal error while evaluating the policy: {0}")]
    Panic(String),
}

/// Read-only cluster data a policy may consult. The server fills it from cached watches of the Kubernetes API; tests
/// and `eval` use [`NoCluster`] or fill it from files. Every method answers from memory or within a time bound.
pub trait ClusterContext: Send + Sync + fmt::Debug {
    /// The Namespace object named `name`, if known.
    fn namespace(&self, name: &str) -> Option<Value> {
        let _ = name;
        None
    }

    /// The ConfigMap `namespace/name`, if known.
    fn config_map(&self, namespace: &str, name: &str) -> Option<Value> {
        let _ = (namespace, name);
        None
    }

    /// Gatekeeper's `data.inventory`: the objects of the synced kinds, as `{"cluster": {"<group/version>":
    /// {"<Kind>": {"<name>": object}}}, "namespace": {"<namespace>": {"<group/version>": {"<Kind>": {"<name>":
    /// object}}}}}` (the core group's group/version is `v1`). `None` when no kind is synced.
    fn inventory(&self) -> Option<Arc<Value>> {
        None
    }

    /// A read-only GET on the Kubernetes API (`/api/v1/namespaces/x/pods`), as JSON.
    fn api_get(&self, path: &str) -> Result<Value, String> {
        Err(format!(
            "{path}: this evaluation has no cluster context (the Kubernetes API is not available)"
        ))
    }
}

/// No cluster: every lookup finds nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCluster;

impl ClusterContext for NoCluster {}

/// Context handed to every evaluation.
#[derive(Debug, Clone)]
pub struct EvalContext {
    /// The time limit for one policy evaluation.
    pub timeout: Duration,
    /// Cluster data (namespaces, ConfigMaps, API reads).
    pub cluster: Arc<dyn ClusterContext>,
}

impl Default for EvalContext {
    fn default() -> Self {
        EvalContext {
            timeout: DEFAULT_EVAL_TIMEOUT,
            cluster: Arc::new(NoCluster),
        }
    }
}

/// Default time limit for one policy evaluation.
pub const DEFAULT_EVAL_TIMEOUT: Duration = Duration::from_secs(1);

/// A loaded, ready-to-evaluate policy. Engines implement it; the pipeline only sees this trait.
///
/// Evaluation is pure CPU work over the review: no I/O, no shared mutable state. Implementations must be cheap to
/// call concurrently from many threads.
pub trait Policy: Send + Sync + fmt::Debug {
    /// Who this policy is.
    fn info(&self) -> &PolicyInfo;

    /// The resources this policy can possibly match. The index uses it to skip policies; it must never be narrower
    /// than what the policy matches (broader is only slower).
    fn scope(&self) -> Scope;

    /// Whether [`Policy::validate`] can find violations.
    fn validates(&self) -> bool {
        true
    }

    /// Whether [`Policy::mutate`] can change objects.
    fn mutates(&self) -> bool {
        false
    }

    /// Check the review and return every violation (an empty list when the request passes or does not match).
    fn validate(&self, review: &Review, ctx: &EvalContext) -> Result<Vec<Violation>, EvalError>;

    /// Mutate `object` (the review's object as changed by the policies before this one).
    fn mutate(
        &self,
        review: &Review,
        object: &Value,
        ctx: &EvalContext,
    ) -> Result<Mutation, EvalError> {
        let _ = (review, object, ctx);
        Ok(Mutation::default())
    }
}
