//! What `eval` and `bench` read: the policy set of a directory and the reviews of manifest or AdmissionReview files,
//! loaded the way the webhook loads and decodes them.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::admission::{self, Operation, Review};
use crate::cli::OperationArg;
use crate::engine::LoadOptions;
use crate::policy::loader::{self, Compiled};
use crate::policy::source::yaml_documents;
use crate::policy::{PolicySet, SourceFile, SourceRef};

/// Compile policy files and directories as one set; any load error is printed and fails the command.
pub fn policy_set(
    paths: &[impl AsRef<Path>],
    options: &LoadOptions,
) -> anyhow::Result<(PolicySet, Compiled)> {
    let compiled = loader::compile_paths(paths, options);
    if !compiled.built.errors.is_empty() {
        for error in &compiled.built.errors {
            eprintln!("error: {error}");
        }
        bail!(
            "{} errors loading {}",
            compiled.built.errors.len(),
            paths
                .iter()
                .map(|p| p.as_ref().display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let hash = compiled.hash.clone();
    let set = PolicySet::new(compiled.built.policies.clone(), 0, hash);
    Ok((set, compiled))
}

impl From<OperationArg> for Operation {
    fn from(op: OperationArg) -> Operation {
        match op {
            OperationArg::Create => Operation::Create,
            OperationArg::Update => Operation::Update,
            OperationArg::Delete => Operation::Delete,
        }
    }
}

/// Every document of `files` (files or directories of them, `-` for stdin; see [`sources`]) as a review: an
/// AdmissionReview as it is, a plain manifest as a synthesized review of `operation`.
pub fn reviews(files: &[String], operation: Operation) -> anyhow::Result<Vec<(SourceRef, Review)>> {
    let mut out = Vec::new();
    for source in sources(files)? {
        let documents = yaml_documents(&source).map_err(|e| anyhow::anyhow!("{e}"))?;
        for (origin, document) in documents {
            let review = if document.get("kind").and_then(Value::as_str) == Some("AdmissionReview")
            {
                admission::from_value(document).with_context(|| format!("{origin}"))?
            } else {
                Review::for_object(document, None, operation.clone())
            };
            out.push((origin, review));
        }
    }
    Ok(out)
}

/// Every resource of `files`: files or directories of them (`*.yaml`, `*.yml`, `*.json`, hidden entries skipped),
/// `-` for stdin; several documents per file; the items of a `List` (what `kubectl get -o yaml` prints) each count.
pub fn objects(files: &[String]) -> anyhow::Result<Vec<Value>> {
    let sources = sources(files)?;
    let mut out = Vec::new();
    for source in &sources {
        let documents = yaml_documents(source).map_err(|e| anyhow::anyhow!("{e}"))?;
        for (_, document) in documents {
            let is_list = document.get("kind").and_then(Value::as_str) == Some("List");
            match document.get("items").and_then(Value::as_array) {
                Some(items) if is_list => out.extend(items.iter().cloned()),
                _ if document.is_object() => out.push(document),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The files of `files`: each a file, `-` for stdin, or a directory whose `*.yaml`, `*.yml` and `*.json` files are
/// read (recursively, sorted, hidden entries skipped).
pub fn sources(files: &[String]) -> anyhow::Result<Vec<SourceFile>> {
    let mut sources = Vec::new();
    for file in files {
        let path = Path::new(file);
        if file != "-" && path.is_dir() {
            let before = sources.len();
            for entry in walkdir::WalkDir::new(path)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| {
                    e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.')
                })
            {
                let entry = entry.with_context(|| format!("reading {file}"))?;
                let name = entry.file_name().to_string_lossy();
                if entry.file_type().is_file()
                    && [".yaml", ".yml", ".json"].iter().any(|x| name.ends_with(x))
                {
                    sources.push(read_source(&entry.path().display().to_string())?);
                }
            }
            if sources.len() == before {
                bail!("{file}: no *.yaml, *.yml or *.json file in this directory");
            }
        } else {
            sources.push(read_source(file)?);
        }
    }
    Ok(sources)
}

fn read_source(file: &str) -> anyhow::Result<SourceFile> {
    if file == "-" {
        let mut content = String::new();
        std::io::stdin()
            .read_to_string(&mut content)
            .context("reading stdin")?;
        return Ok(SourceFile {
            origin: "<stdin>".into(),
            content,
        });
    }
    let content = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
    Ok(SourceFile {
        origin: file.to_string(),
        content,
    })
}
