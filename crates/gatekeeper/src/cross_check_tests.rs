//! The regorus VM against the interpreter on real templates: every template under the repository's
//! `policies/gatekeeper` and `benches/fixtures/gatekeeper`, with its constraints' parameters, over its sample objects
//! and variants of them with one field removed, set to `null` or given another type (the paths where Rego meets
//! undefined values and wrong types, where the engines diverged: regorus patches 12 and 13). The VM's answer must be
//! the interpreter's, result for result.
//!
//! `POLICYCTL_CROSS_CHECK_DIRS` (absolute paths separated by `:`; tests run in the crate's directory) adds
//! directories, e.g. the shared gatekeeper-library in the conformance step of `.ci/run`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::review;
use super::template::{Evaluator, Template};
use crate::policy::source::{documents, Document};
use crate::policy::SourceFile;

/// Every `*.yaml`/`*.yml` under `dir`, hidden directories included (gator suites live in `.gator-test`).
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn docs_of(path: &Path) -> Vec<Document> {
    let content = std::fs::read_to_string(path).unwrap_or_default();
    let file = SourceFile {
        origin: path.display().to_string(),
        content,
    };
    documents(&file).0
}

/// A template with what to run it on: its constraints' parameters and the objects found beside it.
struct Case {
    template: Document,
    parameters: Vec<Value>,
    objects: Vec<Value>,
}

/// The templates under `root`. A template's constraints and objects are the documents in its directory (and below);
/// a template alone in a directory of templates (the bench fixtures) takes the constraints in its own file and
/// `fallback` objects.
fn cases(root: &Path, fallback: &[Value]) -> Vec<Case> {
    let mut files = Vec::new();
    yaml_files(root, &mut files);
    let mut by_dir: BTreeMap<PathBuf, Vec<(PathBuf, Document)>> = BTreeMap::new();
    for file in &files {
        for doc in docs_of(file) {
            if doc.kind == "ConstraintTemplate" {
                let dir = file.parent().unwrap_or(root).to_path_buf();
                by_dir.entry(dir).or_default().push((file.clone(), doc));
            }
        }
    }
    let mut out = Vec::new();
    for (dir, templates) in by_dir {
        let shared_dir = templates.len() > 1;
        for (file, template) in templates {
            let kind = template.value["spec"]["crd"]["spec"]["names"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut parameters = Vec::new();
            let mut objects = Vec::new();
            let scope: Vec<PathBuf> = if shared_dir {
                vec![file.clone()]
            } else {
                files
                    .iter()
                    .filter(|f| f.starts_with(&dir))
                    .cloned()
                    .collect()
            };
            for path in scope {
                for doc in docs_of(&path) {
                    if doc.api_version.starts_with(crate::CONSTRAINTS_GROUP) {
                        if doc.kind == kind {
                            parameters.push(doc.value["spec"]["parameters"].clone());
                        }
                    } else if doc.value["metadata"].is_object()
                        && !doc.api_version.starts_with("templates.gatekeeper.sh")
                        && !doc.api_version.starts_with("test.gatekeeper.sh")
                        && doc.kind != "AdmissionReview"
                    {
                        objects.push(doc.value);
                    }
                }
            }
            if parameters.is_empty() {
                parameters.push(Value::Null);
            }
            if objects.is_empty() {
                objects = fallback.to_vec();
            }
            out.push(Case {
                template,
                parameters,
                objects,
            });
        }
    }
    out
}

/// The paths of every node below the root of `value`, in document order.
fn paths(value: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                prefix.push(Value::from(k.as_str()));
                out.push(prefix.clone());
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                prefix.push(Value::from(i));
                out.push(prefix.clone());
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

/// What a variant does to one node.
#[derive(Clone, Copy)]
enum Edit {
    Remove,
    Null,
    /// Another type: a string becomes a number (`"1"` → `1`, else `1`), a number or a boolean a string, an object an
    /// empty array, an array an empty object.
    Retype,
}

fn retyped(value: &Value) -> Value {
    match value {
        Value::String(s) => s
            .parse::<serde_json::Number>()
            .map(Value::Number)
            .unwrap_or(Value::from(1)),
        Value::Number(n) => Value::from(n.to_string()),
        Value::Bool(b) => Value::from(b.to_string()),
        Value::Object(_) => Value::Array(Vec::new()),
        Value::Array(_) => Value::Object(Default::default()),
        Value::Null => Value::from(0),
    }
}

/// `value` with `edit` applied to the node at `path`.
fn edited(value: &Value, path: &[Value], edit: Edit) -> Value {
    let mut copy = value.clone();
    let mut node = &mut copy;
    let Some((last, parents)) = path.split_last() else {
        return copy;
    };
    for step in parents {
        node = match step {
            Value::String(k) => &mut node[k.as_str()],
            _ => &mut node[step.as_u64().unwrap_or_default() as usize],
        };
    }
    match (node, last) {
        (Value::Object(map), Value::String(k)) => match edit {
            Edit::Remove => {
                map.remove(k);
            }
            Edit::Null => {
                map.insert(k.clone(), Value::Null);
            }
            Edit::Retype => {
                if let Some(v) = map.get_mut(k) {
                    *v = retyped(v);
                }
            }
        },
        (Value::Array(items), Value::Number(i)) => {
            let i = i.as_u64().unwrap_or_default() as usize;
            match edit {
                Edit::Remove => {
                    items.remove(i);
                }
                Edit::Null => items[i] = Value::Null,
                Edit::Retype => items[i] = retyped(&items[i]),
            }
        }
        _ => {}
    }
    copy
}

/// The object and its variants: every node removed, set to `null`, and given another type (`apiVersion` and
/// `kind` left alone: they decide what the template sees at all).
fn variants(object: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    paths(object, &mut Vec::new(), &mut all);
    let mut out = vec![object.clone()];
    for path in all {
        if path.first() == Some(&Value::from("apiVersion"))
            || path.first() == Some(&Value::from("kind"))
        {
            continue;
        }
        for edit in [Edit::Remove, Edit::Null, Edit::Retype] {
            out.push(edited(object, &path, edit));
        }
    }
    out
}

/// Cross-check every case under `root`; the disagreements, described.
fn cross_check(root: &Path, fallback: &[Value]) -> (usize, usize, Vec<String>) {
    let timeout = Duration::from_secs(10);
    let mut templates = 0;
    let mut evaluations = 0;
    let mut disagreements = Vec::new();
    for case in cases(root, fallback) {
        let Ok((template, _)) = Template::load_with(&case.template, timeout, true) else {
            continue;
        };
        if template.evaluator() != Evaluator::Vm {
            continue;
        }
        templates += 1;
        for object in &case.objects {
            for variant in variants(object) {
                let Ok(request) = review::gator_request(variant.clone()) else {
                    continue;
                };
                let shared = crate::support::to_rego(&serde_json::json!({ "request": request }));
                let Ok(served) = review::served_review(&shared, &request, None) else {
                    continue;
                };
                for parameters in &case.parameters {
                    let input = review::input(&served, &crate::support::to_rego(parameters));
                    evaluations += 1;
                    if let Err(disagreement) = template.cross_check(&input, None, timeout) {
                        if disagreements.len() < 20 {
                            disagreements.push(format!(
                                "{}: parameters {parameters}\n  object {variant}\n{disagreement}",
                                case.template.source
                            ));
                        }
                    }
                }
            }
        }
    }
    (templates, evaluations, disagreements)
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_vm_gives_the_interpreters_answers_on_the_bundled_and_bench_templates_and_their_variants() {
    let repo = repository();
    // Objects for templates that have none beside them: every object of the bundled samples.
    let mut fallback = Vec::new();
    for case in cases(&repo.join("policies/gatekeeper"), &[]) {
        fallback.extend(case.objects);
    }
    let mut roots = vec![
        repo.join("policies/gatekeeper"),
        repo.join("benches/fixtures/gatekeeper"),
    ];
    if let Ok(extra) = std::env::var("POLICYCTL_CROSS_CHECK_DIRS") {
        roots.extend(
            extra
                .split(':')
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
        );
    }
    let mut all = Vec::new();
    for root in &roots {
        let (templates, evaluations, disagreements) = cross_check(root, &fallback);
        eprintln!(
            "{}: {templates} templates on the VM, {evaluations} evaluations cross-checked, {} disagreements",
            root.display(),
            disagreements.len()
        );
        assert!(
            templates > 0 && evaluations > templates,
            "{}: nothing was cross-checked",
            root.display()
        );
        all.extend(disagreements);
    }
    assert!(all.is_empty(), "{}", all.join("\n"));
}
