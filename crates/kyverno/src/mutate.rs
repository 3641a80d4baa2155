//! `mutate` rules: `patchStrategicMerge` (with anchors), `patchesJson6902` (Kyverno's apply options) and `foreach`.
//!
//! Strategic merge: maps merge recursively, `null` deletes a key; lists of maps merge by the first of Kyverno's
//! (kyaml's) associative keys that every overlay element has (`mountPath`, `devicePath`, `ip`, `type`,
//! `topologyKey`, `name`, `containerPort`), other lists are replaced. `$patch: delete` removes a matched element,
//! `$patch: replace` replaces the map or list it is in.

use serde_json::{Map, Value};

use super::eval::{check_conditions, load_context, ConditionError, ContextError, Env};
use super::pattern::{match_pattern, parse_anchor, Anchor};
use super::result::{RuleResponse, RuleStatus, RuleType};
use super::spec::{ForEachMutation, Mutation};
use super::validate::set_element;
use super::variables::{substitute, substitute_str, Context, Mode, Shared, VarError};

/// Why a `mutate` rule could not be applied; the message of its `error` response.
#[derive(Debug, thiserror::Error)]
pub enum MutateError {
    /// A variable of a patch could not be substituted.
    #[error("variable substitution failed: {source}")]
    Substitution {
        /// The substitution's error.
        #[source]
        source: VarError,
    },
    /// `patchesJson6902` (after substitution) is not YAML.
    #[error("patchesJson6902 is not valid YAML: {source}")]
    Yaml {
        /// The YAML parser's error.
        #[source]
        source: serde_yaml::Error,
    },
    /// `patchesJson6902` is not a list.
    #[error("patchesJson6902 must be a list of operations")]
    NotAList,
    /// An operation of `patchesJson6902` failed.
    #[error(transparent)]
    Patch(#[from] PatchError),
    /// A foreach element's context entries could not be loaded.
    #[error("failed to load context: {0}")]
    Context(#[source] ContextError),
    /// A foreach element's preconditions could not be evaluated.
    #[error("failed to evaluate preconditions: {0}")]
    Preconditions(#[source] ConditionError),
    /// The request's deadline passed while the elements were patched.
    #[error("{}", super::eval::DEADLINE_MESSAGE)]
    Deadline,
}

impl From<VarError> for MutateError {
    fn from(source: VarError) -> MutateError {
        MutateError::Substitution { source }
    }
}

/// Why a JSON patch (RFC 6902) operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// A path that is not a JSON pointer.
    #[error("invalid JSON pointer {0:?}")]
    Pointer(String),
    /// A list index that is not a number (nor `-` where allowed).
    #[error("invalid array index {0:?}")]
    Index(String),
    /// A list index past the list.
    #[error("array index {0} out of bounds")]
    OutOfBounds(String),
    /// `add` would create a path below a scalar.
    #[error("cannot create a path through a scalar at {0:?}")]
    ThroughScalar(String),
    /// The path does not exist.
    #[error("path {0} not found")]
    NotFound(String),
    /// `add` found no parent to add to.
    #[error("cannot add at {0}")]
    CannotAdd(String),
    /// `add` found a scalar parent.
    #[error("cannot add at {0}: parent is not a map or a list")]
    ScalarParent(String),
    /// `remove` or `move` of the root.
    #[error("cannot remove the whole document")]
    RemoveRoot,
    /// An operation without `path`.
    #[error("operation {0:?} has no path")]
    NoPath(String),
    /// An `add`, `replace` or `test` without `value`.
    #[error("operation {op} {path} has no value")]
    NoValue {
        /// The operation.
        op: String,
        /// Its path.
        path: String,
    },
    /// A `move` or `copy` without `from`.
    #[error("operation {op} {path} has no from")]
    NoFrom {
        /// The operation.
        op: String,
        /// Its path.
        path: String,
    },
    /// A `test` operation whose value differs.
    #[error("test operation at {0} failed")]
    TestFailed(String),
    /// An operation RFC 6902 does not have.
    #[error("unknown patch operation {0:?}")]
    UnknownOperation(String),
}

fn response(rule: &str, status: RuleStatus, message: impl Into<String>) -> RuleResponse {
    RuleResponse::new(rule, RuleType::Mutation, status, message)
}

/// Apply the `mutate` part of a rule to `resource`. Returns the response and the new resource when it changed.
pub fn mutate(
    rule: &str,
    m: &Mutation,
    ctx: &Context<'_>,
    resource: &Value,
    env: &Env<'_>,
) -> (RuleResponse, Option<Value>) {
    let result = if let Some(list) = &m.foreach {
        foreach(rule, list, ctx, resource, 0, env)
    } else {
        apply_patches(
            m.patch_strategic_merge.as_ref(),
            m.patches_json6902.as_deref(),
            ctx,
            resource,
        )
    };
    match result {
        Err(e) => (response(rule, RuleStatus::Error, e.to_string()), None),
        Ok(Some(patched)) if patched != *resource => (
            response(rule, RuleStatus::Pass, "resource patched"),
            Some(patched),
        ),
        Ok(_) => (response(rule, RuleStatus::Skip, "no patches applied"), None),
    }
}

fn apply_patches(
    psm: Option<&Value>,
    json6902: Option<&str>,
    ctx: &Context<'_>,
    resource: &Value,
) -> Result<Option<Value>, MutateError> {
    let mut current = resource.clone();
    let mut changed = false;
    if let Some(overlay) = psm {
        let overlay = substitute(overlay, ctx, Mode::Strict)?;
        if let Some(patched) = strategic_merge_with_anchors(&current, &overlay) {
            changed |= patched != current;
            current = patched;
        }
    }
    if let Some(text) = json6902 {
        let text = match substitute_str(text, ctx, Mode::Strict)? {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let ops: Value =
            serde_yaml::from_str(&text).map_err(|source| MutateError::Yaml { source })?;
        let ops = substitute(&ops, ctx, Mode::Strict)?;
        let Value::Array(ops) = ops else {
            return Err(MutateError::NotAList);
        };
        apply_json6902(&mut current, &ops)?;
        changed = true;
    }
    Ok(changed.then_some(current))
}

fn foreach(
    rule: &str,
    list: &[ForEachMutation],
    ctx: &Context<'_>,
    resource: &Value,
    nesting: usize,
    env: &Env<'_>,
) -> Result<Option<Value>, MutateError> {
    let mut current = resource.clone();
    let mut changed = false;
    // The context with `request.object` = `current`, updated only when an element changed it (never per element:
    // that would copy the object once per element).
    let mut lctx = ctx.clone();
    set_object(&mut lctx, &current);
    for fe in list {
        // The list is evaluated against the resource as patched so far.
        // Owned: the context changes (`set_object`) while the elements are in use.
        let Some(items) = lctx
            .elements_compiled(&fe.list, fe.compiled_list.as_ref())
            .map(|items| {
                items
                    .into_iter()
                    .map(Shared::into_owned)
                    .collect::<Vec<_>>()
            })
        else {
            continue;
        };
        let descending = match fe.order.as_deref() {
            Some(o) => o.eq_ignore_ascii_case("Descending"),
            None => fe.patch_strategic_merge.is_some(),
        };
        let mut order: Vec<usize> = (0..items.len()).collect();
        if descending {
            order.reverse();
        }
        for index in order {
            let Some(element) = items.get(index) else {
                continue;
            };
            if element.is_null() {
                continue;
            }
            if env.expired() {
                return Err(MutateError::Deadline);
            }
            let mut ectx = lctx.clone();
            set_element(&mut ectx, element, index, nesting);
            env.apply_foreach_values(rule, index, &mut ectx);
            load_context(&fe.context, &mut ectx, env, rule).map_err(MutateError::Context)?;
            if let Some(p) = &fe.preconditions {
                let outcome = check_conditions(p, &ectx, Mode::Lenient)
                    .map_err(MutateError::Preconditions)?;
                if !outcome.holds {
                    continue;
                }
            }
            let patched = if let Some(nested) = &fe.foreach {
                foreach(rule, nested, &ectx, &current, nesting + 1, env)?
            } else {
                apply_patches(
                    fe.patch_strategic_merge.as_ref(),
                    fe.patches_json6902.as_deref(),
                    &ectx,
                    &current,
                )?
            };
            if let Some(p) = patched {
                if p != current {
                    changed = true;
                    current = p;
                    set_object(&mut lctx, &current);
                }
            }
        }
    }
    Ok(changed.then_some(current))
}

/// Compile the `list` of foreach entries (and of their nested entries) in place.
pub fn compile_foreach(list: &mut [ForEachMutation]) {
    for fe in list {
        fe.compiled_list = super::variables::CompiledList::new(&fe.list);
        if let Some(nested) = fe.foreach.as_mut() {
            compile_foreach(nested);
        }
    }
}

/// Make `request.object` the given object in a context (a copy of the object: call it when the object changes, not
/// per element).
pub fn set_object(ctx: &mut Context<'_>, object: &Value) {
    ctx.set_object(object);
}

// ---------------------------------------------------------------- strategic merge with anchors

#[derive(Debug)]
enum AnchorFail {
    Condition,
    Global,
}

fn has_conditions(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            matches!(
                parse_anchor(k),
                Some((Anchor::Condition | Anchor::Global, _))
            ) || has_conditions(v)
        }),
        Value::Array(a) => a.iter().any(has_conditions),
        _ => false,
    }
}

fn has_global(v: &Value) -> bool {
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| matches!(parse_anchor(k), Some((Anchor::Global, _))) || has_global(v)),
        Value::Array(a) => a.iter().any(has_global),
        _ => false,
    }
}

/// Resolve the anchors of an overlay against the resource and merge it. `None`: a condition failed, nothing to
/// apply.
pub fn strategic_merge_with_anchors(resource: &Value, overlay: &Value) -> Option<Value> {
    let processed = match preprocess(overlay, resource) {
        Ok(p) => p,
        Err(AnchorFail::Condition | AnchorFail::Global) => return None,
    };
    let mut out = resource.clone();
    merge(&mut out, &processed);
    Some(out)
}

fn preprocess(overlay: &Value, resource: &Value) -> Result<Value, AnchorFail> {
    match overlay {
        Value::Object(pmap) => {
            let rmap = resource.as_object();
            for (k, v) in pmap {
                match parse_anchor(k) {
                    Some((Anchor::Condition, bare)) => match rmap.and_then(|m| m.get(bare)) {
                        Some(rv) if match_pattern(rv, &strip(v)).is_ok() => {}
                        _ => return Err(AnchorFail::Condition),
                    },
                    Some((Anchor::Global, bare)) => match rmap.and_then(|m| m.get(bare)) {
                        Some(rv) if match_pattern(rv, &strip(v)).is_ok() => {}
                        _ => return Err(AnchorFail::Global),
                    },
                    _ => {}
                }
            }
            let mut out = Map::new();
            for (k, v) in pmap {
                match parse_anchor(k) {
                    Some((Anchor::Condition | Anchor::Global, _)) => {}
                    Some((Anchor::AddIfNotPresent, bare)) => {
                        let present = rmap.and_then(|m| m.get(bare)).is_some_and(|v| !v.is_null());
                        if !present {
                            out.insert(bare.to_string(), strip(v));
                        }
                    }
                    Some((_, bare)) => {
                        let child = rmap.and_then(|m| m.get(bare)).unwrap_or(&Value::Null);
                        out.insert(bare.to_string(), preprocess(v, child)?);
                    }
                    None => {
                        let child = rmap.and_then(|m| m.get(k)).unwrap_or(&Value::Null);
                        if child.is_null() && has_global(v) {
                            // A global condition on something the resource does not have cannot hold.
                            return Err(AnchorFail::Global);
                        }
                        let processed = preprocess(v, child)?;
                        // A list of conditional elements none of which applied is left out of the patch.
                        let emptied = v.as_array().is_some_and(|a| !a.is_empty())
                            && processed.as_array().is_some_and(Vec::is_empty);
                        if !emptied {
                            out.insert(k.clone(), processed);
                        }
                    }
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(plist) if plist.first().is_some_and(Value::is_object) => {
            let rlist: &[Value] = resource.as_array().map(Vec::as_slice).unwrap_or(&[]);
            let mut out = Vec::new();
            for elem in plist {
                if has_conditions(elem) {
                    let global = has_global(elem);
                    let mut global_passed = false;
                    let mut global_failed = false;
                    for relem in rlist {
                        match preprocess(elem, relem) {
                            Ok(mut processed) => {
                                if global {
                                    // The element only gates the patch.
                                    global_passed = true;
                                } else if let Some(name) = relem.get("name") {
                                    if let Some(m) = processed.as_object_mut() {
                                        m.insert("name".into(), name.clone());
                                    }
                                    out.push(processed);
                                }
                            }
                            Err(AnchorFail::Condition) => {}
                            Err(AnchorFail::Global) => global_failed = true,
                        }
                    }
                    if global && !global_passed && (global_failed || rlist.is_empty()) {
                        return Err(AnchorFail::Global);
                    }
                } else {
                    let key = associative_key(std::slice::from_ref(elem));
                    let target = key
                        .and_then(|k| elem.get(k).map(|v| (k, v)))
                        .and_then(|(k, v)| rlist.iter().find(|r| r.get(k) == Some(v)))
                        .unwrap_or(&Value::Null);
                    out.push(preprocess(elem, target)?);
                }
            }
            Ok(Value::Array(out))
        }
        other => Ok(other.clone()),
    }
}

/// Remove anchors from keys (used for condition values and added subtrees).
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match parse_anchor(k) {
                        Some((Anchor::AddIfNotPresent, bare)) => bare.to_string(),
                        _ => k.clone(),
                    };
                    (key, strip(v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
        other => other.clone(),
    }
}

const ASSOCIATIVE_KEYS: [&str; 7] = [
    "mountPath",
    "devicePath",
    "ip",
    "type",
    "topologyKey",
    "name",
    "containerPort",
];

fn associative_key(list: &[Value]) -> Option<&'static str> {
    let maps: Vec<&Map<String, Value>> = list.iter().filter_map(Value::as_object).collect();
    if maps.is_empty() || maps.len() != list.len() {
        return None;
    }
    ASSOCIATIVE_KEYS
        .iter()
        .copied()
        .find(|k| maps.iter().all(|m| m.contains_key(*k)))
}

fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !v.is_null() && k.as_str() != "$patch")
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Strategic-merge `patch` into `target`.
pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if p.get("$patch").and_then(Value::as_str) == Some("replace") {
                *target = without_nulls(patch);
                return;
            }
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let Some(t) = target.as_object_mut() else {
                return;
            };
            for (k, v) in p {
                if k == "$patch" {
                    continue;
                }
                if v.is_null() {
                    t.remove(k);
                    continue;
                }
                match t.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        t.insert(k.clone(), without_nulls(v));
                    }
                }
            }
        }
        Value::Array(items) => {
            let key = associative_key(items);
            let replace = items
                .iter()
                .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
            match (key, target.as_array_mut()) {
                (Some(key), Some(existing)) if !replace => {
                    // kyaml order: the patch's elements first (merged with their match), then the rest.
                    let mut rest: Vec<Option<Value>> = existing.drain(..).map(Some).collect();
                    let mut merged = Vec::with_capacity(rest.len() + items.len());
                    for item in items {
                        let id = item.get(key);
                        let position = rest
                            .iter()
                            .position(|e| e.as_ref().is_some_and(|e| e.get(key) == id));
                        let found = position
                            .and_then(|i| rest.get_mut(i))
                            .and_then(Option::take);
                        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                            continue;
                        }
                        match found {
                            Some(mut e) => {
                                merge(&mut e, item);
                                merged.push(e);
                            }
                            None => merged.push(without_nulls(item)),
                        }
                    }
                    merged.extend(rest.into_iter().flatten());
                    *existing = merged;
                }
                _ => *target = without_nulls(patch),
            }
        }
        other => *target = other.clone(),
    }
}

// ---------------------------------------------------------------- JSON 6902

fn pointer_tokens(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PatchError::Pointer(path.to_string()));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn index_of(token: &str, len: usize, allow_end: bool) -> Result<usize, PatchError> {
    if token == "-" && allow_end {
        return Ok(len);
    }
    let i: i64 = token
        .parse()
        .map_err(|_| PatchError::Index(token.to_string()))?;
    let i = if i < 0 { i + len as i64 } else { i };
    let max = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if i < 0 || i as usize > max || (!allow_end && len == 0) {
        return Err(PatchError::OutOfBounds(token.to_string()));
    }
    Ok(i as usize)
}

/// Most nulls a missing list element of a path may be padded with (`/a/5/b` on an empty `a` pads 5).
const MAX_PADDING: usize = 1024;

/// Where `add` puts a value at `token` in a list of `len` (evanphx/json-patch with negative indices): `-` and -1 append,
/// a negative index counts from one past the end, a positive one is the position (beyond `len` only when a path is
/// being created, within [`MAX_PADDING`]).
fn add_index(token: &str, len: usize) -> Result<usize, PatchError> {
    if token == "-" {
        return Ok(len);
    }
    let i: i64 = token
        .parse()
        .map_err(|_| PatchError::Index(token.to_string()))?;
    let at = if i < 0 { i + len as i64 + 1 } else { i };
    if at < 0 || at as usize > len.saturating_add(MAX_PADDING) {
        return Err(PatchError::OutOfBounds(token.to_string()));
    }
    Ok(at as usize)
}

fn parent_mut<'v>(
    doc: &'v mut Value,
    tokens: &[String],
    create: bool,
    leaf: &str,
) -> Result<Option<&'v mut Value>, PatchError> {
    let mut current = doc;
    for (position, t) in tokens.iter().enumerate() {
        let next_is_index = tokens.get(position + 1).map(String::as_str).unwrap_or(leaf);
        let next_is_index = next_is_index == "-" || next_is_index.parse::<i64>().is_ok();
        if create && next_is_index {
            if let Value::Object(m) = current {
                if !m.contains_key(t) {
                    m.insert(t.clone(), Value::Array(Vec::new()));
                }
            }
        }
        let next = match current {
            Value::Object(m) => {
                if !m.contains_key(t) {
                    if !create {
                        return Ok(None);
                    }
                    m.insert(t.clone(), Value::Object(Map::new()));
                }
                m.get_mut(t)
            }
            Value::Array(a) => {
                let existing = if t == "-" {
                    None
                } else {
                    index_of(t, a.len(), false).ok()
                };
                match existing {
                    Some(i) => a.get_mut(i),
                    None if !create => return Ok(None),
                    None => {
                        // evanphx/json-patch's EnsurePathExistsOnAdd: the missing element is added as `add` adds
                        // (a negative index counts from one past the end, so -1 appends), padded with nulls up to a
                        // positive index, and is a list when the next token is an index, else a map.
                        let at = add_index(t, a.len())?;
                        if at > a.len() {
                            a.resize(at, Value::Null);
                        }
                        let child = if next_is_index {
                            Value::Array(Vec::new())
                        } else {
                            Value::Object(Map::new())
                        };
                        a.insert(at, child);
                        a.get_mut(at)
                    }
                }
            }
            _ if create => return Err(PatchError::ThroughScalar(t.clone())),
            _ => return Ok(None),
        };
        match next {
            Some(n) => current = n,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

fn get_at(doc: &Value, path: &str) -> Result<Value, PatchError> {
    let tokens = pointer_tokens(path)?;
    let mut current = doc;
    for t in &tokens {
        current = match current {
            Value::Object(m) => m
                .get(t)
                .ok_or_else(|| PatchError::NotFound(path.to_string()))?,
            Value::Array(a) => a
                .get(index_of(t, a.len(), false)?)
                .ok_or_else(|| PatchError::NotFound(path.to_string()))?,
            _ => return Err(PatchError::NotFound(path.to_string())),
        };
    }
    Ok(current.clone())
}

fn add_at(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    let tokens = pointer_tokens(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = parent_mut(doc, parents, true, last)?
        .ok_or_else(|| PatchError::CannotAdd(path.to_string()))?;
    match parent {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = add_index(last, a.len())?;
            if i > a.len() {
                return Err(PatchError::OutOfBounds(last.clone()));
            }
            a.insert(i, value);
        }
        _ => return Err(PatchError::ScalarParent(path.to_string())),
    }
    Ok(())
}

fn remove_at(doc: &mut Value, path: &str, must_exist: bool) -> Result<Option<Value>, PatchError> {
    let tokens = pointer_tokens(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        return Err(PatchError::RemoveRoot);
    };
    let Some(parent) = parent_mut(doc, parents, false, last)? else {
        return if must_exist {
            Err(PatchError::NotFound(path.to_string()))
        } else {
            Ok(None)
        };
    };
    let removed = match parent {
        Value::Object(m) => m.remove(last),
        Value::Array(a) => match index_of(last, a.len(), false) {
            Ok(i) => Some(a.remove(i)),
            Err(_) => None,
        },
        _ => None,
    };
    if removed.is_none() && must_exist {
        return Err(PatchError::NotFound(path.to_string()));
    }
    Ok(removed)
}

fn replace_at(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    let tokens = pointer_tokens(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = parent_mut(doc, parents, false, last)?
        .ok_or_else(|| PatchError::NotFound(path.to_string()))?;
    let slot = match parent {
        Value::Object(m) => m.get_mut(last),
        Value::Array(a) => {
            let i = index_of(last, a.len(), false)?;
            a.get_mut(i)
        }
        _ => None,
    };
    let slot = slot.ok_or_else(|| PatchError::NotFound(path.to_string()))?;
    *slot = value;
    Ok(())
}

/// Apply RFC 6902 operations with Kyverno's options: negative indices, `add` creates missing parents, removing a
/// missing path is a no-op.
pub fn apply_json6902(doc: &mut Value, ops: &[Value]) -> Result<(), PatchError> {
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError::NoPath(name.to_string()))?;
        let value = || {
            op.get("value").cloned().ok_or_else(|| PatchError::NoValue {
                op: name.to_string(),
                path: path.to_string(),
            })
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| PatchError::NoFrom {
                    op: name.to_string(),
                    path: path.to_string(),
                })
        };
        match name {
            "add" => add_at(doc, path, value()?)?,
            "remove" => {
                remove_at(doc, path, false)?;
            }
            "replace" => replace_at(doc, path, value()?)?,
            "move" => {
                let from = from()?;
                let moved = remove_at(doc, from, true)?.unwrap_or(Value::Null);
                add_at(doc, path, moved)?;
            }
            "copy" => {
                let copied = get_at(doc, from()?)?;
                add_at(doc, path, copied)?;
            }
            "test" => {
                if get_at(doc, path)? != value()? {
                    return Err(PatchError::TestFailed(path.to_string()));
                }
            }
            other => return Err(PatchError::UnknownOperation(other.to_string())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A mutate foreach whose lists are compiled at load patches exactly as one whose lists are read as text.
    #[test]
    fn compiled_foreach_lists_patch_as_the_text_path() {
        let mutation: Mutation = serde_json::from_value(json!({"foreach": [
            {
                "list": "request.object.spec.containers",
                "patchStrategicMerge": {"spec": {"containers": [
                    {"name": "{{ element.name }}", "imagePullPolicy": "Always"}
                ]}}
            },
            {
                "list": "{{ request.object.spec.[initContainers, containers][] }}",
                "preconditions": {"all": [{"key": "{{ element.name }}", "operator": "NotEquals", "value": "b"}]},
                "patchesJson6902": "- op: add\n  path: /metadata/labels/{{ element.name }}\n  value: seen"
            },
            {
                "list": "request.object.spec.containers[?name == 'a']",
                "foreach": [{
                    "list": "element.ports || `[]`",
                    "patchesJson6902": "- op: add\n  path: /metadata/annotations/port-{{ elementIndex1 }}\n  value: '{{ element.containerPort }}'"
                }]
            },
            {"list": "request.object.spec.nothing", "patchesJson6902": "- op: remove\n  path: /spec"}
        ]}))
        .expect("mutation");
        let mut compiled = mutation.clone();
        if let Some(list) = compiled.foreach.as_mut() {
            compile_foreach(list);
        }
        let lists = compiled.foreach.as_deref().unwrap_or_default();
        assert!(lists.iter().all(|fe| fe.compiled_list.is_some()));
        assert!(lists[2].foreach.as_deref().unwrap_or_default()[0]
            .compiled_list
            .is_some());
        let test_env = crate::eval::TestEnv::default();
        let env = test_env.env();
        let pods = [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {}, "annotations": {}},
            "spec": {"initContainers": [{"name": "i"}], "containers": [
                {"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 443}]}, {"name": "b"}
            ]}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}),
        ];
        let mut patched_pods = Vec::new();
        for pod in pods {
            for delete in [false, true] {
                let ctx = Context::new(
                    std::sync::Arc::new(
                        json!({"request": {"object": pod.clone(), "oldObject": pod.clone(),
                        "operation": if delete { "DELETE" } else { "CREATE" }}}),
                    ),
                    delete,
                );
                let fast = mutate("r", &compiled, &ctx, &pod, &env);
                let general = mutate("r", &mutation, &ctx, &pod, &env);
                assert_eq!(fast.1, general.1, "{pod} delete={delete}");
                if let Some(patched) = &fast.1 {
                    patched_pods.push(patched.clone());
                }
                assert_eq!(
                    (fast.0.status, &fast.0.message),
                    (general.0.status, &general.0.message)
                );
            }
        }
        // The lists really were walked: the first pod, on CREATE, got every patch.
        let first = patched_pods.first().expect("a patched pod");
        assert_eq!(
            first["metadata"]["labels"],
            json!({"a": "seen", "i": "seen"})
        );
        assert_eq!(
            first["metadata"]["annotations"],
            json!({"port-0": "80", "port-1": "443"})
        );
        assert_eq!(first["spec"]["containers"][1]["imagePullPolicy"], "Always");
    }

    /// The messages reach rule responses and PolicyReports: each variant's text is pinned.
    #[test]
    fn patch_error_messages_are_kept() {
        let p = || "/a/b".to_string();
        let cases = [
            (
                PatchError::Pointer("a".into()),
                "invalid JSON pointer \"a\"",
            ),
            (PatchError::Index("x".into()), "invalid array index \"x\""),
            (
                PatchError::OutOfBounds("7".into()),
                "array index 7 out of bounds",
            ),
            (
                PatchError::ThroughScalar("b".into()),
                "cannot create a path through a scalar at \"b\"",
            ),
            (PatchError::NotFound(p()), "path /a/b not found"),
            (PatchError::CannotAdd(p()), "cannot add at /a/b"),
            (
                PatchError::ScalarParent(p()),
                "cannot add at /a/b: parent is not a map or a list",
            ),
            (PatchError::RemoveRoot, "cannot remove the whole document"),
            (
                PatchError::NoPath("add".into()),
                "operation \"add\" has no path",
            ),
            (
                PatchError::NoValue {
                    op: "add".into(),
                    path: p(),
                },
                "operation add /a/b has no value",
            ),
            (
                PatchError::NoFrom {
                    op: "move".into(),
                    path: p(),
                },
                "operation move /a/b has no from",
            ),
            (PatchError::TestFailed(p()), "test operation at /a/b failed"),
            (
                PatchError::UnknownOperation("bogus".into()),
                "unknown patch operation \"bogus\"",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
        // Through apply_json6902, as before.
        let mut doc = json!({"a": [1]});
        let run =
            |doc: &mut Value, op: Value| apply_json6902(doc, &[op]).map_err(|e| e.to_string());
        assert_eq!(
            run(&mut doc, json!({"op": "bogus", "path": "/a"})),
            Err("unknown patch operation \"bogus\"".to_string())
        );
        assert_eq!(
            run(
                &mut doc,
                json!({"op": "replace", "path": "/a/x", "value": 1})
            ),
            Err("invalid array index \"x\"".to_string())
        );
        assert_eq!(
            run(&mut doc, json!({"op": "test", "path": "/a/0", "value": 2})),
            Err("test operation at /a/0 failed".to_string())
        );
        assert_eq!(
            run(&mut doc, json!({"op": "add", "path": "a"})),
            Err("operation add a has no value".to_string())
        );
    }

    #[test]
    fn mutate_error_messages_are_kept() {
        let var = VarError {
            expression: "request.x".to_string(),
            message: "boom".to_string(),
            not_found: false,
            bound: false,
        };
        assert_eq!(
            MutateError::from(var.clone()).to_string(),
            "variable substitution failed: failed to substitute variable \"request.x\": boom"
        );
        let yaml = serde_yaml::from_str::<Value>("[").expect_err("not YAML");
        let expected = format!("patchesJson6902 is not valid YAML: {yaml}");
        assert_eq!(MutateError::Yaml { source: yaml }.to_string(), expected);
        assert_eq!(
            MutateError::NotAList.to_string(),
            "patchesJson6902 must be a list of operations"
        );
        assert_eq!(
            MutateError::from(PatchError::RemoveRoot).to_string(),
            "cannot remove the whole document"
        );
        assert_eq!(
            MutateError::Context(ContextError::NoValue {
                entry: "e".to_string()
            })
            .to_string(),
            "failed to load context: context entry e: a variable needs a value or a jmesPath"
        );
        assert_eq!(
            MutateError::Preconditions(ConditionError::Shape).to_string(),
            "failed to evaluate preconditions: conditions must be a list or {any, all}"
        );
        assert_eq!(
            MutateError::Deadline.to_string(),
            "evaluation stopped: the request deadline passed"
        );
    }

    fn psm(resource: Value, overlay: Value) -> Option<Value> {
        strategic_merge_with_anchors(&resource, &overlay)
    }

    #[test]
    fn strategic_merge_lists_and_nulls() {
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}, "metadata": {"labels": {"x": "1"}}});
        let out = psm(
            pod.clone(),
            json!({"spec": {"containers": [{"name": "b", "imagePullPolicy": "Always"}]}, "metadata": {"labels": {"x": null, "y": "2"}}}),
        );
        assert_eq!(
            out,
            Some(
                json!({"spec": {"containers": [{"name": "b", "image": "y", "imagePullPolicy": "Always"}, {"name": "a", "image": "x"}]}, "metadata": {"labels": {"y": "2"}}})
            ),
            "patched elements come first (kyaml order)"
        );
        let out = psm(json!({"a": [1, 2]}), json!({"a": [3]}));
        assert_eq!(out, Some(json!({"a": [3]})));
    }

    #[test]
    fn anchors_in_overlays() {
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "x:latest"}, {"name": "b", "image": "y:1"}]}});
        // conditional element: only containers with latest images
        let out = psm(
            pod.clone(),
            json!({"spec": {"containers": [{"(image)": "*:latest", "imagePullPolicy": "Always"}]}}),
        );
        assert_eq!(
            out,
            Some(
                json!({"spec": {"containers": [{"name": "a", "image": "x:latest", "imagePullPolicy": "Always"}, {"name": "b", "image": "y:1"}]}})
            )
        );
        // add if not present
        let out = psm(
            json!({"metadata": {"labels": {"a": "1"}}}),
            json!({"metadata": {"labels": {"+(a)": "2", "+(b)": "3"}}}),
        );
        assert_eq!(
            out,
            Some(json!({"metadata": {"labels": {"a": "1", "b": "3"}}}))
        );
        // condition on a map fails → nothing applied
        let out = psm(
            json!({"metadata": {"name": "x"}}),
            json!({"metadata": {"(name)": "y", "labels": {"a": "b"}}}),
        );
        assert_eq!(out, None);
        // global anchor
        let out = psm(
            pod,
            json!({"spec": {"<(hostNetwork)": true, "dnsPolicy": "ClusterFirstWithHostNet"}}),
        );
        assert_eq!(out, None);
    }

    #[test]
    fn json6902_options() {
        let mut doc = json!({"a": [1, 2, 3]});
        apply_json6902(
            &mut doc,
            &[
                json!({"op": "add", "path": "/b/c/d", "value": 1}),
                json!({"op": "remove", "path": "/missing"}),
                json!({"op": "replace", "path": "/a/-1", "value": 9}),
                json!({"op": "add", "path": "/a/-", "value": 4}),
                json!({"op": "copy", "from": "/b", "path": "/e"}),
                json!({"op": "move", "from": "/e", "path": "/f"}),
                json!({"op": "test", "path": "/f/c/d", "value": 1}),
            ],
        )
        .expect("patch");
        assert_eq!(
            doc,
            json!({"a": [1, 2, 9, 4], "b": {"c": {"d": 1}}, "f": {"c": {"d": 1}}})
        );
        assert!(apply_json6902(
            &mut doc,
            &[json!({"op": "replace", "path": "/zz", "value": 1})]
        )
        .is_err());
        assert!(apply_json6902(&mut doc, &[json!({"op": "bogus", "path": "/a"})]).is_err());
    }

    #[test]
    fn json6902_add_at_negative_indices_creates_missing_lists_as_evanphx_does() {
        // `add` at -1 appends (a negative index counts from one past the end), also in a list the path creates.
        let mut doc = json!({"spec": {"a": [1, 2]}});
        apply_json6902(
            &mut doc,
            &[
                json!({"op": "add", "path": "/spec/a/-1", "value": 3}),
                json!({"op": "add", "path": "/spec/a/-4", "value": 0}),
                json!({"op": "add", "path": "/spec/terms/-1/exprs/-1", "value": {"key": "k"}}),
                json!({"op": "add", "path": "/spec/terms/-1/exprs/-1", "value": {"key": "l"}}),
                json!({"op": "add", "path": "/spec/padded/2/x", "value": 1}),
            ],
        )
        .expect("patch");
        assert_eq!(
            doc,
            json!({"spec": {
                "a": [0, 1, 2, 3],
                "terms": [{"exprs": [{"key": "k"}, {"key": "l"}]}],
                "padded": [null, null, {"x": 1}],
            }})
        );
        // Bounds: an index past the end of an existing list, or padding beyond the limit, is an error.
        let mut doc = json!({"a": [1]});
        assert!(apply_json6902(
            &mut doc,
            &[json!({"op": "add", "path": "/a/3", "value": 1})]
        )
        .is_err());
        assert!(apply_json6902(
            &mut doc,
            &[json!({"op": "add", "path": "/a/-3", "value": 1})]
        )
        .is_err());
        assert!(apply_json6902(
            &mut doc,
            &[json!({"op": "add", "path": "/b/99999999/c", "value": 1})]
        )
        .is_err());
    }
}
