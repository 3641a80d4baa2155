//! The Kyverno CEL libraries that need no network: `resource.Get` / `resource.List` (also spelled `resource.get` /
//! `resource.list`; cluster resources, from the
//! cluster context when serving and from a test's context file when testing), `image.GetMetadata` (image data, from
//! a test's context file; the webhook does not query registries), `parseServiceAccount` and `time.now()`.
//!
//! CEL overloads are plain functions, so the data source of the running evaluation sits in a thread-local, installed
//! by [`crate::Activation::evaluate`] for the evaluation's duration (nested evaluations, such as variables, see it).
use std::cell::RefCell;
use std::sync::Arc;

use cel::common::types::{CelString, STRING_TYPE};
use cel::common::value::CowVal;
use cel::{DeclarationError, Env, ExecutionError};
use serde_json::Value as Json;

use crate::bind;

/// Why one of Kyverno's CEL data libraries could not read what a policy asked for.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The Kubernetes API read failed.
    #[error(transparent)]
    Api(#[from] policyctl_core::policy::ApiReadError),
    /// A part of the resource's path is not one a policy may name (separators, queries, dot segments).
    #[error("invalid {what} {value:?}")]
    InvalidSegment {
        /// Which part: `apiVersion`, `resource`, `namespace`, `name`.
        what: &'static str,
        /// What the policy gave.
        value: String,
    },
    /// No metadata is known for the image.
    #[error("no metadata for image {image} (policyctl does not query registries; a test's context file can supply it)")]
    NoImageMetadata {
        /// The image asked for.
        image: String,
    },
    /// The evaluation has no data source (no cluster and no test context).
    #[error("no cluster or test context to read from")]
    NoSource,
}

/// Where Kyverno's CEL libraries read from.
pub trait KyvernoData: Send + Sync {
    /// One resource (`namespace` empty for cluster-scoped ones).
    fn get(
        &self,
        api_version: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Json, DataError>;
    /// A list (`{"items": [...]}`) of resources in a namespace (empty: every namespace).
    fn list(&self, api_version: &str, resource: &str, namespace: &str) -> Result<Json, DataError>;
    /// An image's metadata (`manifest`, `config`, ...).
    fn image_metadata(&self, image: &str) -> Result<Json, DataError>;
}

thread_local! {
    static DATA: RefCell<Option<Arc<dyn KyvernoData>>> = const { RefCell::new(None) };
}

/// Installs `data` for the current thread until the returned guard is dropped (the previous one is restored).
pub(crate) fn install(data: Option<Arc<dyn KyvernoData>>) -> Installed {
    let previous = DATA.with(|d| std::mem::replace(&mut *d.borrow_mut(), data));
    Installed(previous)
}

/// Restores the previous data source when dropped.
pub(crate) struct Installed(Option<Arc<dyn KyvernoData>>);

impl Drop for Installed {
    fn drop(&mut self) {
        let previous = self.0.take();
        DATA.with(|d| *d.borrow_mut() = previous);
    }
}

fn strings<'a>(args: &'a [CowVal<'_, '_>], function: &str) -> Result<Vec<&'a str>, ExecutionError> {
    args.iter()
        .map(|a| {
            a.downcast_ref::<CelString<'_>>()
                .map(|s| s.inner())
                .ok_or_else(|| {
                    ExecutionError::function_error(function, "expected string arguments")
                })
        })
        .collect()
}

fn with_data<T>(
    function: &str,
    f: impl FnOnce(&dyn KyvernoData) -> Result<T, DataError>,
) -> Result<T, ExecutionError> {
    DATA.with(|d| match d.borrow().as_ref() {
        Some(data) => f(data.as_ref()),
        None => Err(DataError::NoSource),
    })
    .map_err(|e| ExecutionError::function_error(function, e.to_string()))
}

fn json<'b, 'v>(value: Json) -> CowVal<'b, 'v> {
    CowVal::Owned(Box::new(bind::shared(&value)))
}

fn resource_get<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "resource.Get";
    let a = strings(&args, F)?;
    let [api_version, resource, namespace, name] = a[..] else {
        return Err(ExecutionError::invalid_argument_count(4, a.len()));
    };
    with_data(F, |d| d.get(api_version, resource, namespace, name)).map(json)
}

fn resource_list<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "resource.List";
    let a = strings(&args, F)?;
    let [api_version, resource, namespace] = a[..] else {
        return Err(ExecutionError::invalid_argument_count(3, a.len()));
    };
    with_data(F, |d| d.list(api_version, resource, namespace)).map(json)
}

fn image_get_metadata<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "image.GetMetadata";
    let a = strings(&args, F)?;
    let [image] = a[..] else {
        return Err(ExecutionError::invalid_argument_count(1, a.len()));
    };
    with_data(F, |d| d.image_metadata(image)).map(json)
}

/// `system:serviceaccount:<namespace>:<name>` → `{Namespace, Name}` (empty strings for other users).
pub fn parse_service_account(username: &str) -> Json {
    let (namespace, name) = username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .unwrap_or(("", ""));
    serde_json::json!({"Namespace": namespace, "Name": name})
}

fn parse_service_account_fn<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let a = strings(&args, "parseServiceAccount")?;
    let [username] = a[..] else {
        return Err(ExecutionError::invalid_argument_count(1, a.len()));
    };
    Ok(json(parse_service_account(username)))
}

/// `time.now()`: the current time (UTC).
fn time_now<'b, 'v>(_args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let now = chrono::Utc::now().fixed_offset();
    let value: Box<dyn cel::common::value::Val> = cel::Value::Timestamp(now).try_into()?;
    Ok(CowVal::Owned(value))
}

/// Registers the functions.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload("time.now", "kyverno_time_now", vec![], time_now)?;
    env.add_overload(
        "resource.Get",
        "kyverno_resource_get",
        vec![STRING_TYPE, STRING_TYPE, STRING_TYPE, STRING_TYPE],
        resource_get,
    )?;
    env.add_overload(
        "resource.List",
        "kyverno_resource_list",
        vec![STRING_TYPE, STRING_TYPE, STRING_TYPE],
        resource_list,
    )?;
    // The lower-case spellings newer Kyverno policies use.
    env.add_overload(
        "resource.get",
        "kyverno_resource_get_lower",
        vec![STRING_TYPE, STRING_TYPE, STRING_TYPE, STRING_TYPE],
        resource_get,
    )?;
    env.add_overload(
        "resource.list",
        "kyverno_resource_list_lower",
        vec![STRING_TYPE, STRING_TYPE, STRING_TYPE],
        resource_list,
    )?;
    env.add_overload(
        "image.GetMetadata",
        "kyverno_image_get_metadata",
        vec![STRING_TYPE],
        image_get_metadata,
    )?;
    env.add_overload(
        "parseServiceAccount",
        "kyverno_parse_service_account",
        vec![STRING_TYPE],
        parse_service_account_fn,
    )
}
