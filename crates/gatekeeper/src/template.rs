//! ConstraintTemplates: parse, check and compile once into a prepared regorus engine.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::divergence;
use super::schema::ParamSchema;
use crate::policy::source::Document;
use crate::policy::{EvalError, FailurePolicy, LoadError, SourceRef};
use crate::select::OpSet;
use crate::support;
use policyctl_cel::checks::{CheckSpecs, Checks, Named, ValidationSpec};
use policyctl_cel::Dialect;

/// The only target Gatekeeper serves.
pub const TARGET: &str = "admission.k8s.gatekeeper.sh";

#[derive(Debug, Deserialize)]
struct TemplateDoc {
    #[serde(default)]
    metadata: Metadata,
    spec: TemplateSpec,
}

#[derive(Debug, Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
struct TemplateSpec {
    crd: Crd,
    #[serde(default)]
    targets: Vec<TargetSpec>,
}

#[derive(Debug, Deserialize)]
struct Crd {
    spec: CrdSpec,
}

#[derive(Debug, Deserialize)]
struct CrdSpec {
    names: Names,
    #[serde(default)]
    validation: Option<Validation>,
}

#[derive(Debug, Deserialize)]
struct Names {
    kind: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Validation {
    #[serde(default, rename = "openAPIV3Schema")]
    open_api_v3_schema: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct TargetSpec {
    #[serde(default)]
    target: String,
    #[serde(default)]
    rego: Option<String>,
    #[serde(default)]
    libs: Vec<String>,
    #[serde(default)]
    code: Vec<Code>,
    #[serde(default)]
    operations: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Code {
    engine: String,
    #[serde(default)]
    source: Value,
}

/// A `K8sNativeValidation` code block's source (Gatekeeper's `matchCondition` key is singular).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CelSource {
    #[serde(default)]
    validations: Vec<ValidationSpec>,
    #[serde(default)]
    variables: Vec<Named>,
    #[serde(default)]
    match_condition: Vec<Named>,
    #[serde(default)]
    failure_policy: Option<String>,
    #[serde(default, rename = "generateVAP")]
    generate_vap: Option<bool>,
}

/// The variables Gatekeeper declares before a template's own: the constraint's parameters and the object under
/// review (the old object on DELETE).
/// The names of [`GATEKEEPER_VARIABLES`], which a template's CEL may read as `variables.<name>`.
const GATEKEEPER_PROVIDED: &[&str] = &["params", "anyObject"];

const GATEKEEPER_VARIABLES: [(&str, &str); 2] = [
    (
        "params",
        "!has(params.spec) ? null : !has(params.spec.parameters) ? null : params.spec.parameters",
    ),
    (
        "anyObject",
        "has(request.operation) && request.operation == \"DELETE\" && object == null ? oldObject : object",
    ),
];

/// A template's CEL (`K8sNativeValidation`) code, which runs instead of its Rego (as Gatekeeper's default).
#[derive(Debug)]
pub struct CelCode {
    /// Gatekeeper's variables, then the template's, its match conditions and validations.
    pub checks: Checks,
    /// The code's `failurePolicy`, when it has one.
    pub failure_policy: Option<FailurePolicy>,
}

impl CelCode {
    fn load(
        doc: &Document,
        index: usize,
        source: &Value,
        warnings: &mut Vec<LoadError>,
    ) -> Result<CelCode, LoadError> {
        let prefix = format!("spec.targets[0].code[{index}].source");
        let parsed: CelSource = crate::policy::source::parse_value(source)
            .map_err(|(f, m)| doc.error_at(format!("{prefix}{}", dotted(&f)), m))?;
        for (i, v) in parsed.variables.iter().enumerate() {
            let reserved = GATEKEEPER_VARIABLES.iter().any(|(n, _)| *n == v.name)
                || v.name.starts_with("gatekeeper_internal_");
            if reserved {
                return Err(doc.error_at(
                    format!("{prefix}.variables[{i}].name"),
                    format!("variable name {:?} is reserved by Gatekeeper", v.name),
                ));
            }
        }
        if parsed.validations.is_empty() {
            return Err(doc.error_at(
                format!("{prefix}.validations"),
                "at least one validation is required",
            ));
        }
        if parsed.generate_vap == Some(true) {
            warnings.push(doc.error_at(
                format!("{prefix}.generateVAP"),
                "generateVAP is ignored: policyctl evaluates the CEL itself and generates no ValidatingAdmissionPolicy",
            ));
        }
        let failure_policy = parsed
            .failure_policy
            .as_deref()
            .map(str::parse::<FailurePolicy>)
            .transpose()
            .map_err(|e| doc.error_at(format!("{prefix}.failurePolicy"), e))?;
        let mut checks = CheckSpecs {
            prefix: &prefix,
            conditions_field: "matchCondition",
            conditions: &parsed.match_condition,
            variables: &parsed.variables,
            validations: &parsed.validations,
            provided: GATEKEEPER_PROVIDED,
            reasons: false,
            identifiers: policyctl_cel::lint::KUBERNETES_VARIABLES,
        }
        .compile(doc, Dialect::Kubernetes, &|s| s.to_string())?;
        let mut variables = Vec::with_capacity(GATEKEEPER_VARIABLES.len() + checks.variables.len());
        for (name, expression) in GATEKEEPER_VARIABLES {
            let program = policyctl_cel::Program::compile_for(Dialect::Kubernetes, expression)
                .map_err(|e| doc.error_at(&prefix, format!("Gatekeeper's variable {name}: {e}")))?;
            variables.push((name.to_string(), program));
        }
        variables.append(&mut checks.variables);
        checks.variables = variables;
        Ok(CelCode {
            checks,
            failure_policy,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
struct RegoSource {
    #[serde(default)]
    rego: String,
    #[serde(default)]
    libs: Vec<String>,
    #[serde(default)]
    version: Option<String>,
}

/// Which regorus evaluator runs a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluator {
    /// The bytecode VM (the default: about three times faster).
    Vm,
    /// The tree-walking interpreter (used when the VM compiler rejects the template, e.g. `with`).
    Interpreter,
}

/// A compiled ConstraintTemplate.
pub struct Template {
    /// `metadata.name`.
    pub name: String,
    /// The constraint kind it defines (`spec.crd.spec.names.kind`).
    pub kind: String,
    /// Where it was loaded from.
    pub source: SourceRef,
    /// The parameter schema, if the template has one.
    pub schema: Option<ParamSchema>,
    /// Operations the template applies to at the webhook (`*` when not given).
    pub operations: OpSet,
    /// Whether the template (or a lib) reads `data.inventory`.
    pub reads_inventory: bool,
    /// The prepared engine: template and libs compiled, analysis done.
    engine: regorus::Engine,
    /// `data.<package>.violation`.
    rule: String,
    /// The VM program, when the VM compiler accepts the template.
    vm: Option<support::vm::Vm>,
    /// The CEL code, when it runs instead of the Rego.
    pub cel: Option<CelCode>,
    /// Why the template runs on the interpreter, when it does.
    interpreter_reason: Option<String>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("source", &self.source)
            .field("evaluator", &self.evaluator())
            .finish_non_exhaustive()
    }
}

/// One result of the `violation` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateResult {
    /// `msg`.
    pub msg: String,
    /// `details`, `{}` when absent.
    pub details: Value,
}

impl Template {
    /// Parse and compile a template document, its CEL code chosen over its Rego (Gatekeeper's default). Warnings
    /// (rewrites, unchecked constructs) are returned beside it.
    pub fn load(
        doc: &Document,
        timeout: Duration,
    ) -> Result<(Template, Vec<LoadError>), Vec<LoadError>> {
        Template::load_with(doc, timeout, false)
    }

    /// [`Template::load`]; with `prefer_rego`, a template with both runs its Rego (Gatekeeper's
    /// `--enable-k8s-native-validation=false`). A CEL-only template runs its CEL either way.
    pub fn load_with(
        doc: &Document,
        timeout: Duration,
        prefer_rego: bool,
    ) -> Result<(Template, Vec<LoadError>), Vec<LoadError>> {
        let unknown = crate::policy::strict::check(doc, "", &doc.value, &super::strict::TEMPLATE);
        if !unknown.is_empty() {
            return Err(unknown);
        }
        let parsed: TemplateDoc = doc.parse().map_err(|e| vec![e])?;
        let kind = parsed.spec.crd.spec.names.kind.clone();
        if kind.is_empty() {
            return Err(vec![
                doc.error_at("spec.crd.spec.names.kind", "must not be empty")
            ]);
        }
        if parsed.metadata.name != kind.to_lowercase() {
            return Err(vec![doc.error_at(
                "metadata.name",
                format!(
                    "template name {:?} is not equal to the lowercase of CRD's Kind {:?}",
                    parsed.metadata.name,
                    kind.to_lowercase()
                ),
            )]);
        }
        let schema = match parsed
            .spec
            .crd
            .spec
            .validation
            .as_ref()
            .and_then(|v| v.open_api_v3_schema.as_ref())
        {
            Some(schema) => Some(ParamSchema::compile(schema).map_err(|e| {
                vec![doc.error_at("spec.crd.spec.validation.openAPIV3Schema", e.to_string())]
            })?),
            None => None,
        };
        let [target] = parsed.spec.targets.as_slice() else {
            return Err(vec![doc.error_at(
                "spec.targets",
                format!(
                    "must have exactly one target, found {}",
                    parsed.spec.targets.len()
                ),
            )]);
        };
        if target.target != TARGET {
            return Err(vec![doc.error_at(
                "spec.targets[0].target",
                format!(
                    "unknown target {:?}; policyctl serves {TARGET:?}",
                    target.target
                ),
            )]);
        }
        let mut operations = OpSet::NONE;
        for (i, op) in target.operations.iter().enumerate() {
            match OpSet::parse(op) {
                Some(set) => operations = operations.union(set),
                None => {
                    return Err(vec![doc.error_at(
                        format!("spec.targets[0].operations[{i}]"),
                        format!(
                            "unknown operation {op:?}; use *, CREATE, UPDATE, DELETE or CONNECT"
                        ),
                    )])
                }
            }
        }
        if target.operations.is_empty() {
            operations = OpSet::ALL;
        }
        let mut warnings = Vec::new();
        let has_rego = target.rego.as_ref().is_some_and(|r| !r.trim().is_empty())
            || target.code.iter().any(|c| c.engine == "Rego");
        let cel = match target
            .code
            .iter()
            .enumerate()
            .find(|(_, c)| c.engine == "K8sNativeValidation")
        {
            Some((i, code)) if !prefer_rego || !has_rego => {
                Some(CelCode::load(doc, i, &code.source, &mut warnings).map_err(|e| vec![e])?)
            }
            _ => None,
        };
        if !has_rego && cel.is_some() {
            // CEL only: no Rego to compile (the empty engine is never evaluated).
            return Ok((
                Template {
                    name: parsed.metadata.name,
                    kind,
                    source: doc.source.clone(),
                    schema,
                    operations,
                    reads_inventory: false,
                    engine: support::new_engine(timeout),
                    rule: String::new(),
                    vm: None,
                    interpreter_reason: None,
                    cel,
                },
                warnings,
            ));
        }
        // Legacy `rego` beats `code[]` Rego.
        let (field, rego, libs, v0) = match &target.rego {
            Some(rego) if !rego.trim().is_empty() => (
                "spec.targets[0].rego".to_string(),
                rego.clone(),
                target.libs.clone(),
                true,
            ),
            _ => {
                let Some((i, code)) = target
                    .code
                    .iter()
                    .enumerate()
                    .find(|(_, c)| c.engine == "Rego")
                else {
                    return Err(vec![doc.error_at(
                        "spec.targets[0]",
                        "no Rego or CEL source: policyctl runs `rego`, or `code[]` with `engine: Rego` or \
                         `engine: K8sNativeValidation`",
                    )]);
                };
                let source: RegoSource =
                    crate::policy::source::parse_value(&code.source).map_err(|(f, m)| {
                        vec![doc
                            .error_at(format!("spec.targets[0].code[{i}].source{}", dotted(&f)), m)]
                    })?;
                let v0 = source.version.as_deref() != Some("v1");
                (
                    format!("spec.targets[0].code[{i}].source.rego"),
                    source.rego,
                    source.libs,
                    v0,
                )
            }
        };
        let mut errors = Vec::new();
        let mut engine = support::new_engine(timeout);
        engine.set_rego_v0(v0);
        let origin = format!("{}#{}", doc.source.origin, doc.source.document.unwrap_or(1));
        let mut modules = vec![(field.clone(), format!("{origin}/{field}"), rego)];
        let parent = field.trim_end_matches(".rego");
        for (i, lib) in libs.into_iter().enumerate() {
            let lib_field = format!("{parent}.libs[{i}]");
            modules.push((lib_field.clone(), format!("{origin}/{lib_field}"), lib));
        }
        let mut package = String::new();
        let mut reads_inventory = false;
        for (index, (field, path, text)) in modules.into_iter().enumerate() {
            if let Some(err) =
                support::forbidden_builtin(&text).or_else(|| support::nesting_problem(&text))
            {
                errors.push(doc.error_at(&field, err));
                continue;
            }
            if divergence::calls(&text, "external_data") {
                errors.push(doc.error_at(
                    &field,
                    "external_data is not supported: policyctl has no external data providers (policies get no network \
                     access)",
                ));
                continue;
            }
            for problem in divergence::disallowed_data_refs(&text) {
                errors.push(doc.error_at(&field, problem));
            }
            reads_inventory |= divergence::reads_inventory(&text);
            let checked = divergence::check(&text, v0);
            for warning in checked.warnings {
                warnings.push(doc.error_at(&field, warning));
            }
            match engine.add_policy(path.clone(), checked.source) {
                Ok(pkg) if index == 0 => {
                    match engine.has_declared_rule_rooted_at(&path, "violation") {
                        Ok(true) => {}
                        _ => {
                            errors.push(doc.error_at(
                                &field,
                                "invalid module: missing required rule `violation`",
                            ))
                        }
                    }
                    package = pkg;
                }
                Ok(pkg) => {
                    if !pkg.starts_with("data.lib.") {
                        errors.push(doc.error_at(
                            &field,
                            format!(
                                "a lib's package must be under lib (package lib.<name>), found {}",
                                pkg.strip_prefix("data.").unwrap_or(&pkg)
                            ),
                        ));
                    }
                }
                Err(err) => {
                    errors.push(doc.error_at(&field, format!("Rego does not compile: {err}")))
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Undefined functions and `data` references that name nothing: regorus only finds them when they run.
        let prefix = format!("{origin}/");
        for problem in support::check::unresolved(engine.get_modules(), &["data.inventory"]) {
            let field = problem.file.strip_prefix(&prefix).unwrap_or(&field);
            errors.push(doc.error_at(field, format!("line {}: {}", problem.line, problem.message)));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let rule = format!("{package}.violation");
        let compiled = match engine.compile_with_entrypoint(&rule.as_str().into()) {
            Ok(compiled) => compiled,
            Err(err) => {
                return Err(vec![
                    doc.error_at(&field, format!("Rego does not compile: {err}"))
                ])
            }
        };
        let (vm, interpreter_reason) =
            support::vm::Vm::compile(&compiled, &[rule.as_str()], "template").map_err(
                |recursive| {
                    vec![doc.error_at(&field, format!("Rego does not compile: {recursive}"))]
                },
            )?;
        if let Some(reason) = &interpreter_reason {
            warnings.push(doc.error_at(&field, support::vm::interpreter_warning(reason)));
        }
        let template = Template {
            name: parsed.metadata.name,
            kind,
            source: doc.source.clone(),
            schema,
            operations,
            reads_inventory,
            engine,
            rule,
            vm,
            interpreter_reason,
            cel,
        };
        Ok((template, warnings))
    }

    /// The evaluator that runs this template.
    pub fn evaluator(&self) -> Evaluator {
        if self.vm.is_some() {
            Evaluator::Vm
        } else {
            Evaluator::Interpreter
        }
    }

    /// Why the template runs on the interpreter (the VM compiler's error), if it does.
    pub fn interpreter_reason(&self) -> Option<&str> {
        self.interpreter_reason.as_deref()
    }

    /// Evaluate the template on an input `{review, parameters}`. `data` (e.g. `{"inventory": …}`) is the data
    /// document the template sees besides its libs.
    pub fn evaluate(
        &self,
        input: regorus::Value,
        data: Option<&regorus::Value>,
        timeout: Duration,
    ) -> Result<Vec<TemplateResult>, EvalError> {
        self.evaluate_on(self.evaluator(), input, data, timeout)
    }

    /// [`Template::evaluate`] on a chosen evaluator, to cross-check the VM against the interpreter (the VM's answers
    /// must be the interpreter's). The interpreter can always run a template; asking for the VM of a template the VM
    /// compiler rejected is an error.
    pub fn evaluate_on(
        &self,
        evaluator: Evaluator,
        input: regorus::Value,
        data: Option<&regorus::Value>,
        timeout: Duration,
    ) -> Result<Vec<TemplateResult>, EvalError> {
        let vm = match evaluator {
            Evaluator::Vm => Some(self.vm.as_ref().ok_or_else(|| {
                EvalError::Engine(format!(
                    "template {} does not run on the VM: {}",
                    self.name,
                    self.interpreter_reason.as_deref().unwrap_or("no VM")
                ))
            })?),
            Evaluator::Interpreter => None,
        };
        let value = match vm {
            Some(vm) => vm.eval(None, input, data, timeout)?,
            None => {
                let mut engine = self.engine.clone();
                support::set_time_limit(&mut engine, timeout);
                if let Some(data) = data {
                    engine
                        .add_data(data.clone())
                        .map_err(|e| EvalError::Engine(format!("cannot load data: {e}")))?;
                }
                engine.set_input(input);
                engine
                    .eval_rule(self.rule.clone())
                    .map_err(|e| support::eval_error(e, timeout))?
            }
        };
        Ok(results(&value))
    }
}

/// The VM and the interpreter answered one input differently ([`Template::cross_check`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "the VM and the interpreter disagree:\n  VM          {vm:?}\n  interpreter {interpreter:?}"
)]
pub struct Disagreement {
    /// The VM's results (sorted by message and details) or error text.
    pub vm: Result<Vec<(String, String)>, String>,
    /// The interpreter's.
    pub interpreter: Result<Vec<(String, String)>, String>,
}

/// Results sorted by message and details, or the error's text.
fn comparable(
    result: Result<Vec<TemplateResult>, EvalError>,
) -> Result<Vec<(String, String)>, String> {
    result
        .map(|results| {
            let mut v: Vec<(String, String)> = results
                .into_iter()
                .map(|r| (r.msg, r.details.to_string()))
                .collect();
            v.sort();
            v
        })
        .map_err(|e| e.to_string())
}

impl Template {
    /// Evaluate `input` on the VM and on the interpreter and compare, result for result. Two errors agree whatever
    /// their texts (the engines word them apart), and a time-out on either side proves nothing. For the
    /// cross-checks of the VM against the interpreter (tests, fuzzing); a template without a VM agrees trivially.
    pub fn cross_check(
        &self,
        input: &regorus::Value,
        data: Option<&regorus::Value>,
        timeout: Duration,
    ) -> Result<(), Disagreement> {
        if self.vm.is_none() {
            return Ok(());
        }
        let vm = self.evaluate_on(Evaluator::Vm, input.clone(), data, timeout);
        let interpreter = self.evaluate_on(Evaluator::Interpreter, input.clone(), data, timeout);
        if matches!(vm, Err(EvalError::Timeout(_)))
            || matches!(interpreter, Err(EvalError::Timeout(_)))
        {
            return Ok(());
        }
        let (vm, interpreter) = (comparable(vm), comparable(interpreter));
        let agree = match (&vm, &interpreter) {
            (Ok(a), Ok(b)) => a == b,
            (Err(_), Err(_)) => true,
            _ => false,
        };
        if agree {
            Ok(())
        } else {
            Err(Disagreement { vm, interpreter })
        }
    }
}

/// Gatekeeper's post-processing: drop elements without `msg`, default `details` to `{}`, collapse duplicates.
pub fn results(value: &regorus::Value) -> Vec<TemplateResult> {
    let elements: Vec<&regorus::Value> = match value {
        regorus::Value::Set(set) => set.iter().collect(),
        regorus::Value::Array(items) => items.iter().collect(),
        _ => Vec::new(),
    };
    let mut out: Vec<TemplateResult> = Vec::new();
    for element in elements {
        let Ok(object) = element.as_object() else {
            continue;
        };
        let msg = match object.get(&regorus::Value::from("msg")) {
            None | Some(regorus::Value::Undefined) => continue,
            Some(regorus::Value::String(s)) => s.to_string(),
            Some(other) => support::to_json(other).to_string(),
        };
        let details = match object.get(&regorus::Value::from("details")) {
            None | Some(regorus::Value::Undefined) => Value::Object(Default::default()),
            Some(d) => support::to_json(d),
        };
        let result = TemplateResult { msg, details };
        if !out.contains(&result) {
            out.push(result);
        }
    }
    out
}

/// A serde_path_to_error path appended to a field: `.a.b` or `` for the root.
fn dotted(path: &str) -> String {
    if path.is_empty() || path == "." {
        String::new()
    } else {
        format!(".{path}")
    }
}
