//! The policy model shared by every engine: what a policy is, what it returns, and how policies are loaded into an
//! immutable [`PolicySet`].

mod api;
#[cfg(any(test, feature = "test-util"))]
pub mod inert;
pub mod kinds;
pub mod loader;
mod set;
pub mod source;
pub mod store;
pub mod strict;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::admission::Review;
use crate::select::Scope;

pub use api::{ApiReadError, PathRule, SharedSource};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
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
    /// `metadata.annotations` of the policy document (severity and category for reports, e.g.
    /// `policies.kyverno.io/severity`).
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// One violation found by a policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// The message, without the `[policy]` prefix.
    pub message: String,
    /// What to do about it.
    pub action: Action,
    /// The status reason of a denial (ValidatingAdmissionPolicy `reason`); none: `Forbidden`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<crate::admission::Reason>,
}

impl Violation {
    /// A violation that denies.
    pub fn deny(message: impl Into<String>) -> Self {
        Violation {
            message: message.into(),
            action: Action::Deny,
            reason: None,
        }
    }

    /// A violation that warns.
    pub fn warn(message: impl Into<String>) -> Self {
        Violation {
            message: message.into(),
            action: Action::Warn,
            reason: None,
        }
    }
}

/// The result of one rule (or constraint) on one resource, as a policy report states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleStatus {
    /// The rule passed (or patched the resource).
    Pass,
    /// The rule failed.
    Fail,
    /// The rule did not apply (preconditions, conditional anchors, nothing to patch, an exception).
    Skip,
    /// A failure reported as a warning (Kyverno policies annotated `policies.kyverno.io/scored: "false"`).
    Warn,
    /// The rule could not be evaluated.
    Error,
    /// policyctl cannot evaluate this rule (a feature it does not implement); never a pass.
    Unsupported,
}

impl RuleStatus {
    /// The lower-case name (`pass`, `fail`, ...), as policy reports and `kyverno test` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleStatus::Pass => "pass",
            RuleStatus::Fail => "fail",
            RuleStatus::Skip => "skip",
            RuleStatus::Warn => "warn",
            RuleStatus::Error => "error",
            RuleStatus::Unsupported => "unsupported",
        }
    }
}

/// One rule's result, reported when the evaluation is asked to explain itself ([`EvalContext::explain`]): what
/// `policyctl test` compares with expected results and what a policy report lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleResult {
    /// The rule's name (Kyverno autogen names included).
    pub rule: String,
    /// Its result.
    pub status: RuleStatus,
    /// Its message.
    pub message: String,
}

/// Values that replace cluster lookups and set variables, for tests (a `kyverno test` Values file). Served by a
/// test's [`ClusterContext`]; the webhook has none.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Global values: dotted paths added to every rule's context.
    pub global: serde_json::Map<String, Value>,
    /// Rule-level values by rule name: context-entry values and other variables.
    pub rules: std::collections::BTreeMap<String, serde_json::Map<String, Value>>,
    /// Rule-level per-iteration values by rule name: the i-th element of each list is the variable's value in
    /// iteration i of a foreach.
    pub foreach: std::collections::BTreeMap<String, serde_json::Map<String, Value>>,
    /// Values of the resource under review.
    pub resource: serde_json::Map<String, Value>,
}

/// Why a policy could not give an answer. The display text is what a fail-closed denial shows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The request's deadline passed before the policy finished (or before it started).
    #[error("evaluation did not finish within the request deadline of {0:?}")]
    Timeout(Duration),
    /// The evaluation hit a work budget (steps, copies, size) that bounds what a policy may cost.
    #[error("evaluation budget exceeded: {0}")]
    Budget(String),
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

impl EvalError {
    /// A short label for metrics: `timeout` for time-outs, `error` for everything else.
    pub fn label(&self) -> &'static str {
        match self {
            EvalError::Timeout(_) => "timeout",
            _ => "error",
        }
    }
}

/// An evaluation error together with the action the failing rule or constraint declares. Engines report it; the
/// decide stage alone turns it into an answer: `Deny` goes to the failure policy (per policy, else the server's),
/// `Warn` becomes a warning and `Audit` a record, so a record-only policy can never block because of an error.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyError {
    /// What went wrong.
    pub error: EvalError,
    /// The action of the rule or constraint that failed.
    pub action: Action,
}

impl PolicyError {
    /// An error of an enforcing rule: it follows the failure policy.
    pub fn enforced(error: EvalError) -> Self {
        PolicyError {
            error,
            action: Action::Deny,
        }
    }
}

/// The facts a policy reports about one review. Engines never decide: they say whether the policy applied, what it
/// found with the action each finding declares, and what failed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evaluation {
    /// Whether the policy applied to the review (matched it). A policy that did not apply is a skip, not a pass.
    pub applied: bool,
    /// Violations found.
    pub violations: Vec<Violation>,
    /// Errors met while evaluating.
    pub errors: Vec<PolicyError>,
    /// Per-rule results, when the context asks for them ([`EvalContext::explain`]).
    pub rules: Vec<RuleResult>,
}

impl Evaluation {
    /// The policy did not apply to the review.
    pub fn skip() -> Self {
        Evaluation::default()
    }

    /// The policy applied and found `violations`.
    pub fn found(violations: Vec<Violation>) -> Self {
        Evaluation {
            applied: true,
            violations,
            ..Evaluation::default()
        }
    }

    /// The policy applied and could not be evaluated; the error follows the failure policy.
    pub fn failed(error: EvalError) -> Self {
        Evaluation {
            applied: true,
            errors: vec![PolicyError::enforced(error)],
            ..Evaluation::default()
        }
    }
}

impl Evaluation {
    /// The evaluation as a `Result`, the way the decide stage would show it: the violations, with each error of a
    /// warn/audit rule as a violation of that action, or the first error of an enforcing rule.
    pub fn into_result(self) -> Result<Vec<Violation>, EvalError> {
        let mut violations = self.violations;
        for PolicyError { error, action } in self.errors {
            match action {
                Action::Deny => return Err(error),
                action => violations.push(Violation {
                    message: error.to_string(),
                    action,
                    reason: None,
                }),
            }
        }
        Ok(violations)
    }
}

/// Unit tests' view of [`Policy::validate`] as a `Result` ([`Evaluation::into_result`]), for the engine crates'
/// tests (feature `test-util`).
#[cfg(any(test, feature = "test-util"))]
pub trait Check {
    /// `validate(..).into_result()`.
    fn check(&self, review: &Review, ctx: &EvalContext) -> Result<Vec<Violation>, EvalError>;

    /// `mutate(..)`, with the first error as `Err`.
    fn mutate_checked(&self, review: &Review, ctx: &EvalContext) -> Result<Mutation, EvalError>;
}

#[cfg(any(test, feature = "test-util"))]
impl<T: Policy + ?Sized> Check for T {
    fn check(&self, review: &Review, ctx: &EvalContext) -> Result<Vec<Violation>, EvalError> {
        self.validate(review, ctx).into_result()
    }

    fn mutate_checked(&self, review: &Review, ctx: &EvalContext) -> Result<Mutation, EvalError> {
        let mutation = self.mutate(review, ctx);
        match mutation.errors.first() {
            Some(e) => Err(e.error.clone()),
            None => Ok(mutation),
        }
    }
}

/// The result of a mutating policy on one object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mutation {
    /// Whether the policy applied to the review.
    pub applied: bool,
    /// The mutated object, or `None` when the policy changed nothing.
    pub object: Option<Value>,
    /// Warnings to return to the client.
    pub warnings: Vec<String>,
    /// Errors met while mutating. A mutation with an enforced error is discarded under `Fail`; under `Ignore` what
    /// the other rules changed is kept.
    pub errors: Vec<PolicyError>,
    /// Per-rule results, when the context asks for them ([`EvalContext::explain`]).
    pub rules: Vec<RuleResult>,
}

impl Mutation {
    /// The policy applied and could not be evaluated.
    pub fn failed(error: EvalError) -> Self {
        Mutation {
            applied: true,
            errors: vec![PolicyError::enforced(error)],
            ..Mutation::default()
        }
    }
}

/// The moment by which every policy of one request must have answered. One per request, created when the request
/// arrives and shared by every policy and engine of it: regorus gets the time left as its timer, the Kyverno engine
/// and the JMESPath interpreter check it in their loops, and the pipeline checks it between policies. Running out
/// is [`EvalError::Timeout`], handled by the failure policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        let now = Instant::now();
        Deadline {
            at: now.checked_add(budget).unwrap_or(now),
            budget,
        }
    }

    /// A deadline `budget` after `start` (the moment the request arrived).
    pub fn starting(start: Instant, budget: Duration) -> Self {
        Deadline {
            at: start.checked_add(budget).unwrap_or(start),
            budget,
        }
    }

    /// The instant itself.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// This deadline, or `at` when that comes first (the budget, for messages, stays the request's). The webhook's
    /// first attempt on an async worker runs under a cut deadline (see the server's `inline` module).
    pub fn no_later_than(&self, at: Instant) -> Deadline {
        Deadline {
            at: self.at.min(at),
            budget: self.budget,
        }
    }

    /// The whole budget of the request (for messages).
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Time left; zero once passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// `Err(Timeout)` once the deadline has passed.
    pub fn check(&self) -> Result<(), EvalError> {
        if self.expired() {
            Err(EvalError::Timeout(self.budget))
        } else {
            Ok(())
        }
    }
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

    /// Why `data.inventory` cannot be trusted to fill (a synced kind the API server forbids us to list or watch), if
    /// it cannot. A policy that reads the inventory then fails under its failure policy instead of checking against
    /// objects that will never arrive. A kind still being listed, or not served (yet), is not a problem.
    fn inventory_problem(&self) -> Option<String> {
        None
    }

    /// The roles and cluster roles bound to `user` (Kyverno's `roles` / `clusterRoles` match), when known. The
    /// webhook does not resolve RBAC bindings; a test's UserInfo file supplies them.
    fn roles(&self, user: &crate::admission::UserInfo) -> Option<(Vec<String>, Vec<String>)> {
        let _ = user;
        None
    }

    /// Values that replace lookups and set variables (tests). `None` when serving.
    fn overrides(&self) -> Option<&Overrides> {
        None
    }

    /// A read-only GET on the Kubernetes API (`/api/v1/namespaces/x/pods`), as JSON.
    fn api_get(&self, path: &str) -> Result<Value, ApiReadError> {
        Err(ApiReadError::NoCluster {
            path: path.to_string(),
        })
    }

    /// An image's metadata (Kyverno's CEL `image.GetMetadata`): a test's context file supplies it; the webhook does
    /// not query registries.
    fn image_data(&self, image: &str) -> Option<Value> {
        let _ = image;
        None
    }
}

/// No cluster: every lookup finds nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCluster;

impl ClusterContext for NoCluster {}

/// Where an evaluation happens. Engines that scope behaviour by it read it from the [`EvalContext`]: Gatekeeper
/// scopes enforcement actions by enforcement point (`validation.gatekeeper.sh`, `audit.gatekeeper.sh`,
/// `gator.gatekeeper.sh`) and filters by a template's operations only in the webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnforcementPoint {
    /// An admission request from the API server.
    #[default]
    Webhook,
    /// A scan of existing resources.
    Audit,
    /// A policy test (gator suites).
    Test,
}

/// What a payload that is not an admission request is (Kyverno ValidatingPolicy `spec.evaluation.mode`): policies
/// of a payload mode evaluate only payloads of that mode, never admission requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadMode {
    /// Any JSON document (`evaluation.mode: JSON`): `object` is the payload.
    Json,
    /// A plain HTTP authorization request (`evaluation.mode: HTTP`, Kyverno Authz's `http.CheckRequest`).
    Http,
    /// An Envoy external authorization request (`evaluation.mode: Envoy`, Envoy's `CheckRequest`).
    Envoy,
}

impl PayloadMode {
    /// The mode as Kyverno spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadMode::Json => "JSON",
            PayloadMode::Http => "HTTP",
            PayloadMode::Envoy => "Envoy",
        }
    }

    /// Parses Kyverno's spelling (`JSON`, `HTTP`, `Envoy`); `Kubernetes` and unknown modes are `None`.
    pub fn parse(mode: &str) -> Option<PayloadMode> {
        match mode {
            "JSON" => Some(PayloadMode::Json),
            "HTTP" => Some(PayloadMode::Http),
            "Envoy" => Some(PayloadMode::Envoy),
            _ => None,
        }
    }
}

impl fmt::Display for PayloadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Context handed to every evaluation of one request.
#[derive(Debug, Clone)]
pub struct EvalContext {
    /// The request's deadline, shared by all its policies.
    pub deadline: Deadline,
    /// Cluster data (namespaces, ConfigMaps, API reads).
    pub cluster: Arc<dyn ClusterContext>,
    /// Explain: evaluate every selected policy (even those with nothing to do at admission, such as Kyverno
    /// `admission: false` policies or unsupported rules) and report per-rule results. `policyctl test` and audits
    /// explain; the webhook does not.
    pub explain: bool,
    /// Where the evaluation happens.
    pub point: EnforcementPoint,
}

impl EvalContext {
    /// A context whose deadline is `timeout` from now, over `cluster`.
    pub fn new(timeout: Duration, cluster: Arc<dyn ClusterContext>) -> Self {
        EvalContext {
            deadline: Deadline::after(timeout),
            cluster,
            explain: false,
            point: EnforcementPoint::Webhook,
        }
    }

    /// The time limit for one engine evaluation: what is left of the request's deadline, at most `cap`.
    pub fn time_limit(&self, cap: Duration) -> Duration {
        self.deadline.remaining().min(cap)
    }
}

impl Default for EvalContext {
    /// A context with the default request deadline starting now and no cluster (tests, one-off evaluations).
    fn default() -> Self {
        EvalContext::new(DEFAULT_REQUEST_TIMEOUT, Arc::new(NoCluster))
    }
}

/// Default time limit for one policy evaluation (a cap inside the request's deadline).
pub const DEFAULT_EVAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Default deadline of one request: comfortably below the webhook time-outs that deploy/ sets (3 s for mutate,
/// 5 s for validate), so the API server always gets our answer rather than its own time-out.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

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

    /// Check the review and report the facts: whether the policy applied, its violations, its errors. Never decides
    /// anything: enforcement and failure policies are the decide stage's.
    fn validate(&self, review: &Review, ctx: &EvalContext) -> Evaluation;

    /// Mutate the review's object. In a mutation chain the pipeline hands each policy a review whose object is the one
    /// the policies before it produced (built once per change, never per policy); `Mutation::object` is `Some` only
    /// when this policy changed it.
    fn mutate(&self, review: &Review, ctx: &EvalContext) -> Mutation {
        let _ = (review, ctx);
        Mutation::default()
    }

    /// The payloads this policy evaluates instead of admission requests (Kyverno ValidatingPolicy
    /// `evaluation.mode` JSON, HTTP or Envoy); `None` for admission policies.
    fn payload_mode(&self) -> Option<PayloadMode> {
        None
    }

    /// Check a payload of [`Policy::payload_mode`]'s mode and report the facts, as [`Policy::validate`] does for a
    /// review. Policies without a payload mode do not apply.
    fn validate_payload(&self, payload: &Value, ctx: &EvalContext) -> Evaluation {
        let _ = (payload, ctx);
        Evaluation::skip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_cut_to_an_earlier_instant_keeps_the_requests_budget() {
        let deadline = Deadline::after(Duration::from_secs(60));
        let soon = Instant::now();
        let cut = deadline.no_later_than(soon);
        assert_eq!(cut.instant(), soon);
        assert!(cut.expired());
        assert_eq!(
            cut.check(),
            Err(EvalError::Timeout(Duration::from_secs(60)))
        );
        // A later instant does not move it.
        let later = deadline.instant() + Duration::from_secs(1);
        assert_eq!(deadline.no_later_than(later).instant(), deadline.instant());
    }
}
