//! Plain Rego modules, OPA kube-mgmt style.
//!
//! Every `.rego` file of a policy set is compiled into one regorus engine, so modules can import each other
//! (`import data.lib.k8s`). Each package that defines at least one of these rules becomes one policy named after the
//! package (`kubernetes.admission`):
//!
//! - `deny`: a set of messages; any message denies the request;
//! - `warn`: a set of messages returned as warnings;
//! - `patch`: a set (or array) of JSONPatch operations on the object, applied by `/mutate`.
//!
//! `input` is the whole `AdmissionReview`. Modules are Rego v1 (OPA 1.x syntax); a module opts in to v0 with the
//! directive comment `# policyctl: rego.v0`. Directives are comment lines of the form `# policyctl: key[=value]`:
//!
//! | directive | meaning |
//! |---|---|
//! | `rego.v0` | parse this module as Rego v0 |
//! | `failure-policy=Fail` / `Ignore` | what happens to a request when the package cannot be evaluated |
//!
//! `http.send` is rejected when loading: regorus only has a stub that is always undefined, which would silently
//! turn a check into an allow.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

// The core crate's modules under their usual names, so paths read `crate::policy::…` as before the split.
use policyctl_core::{admission, engine, policy, select};

pub use policyctl_regorus as support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::admission::Review;
use crate::engine::{Built, Engine, EngineInput, LoadOptions};
use crate::policy::{
    Action, EvalContext, EvalError, Evaluation, FailurePolicy, LoadError, Mutation, Policy,
    PolicyInfo, RuleResult, RuleStatus, SourceFile, SourceRef, Violation,
};
use crate::select::Scope;

/// The plain-Rego engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegoEngine;

/// Directives read from a module's `# policyctl:` comments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directives {
    /// Parse as Rego v0.
    pub rego_v0: bool,
    /// The package's failure policy.
    pub failure_policy: Option<FailurePolicy>,
}

/// Read the `# policyctl:` directives of a module.
pub fn directives(file: &SourceFile) -> Result<Directives, LoadError> {
    let mut out = Directives::default();
    for (line_no, line) in file.content.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix('#') else {
            continue;
        };
        let Some(directive) = rest.trim_start().strip_prefix("policyctl:") else {
            continue;
        };
        let directive = directive.trim();
        let (key, value) = match directive.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (directive, None),
        };
        let at = |msg: String| {
            LoadError::at(
                SourceRef::file(&file.origin),
                format!("line {}", line_no + 1),
                msg,
            )
        };
        match (key, value) {
            ("rego.v0", None) => out.rego_v0 = true,
            ("failure-policy", Some(v)) => out.failure_policy = Some(v.parse().map_err(at)?),
            _ => {
                return Err(at(format!(
                "unknown directive {directive:?}; known: `rego.v0`, `failure-policy=Fail|Ignore`"
            )))
            }
        }
    }
    Ok(out)
}

/// Which of the webhook rules a package defines.
#[derive(Debug, Clone, Default)]
struct Rules {
    deny: bool,
    warn: bool,
    patch: bool,
}

impl Engine for RegoEngine {
    fn name(&self) -> &'static str {
        "rego"
    }

    fn claims(&self, _api_version: &str, _kind: &str) -> bool {
        false
    }

    fn claims_file(&self, file: &SourceFile) -> bool {
        file.is_rego() && !file.origin.ends_with("_test.rego")
    }

    fn kinds(&self) -> Vec<&'static str> {
        vec!["*.rego modules"]
    }

    fn build(&self, input: EngineInput, options: &LoadOptions) -> Built {
        let (mut built, policies) = build_packages(input, options);
        built
            .policies
            .extend(policies.into_iter().map(|p| p as Arc<dyn Policy>));
        built
    }
}

/// Compile a set of modules into one policy per package with webhook rules (the problems go into the [`Built`]).
fn build_packages(input: EngineInput, options: &LoadOptions) -> (Built, Vec<Arc<RegoPolicy>>) {
    let mut built = Built::default();
    let mut policies: Vec<Arc<RegoPolicy>> = Vec::new();
    let mut engine = support::new_engine(options.eval_timeout);
    // package path -> (rules, failure policy, first source)
    let mut packages: BTreeMap<String, (Rules, Option<FailurePolicy>, SourceRef)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for file in &input.files {
        let source = SourceRef::file(&file.origin);
        let directives = match directives(file) {
            Ok(d) => d,
            Err(err) => {
                built.errors.push(err);
                continue;
            }
        };
        if let Some(err) = support::forbidden_builtin(&file.content)
            .or_else(|| support::nesting_problem(&file.content))
        {
            built.errors.push(LoadError::new(source, err));
            continue;
        }
        // The regorus/OPA divergences are rewritten as for Gatekeeper templates (same line count, so errors
        // still point at the user's lines); the rare ones are reported as warnings.
        let checked = support::divergence::check(&file.content, directives.rego_v0);
        built.warnings.extend(
            checked
                .warnings
                .into_iter()
                .map(|warning| LoadError::new(source.clone(), warning)),
        );
        engine.set_rego_v0(directives.rego_v0);
        let package = match engine.add_policy(file.origin.clone(), checked.source) {
            Ok(package) => package,
            Err(err) => {
                let text = err.to_string();
                let hint = if !directives.rego_v0 && text.contains("keyword is required") {
                    " (this looks like Rego v0 syntax: add the line `# policyctl: rego.v0` to parse the module \
                     as OPA 0.x Rego, or add `if` / `contains` for Rego v1)"
                } else {
                    ""
                };
                built.errors.push(LoadError::new(
                    source,
                    format!("Rego does not compile: {text}{hint}"),
                ));
                continue;
            }
        };
        let mut rules = Rules::default();
        for (name, flag) in [
            ("deny", &mut rules.deny),
            ("warn", &mut rules.warn),
            ("patch", &mut rules.patch),
        ] {
            *flag = engine
                .has_declared_rule_rooted_at(&file.origin, name)
                .unwrap_or(false);
        }
        let entry = packages.entry(package.clone()).or_insert_with(|| {
            order.push(package.clone());
            (Rules::default(), None, source.clone())
        });
        entry.0.deny |= rules.deny;
        entry.0.warn |= rules.warn;
        entry.0.patch |= rules.patch;
        if directives.failure_policy.is_some() {
            if entry.1.is_some() && entry.1 != directives.failure_policy {
                built.errors.push(LoadError::new(
                    source,
                    format!("package {package} is given two different failure policies"),
                ));
            }
            entry.1 = directives.failure_policy;
        }
    }
    if !built.errors.is_empty() {
        return (built, policies);
    }
    // What regorus would only find when a rule runs: undefined functions, imports of packages the set does not
    // have, `data` references that name nothing (plain Rego gets no data besides its modules).
    let unresolved = support::check::unresolved(engine.get_modules(), &[]);
    if !unresolved.is_empty() {
        built.errors.extend(unresolved.into_iter().map(|u| {
            LoadError::new(
                SourceRef::file(&u.file),
                format!("line {}: {}", u.line, u.message),
            )
        }));
        return (built, policies);
    }
    let Some(first) = order.iter().find(|p| {
        let rules = &packages[*p].0;
        rules.deny || rules.warn || rules.patch
    }) else {
        return (built, policies);
    };
    // Prepare once: analysis runs here, and every per-request clone starts prepared.
    let probe_rule = {
        let rules = &packages[first].0;
        let name = if rules.deny {
            "deny"
        } else if rules.warn {
            "warn"
        } else {
            "patch"
        };
        format!("{first}.{name}")
    };
    let compiled = match engine.compile_with_entrypoint(&probe_rule.as_str().into()) {
        Ok(compiled) => compiled,
        Err(err) => {
            let origin = input
                .files
                .iter()
                .find(|f| err.to_string().contains(&f.origin))
                .or(input.files.first());
            let source = SourceRef::file(origin.map(|f| f.origin.as_str()).unwrap_or("<rego>"));
            built.errors.push(LoadError::new(
                source,
                format!("Rego does not compile: {err}"),
            ));
            return (built, policies);
        }
    };
    let engine = Arc::new(engine);
    for package in order {
        let (rules, failure_policy, source) = &packages[&package];
        if !(rules.deny || rules.warn || rules.patch) {
            continue;
        }
        let name = package
            .strip_prefix("data.")
            .unwrap_or(&package)
            .to_string();
        let deny = rules.deny.then(|| format!("{package}.deny"));
        let warn = rules.warn.then(|| format!("{package}.warn"));
        let patch = rules.patch.then(|| format!("{package}.patch"));
        // The package's rules on the VM; the interpreter only when the VM compiler rejects them (e.g. `with`).
        let entry_points: Vec<&str> = [&deny, &warn, &patch]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let (vm, interpreter_reason) =
            match support::vm::Vm::compile(&compiled, &entry_points, "package") {
                Ok(compiled) => compiled,
                Err(recursive) => {
                    built.errors.push(LoadError::new(
                        source.clone(),
                        format!("Rego does not compile: {recursive}"),
                    ));
                    continue;
                }
            };
        if let Some(reason) = &interpreter_reason {
            built.warnings.push(LoadError::new(
                source.clone(),
                support::vm::interpreter_warning(reason),
            ));
        }
        policies.push(Arc::new(RegoPolicy {
            info: PolicyInfo {
                name,
                kind: "Rego".into(),
                engine: "rego",
                source: source.clone(),
                failure_policy: *failure_policy,
                annotations: Default::default(),
            },
            deny,
            warn,
            patch,
            engine: engine.clone(),
            vm,
            interpreter_reason,
            cap: options.eval_timeout,
        }));
    }
    (built, policies)
}

/// One Rego package with webhook rules.
#[derive(Debug)]
pub struct RegoPolicy {
    info: PolicyInfo,
    deny: Option<String>,
    warn: Option<String>,
    patch: Option<String>,
    engine: Arc<regorus::Engine>,
    /// The package's rules on the VM, when the VM compiler accepts them.
    vm: Option<support::vm::Vm>,
    /// Why the package runs on the interpreter, when it does.
    interpreter_reason: Option<String>,
    /// Longest one evaluation may take, inside the request's deadline.
    cap: Duration,
}

/// Evaluates a package's rules on one review: on the VM, or on a per-review clone of the prepared interpreter.
enum Evaluator<'a> {
    Vm(&'a support::vm::Vm, Arc<regorus::Value>, Duration),
    Interpreter(Box<regorus::Engine>),
}

impl Evaluator<'_> {
    /// Evaluate `rules` in order, as one evaluation where the evaluator allows (the VM: rules and function calls
    /// they share run once); the results stop after the first error.
    fn eval_all(
        &mut self,
        rules: &[&str],
        ctx: &EvalContext,
    ) -> Vec<Result<regorus::Value, EvalError>> {
        let results = match self {
            Evaluator::Vm(vm, input, limit) => vm.eval_all(rules, (**input).clone(), *limit),
            Evaluator::Interpreter(_) => {
                let mut results = Vec::with_capacity(rules.len());
                for rule in rules {
                    let result = self.eval(rule, ctx);
                    let failed = result.is_err();
                    results.push(result);
                    if failed {
                        break;
                    }
                }
                return results;
            }
        };
        results
            .into_iter()
            .map(|result| result.map_err(|e| budget_timeout(e, ctx)))
            .collect()
    }

    fn eval(&mut self, rule: &str, ctx: &EvalContext) -> Result<regorus::Value, EvalError> {
        let result = match self {
            Evaluator::Vm(vm, input, limit) => vm.eval(Some(rule), (**input).clone(), None, *limit),
            Evaluator::Interpreter(engine) => engine
                .eval_rule(rule.to_string())
                .map_err(|e| support::eval_error(e, ctx.deadline.budget())),
        };
        result.map_err(|e| budget_timeout(e, ctx))
    }
}

/// Makes a violation of a rule's message (`deny` or `warn`).
type ToViolation = fn(String) -> Violation;

/// A time limit is reported as the request's budget, whichever evaluator hit it.
fn budget_timeout(error: EvalError, ctx: &EvalContext) -> EvalError {
    match error {
        EvalError::Timeout(_) => EvalError::Timeout(ctx.deadline.budget()),
        other => other,
    }
}

impl RegoPolicy {
    fn evaluator_for(&self, review: &Review, ctx: &EvalContext) -> Evaluator<'_> {
        let input = support::review_value(review);
        let limit = ctx.time_limit(self.cap);
        match &self.vm {
            Some(vm) => Evaluator::Vm(vm, input, limit),
            None => {
                let mut engine = (*self.engine).clone();
                support::set_time_limit(&mut engine, limit);
                engine.set_input((*input).clone());
                Evaluator::Interpreter(Box::new(engine))
            }
        }
    }

    /// Whether the package runs on the VM (`None`) or on the interpreter (`Some(reason)`).
    pub fn interpreter_reason(&self) -> Option<&str> {
        self.interpreter_reason.as_deref()
    }
}

impl RegoPolicy {
    /// The package's one result (its `deny`/`warn` rules together), when the context explains.
    fn explained(&self, ctx: &EvalContext, status: RuleStatus, message: String) -> Vec<RuleResult> {
        if !ctx.explain {
            return Vec::new();
        }
        vec![RuleResult {
            rule: self.info.name.clone(),
            status,
            message,
        }]
    }
}

fn messages_of(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| v.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

impl Policy for RegoPolicy {
    fn info(&self) -> &PolicyInfo {
        &self.info
    }

    fn scope(&self) -> Scope {
        Scope::any()
    }

    fn validates(&self) -> bool {
        self.deny.is_some() || self.warn.is_some()
    }

    fn mutates(&self) -> bool {
        self.patch.is_some()
    }

    fn validate(&self, review: &Review, ctx: &EvalContext) -> Evaluation {
        if !self.validates() {
            return Evaluation::skip();
        }
        let mut evaluator = self.evaluator_for(review, ctx);
        let mut out = Vec::new();
        // `deny` then `warn`, in one evaluation: helper rules both use run once.
        let rules: Vec<(&str, ToViolation)> = [
            (&self.deny, Violation::deny as ToViolation),
            (&self.warn, Violation::warn as ToViolation),
        ]
        .into_iter()
        .filter_map(|(rule, violation)| rule.as_deref().map(|rule| (rule, violation)))
        .collect();
        let names: Vec<&str> = rules.iter().map(|(rule, _)| *rule).collect();
        let results = evaluator.eval_all(&names, ctx);
        for ((_, violation), result) in rules.into_iter().zip(results) {
            match result {
                Ok(value) => out.extend(support::messages(&value).into_iter().map(violation)),
                Err(error) => {
                    let rules = self.explained(ctx, RuleStatus::Error, error.to_string());
                    let mut failed = Evaluation::failed(error);
                    failed.violations = out;
                    failed.rules = rules;
                    return failed;
                }
            }
        }
        let (status, message) = if out.iter().any(|v| v.action == Action::Deny) {
            (RuleStatus::Fail, messages_of(&out))
        } else if !out.is_empty() {
            (RuleStatus::Warn, messages_of(&out))
        } else {
            (RuleStatus::Pass, String::new())
        };
        let rules = self.explained(ctx, status, message);
        let mut evaluation = Evaluation::found(out);
        evaluation.rules = rules;
        evaluation
    }

    fn mutate(&self, review: &Review, ctx: &EvalContext) -> Mutation {
        let Some(rule) = &self.patch else {
            return Mutation::default();
        };
        let Some(object) = review.object() else {
            return Mutation::default();
        };
        let value = match self.evaluator_for(review, ctx).eval(rule, ctx) {
            Ok(value) => value,
            Err(error) => return Mutation::failed(error),
        };
        let ops = match support::patch_operations(&value) {
            Ok(ops) => ops,
            Err(e) => return Mutation::failed(EvalError::Engine(e)),
        };
        if ops.is_empty() {
            return Mutation {
                applied: true,
                ..Mutation::default()
            };
        }
        let mut mutated = object.clone();
        if let Err(e) = json_patch::patch(&mut mutated, &ops) {
            return Mutation::failed(EvalError::Engine(format!(
                "patch from {rule} does not apply: {e}"
            )));
        }
        Mutation {
            applied: true,
            object: (&mutated != object).then_some(mutated),
            ..Mutation::default()
        }
    }
}

#[cfg(test)]
mod tests;
