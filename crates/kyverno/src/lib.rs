//! Kyverno `ClusterPolicy` / `Policy` (`kyverno.io/v1`, `v2beta1`): validate and mutate rules with Kyverno's
//! semantics (see `../shared/reference/kyverno.md`).
//!
//! Each Kyverno policy becomes one [`KyvernoPolicy`] named after `metadata.name`. Rules run in Kyverno's order:
//! match / exclude → context entries → preconditions → the rule body. Rules on Pods are also generated for Pod
//! controllers (autogen, [`autogen`]).
//!
//! At admission:
//! - a failing validate rule whose action is `Enforce` denies (`<rule>: <message>`); `Audit` is recorded, and also
//!   returned as a warning when `emitWarning` is set. Actions follow rule `failureActionOverrides` →
//!   rule `failureAction` → spec `validationFailureActionOverrides` → spec `validationFailureAction` (default Audit);
//! - a rule error follows the policy's failure policy (`webhookConfiguration.failurePolicy`, or the deprecated
//!   `spec.failurePolicy`; default Fail);
//! - mutate rules run in order, each on the result of the one before;
//! - rule types policyctl does not implement (`validate.cel`, `validate.podSecurity`, `validate.manifests`,
//!   `generate`, `verifyImages`, `mutate.targets`, `imageRegistry` / `globalReference` context entries, CEL
//!   preconditions, expressions our JMESPath cannot compile) load with a warning and are skipped at admission.
//! - `configMap` and `apiCall` (urlPath, GET) context entries read the cluster context; without one the rule errors
//!   with "needs cluster context".
//!
//! Variables: `{{ }}` is Kyverno-flavoured JMESPath ([`crate::jmespath`]); see [`variables`].
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

// The core crate's modules under their usual names, so paths read `crate::policy::…` as before the split.
use policyctl_core::{admission, engine, policy, select};
use policyctl_jmespath as jmespath;

pub mod autogen;
pub mod cel;
pub mod conditions;
pub mod eval;
pub mod exception;
pub mod matching;
pub mod mutate;
pub mod pattern;
pub mod result;
pub mod scalar;
pub mod spec;
pub mod validate;
pub mod variables;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::admission::Review;
use crate::engine::{Built, Engine, EngineInput, LoadOptions};
use crate::policy::source::{parse_value, Document};
use crate::policy::{
    Action, ClusterContext, EnforcementPoint, EvalContext, EvalError, Evaluation, FailurePolicy,
    LoadError, Mutation as PolicyMutation, Policy, PolicyError, PolicyInfo, RuleResult, Violation,
};
use crate::select::{OpSet, Scope};
use eval::{check_conditions, load_context, Env, Lookups, Mocks};
use exception::PolicyException;
use matching::{MatchInput, UserContext};
pub use result::{PolicyResponse, RuleResponse, RuleStatus, RuleType};
use scalar::wildcard;
use spec::{ActionOverride, PolicyDocument, Rule};
use variables::{Base, Context, Mode};

/// The Kyverno engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct KyvernoEngine;

/// Whether an apiVersion/kind is a Kyverno policy this engine loads.
pub fn is_kyverno_policy(api_version: &str, kind: &str) -> bool {
    matches!(api_version, "kyverno.io/v1" | "kyverno.io/v2beta1")
        && matches!(kind, "ClusterPolicy" | "Policy")
}

impl Engine for KyvernoEngine {
    fn name(&self) -> &'static str {
        "kyverno"
    }

    fn claims(&self, api_version: &str, kind: &str) -> bool {
        is_kyverno_policy(api_version, kind) || exception::is_policy_exception(api_version, kind)
    }

    fn kinds(&self) -> Vec<&'static str> {
        vec![
            "kyverno.io/v1 ClusterPolicy",
            "kyverno.io/v1 Policy",
            "kyverno.io/v2beta1 ClusterPolicy",
            "kyverno.io/v2beta1 Policy",
            "kyverno.io/v2 PolicyException",
            "kyverno.io/v2beta1 PolicyException",
        ]
    }

    fn build(&self, input: EngineInput, _options: &LoadOptions) -> Built {
        let mut built = Built::default();
        let (exception_docs, policy_docs): (Vec<&Document>, Vec<&Document>) = input
            .documents
            .iter()
            .partition(|d| exception::is_policy_exception(&d.api_version, &d.kind));
        let mut exceptions = Vec::new();
        for doc in exception_docs {
            match PolicyException::from_document(doc) {
                Ok(e) => exceptions.push(Arc::new(e)),
                Err(err) => built.errors.push(err),
            }
        }
        let mut named = vec![false; exceptions.len()];
        for doc in policy_docs {
            match KyvernoPolicy::from_document(doc) {
                Ok((policy, warnings)) => {
                    built.warnings.extend(warnings);
                    let policy = policy.with_exceptions(&exceptions);
                    for (i, e) in exceptions.iter().enumerate() {
                        named[i] |= e.names_policy(&policy.exception_key());
                    }
                    built.policies.push(Arc::new(policy));
                }
                Err(err) => built.errors.push(err),
            }
        }
        for (e, named) in exceptions.iter().zip(named) {
            if !named {
                built.warnings.push(LoadError::new(
                    crate::policy::SourceRef::file(&e.name),
                    format!(
                        "PolicyException {} names no policy of this set; it exempts nothing",
                        e.name
                    ),
                ));
            }
        }
        built
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// The rule.
    pub spec: Rule,
    /// Why policyctl cannot run it, if it cannot.
    pub unsupported: Option<String>,
    /// The compiled `validate.cel`, when the rule has one.
    pub cel: Option<Arc<cel::CelValidation>>,
    /// The compiled `celPreconditions`, when the rule has them.
    pub cel_preconditions: Option<Arc<cel::CelPreconditions>>,
}

impl CompiledRule {
    fn is_validate(&self) -> bool {
        self.spec.validate.is_some()
    }
    fn is_mutate(&self) -> bool {
        self.spec.mutate.is_some()
    }
}

/// One Kyverno policy.
#[derive(Debug, Clone)]
pub struct KyvernoPolicy {
    info: PolicyInfo,
    namespace: Option<String>,
    rules: Vec<CompiledRule>,
    enforce: bool,
    overrides: Vec<ActionOverride>,
    emit_warning: bool,
    apply_one: bool,
    admission: bool,
    /// `spec.background`: audits evaluate the policy.
    background: bool,
    scored: bool,
    scope: Scope,
    /// The PolicyExceptions that name this policy.
    exceptions: Vec<Arc<PolicyException>>,
}

/// Which rules [`KyvernoPolicy::apply`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Mutate rules, then validate rules on the mutated resource (the `kyverno test` / `apply` flow).
    All,
    /// Validate rules only.
    Validate,
    /// Mutate rules only.
    Mutate,
}

/// Everything [`KyvernoPolicy::apply`] needs besides the review.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions<'a> {
    /// The requester (username, groups, roles, cluster roles).
    pub user: &'a UserContext,
    /// Labels of the request's namespace.
    pub namespace_labels: Option<&'a Map<String, Value>>,
    /// Mocks (testing) or the cluster (serving).
    pub lookups: Lookups<'a>,
    /// Which rules run.
    pub part: Part,
    /// The request's deadline: rules, foreach elements and expressions stop once it has passed.
    pub deadline: Option<std::time::Instant>,
}

fn is_enforce(action: &str) -> bool {
    action.eq_ignore_ascii_case("enforce")
}

fn unsupported_reason(rule: &Rule, raw: &Value) -> Option<String> {
    if let Some(v) = &rule.validate {
        if v.pod_security.is_some() {
            return Some("validate.podSecurity rules are not supported".into());
        }
        if v.manifests.is_some() {
            return Some("validate.manifests rules are not supported".into());
        }
    }
    if rule.generate.is_some() {
        return Some("generate rules are not supported".into());
    }
    if rule.verify_images.is_some() {
        return Some("verifyImages rules are not supported".into());
    }
    if let Some(m) = &rule.mutate {
        if m.targets.is_some() {
            return Some("mutate.targets (mutate existing resources) is not supported".into());
        }
    }
    let mut contexts: Vec<&spec::ContextEntry> = rule.context.iter().collect();
    if let Some(list) = rule.validate.as_ref().and_then(|v| v.foreach.as_ref()) {
        contexts.extend(list.iter().flat_map(|f| f.context.iter()));
    }
    if let Some(list) = rule.mutate.as_ref().and_then(|m| m.foreach.as_ref()) {
        contexts.extend(list.iter().flat_map(|f| f.context.iter()));
    }
    for c in contexts {
        if c.image_registry.is_some() {
            return Some(format!(
                "context entry {}: imageRegistry is not supported",
                c.name
            ));
        }
        if c.global_reference.is_some() {
            return Some(format!(
                "context entry {}: globalReference is not supported",
                c.name
            ));
        }
        if c.api_call.as_ref().is_some_and(|a| a.service.is_some()) {
            return Some(format!(
                "context entry {}: apiCall.service (external calls) is not supported",
                c.name
            ));
        }
    }
    let mut problem = None;
    check_expressions(raw, &mut problem);
    problem
}

/// Compiles a rule's `validate.cel` and `celPreconditions`; what does not compile makes the rule unsupported (with
/// the field and the compiler's message).
#[allow(clippy::type_complexity)]
fn compile_cel(
    rule: &Rule,
    unsupported: &mut Option<String>,
) -> (
    Option<Arc<cel::CelValidation>>,
    Option<Arc<cel::CelPreconditions>>,
) {
    if unsupported.is_some() {
        return (None, None);
    }
    let pre = match rule
        .cel_preconditions
        .as_ref()
        .map(cel::CelPreconditions::compile)
    {
        Some(Ok(p)) => Some(Arc::new(p)),
        Some(Err(e)) => {
            *unsupported = Some(e.to_string());
            return (None, None);
        }
        None => None,
    };
    let validation = rule.validate.as_ref().and_then(|v| {
        v.cel
            .as_ref()
            .map(|raw| cel::CelValidation::compile(raw, v.message.as_deref()))
    });
    let validation = match validation {
        Some(Ok(v)) => Some(Arc::new(v)),
        Some(Err(e)) => {
            *unsupported = Some(e.to_string());
            return (None, None);
        }
        None => None,
    };
    (validation, pre)
}

fn check_expression(expr: &str, problem: &mut Option<String>) {
    if problem.is_some() || expr.is_empty() || expr == "@" {
        return;
    }
    if expr.starts_with('$') {
        use jsonpath_rust::JsonPath;
        if let Err(e) = Value::Null.query(expr) {
            *problem = Some(format!("JSONPath {expr:?} is invalid: {e}"));
        }
        return;
    }
    if let Err(e) = crate::jmespath::Expression::compile(expr) {
        *problem = Some(format!("expression {expr:?} is not supported: {e}"));
    }
}

fn check_expressions(value: &Value, problem: &mut Option<String>) {
    match value {
        Value::String(s) => {
            for e in variables::expressions_in(s) {
                check_expression(&e, problem);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| check_expressions(v, problem)),
        Value::Object(m) => {
            for (k, v) in m {
                for e in variables::expressions_in(k) {
                    check_expression(&e, problem);
                }
                if (k == "list" || k == "jmesPath") && v.is_string() {
                    if let Some(text) = v.as_str() {
                        if !text.contains("{{") {
                            check_expression(text.trim(), problem);
                        }
                    }
                }
                check_expressions(v, problem);
            }
        }
        _ => {}
    }
}

fn scope_for(rules: &[CompiledRule]) -> Scope {
    let mut scope = Scope::default();
    for rule in rules {
        let kinds = matching::kinds(&rule.spec.matches);
        if kinds.is_empty() {
            return Scope::any();
        }
        let ops = match matching::operations(&rule.spec.matches) {
            Some(list) => list
                .iter()
                .filter_map(|o| OpSet::parse(o))
                .fold(OpSet::NONE, OpSet::union),
            None => OpSet::ALL,
        };
        for k in kinds {
            let sel = matching::parse_kind(&k);
            let group = (sel.group != "*").then_some(sel.group.as_str());
            let kind = (sel.subresource.is_none() && !sel.kind.contains(['*', '?']))
                .then_some(sel.kind.as_str());
            scope.add(group.filter(|g| !g.contains(['*', '?'])), kind, ops);
        }
    }
    scope
}

impl KyvernoPolicy {
    /// Compile a policy document; returns the policy and load warnings (unsupported rules).
    pub fn from_document(doc: &Document) -> Result<(KyvernoPolicy, Vec<LoadError>), LoadError> {
        let parsed: PolicyDocument = doc.parse()?;
        if parsed.metadata.name.is_empty() {
            return Err(doc.error_at("metadata.name", "a Kyverno policy needs a name"));
        }
        let mut warnings = Vec::new();
        let expanded = autogen::expand(&parsed.metadata.annotations, &parsed.spec.rules);
        let mut rules = Vec::with_capacity(expanded.len());
        let mut names = BTreeMap::new();
        for (i, raw) in expanded.iter().enumerate() {
            let field = match raw.get("name").and_then(Value::as_str) {
                Some(n) => format!("spec.rules[{n}]"),
                None => format!("spec.rules[{i}]"),
            };
            let mut rule: Rule = parse_value(raw).map_err(|(path, message)| {
                doc.error_at(
                    if path.is_empty() || path == "." {
                        field.clone()
                    } else {
                        format!("{field}.{path}")
                    },
                    message,
                )
            })?;
            if names.insert(rule.name.clone(), ()).is_some() {
                return Err(doc.error_at(field, format!("duplicate rule name {:?}", rule.name)));
            }
            let kinds = [
                rule.validate.is_some(),
                rule.mutate.is_some(),
                rule.generate.is_some(),
                rule.verify_images.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(doc.error_at(
                    field,
                    "a rule needs exactly one of validate, mutate, generate, verifyImages",
                ));
            }
            if let Some(v) = &mut rule.validate {
                v.static_patterns = !v
                    .pattern
                    .as_ref()
                    .is_some_and(variables::value_has_variables)
                    && !v
                        .any_pattern
                        .as_ref()
                        .is_some_and(variables::value_has_variables);
            }
            rule.matches.prepare();
            if let Some(e) = &mut rule.exclude {
                e.prepare();
            }
            let mut unsupported = unsupported_reason(&rule, raw);
            let (cel, cel_preconditions) = compile_cel(&rule, &mut unsupported);
            if let Some(reason) = &unsupported {
                if !autogen::is_autogen(&rule.name) {
                    warnings.push(doc.error_at(
                        field.clone(),
                        format!("unsupported, skipped at admission: {reason}"),
                    ));
                }
            }
            for c in &rule.context {
                if c.variable.is_none()
                    && c.config_map.is_none()
                    && c.api_call.is_none()
                    && c.image_registry.is_none()
                    && c.global_reference.is_none()
                {
                    return Err(doc.error_at(
                        format!("{field}.context[{}]", c.name),
                        "unknown context entry type",
                    ));
                }
            }
            rules.push(CompiledRule {
                spec: rule,
                unsupported,
                cel,
                cel_preconditions,
            });
        }
        let spec = &parsed.spec;
        let failure_policy = spec
            .webhook_configuration
            .as_ref()
            .and_then(|w| w.failure_policy.as_deref())
            .or(spec.failure_policy.as_deref())
            .map(|f| f.parse::<FailurePolicy>())
            .transpose()
            .map_err(|e| doc.error_at("spec.webhookConfiguration.failurePolicy", e))?
            .unwrap_or(FailurePolicy::Fail);
        let namespace = (doc.kind == "Policy").then(|| {
            parsed
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into())
        });
        let scope = scope_for(&rules);
        let policy = KyvernoPolicy {
            info: PolicyInfo {
                name: parsed.metadata.name.clone(),
                kind: doc.kind.clone(),
                engine: "kyverno",
                source: doc.source.clone(),
                failure_policy: Some(failure_policy),
                annotations: parsed.metadata.annotations.clone(),
            },
            namespace,
            enforce: spec
                .validation_failure_action
                .as_deref()
                .is_some_and(is_enforce),
            overrides: spec.validation_failure_action_overrides.clone(),
            emit_warning: spec.emit_warning.unwrap_or(false),
            apply_one: spec
                .apply_rules
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case("one")),
            admission: spec.admission.unwrap_or(true),
            background: spec.background.unwrap_or(true),
            scored: parsed
                .metadata
                .annotations
                .get("policies.kyverno.io/scored")
                .is_none_or(|s| s != "false"),
            rules,
            scope,
            exceptions: Vec::new(),
        };
        Ok((policy, warnings))
    }

    /// The same policy with the exceptions of `all` that name it.
    pub fn with_exceptions(mut self, all: &[Arc<PolicyException>]) -> Self {
        let key = self.exception_key();
        self.exceptions = all
            .iter()
            .filter(|e| e.names_policy(&key))
            .cloned()
            .collect();
        self
    }

    /// How PolicyExceptions name this policy: `name`, or `namespace/name` for a namespaced Policy.
    pub fn exception_key(&self) -> String {
        match (&self.namespace, self.info.kind.as_str()) {
            (Some(ns), "Policy") => format!("{ns}/{}", self.info.name),
            _ => self.info.name.clone(),
        }
    }

    /// The compiled rules (autogen rules included).
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// Whether failures count as `warn` (annotation `policies.kyverno.io/scored: "false"`).
    pub fn scored(&self) -> bool {
        self.scored
    }

    /// Whether a rule's failure is enforced for a resource in `namespace`.
    pub fn enforced(
        &self,
        rule: &Rule,
        namespace: &str,
        labels: Option<&Map<String, Value>>,
    ) -> bool {
        let matches = |o: &ActionOverride| {
            let ns_ok =
                o.namespaces.is_empty() || o.namespaces.iter().any(|p| wildcard(p, namespace));
            let sel_ok = o
                .namespace_selector
                .as_ref()
                .is_none_or(|s| matching::selector_matches(s, labels));
            ns_ok && sel_ok
        };
        if let Some(v) = &rule.validate {
            if let Some(o) = v.failure_action_overrides.iter().find(|o| matches(o)) {
                return is_enforce(&o.action);
            }
            if let Some(a) = &v.failure_action {
                return is_enforce(a);
            }
        }
        if let Some(o) = self.overrides.iter().find(|o| matches(o)) {
            return is_enforce(&o.action);
        }
        self.enforce
    }

    /// Run the policy on a review: mutate rules (patched resource kept), then validate rules on the result.
    pub fn apply(
        &self,
        review: &Review,
        options: &ApplyOptions<'_>,
        mocks_base: Option<&Mocks>,
    ) -> PolicyResponse {
        let mut response = PolicyResponse::default();
        let review_ns: &str = match review.namespace.as_deref() {
            Some(ns) => ns,
            None => review
                .subject()
                .and_then(|o| o.pointer("/metadata/namespace"))
                .and_then(Value::as_str)
                .unwrap_or(""),
        };
        if let Some(ns) = &self.namespace {
            if ns != review_ns {
                return response;
            }
        }
        let delete = matches!(review.operation, crate::admission::Operation::Delete);
        // The object as changed by this policy's mutate rules so far (`None`: unchanged).
        let mut patched: Option<Value> = None;
        let base = match mocks_base {
            Some(m) => Base::Ready(Arc::new(base_document(review, options.user, Some(m)))),
            None if options.user.roles.is_empty() && options.user.cluster_roles.is_empty() => {
                Base::Served(review)
            }
            None => Base::Ready(Arc::new(base_document(review, options.user, None))),
        };
        let env = Env {
            user: options.user,
            namespace_labels: options.namespace_labels,
            lookups: options.lookups,
            deadline: options.deadline,
        };
        let empty = Value::Null;
        let mut stop = false;
        let runs_mutate = matches!(options.part, Part::All | Part::Mutate);
        let runs_validate = matches!(options.part, Part::All | Part::Validate);
        for pass in [true, false] {
            if (pass && !runs_mutate) || (!pass && !runs_validate) || stop {
                continue;
            }
            for rule in &self.rules {
                if stop {
                    break;
                }
                if (pass && !rule.is_mutate()) || (!pass && rule.is_mutate()) {
                    continue;
                }
                let subject = if delete {
                    review.old_object().unwrap_or(&empty)
                } else {
                    patched.as_ref().or(review.object()).unwrap_or(&empty)
                };
                let input = MatchInput {
                    group: &review.kind.group,
                    version: &review.kind.version,
                    kind: &review.kind.kind,
                    subresource: review.sub_resource.as_deref().unwrap_or(""),
                    object: subject,
                    namespace: review_ns,
                    operation: review.operation_str(),
                    user: options.user,
                    namespace_labels: options.namespace_labels,
                };
                if !matching::matches(&rule.spec.matches, &input) {
                    continue;
                }
                if rule
                    .spec
                    .exclude
                    .as_ref()
                    .is_some_and(|e| matching::excluded(e, &input))
                {
                    continue;
                }
                if let Some(e) = self
                    .exceptions
                    .iter()
                    .find(|e| e.exempts(&self.exception_key(), &rule.spec.name, &input))
                {
                    response.rules.push(RuleResponse::new(
                        &rule.spec.name,
                        if rule.is_mutate() {
                            RuleType::Mutation
                        } else {
                            RuleType::Validation
                        },
                        RuleStatus::Skip,
                        format!("rule is skipped due to policy exception {}", e.name),
                    ));
                    continue;
                }
                let rule_type = if rule.is_mutate() {
                    RuleType::Mutation
                } else if rule.is_validate() {
                    RuleType::Validation
                } else {
                    RuleType::Other
                };
                if let Some(reason) = &rule.unsupported {
                    response.rules.push(RuleResponse::new(
                        &rule.spec.name,
                        rule_type,
                        RuleStatus::Unsupported,
                        reason.clone(),
                    ));
                    continue;
                }
                if env.expired() {
                    response.rules.push(RuleResponse::new(
                        &rule.spec.name,
                        rule_type,
                        RuleStatus::Error,
                        eval::DEADLINE_MESSAGE,
                    ));
                    stop = true;
                    continue;
                }
                let mut ctx = Context::with_base(base.clone(), delete).until(options.deadline);
                if let Some(o) = &patched {
                    mutate::set_object(&mut ctx, o);
                }
                let resp =
                    self.run_rule(rule, rule_type, &mut ctx, subject, review, review_ns, &env);
                let Some((resp, changed)) = resp else {
                    continue;
                };
                if let Some(p) = changed {
                    patched = Some(p);
                }
                if self.apply_one
                    && matches!(
                        resp.status,
                        RuleStatus::Pass | RuleStatus::Fail | RuleStatus::Error
                    )
                {
                    stop = true;
                }
                response.rules.push(resp);
            }
        }
        response.patched = patched;
        response
    }

    #[allow(clippy::too_many_arguments)]
    fn run_rule(
        &self,
        rule: &CompiledRule,
        rule_type: RuleType,
        ctx: &mut Context<'_>,
        subject: &Value,
        review: &Review,
        namespace: &str,
        env: &Env<'_>,
    ) -> Option<(RuleResponse, Option<Value>)> {
        let name = rule.spec.name.as_str();
        let error = |m: String| {
            Some((
                RuleResponse::new(name, rule_type, RuleStatus::Error, m),
                None,
            ))
        };
        let delete = matches!(review.operation, crate::admission::Operation::Delete);
        // Kyverno does not run validate.cel on DELETE.
        if rule.cel.is_some() && delete {
            return None;
        }
        if rule.cel_preconditions.is_some() || rule.cel.is_some() {
            let patched = review
                .object()
                .is_none_or(|o| !std::ptr::eq(o, subject))
                .then_some(subject);
            let input = cel::Input {
                review,
                patched: patched.filter(|_| !delete),
                namespace,
                namespace_labels: env.namespace_labels,
                limits: match env.deadline {
                    Some(d) => policyctl_cel::Limits::until(d),
                    None => policyctl_cel::Limits::default(),
                },
            };
            if let Some(pre) = &rule.cel_preconditions {
                match pre.check(&input) {
                    cel::Verdict::Pass => {}
                    cel::Verdict::Fail(m) => {
                        return Some((
                            RuleResponse::new(name, rule_type, RuleStatus::Skip, m),
                            None,
                        ))
                    }
                    cel::Verdict::Error(m) => return error(m),
                }
            }
            if let Some(c) = &rule.cel {
                let resp = match c.validate(&input) {
                    cel::Verdict::Pass => RuleResponse::new(
                        name,
                        rule_type,
                        RuleStatus::Pass,
                        format!("Validation rule '{name}' passed."),
                    ),
                    cel::Verdict::Fail(m) => {
                        RuleResponse::new(name, rule_type, RuleStatus::Fail, m)
                    }
                    cel::Verdict::Error(m) => return error(m),
                };
                return Some((resp, None));
            }
        }
        if let Err(e) = load_context(&rule.spec.context, ctx, env, name) {
            return error(format!("failed to load context: {e}"));
        }
        if let Some(pre) = &rule.spec.preconditions {
            match check_conditions(pre, ctx, Mode::Lenient) {
                Err(e) => return error(format!("failed to evaluate preconditions: {e}")),
                Ok(o) if !o.holds => {
                    let msg = if o.messages.is_empty() {
                        "preconditions not met".to_string()
                    } else {
                        format!("preconditions not met; {}", o.messages)
                    };
                    return Some((
                        RuleResponse::new(name, rule_type, RuleStatus::Skip, msg),
                        None,
                    ));
                }
                Ok(_) => {}
            }
        }
        if let Some(m) = &rule.spec.mutate {
            if delete {
                return None;
            }
            let (resp, patched) = mutate::mutate(name, m, ctx, subject, env);
            return Some((resp, patched));
        }
        let v = rule.spec.validate.as_ref()?;
        let resp = validate::validate(name, v, ctx, subject, delete, env)?;
        // Pre-existing violations are allowed on UPDATE for enforced pattern rules.
        if resp.status == RuleStatus::Fail
            && (v.pattern.is_some() || v.any_pattern.is_some())
            && matches!(review.operation, crate::admission::Operation::Update)
            && v.allow_existing_violations.unwrap_or(true)
            && self.enforced(&rule.spec, namespace, env.namespace_labels)
        {
            if let Some(old) = review.old_object() {
                let mut old_ctx = ctx.clone();
                mutate::set_object(&mut old_ctx, old);
                if let Some(old_resp) = validate::validate(name, v, &old_ctx, old, false, env) {
                    if old_resp.status == RuleStatus::Fail {
                        return Some((
                            RuleResponse::new(
                                name,
                                rule_type,
                                RuleStatus::Skip,
                                "skipping the rule evaluation as pre-existing violations are allowed",
                            ),
                            None,
                        ));
                    }
                }
            }
        }
        Some((resp, None))
    }

    fn serving_apply(&self, review: &Review, ctx: &EvalContext, part: Part) -> PolicyResponse {
        let env = serving_env(review, ctx);
        let cluster: &dyn ClusterContext = ctx.cluster.as_ref();
        // A test's cluster context carries the Values file: its values replace lookups and set variables.
        let overrides = cluster.overrides();
        let options = ApplyOptions {
            user: &env.user,
            namespace_labels: env.labels.as_ref(),
            lookups: match overrides {
                Some(values) => Lookups::Mocks(values),
                None => Lookups::Cluster(cluster),
            },
            part,
            deadline: Some(ctx.deadline.instant()),
        };
        self.apply(review, &options, overrides)
    }

    /// Per-rule results as a policy report states them (an unscored policy's failures are warnings), when the
    /// context explains.
    fn explained(&self, response: &PolicyResponse, ctx: &EvalContext) -> Vec<RuleResult> {
        if !ctx.explain {
            return Vec::new();
        }
        response
            .rules
            .iter()
            .map(|r| RuleResult {
                rule: r.name.clone(),
                status: if r.status == RuleStatus::Fail && !self.scored {
                    RuleStatus::Warn
                } else {
                    r.status
                },
                message: r.message.clone(),
            })
            .collect()
    }
}

/// What every Kyverno policy needs to know about a served review besides the review: computed once per review.
struct ServingEnv {
    user: UserContext,
    labels: Option<Map<String, Value>>,
}

fn serving_env(review: &Review, ctx: &EvalContext) -> Arc<ServingEnv> {
    review.cached(|r| ServingEnv {
        user: serving_user(r, ctx),
        labels: r
            .namespace
            .as_deref()
            .and_then(|ns| ctx.cluster.namespace(ns))
            .and_then(|n| {
                n.pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .cloned()
            }),
    })
}

/// The base context document of a served review, shared by every Kyverno policy through [`Review::cached`].
struct ServingBase(Arc<Value>);

/// The base context document of a served review, built on first use.
pub(crate) fn serving_base(review: &Review) -> Arc<Value> {
    review
        .cached(|r| ServingBase(Arc::new(base_document(r, &review_user(r), None))))
        .0
        .clone()
}

/// The requester of a served review, with the roles the cluster context knows (the webhook resolves none; a test's
/// UserInfo file supplies them).
fn serving_user(review: &Review, ctx: &EvalContext) -> UserContext {
    let (roles, cluster_roles) = ctx.cluster.roles(&review.user_info).unwrap_or_default();
    UserContext {
        roles,
        cluster_roles,
        ..review_user(review)
    }
}

/// The requester as the review names it, without roles (the shared base document is built only for reviews whose
/// user has none; see [`KyvernoPolicy::apply`]).
fn review_user(review: &Review) -> UserContext {
    UserContext {
        username: review.user_info.username.clone(),
        groups: review.user_info.groups.clone(),
        roles: Vec::new(),
        cluster_roles: Vec::new(),
    }
}

/// The base context document of a review: `request` (with `roles` / `clusterRoles`), service account and images,
/// plus the mocks' global and resource values.
pub fn base_document(review: &Review, user: &UserContext, mocks: Option<&Mocks>) -> Value {
    let strings = |list: &[String]| Value::Array(list.iter().cloned().map(Value::String).collect());
    let mut request = review.request().clone();
    if let Some(map) = request.as_object_mut() {
        map.insert("roles".into(), strings(&user.roles));
        map.insert("clusterRoles".into(), strings(&user.cluster_roles));
        let has_user = map
            .get("userInfo")
            .and_then(|u| u.get("username"))
            .and_then(Value::as_str)
            .is_some_and(|u| !u.is_empty());
        if !has_user && (!user.username.is_empty() || !user.groups.is_empty()) {
            let mut info = Map::new();
            info.insert("username".into(), Value::String(user.username.clone()));
            info.insert("groups".into(), strings(&user.groups));
            map.insert("userInfo".into(), Value::Object(info));
        }
    }
    let (sa_ns, sa_name) = variables::service_account(&user.username);
    let images = review
        .subject()
        .map(variables::images_of)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut doc = Map::new();
    doc.insert("request".into(), request);
    doc.insert("serviceAccountName".into(), Value::String(sa_name));
    doc.insert("serviceAccountNamespace".into(), Value::String(sa_ns));
    doc.insert("images".into(), images);
    let mut doc = Value::Object(doc);
    if let Some(m) = mocks {
        let mut ctx = Context::new(Arc::new(doc), false);
        for (k, v) in m.global.iter().chain(m.resource.iter()) {
            ctx.add_path(k, v.clone());
        }
        doc = (*ctx.document()).clone();
    }
    doc
}

impl Policy for KyvernoPolicy {
    fn info(&self) -> &PolicyInfo {
        &self.info
    }

    fn scope(&self) -> Scope {
        self.scope.clone()
    }

    fn validates(&self) -> bool {
        self.admission
            && self
                .rules
                .iter()
                .any(|r| r.is_validate() && r.unsupported.is_none())
    }

    fn mutates(&self) -> bool {
        self.admission
            && self
                .rules
                .iter()
                .any(|r| r.is_mutate() && r.unsupported.is_none())
    }

    fn validate(&self, review: &Review, ctx: &EvalContext) -> Evaluation {
        // `background: false`: background scans (audits) leave the policy out, as Kyverno does.
        if ctx.point == EnforcementPoint::Audit && !self.background {
            return Evaluation::skip();
        }
        let response = self.serving_apply(review, ctx, Part::Validate);
        let namespace = review.namespace.as_deref().unwrap_or_default();
        let env = serving_env(review, ctx);
        let labels = env.labels.as_ref();
        let mut out = Evaluation {
            rules: self.explained(&response, ctx),
            ..Evaluation::skip()
        };
        for r in &response.rules {
            let rule = self.rules.iter().find(|c| c.spec.name == r.name);
            if r.status != RuleStatus::Skip {
                out.applied = true;
            }
            // The action the rule declares: Enforce denies; Audit records, and warns too with emitWarning.
            let enforce = rule.is_some_and(|c| self.enforced(&c.spec, namespace, labels));
            let message = format!("{}: {}", r.name, r.message);
            match r.status {
                RuleStatus::Fail if enforce => out.violations.push(Violation::deny(message)),
                RuleStatus::Fail => {
                    if self.emit_warning {
                        out.violations.push(Violation::warn(message.clone()));
                    }
                    out.violations.push(Violation {
                        message,
                        action: Action::Audit,
                    });
                }
                RuleStatus::Error => {
                    // Kyverno evaluates Audit policies after the response, so an Audit rule's error can never
                    // block; the decide stage sends an enforced rule's error to the failure policy.
                    let action = if enforce {
                        Action::Deny
                    } else if self.emit_warning {
                        Action::Warn
                    } else {
                        Action::Audit
                    };
                    out.errors.push(PolicyError {
                        error: rule_error(&message, ctx),
                        action,
                    });
                }
                RuleStatus::Warn => out.violations.push(Violation::warn(message)),
                _ => {}
            }
        }
        out
    }

    fn mutate(&self, review: &Review, ctx: &EvalContext) -> PolicyMutation {
        let response = self.serving_apply(review, ctx, Part::Mutate);
        let mut out = PolicyMutation {
            rules: self.explained(&response, ctx),
            ..PolicyMutation::default()
        };
        for r in &response.rules {
            if r.status != RuleStatus::Skip {
                out.applied = true;
            }
            // A mutate rule's error follows the policy's failure policy, in the decide stage: under Fail the
            // request is denied, under Ignore it is admitted with a warning saying what failed.
            if r.status == RuleStatus::Error {
                out.errors.push(PolicyError::enforced(rule_error(
                    &format!("{}: {}", r.name, r.message),
                    ctx,
                )));
            }
            if self.emit_warning && r.status == RuleStatus::Pass {
                out.warnings.push(format!(
                    "policy {}.{}: {}",
                    self.info.name, r.name, r.message
                ));
            }
        }
        out.object = response.patched;
        out
    }
}

/// A rule's error text as a typed error: the deadline is a time-out, anything else an engine error.
fn rule_error(message: &str, ctx: &EvalContext) -> EvalError {
    if message.contains(eval::DEADLINE_MESSAGE) || message.contains("request deadline exceeded") {
        EvalError::Timeout(ctx.deadline.budget())
    } else if message.contains("actual cost limit exceeded") {
        EvalError::Budget(message.to_string())
    } else {
        EvalError::Engine(message.to_string())
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cel_tests;
