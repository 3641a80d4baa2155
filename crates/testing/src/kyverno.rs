//! `kyverno test` files (`cli.kyverno.io/v1alpha1` `Test`), run the way the Kyverno CLI runs them.
//!
//! Paths of `policies`, `resources`, `variables` (a `Values` file), `userinfo` (a `UserInfo` file) and
//! `patchedResources` are relative to the test file. Field names are matched case-insensitively, as Kyverno's
//! decoder does (`isMUtatingPolicy`). One row per result entry and resource: suite = the test file, test =
//! `policy/rule`, case = the resource key as written (`name` or `namespace/name`).
//!
//! Every case runs on the webhook's own path: the test's policies and PolicyExceptions are compiled by the policy
//! loader, the resource becomes a [`Review`], and the pipeline evaluates it (mutations, then validations on the
//! mutated object) with a context that explains itself (per-rule results). What the test files mock — values, namespace
//! labels, the UserInfo file's roles — is a test implementation of [`ClusterContext`], not a branch inside an engine.
//!
//! Differences from the Kyverno CLI, on purpose: a resource no rule matched is a **skip**, never a pass; an expected
//! result on a policy kind or rule policyctl cannot run (MutatingPolicy, MutatingAdmissionPolicy, `generate`, ...) is
//! **unsupported**. `paramResources` files load with the policies (ValidatingAdmissionPolicy params).
//!
//! Payload tests (`jsonPayloads`, `httpPayloads`, `envoyPayloads`: ValidatingPolicy `evaluation.mode` JSON, HTTP,
//! Envoy): each payload file is a case named by its path as written (without `./`), checked through
//! [`pipeline::validate_payload`] by the policies of its mode.

/// How long one resource's evaluation may take (a runaway policy is an error, not a hang).
const CASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::admission::Operation;
use serde_json::{Map, Value};

use std::sync::Arc;

use super::report::{CaseResult, Outcome};
use super::{SuiteRunner, TestOptions};
use crate::admission::{plural, Gvr, Review, UserInfo};
use crate::engine::kyverno::exception::is_policy_exception;
use crate::engine::kyverno::is_kyverno_policy;
use crate::engine::mpol::is_mutating_policy;
use crate::engine::mpol::map::is_mutating_admission_policy;
use crate::engine::vpol::exception::is_cel_policy_exception;
use crate::engine::vpol::is_validating_policy;
use crate::engine::vpol::vap::{is_binding, is_validating_admission_policy};
use crate::engine::{LoadOptions, UnsupportedRules};
use crate::pipeline;
use crate::policy::loader::compile;
use crate::policy::source::{yaml_documents, Document};
use crate::policy::{
    ApiReadError, ClusterContext, Deadline, EnforcementPoint, EvalContext, LoadError, Overrides,
    PayloadMode, Policy, PolicySet, RuleResult, RuleStatus, SourceFile, SourceRef,
};

/// The `kyverno test` runner.
#[derive(Debug, Clone, Copy, Default)]
pub struct KyvernoRunner;

/// A case-insensitive field lookup.
fn field<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    let map = value.as_object()?;
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn field_str<'v>(value: &'v Value, name: &str) -> Option<&'v str> {
    field(value, name).and_then(Value::as_str)
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn read_source(path: &Path) -> Result<SourceFile, FileError> {
    let content = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(SourceFile {
        origin: path.display().to_string(),
        content,
    })
}

fn read_documents(path: &Path) -> Result<Vec<(SourceRef, Value)>, FileError> {
    Ok(yaml_documents(&read_source(path)?)?)
}

/// A file of a test that cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
enum FileError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML documents.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Why a Kyverno test cannot run (the error of each of its cases).
#[derive(Debug, thiserror::Error)]
enum SuiteError {
    /// A file the test names, in the role `role` (`policy`, `resource`, `values`, ...), cannot be read or parsed.
    #[error("{role} file {file}: {source}")]
    File {
        role: &'static str,
        file: String,
        #[source]
        source: Box<FileError>,
    },
    /// A document of an exception file that is not a PolicyException.
    #[error("exception file {file}: {api_version} {kind} is not a Kyverno PolicyException")]
    NotAnException {
        file: String,
        api_version: String,
        kind: String,
    },
    /// An exception file does not load.
    #[error("exception does not load: {0}")]
    Exception(#[source] Box<LoadError>),
}

impl SuiteError {
    /// A `map_err` for a file of the test in the role `role`.
    fn file<'a>(role: &'static str, file: &'a str) -> impl FnOnce(FileError) -> SuiteError + 'a {
        move |source| SuiteError::File {
            role,
            file: file.to_string(),
            source: Box::new(source),
        }
    }
}

/// What a policy name stands for in a test.
enum LoadedPolicy {
    /// Loaded by the policy loader, as the webhook would.
    Ready(Arc<dyn Policy>),
    Other {
        kind: String,
    },
    Broken(String),
}

/// The requester of a test (its UserInfo file).
#[derive(Debug, Clone, Default)]
struct TestUser {
    info: UserInfo,
    roles: Vec<String>,
    cluster_roles: Vec<String>,
}

/// What a test's files say about the cluster: namespace labels, the user's roles, the Values file's values.
#[derive(Debug)]
struct TestCluster {
    context: Arc<TestContext>,
    /// The resource's Namespace object from the Values file's `namespaces`, when it lists it.
    namespace_object: Option<Value>,
    namespace_labels: Option<Map<String, Value>>,
    namespace: String,
    user: TestUser,
    overrides: Overrides,
}

impl ClusterContext for TestCluster {
    fn namespace(&self, name: &str) -> Option<Value> {
        if let Some(ns) = self
            .namespace_object
            .as_ref()
            .filter(|_| name == self.namespace)
        {
            let mut ns = ns.clone();
            // The labels the Values file gives by selector win, as they do for Kyverno's namespaceSelector.
            if let (Some(labels), Some(meta)) = (
                &self.namespace_labels,
                ns.get_mut("metadata").and_then(Value::as_object_mut),
            ) {
                meta.insert("labels".into(), Value::Object(labels.clone()));
            }
            return Some(ns);
        }
        let labels = self
            .namespace_labels
            .as_ref()
            .filter(|_| name == self.namespace)?;
        Some(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels},
        }))
    }

    fn roles(&self, user: &UserInfo) -> Option<(Vec<String>, Vec<String>)> {
        (user.username == self.user.info.username)
            .then(|| (self.user.roles.clone(), self.user.cluster_roles.clone()))
    }

    fn overrides(&self) -> Option<&Overrides> {
        Some(&self.overrides)
    }

    fn api_get(&self, path: &str) -> Result<Value, ApiReadError> {
        if self.context.resources.is_empty() {
            return Err(ApiReadError::NotInTests {
                path: path.to_string(),
            });
        }
        self.context.get(path)
    }

    fn image_data(&self, image: &str) -> Option<Value> {
        self.context
            .images
            .iter()
            .find(|i| field_str(i, "image") == Some(image))
            .cloned()
    }
}

/// A test's `context` file (`cli.kyverno.io/v1alpha1` `Context`): the resources Kyverno's CEL `resource.Get` /
/// `resource.List` read, and the image data `image.GetMetadata` reads.
#[derive(Debug, Default)]
struct TestContext {
    resources: Vec<Value>,
    images: Vec<Value>,
}

impl TestContext {
    /// A GET on the API path, answered from the context's resources.
    fn get(&self, path: &str) -> Result<Value, ApiReadError> {
        let not_resources = || ApiReadError::NotResourcePath {
            path: path.to_string(),
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (api_version, rest) = match parts.as_slice() {
            ["api", v, rest @ ..] => (v.to_string(), rest),
            ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
            _ => return Err(not_resources()),
        };
        let (namespace, resource, name) = match rest {
            ["namespaces", ns, res, name] => (*ns, *res, Some(*name)),
            ["namespaces", ns, res] => (*ns, *res, None),
            [res, name] => ("", *res, Some(*name)),
            [res] => ("", *res, None),
            _ => return Err(not_resources()),
        };
        let matching = self.resources.iter().filter(|r| {
            field_str(r, "apiVersion") == Some(api_version.as_str())
                && field_str(r, "kind").is_some_and(|k| plural(k) == resource)
                && (namespace.is_empty()
                    || r.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace))
        });
        match name {
            Some(name) => matching
                .into_iter()
                .find(|r| r.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
                .cloned()
                .ok_or_else(|| ApiReadError::NotInContext {
                    path: path.to_string(),
                }),
            None => Ok(serde_json::json!({
                "apiVersion": api_version,
                "kind": "List",
                "items": matching.cloned().collect::<Vec<_>>(),
            })),
        }
    }
}

/// What a policy did with one resource.
struct Evaluated {
    /// Per-rule results, mutations first.
    rules: Vec<RuleResult>,
    /// The resource after the policy's mutations, when it changed.
    patched: Option<Value>,
    /// Errors not tied to a rule (a time-out, a contained panic).
    errors: Vec<String>,
}

impl Evaluated {
    /// What the explained runs found, checked against the webhook's unexplained runs of the same input (`served`):
    /// a disagreement is an error of the case.
    fn of(
        runs: Vec<pipeline::PolicyRun>,
        patched: Option<Value>,
        served: &[pipeline::PolicyRun],
        served_patched: &Option<Value>,
    ) -> Evaluated {
        let mut evaluated = Evaluated {
            rules: Vec::new(),
            errors: Vec::new(),
            patched,
        };
        if let Some(disagreement) = disagreement(&runs, served, &evaluated.patched, served_patched)
        {
            evaluated.errors.push(format!(
                "the webhook path disagrees with the test path: {disagreement}"
            ));
        }
        for run in runs {
            // An error no rule reports (a time-out, a contained panic) is the case's error.
            if run.outcome.rules.is_empty() {
                evaluated
                    .errors
                    .extend(run.outcome.errors.iter().map(|e| e.error.to_string()));
            }
            evaluated.rules.extend(run.outcome.rules);
        }
        evaluated
    }
}

struct Resource {
    value: Value,
    name: String,
    namespace: String,
    /// A payload of a ValidatingPolicy evaluation mode (`jsonPayloads`, ...), named by its file: not a resource.
    payload: Option<PayloadMode>,
}

impl Resource {
    fn matches_key(&self, key: &str) -> bool {
        if self.payload.is_some() {
            return key.trim_start_matches("./") == self.name;
        }
        match key.rsplit_once('/') {
            Some((ns, name)) => {
                let ns = ns.rsplit('/').next().unwrap_or(ns);
                name == self.name && ns == self.namespace
            }
            None => key == self.name,
        }
    }
}

struct Suite {
    dir: PathBuf,
    policies: BTreeMap<String, LoadedPolicy>,
    resources: Vec<Resource>,
    user: TestUser,
    values: Value,
    context: Arc<TestContext>,
    operation: Operation,
    cache: HashMap<(String, usize, Option<String>), Evaluated>,
}

impl Suite {
    fn mocks(&self, policy: &str, resource: &Resource) -> Overrides {
        let mut mocks = Overrides::default();
        if let Some(Value::Object(g)) = field(&self.values, "globalValues") {
            mocks.global = g.clone();
        }
        let policies = field(&self.values, "policies")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for p in policies
            .iter()
            .filter(|p| field_str(p, "name") == Some(policy))
        {
            for r in field(p, "rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(name) = field_str(r, "name") else {
                    continue;
                };
                if let Some(Value::Object(v)) = field(r, "values") {
                    mocks
                        .rules
                        .entry(name.to_string())
                        .or_default()
                        .extend(v.clone());
                }
                if let Some(Value::Object(v)) = field(r, "foreachValues") {
                    mocks
                        .foreach
                        .entry(name.to_string())
                        .or_default()
                        .extend(v.clone());
                }
            }
            for r in field(p, "resources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if field_str(r, "name") == Some(resource.name.as_str()) {
                    if let Some(Value::Object(v)) = field(r, "values") {
                        mocks.resource.extend(v.clone());
                    }
                }
            }
        }
        mocks
    }

    /// The Namespace object the Values file's `namespaces` lists under `namespace`.
    fn namespace_object(&self, namespace: &str) -> Option<Value> {
        field(&self.values, "namespaces")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|ns| ns.pointer("/metadata/name").and_then(Value::as_str) == Some(namespace))
            .cloned()
    }

    /// A review of a kind the Values file's `subresources` names as a subresource (a `Binding` as `pods/binding`):
    /// the request is on the parent resource's subresource, as the API server would send it.
    fn as_subresource(&self, review: Review) -> Review {
        let entries = field(&self.values, "subresources")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for entry in &entries {
            let (Some(sub), Some(parent)) =
                (field(entry, "subresource"), field(entry, "parentResource"))
            else {
                continue;
            };
            let same_kind = field_str(sub, "kind") == Some(review.kind.kind.as_str())
                && field_str(sub, "group").unwrap_or("") == review.kind.group
                && field_str(sub, "version").is_none_or(|v| v == review.kind.version);
            let Some((_, sub_name)) = field_str(sub, "name").and_then(|n| n.split_once('/')) else {
                continue;
            };
            let Some(parent_name) = field_str(parent, "name") else {
                continue;
            };
            if same_kind {
                let resource = Gvr {
                    group: field_str(parent, "group").unwrap_or("").to_string(),
                    version: field_str(parent, "version")
                        .unwrap_or(&review.kind.version)
                        .to_string(),
                    resource: parent_name.to_string(),
                };
                return review.with_resource(resource, Some(sub_name.to_string()));
            }
        }
        review
    }

    fn namespace_labels(&self, namespace: &str) -> Option<Map<String, Value>> {
        for entry in field(&self.values, "namespaceSelector")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if field_str(entry, "name") == Some(namespace) {
                return field(entry, "labels").and_then(Value::as_object).cloned();
            }
        }
        for ns in field(&self.values, "namespaces")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if ns.pointer("/metadata/name").and_then(Value::as_str) == Some(namespace) {
                return ns
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .cloned();
            }
        }
        None
    }

    /// Run one policy on resource `index` through the pipeline, as the webhook would (mutations, then
    /// validations on the mutated resource), explaining per rule.
    fn evaluate(
        &mut self,
        policy_name: &str,
        index: usize,
        operation: Option<&str>,
    ) -> Option<&Evaluated> {
        let key = (
            policy_name.to_string(),
            index,
            operation.map(str::to_ascii_uppercase),
        );
        if !self.cache.contains_key(&key) {
            let Some(LoadedPolicy::Ready(policy)) = self.policies.get(policy_name) else {
                return None;
            };
            let resource = self.resources.get(index)?;
            if let Some(mode) = resource.payload {
                let evaluated = self.evaluate_payload(policy, &resource.value, mode);
                self.cache.insert(key.clone(), evaluated);
                return self.cache.get(&key);
            }
            let mocks = self.mocks(policy_name, resource);
            // Precedence: the result's `operation`, the resource's values, the global values, CREATE.
            let operation = operation
                .or_else(|| {
                    mocks
                        .resource
                        .get("request.operation")
                        .and_then(Value::as_str)
                })
                .map(parse_operation)
                .unwrap_or_else(|| self.operation.clone());
            let review = Review::for_object(resource.value.clone(), None, operation)
                .with_user_info(self.user.info.clone());
            let review = self.as_subresource(review);
            let cluster = TestCluster {
                context: self.context.clone(),
                namespace_object: self.namespace_object(&resource.namespace),
                namespace_labels: self.namespace_labels(&resource.namespace),
                namespace: resource.namespace.clone(),
                user: self.user.clone(),
                overrides: mocks,
            };
            let ctx = EvalContext {
                deadline: Deadline::after(CASE_TIMEOUT),
                cluster: Arc::new(cluster),
                explain: true,
                point: EnforcementPoint::Webhook,
            };
            let set = PolicySet::new(vec![policy.clone()], 0, String::new());
            let (runs, patched) = pipeline::mutate_then_validate(&set, &review, &ctx);
            // The same review without explaining is exactly what the webhook does: its facts must be the ones the
            // test judges (a disagreement would mean `policyctl test` passes what the webhook does otherwise).
            let served_ctx = EvalContext {
                explain: false,
                ..ctx.clone()
            };
            let (served, served_patched) =
                pipeline::mutate_then_validate(&set, &review, &served_ctx);
            let evaluated = Evaluated::of(runs, patched, &served, &served_patched);
            self.cache.insert(key.clone(), evaluated);
        }
        self.cache.get(&key)
    }
}

impl Suite {
    /// Run one policy on a payload (a ValidatingPolicy evaluation mode's), explaining per rule, and check the
    /// webhook's unexplained path agrees.
    fn evaluate_payload(
        &self,
        policy: &Arc<dyn Policy>,
        payload: &Value,
        mode: PayloadMode,
    ) -> Evaluated {
        let cluster = TestCluster {
            context: self.context.clone(),
            namespace_object: None,
            namespace_labels: None,
            namespace: String::new(),
            user: self.user.clone(),
            overrides: Overrides::default(),
        };
        let ctx = EvalContext {
            deadline: Deadline::after(CASE_TIMEOUT),
            cluster: Arc::new(cluster),
            explain: true,
            point: EnforcementPoint::Webhook,
        };
        let set = PolicySet::new(vec![policy.clone()], 0, String::new());
        let runs = pipeline::validate_payload(&set, payload, mode, &ctx);
        let served_ctx = EvalContext {
            explain: false,
            ..ctx.clone()
        };
        let served = pipeline::validate_payload(&set, payload, mode, &served_ctx);
        Evaluated::of(runs, None, &served, &None)
    }
}

/// The payload files of a test (`jsonPayloads`/`jsonPayload`, `httpPayloads`, `envoyPayloads`), each document a
/// payload named by its file as written (without a leading `./`).
fn load_payloads(dir: &Path, test: &Value) -> Result<Vec<Resource>, SuiteError> {
    let mut out = Vec::new();
    for (key, mode) in [
        ("jsonPayloads", PayloadMode::Json),
        ("jsonPayload", PayloadMode::Json),
        ("httpPayloads", PayloadMode::Http),
        ("envoyPayloads", PayloadMode::Envoy),
    ] {
        for file in strings(field(test, key)) {
            let docs = read_documents(&dir.join(&file)).map_err(SuiteError::file(key, &file))?;
            for (_, value) in docs {
                out.push(Resource {
                    value,
                    name: file.trim_start_matches("./").to_string(),
                    namespace: String::new(),
                    payload: Some(mode),
                });
            }
        }
    }
    Ok(out)
}

/// How the facts of an explained run differ from the webhook's (unexplained) run of the same policy, if they do.
/// Policies the webhook does not run (Kyverno `admission: false`, only unsupported rules) are not compared.
fn disagreement(
    explained: &[pipeline::PolicyRun],
    served: &[pipeline::PolicyRun],
    explained_patch: &Option<Value>,
    served_patch: &Option<Value>,
) -> Option<String> {
    if served.is_empty() {
        return None;
    }
    let facts = |runs: &[pipeline::PolicyRun]| {
        let mut out: Vec<String> = runs
            .iter()
            .flat_map(|r| {
                let violations = r
                    .outcome
                    .violations
                    .iter()
                    .map(|v| format!("{:?} {}", v.action, v.message));
                let errors = r
                    .outcome
                    .errors
                    .iter()
                    .map(|e| format!("{:?} error {}", e.action, e.error));
                violations.chain(errors).collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out
    };
    let served_policies: Vec<&str> = served
        .iter()
        .map(|r| r.policy.info().name.as_str())
        .collect();
    let explained: Vec<pipeline::PolicyRun> = explained
        .iter()
        .filter(|r| served_policies.contains(&r.policy.info().name.as_str()))
        .cloned()
        .collect();
    let (a, b) = (facts(&explained), facts(served));
    if a != b {
        return Some(format!("test path found {a:?}, webhook path {b:?}"));
    }
    if served.iter().any(|r| r.outcome.mutated) && explained_patch != served_patch {
        return Some("the mutated objects differ".to_string());
    }
    None
}

fn parse_operation(op: &str) -> Operation {
    match op.to_ascii_uppercase().as_str() {
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        "CONNECT" => Operation::Connect,
        _ => Operation::Create,
    }
}

/// The operation of every review in a test: `globalValues["request.operation"]`, default CREATE.
fn operation_of(values: &Value) -> Operation {
    field(values, "globalValues")
        .and_then(|g| field_str(g, "request.operation"))
        .map(parse_operation)
        .unwrap_or(Operation::Create)
}

fn load_suite(path: &Path, test: &Value, options: &LoadOptions) -> Result<Suite, SuiteError> {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    // Policy files and PolicyExceptions go through the policy loader together, exactly as the webhook loads them.
    let mut files = Vec::new();
    let mut kyverno_docs: Vec<(String, SourceRef)> = Vec::new();
    let mut policies = BTreeMap::new();
    for file in strings(field(test, "policies")) {
        let source = read_source(&dir.join(&file)).map_err(SuiteError::file("policy", &file))?;
        let docs =
            yaml_documents(&source).map_err(|e| SuiteError::file("policy", &file)(e.into()))?;
        for (origin, value) in docs {
            let doc = Document::from_value(origin.clone(), value);
            let name = doc.name().to_string();
            if is_kyverno_policy(&doc.api_version, &doc.kind)
                || is_validating_policy(&doc.api_version, &doc.kind)
                || is_validating_admission_policy(&doc.api_version, &doc.kind)
                || is_mutating_policy(&doc.api_version, &doc.kind)
                || is_mutating_admission_policy(&doc.api_version, &doc.kind)
            {
                kyverno_docs.push((name, origin));
            } else if is_binding(&doc.api_version, &doc.kind) {
                // Loaded with its policy (a ValidatingAdmissionPolicy evaluates through its bindings).
            } else {
                policies.insert(
                    name,
                    LoadedPolicy::Other {
                        kind: format!("{} {}", doc.api_version, doc.kind),
                    },
                );
            }
        }
        files.push(source);
    }
    // Param resources (a ValidatingAdmissionPolicy's paramKind documents) load with the policies, as params in a
    // policy directory do.
    for file in strings(field(test, "paramResources")) {
        files.push(
            read_source(&dir.join(&file)).map_err(SuiteError::file("param resource", &file))?,
        );
    }
    let mut exception_files = Vec::new();
    for file in strings(field(test, "exceptions")) {
        let source = read_source(&dir.join(&file)).map_err(SuiteError::file("exception", &file))?;
        let docs =
            yaml_documents(&source).map_err(|e| SuiteError::file("exception", &file)(e.into()))?;
        for (_, value) in docs {
            let doc = Document::from_value(SourceRef::file(&file), value);
            if !is_policy_exception(&doc.api_version, &doc.kind)
                && !is_cel_policy_exception(&doc.api_version, &doc.kind)
            {
                return Err(SuiteError::NotAnException {
                    file,
                    api_version: doc.api_version,
                    kind: doc.kind,
                });
            }
        }
        exception_files.push(source.origin.clone());
        files.push(source);
    }
    // A rule policyctl does not run is reported per case as `unsupported`, so a policy that enforces one still loads
    // here (the webhook, lint and eval refuse it unless it opts out).
    let options = LoadOptions {
        unsupported_rules: UnsupportedRules::Report,
        ..options.clone()
    };
    let compiled = compile(&files, &options);
    if let Some(e) = compiled
        .built
        .errors
        .iter()
        .find(|e| exception_files.iter().any(|f| *e.location.origin == **f))
    {
        return Err(SuiteError::Exception(Box::new(e.clone())));
    }
    for (name, origin) in kyverno_docs {
        let loaded = match compiled
            .built
            .policies
            .iter()
            .find(|p| p.info().source == origin)
        {
            Some(policy) => LoadedPolicy::Ready(policy.clone()),
            None => {
                let errors: Vec<String> = compiled
                    .built
                    .errors
                    .iter()
                    .filter(|e| e.location == origin)
                    .map(ToString::to_string)
                    .collect();
                LoadedPolicy::Broken(if errors.is_empty() {
                    "the policy does not load".to_string()
                } else {
                    errors.join("; ")
                })
            }
        };
        policies.insert(name, loaded);
    }
    let mut resources = Vec::new();
    for file in strings(field(test, "resources")) {
        let docs = read_documents(&dir.join(&file)).map_err(SuiteError::file("resource", &file))?;
        for (_, mut value) in docs {
            default_namespace(&mut value);
            let name = value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let namespace = value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            resources.push(Resource {
                value,
                name,
                namespace,
                payload: None,
            });
        }
    }
    resources.extend(load_payloads(&dir, test)?);
    let values = match (field_str(test, "variables"), field(test, "values")) {
        (Some(file), _) => {
            let docs = read_documents(&dir.join(file)).map_err(SuiteError::file("values", file))?;
            docs.into_iter()
                .next()
                .map(|(_, v)| v)
                .unwrap_or(Value::Null)
        }
        (None, Some(v)) => v.clone(),
        (None, None) => Value::Null,
    };
    let mut user = TestUser::default();
    if let Some(file) = field_str(test, "userinfo") {
        let docs = read_documents(&dir.join(file)).map_err(SuiteError::file("userinfo", file))?;
        if let Some((_, u)) = docs.into_iter().next() {
            user.roles = strings(field(&u, "roles"));
            user.cluster_roles = strings(field(&u, "clusterRoles"));
            if let Some(info) = field(&u, "userInfo") {
                user.info.username = field_str(info, "username").unwrap_or("").to_string();
                user.info.groups = strings(field(info, "groups"));
            }
        }
    }
    let operation = operation_of(&values);
    let mut context = TestContext::default();
    if let Some(file) = field_str(test, "context") {
        let docs = read_documents(&dir.join(file)).map_err(SuiteError::file("context", file))?;
        for (_, doc) in docs {
            let spec = field(&doc, "spec");
            context.resources.extend(
                spec.and_then(|s| field(s, "resources"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            context.images.extend(
                spec.and_then(|s| field(s, "images"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
    }
    Ok(Suite {
        dir,
        policies,
        resources,
        user,
        values,
        context: Arc::new(context),
        operation,
        cache: HashMap::new(),
    })
}

/// Kinds that are not namespaced (the CLI puts other resources without a namespace in `default`).
const CLUSTER_SCOPED: [&str; 22] = [
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
    "CustomResourceDefinition",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "APIService",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "ClusterPolicy",
    "ClusterIssuer",
    "CertificateSigningRequest",
    "PodSecurityPolicy",
];

fn default_namespace(value: &mut Value) {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    if CLUSTER_SCOPED.contains(&kind) || kind.starts_with("Cluster") {
        return;
    }
    let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if meta
        .get("namespace")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        meta.insert("namespace".into(), Value::String("default".into()));
    }
}

const CEL_FLAGS: [&str; 7] = [
    "isValidatingPolicy",
    "isMutatingPolicy",
    "isGeneratingPolicy",
    "isDeletingPolicy",
    "isImageValidatingPolicy",
    "isValidatingAdmissionPolicy",
    "isMutatingAdmissionPolicy",
];

/// Remove nulls and empty maps / lists recursively (Kyverno's tidy before comparing).
pub fn tidy(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(m) => {
            let out: Map<String, Value> = m
                .iter()
                .filter_map(|(k, v)| tidy(v).map(|v| (k.clone(), v)))
                .collect();
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(a) => {
            let out: Vec<Value> = a.iter().filter_map(tidy).collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}

/// A readable diff between two JSON values: one line per differing path.
pub fn diff(expected: &Value, actual: &Value) -> String {
    let mut lines = Vec::new();
    diff_into(expected, actual, String::new(), &mut lines);
    let total = lines.len();
    lines.truncate(20);
    if total > 20 {
        lines.push(format!("... {} more differences", total - 20));
    }
    lines.join("; ")
}

fn diff_into(expected: &Value, actual: &Value, path: String, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{path}/{k}");
                match a.get(k) {
                    Some(av) => diff_into(ev, av, p, out),
                    None => out.push(format!("{p}: expected {ev}, missing")),
                }
            }
            for (k, av) in a {
                if !e.contains_key(k) {
                    out.push(format!("{path}/{k}: unexpected {av}"));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff_into(ev, av, format!("{path}/{i}"), out);
            }
        }
        (e, a) if e != a => out.push(format!(
            "{}: expected {e}, got {a}",
            if path.is_empty() { "/" } else { &path }
        )),
        _ => {}
    }
}

fn same_object(a: &Value, b: &Value) -> bool {
    let get = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    get(a, "/apiVersion") == get(b, "/apiVersion")
        && get(a, "/kind") == get(b, "/kind")
        && get(a, "/metadata/name") == get(b, "/metadata/name")
        && {
            let (na, nb) = (get(a, "/metadata/namespace"), get(b, "/metadata/namespace"));
            na == nb || na.is_empty() || nb.is_empty()
        }
}

fn run_test(path: &Path, test: &Value, options: &TestOptions) -> Vec<CaseResult> {
    let suite_name = path.display().to_string();
    let mut out = Vec::new();
    let results = field(test, "results")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut suite = match load_suite(path, test, &options.load) {
        Ok(s) => s,
        Err(e) => return vec![CaseResult::error(&suite_name, e.to_string())],
    };
    for result in &results {
        let policy_name = field_str(result, "policy").unwrap_or("");
        let policy_name = policy_name
            .rsplit('/')
            .next()
            .unwrap_or(policy_name)
            .to_string();
        let rule = field_str(result, "rule").unwrap_or("").to_string();
        let test_name = format!("{policy_name}/{rule}");
        let expected = field_str(result, "result")
            .unwrap_or("")
            .to_ascii_lowercase();
        let cel_flag = CEL_FLAGS
            .iter()
            .find(|f| field(result, f).and_then(Value::as_bool) == Some(true));
        let mut keys = strings(field(result, "resources"));
        if let Some(Value::Array(specs)) = field(result, "resourceSpecs") {
            for s in specs {
                let name = field_str(s, "name").unwrap_or("");
                keys.push(match field_str(s, "namespace") {
                    Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
                    _ => name.to_string(),
                });
            }
        }
        if keys.is_empty() {
            // Every resource, and every payload file once (a multi-document payload file is one case).
            for r in &suite.resources {
                if r.payload.is_none() || !keys.contains(&r.name) {
                    keys.push(r.name.clone());
                }
            }
        }
        if keys.is_empty() {
            // A result that expands to no case must not vanish from the report: it checked nothing.
            out.push(CaseResult::new(
                &suite_name,
                &test_name,
                "",
                Outcome::Error,
                "the result names no resource and the test has none".to_string(),
            ));
            continue;
        }
        let patched_file = field_str(result, "patchedResources").map(str::to_string);
        let operation = field_str(result, "operation");

        for key in keys {
            if !options.selected(&test_name, &key) {
                continue;
            }
            let case = |outcome: Outcome, reason: String| {
                CaseResult::new(&suite_name, &test_name, &key, outcome, reason)
            };
            // ValidatingPolicy and ValidatingAdmissionPolicy (policyctl-vpol), MutatingPolicy and
            // MutatingAdmissionPolicy (policyctl-mpol) run; the other CEL kinds do not yet. A policy of a kind that
            // runs but does not load is an error (below), not an unsupported kind.
            let runs = cel_flag.is_some_and(|f| {
                matches!(
                    *f,
                    "isValidatingPolicy"
                        | "isValidatingAdmissionPolicy"
                        | "isMutatingPolicy"
                        | "isMutatingAdmissionPolicy"
                )
            }) && matches!(
                suite.policies.get(&policy_name),
                Some(LoadedPolicy::Ready(_) | LoadedPolicy::Broken(_))
            );
            if let Some(flag) = cel_flag.filter(|_| !runs) {
                out.push(case(
                    Outcome::Unsupported,
                    format!("{flag}: CEL policy kinds are not supported"),
                ));
                continue;
            }
            match suite.policies.get(&policy_name) {
                None => {
                    out.push(case(
                        Outcome::Error,
                        format!("policy {policy_name} is not in the test's policy files"),
                    ));
                    continue;
                }
                Some(LoadedPolicy::Other { kind }) => {
                    out.push(case(
                        Outcome::Unsupported,
                        format!("policy kind {kind} is not supported"),
                    ));
                    continue;
                }
                Some(LoadedPolicy::Broken(e)) => {
                    out.push(case(Outcome::Error, format!("policy does not load: {e}")));
                    continue;
                }
                Some(LoadedPolicy::Ready(_)) => {}
            }
            if !["pass", "fail", "skip", "warn", "error"].contains(&expected.as_str()) {
                out.push(case(
                    Outcome::Error,
                    format!("unknown expected result {expected:?}"),
                ));
                continue;
            }
            let indices: Vec<usize> = suite
                .resources
                .iter()
                .enumerate()
                .filter(|(_, r)| r.matches_key(&key))
                .map(|(i, _)| i)
                .collect();
            if indices.is_empty() {
                out.push(case(
                    Outcome::Fail,
                    "resource not found in the test's resource files".into(),
                ));
                continue;
            }
            let mut found: Vec<(usize, RuleStatus, String, Option<Value>)> = Vec::new();
            let mut errors = Vec::new();
            for i in indices {
                let Some(evaluated) = suite.evaluate(&policy_name, i, operation) else {
                    continue;
                };
                errors.extend(evaluated.errors.iter().cloned());
                for r in &evaluated.rules {
                    let wanted = rule.is_empty()
                        || r.rule == rule
                        || r.rule == format!("autogen-{rule}")
                        || r.rule == format!("autogen-cronjob-{rule}");
                    if wanted {
                        found.push((i, r.status, r.message.clone(), evaluated.patched.clone()));
                    }
                }
            }
            if !errors.is_empty() {
                out.push(case(Outcome::Error, errors.join("; ")));
                continue;
            }
            if found.is_empty() {
                out.push(case(Outcome::Skip, format!("no rule response: the rule did not match the resource (expected {expected})")));
                continue;
            }
            if let Some((_, _, m, _)) = found.iter().find(|f| f.1 == RuleStatus::Unsupported) {
                out.push(case(Outcome::Unsupported, m.clone()));
                continue;
            }
            let wrong: Vec<String> = found
                .iter()
                .filter(|f| f.1.as_str() != expected)
                .map(|f| format!("want {expected}, got {}: {}", f.1.as_str(), f.2))
                .collect();
            if !wrong.is_empty() {
                out.push(case(Outcome::Fail, wrong.join("; ")));
                continue;
            }
            if let Some(file) = &patched_file {
                match check_patched(&suite, file, &found) {
                    Ok(()) => out.push(case(Outcome::Pass, String::new())),
                    Err(reason) => out.push(case(Outcome::Fail, reason.to_string())),
                }
                continue;
            }
            out.push(case(Outcome::Pass, String::new()));
        }
    }
    out
}

fn check_patched(
    suite: &Suite,
    file: &str,
    found: &[(usize, RuleStatus, String, Option<Value>)],
) -> Result<(), PatchedFailure> {
    let mut docs =
        read_documents(&suite.dir.join(file)).map_err(|source| PatchedFailure::File {
            file: file.to_string(),
            source,
        })?;
    for (_, d) in &mut docs {
        default_namespace(d);
    }
    let mut checked = false;
    for (index, _, _, patched) in found {
        let Some(resource) = suite.resources.get(*index) else {
            continue;
        };
        let actual = patched.as_ref().unwrap_or(&resource.value);
        let Some((_, expected)) = docs.iter().find(|(_, d)| same_object(d, actual)) else {
            continue;
        };
        checked = true;
        let (e, a) = (
            tidy(expected).unwrap_or(Value::Null),
            tidy(actual).unwrap_or(Value::Null),
        );
        if e != a {
            return Err(PatchedFailure::Differs {
                file: file.to_string(),
                diff: diff(&e, &a),
            });
        }
    }
    if !checked {
        return Ok(());
    }
    Ok(())
}

/// Why a test's patched resources do not check out (the case's failure).
#[derive(Debug, thiserror::Error)]
enum PatchedFailure {
    /// The patchedResources file cannot be read or parsed.
    #[error("patchedResources {file}: {source}")]
    File {
        file: String,
        #[source]
        source: FileError,
    },
    /// The mutated resource differs from the expected one.
    #[error("patched resource does not match {file}: {diff}")]
    Differs { file: String, diff: String },
}

impl SuiteRunner for KyvernoRunner {
    fn name(&self) -> &'static str {
        "kyverno"
    }

    fn sniff(&self, content: &str) -> bool {
        content.contains("cli.kyverno.io")
            || (content.contains("kyverno.io/v1") && content.contains("kind: Test"))
    }

    fn detect(&self, documents: &[Value]) -> bool {
        documents.iter().any(is_test)
    }

    fn run(&self, path: &Path, documents: Vec<Value>, options: &TestOptions) -> Vec<CaseResult> {
        documents
            .iter()
            .filter(|d| is_test(d))
            .flat_map(|d| run_test(path, d, options))
            .collect()
    }
}

fn is_test(doc: &Value) -> bool {
    doc.get("apiVersion")
        .and_then(Value::as_str)
        // `kyverno.io/v1` is the Test's older apiVersion, which the Kyverno CLI still reads.
        .is_some_and(|a| a.starts_with("cli.kyverno.io/") || a == "kyverno.io/v1")
        && doc.get("kind").and_then(Value::as_str) == Some("Test")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tidy_and_diff() {
        assert_eq!(
            tidy(&json!({"a": {}, "b": [], "c": null, "d": 1})),
            Some(json!({"d": 1}))
        );
        let d = diff(
            &json!({"a": 1, "b": {"c": 2}}),
            &json!({"a": 1, "b": {"c": 3}, "x": true}),
        );
        assert_eq!(d, "/b/c: expected 2, got 3; /x: unexpected true");
    }

    #[test]
    fn older_test_api_version_is_read() {
        assert!(is_test(
            &json!({"apiVersion": "kyverno.io/v1", "kind": "Test"})
        ));
        assert!(is_test(
            &json!({"apiVersion": "cli.kyverno.io/v1alpha1", "kind": "Test"})
        ));
        assert!(!is_test(
            &json!({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy"})
        ));
        assert!(KyvernoRunner.sniff("apiVersion: kyverno.io/v1\nkind: Test\n"));
    }

    #[test]
    fn case_insensitive_fields_and_keys() {
        let v = json!({"isMUtatingPolicy": true});
        assert_eq!(field(&v, "isMutatingPolicy"), Some(&json!(true)));
        let r = Resource {
            value: Value::Null,
            name: "p".into(),
            namespace: "ns".into(),
            payload: None,
        };
        assert!(r.matches_key("p"));
        assert!(r.matches_key("ns/p"));
        assert!(!r.matches_key("other/p"));
    }

    #[test]
    fn a_disagreement_between_the_test_and_webhook_paths_is_reported() {
        use crate::pipeline::{Outcome, PolicyRun};
        use crate::policy::{Evaluation, Violation};
        let yaml = "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata: {name: p}\nspec:\n  rules:\n    - name: r\n      match: {any: [{resources: {kinds: [Pod]}}]}\n      validate: {message: m, pattern: {metadata: {name: x}}}\n";
        let compiled = compile(
            &[SourceFile {
                origin: "p.yaml".into(),
                content: yaml.into(),
            }],
            &LoadOptions::default(),
        );
        let policy = compiled.built.policies[0].clone();
        let run = |violations: Vec<Violation>| PolicyRun {
            policy: policy.clone(),
            outcome: Outcome::from_evaluation(Evaluation::found(violations)),
            duration: std::time::Duration::ZERO,
        };
        let same = [run(vec![Violation::deny("r: m")])];
        assert_eq!(disagreement(&same, &same, &None, &None), None);
        let other = [run(Vec::new())];
        let found = disagreement(&same, &other, &None, &None).expect("a disagreement");
        assert!(found.contains("r: m"), "{found}");
        // A policy the webhook does not run is not compared.
        assert_eq!(disagreement(&same, &[], &None, &None), None);
    }
}
