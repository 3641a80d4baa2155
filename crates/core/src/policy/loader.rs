//! Loading policy sources into a [`PolicySet`]: read the files, split the documents, hand each to the engine that
//! claims it, and collect every error with its file, document and field.

use std::path::Path;

use walkdir::WalkDir;

use super::set::content_hash;
use super::source::{documents, Document, LoadError, SourceFile, SourceRef};
use super::PolicySet;
use crate::engine::{Built, Engine, EngineInput, LoadOptions};

/// Kinds that may sit next to policies and are not policies: test suites and their companion files.
const IGNORED_KINDS: &[(&str, &str)] = &[
    ("test.gatekeeper.sh/", "Suite"),
    ("cli.kyverno.io/", "Test"),
    ("cli.kyverno.io/", "Values"),
    ("cli.kyverno.io/", "UserInfo"),
    // Gatekeeper's sync configuration: read by the cluster context (`cluster::inventory::sync_kinds`).
    ("config.gatekeeper.sh/", "Config"),
    ("syncset.gatekeeper.sh/", "SyncSet"),
];

/// Everything a load produced: the policies (if any), errors and warnings.
#[derive(Debug, Default)]
pub struct Compiled {
    /// The built policies, in load order.
    pub built: Built,
    /// Hash of the sources.
    pub hash: String,
    /// Number of source files read.
    pub files: usize,
}

impl Compiled {
    /// Turn a clean load into a policy set; any error rejects the whole load.
    pub fn into_set(self, generation: u64) -> Result<PolicySet, Vec<LoadError>> {
        if !self.built.errors.is_empty() {
            return Err(self.built.errors);
        }
        Ok(PolicySet::new(self.built.policies, generation, self.hash))
    }
}

/// Whether a file name is a policy source (`.yaml`, `.yml`, `.rego`, but not a `_test.rego`).
pub fn is_policy_file(name: &str) -> bool {
    (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".rego"))
        && !name.ends_with("_test.rego")
}

/// The policy files under `dir`, sorted by path, and the entries that could not be read: the one definition of which
/// files a policy directory holds, shared by the loader and the directory watcher. Hidden files and directories are
/// skipped and symbolic links followed (see [`read_dir`]).
pub fn policy_entries(dir: &Path) -> impl Iterator<Item = walkdir::Result<walkdir::DirEntry>> {
    WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|entry| match entry {
            Ok(e) => e.file_type().is_file() && is_policy_file(&e.file_name().to_string_lossy()),
            Err(_) => true,
        })
}

/// Read every policy file under `dir`, sorted by path.
///
/// Hidden files and directories (a name starting with `.`) are skipped: that is where Kubernetes keeps the `..data`
/// copies of a mounted ConfigMap, and where policy tests and their fixtures live (`.kyverno-test/`, `.gator-test/`).
/// Symbolic links are followed, so the files of a mounted ConfigMap are read through them.
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, Vec<LoadError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    if !dir.is_dir() {
        return Err(vec![LoadError::new(
            SourceRef::file(&dir.display().to_string()),
            "not a directory",
        )]);
    }
    for entry in policy_entries(dir) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                let origin = err
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| dir.display().to_string());
                errors.push(LoadError::new(
                    SourceRef::file(&origin),
                    format!("cannot read: {err}"),
                ));
                continue;
            }
        };
        let origin = entry.path().display().to_string();
        match std::fs::read(entry.path()) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(content) => files.push(SourceFile { origin, content }),
                Err(_) => errors.push(LoadError::new(SourceRef::file(&origin), "not valid UTF-8")),
            },
            Err(err) => errors.push(LoadError::new(
                SourceRef::file(&origin),
                format!("cannot read: {err}"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// Read policy files from paths that are files or directories (`lint a.yaml dir/`, `--policies` repeated): a
/// directory is read as [`read_dir`] reads it, a file is read as it is (it must be `.yaml`, `.yml` or `.rego`). A file
/// reached twice is read once. Every problem is returned, each naming its path.
pub fn read_paths(paths: &[impl AsRef<Path>]) -> Result<Vec<SourceFile>, Vec<LoadError>> {
    let mut files: Vec<SourceFile> = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let origin = path.display().to_string();
        if path.is_dir() {
            match read_dir(path) {
                Ok(found) => files.extend(found),
                Err(e) => errors.extend(e),
            }
            continue;
        }
        if !path.exists() {
            errors.push(LoadError::new(
                SourceRef::file(&origin),
                "no such file or directory",
            ));
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if !(name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".rego")) {
            errors.push(LoadError::new(
                SourceRef::file(&origin),
                "not a policy file: policy files end in .yaml, .yml or .rego",
            ));
            continue;
        }
        match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(content) => files.push(SourceFile { origin, content }),
                Err(_) => errors.push(LoadError::new(SourceRef::file(&origin), "not valid UTF-8")),
            },
            Err(err) => errors.push(LoadError::new(
                SourceRef::file(&origin),
                format!("cannot read: {err}"),
            )),
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.origin.clone()));
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// Read and compile files and directories with `engines` (see [`read_paths`]).
pub fn compile_paths_with(
    engines: &[Box<dyn Engine>],
    paths: &[impl AsRef<Path>],
    options: &LoadOptions,
) -> Compiled {
    match read_paths(paths) {
        Ok(files) => compile_with(engines, &files, options),
        Err(errors) => Compiled {
            built: Built {
                errors,
                ..Built::default()
            },
            ..Compiled::default()
        },
    }
}

/// Build policies from source files: every YAML document goes to the engine that claims its apiVersion and kind,
/// every other file to the engine that claims the file. Nothing is dropped silently: a document no engine claims is an
/// error, unless it is one of the test kinds that live beside policies.
///
/// The engines are given by the caller (the core knows no policy language); `policyctl-engines` has the entry points
/// with every engine.
pub fn compile_with(
    engines: &[Box<dyn Engine>],
    files: &[SourceFile],
    options: &LoadOptions,
) -> Compiled {
    let mut inputs: Vec<EngineInput> = engines.iter().map(|_| EngineInput::default()).collect();
    let mut errors = Vec::new();
    let mut unclaimed = Vec::new();
    for file in files {
        if file.is_rego() {
            match engines.iter().position(|e| e.claims_file(file)) {
                Some(i) => inputs[i].files.push(file.clone()),
                None => errors.push(LoadError::new(
                    SourceRef::file(&file.origin),
                    "no engine loads this file",
                )),
            }
            continue;
        }
        let (docs, doc_errors) = documents(file);
        errors.extend(doc_errors);
        for doc in docs {
            route(doc, engines, &mut inputs, &mut unclaimed);
        }
    }
    // Documents no engine claims: the parameter resources an engine's policies name, else unknown kinds.
    let param_kinds: Vec<Vec<(String, String)>> = engines
        .iter()
        .zip(&inputs)
        .map(|(e, input)| e.param_kinds(&input.documents))
        .collect();
    for doc in unclaimed {
        let mut taken = false;
        for (i, kinds) in param_kinds.iter().enumerate() {
            if kinds
                .iter()
                .any(|(v, k)| *v == doc.api_version && *k == doc.kind)
            {
                inputs[i].params.push(doc.clone());
                taken = true;
            }
        }
        if !taken {
            let known: Vec<&str> = engines.iter().flat_map(|e| e.kinds()).collect();
            errors.push(doc.error_at(
                "kind",
                format!(
                    "unknown policy kind {:?} (apiVersion {:?}); policyctl loads: {}",
                    doc.kind,
                    doc.api_version,
                    known.join(", ")
                ),
            ));
        }
    }
    let mut built = Built {
        errors,
        ..Built::default()
    };
    for (engine, input) in engines.iter().zip(inputs) {
        if input.documents.is_empty() && input.files.is_empty() && input.params.is_empty() {
            continue;
        }
        let part = engine.build(input, options);
        built.policies.extend(part.policies);
        built.errors.extend(part.errors);
        built.warnings.extend(part.warnings);
    }
    // Engines that share documents (exceptions given to several engines) may report the same problem: once each.
    dedup(&mut built.errors);
    dedup(&mut built.warnings);
    match &options.known_kinds {
        Some(known) => known.resolve(&mut built.warnings),
        None => super::kinds::drop_cluster_only(&mut built.warnings),
    }
    Compiled {
        built,
        hash: content_hash(files),
        files: files.len(),
    }
}

/// Drop later copies of equal problems, keeping the order.
fn dedup(list: &mut Vec<LoadError>) {
    let mut seen: Vec<LoadError> = Vec::with_capacity(list.len());
    list.retain(|e| {
        if seen.contains(e) {
            false
        } else {
            seen.push(e.clone());
            true
        }
    });
}

fn route(
    doc: Document,
    engines: &[Box<dyn Engine>],
    inputs: &mut [EngineInput],
    unclaimed: &mut Vec<Document>,
) {
    if let Some(i) = engines
        .iter()
        .position(|e| e.claims(&doc.api_version, &doc.kind))
    {
        inputs[i].documents.push(doc);
        return;
    }
    let ignored = IGNORED_KINDS
        .iter()
        .any(|(group_prefix, kind)| doc.api_version.starts_with(group_prefix) && doc.kind == *kind);
    if !ignored {
        unclaimed.push(doc);
    }
}

/// Read and compile a directory with `engines`.
pub fn compile_dir_with(
    engines: &[Box<dyn Engine>],
    dir: &Path,
    options: &LoadOptions,
) -> Compiled {
    match read_dir(dir) {
        Ok(files) => compile_with(engines, &files, options),
        Err(errors) => Compiled {
            built: Built {
                errors,
                ..Built::default()
            },
            ..Compiled::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The core alone: no engine claims anything.
    fn compile(files: &[SourceFile], options: &LoadOptions) -> Compiled {
        compile_with(&[], files, options)
    }

    fn src(origin: &str, content: &str) -> SourceFile {
        SourceFile {
            origin: origin.into(),
            content: content.into(),
        }
    }

    /// Claims `example.com/v1 Param` policies, whose `spec.paramKind` names their parameter kind.
    struct ParamEngine;

    impl Engine for ParamEngine {
        fn name(&self) -> &'static str {
            "param"
        }
        fn claims(&self, api_version: &str, kind: &str) -> bool {
            api_version == "example.com/v1" && kind == "Param"
        }
        fn param_kinds(&self, documents: &[Document]) -> Vec<(String, String)> {
            documents
                .iter()
                .filter_map(|d| d.value.pointer("/spec/paramKind").and_then(|v| v.as_str()))
                .map(|k| ("v1".to_string(), k.to_string()))
                .collect()
        }
        fn kinds(&self) -> Vec<&'static str> {
            vec!["example.com/v1 Param"]
        }
        fn build(&self, input: EngineInput, _: &LoadOptions) -> Built {
            Built {
                warnings: input
                    .params
                    .iter()
                    .map(|d| d.error_at("", format!("param {}", d.name())))
                    .collect(),
                ..Built::default()
            }
        }
    }

    #[test]
    fn documents_of_a_declared_param_kind_go_to_the_engine_others_are_unknown() {
        let files = [src(
            "p.yaml",
            "apiVersion: example.com/v1\nkind: Param\nmetadata: {name: p}\nspec: {paramKind: ConfigMap}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n",
        )];
        let engines: Vec<Box<dyn Engine>> = vec![Box::new(ParamEngine)];
        let compiled = compile_with(&engines, &files, &LoadOptions::default());
        let warnings: Vec<String> = compiled
            .built
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].ends_with("param cm"), "{warnings:?}");
        let errors: Vec<String> = compiled
            .built
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("unknown policy kind \"Secret\""),
            "{errors:?}"
        );
    }

    #[test]
    fn files_and_directories_are_read_once_each() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::write(sub.join("a.rego"), "package a\n").expect("write");
        std::fs::write(dir.path().join("b.yaml"), "a: 1\n").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "x").expect("write");
        let files = read_paths(&[sub.clone(), sub.join("a.rego"), dir.path().join("b.yaml")])
            .expect("reads");
        assert_eq!(files.len(), 2);
        let errors = read_paths(&[
            dir.path().join("notes.txt"),
            dir.path().join("missing.yaml"),
        ])
        .expect_err("refused");
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(texts[0]
            .ends_with("notes.txt: not a policy file: policy files end in .yaml, .yml or .rego"));
        assert!(texts[1].ends_with("missing.yaml: no such file or directory"));
    }

    #[test]
    fn unknown_kind_names_file_document_and_field() {
        let compiled = compile(
            &[src(
                "p/a.yaml",
                "apiVersion: v1\nkind: Suite\n---\napiVersion: example.com/v1\nkind: Mystery\n",
            )],
            &LoadOptions::default(),
        );
        let errors: Vec<String> = compiled
            .built
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("p/a.yaml, document 1: kind: unknown policy kind \"Suite\""),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("p/a.yaml, document 2: kind: unknown policy kind \"Mystery\""),
            "{errors:?}"
        );
    }

    #[test]
    fn test_kinds_beside_policies_are_ignored() {
        let compiled = compile(
            &[src(
                "p/suite.yaml",
                "apiVersion: test.gatekeeper.sh/v1alpha1\nkind: Suite\ntests: []\n",
            )],
            &LoadOptions::default(),
        );
        assert!(compiled.built.errors.is_empty());
        assert!(compiled.built.policies.is_empty());
    }

    #[test]
    fn reads_directories_sorted_skipping_hidden_entries_and_tests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::create_dir_all(root.join(".kyverno-test")).expect("mkdir");
        std::fs::write(root.join("b.rego"), "package b").expect("write");
        std::fs::write(root.join("a.yaml"), "").expect("write");
        std::fs::write(root.join("sub/c.yml"), "").expect("write");
        std::fs::write(root.join("a_test.rego"), "package t").expect("write");
        std::fs::write(root.join("notes.txt"), "").expect("write");
        std::fs::write(root.join(".hidden.yaml"), "").expect("write");
        std::fs::write(root.join(".kyverno-test/x.yaml"), "").expect("write");
        let files = read_dir(root).expect("reads");
        let names: Vec<String> = files
            .iter()
            .map(|f| {
                Path::new(&f.origin)
                    .strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["a.yaml", "b.rego", "sub/c.yml"]);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let err = read_dir(Path::new("/nonexistent/policies")).expect_err("missing");
        assert_eq!(err[0].to_string(), "/nonexistent/policies: not a directory");
    }
}
