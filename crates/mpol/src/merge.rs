//! Server-side-apply merge of an ApplyConfiguration result into the object.
//!
//! Maps (structs and granular maps) merge field by field, recursively; a `null` in the configuration sets nothing.
//! Lists follow the Kubernetes schema of the built-in kinds (their `x-kubernetes-list-type` and
//! `x-kubernetes-list-map-keys`), written down in [`list_type`] from the API's type definitions:
//! - *map* lists merge element by element on their keys (a configured element with the keys of a live one is merged
//!   into it, in place; a new one is appended);
//! - *set* lists (scalars) get the configured values not yet present appended;
//! - every other list is *atomic*: the configured list replaces the live one. That is also what lists of kinds
//!   policyctl has no schema for (custom resources) get.
//!
//! Structs Kubernetes marks atomic (label selectors) are replaced whole, as SSA does.
//!
//! Refused (an error, the object left unchanged): a configured list-map holding two elements with the same keys, and
//! a map or list configured where the object has another shape (a scalar for a map, a map for a list, ...).
//!
//! Not reproduced: CRD schemas (their list types), the "mutating an atomic field is an error" check of the API
//! server, schema defaulting and type conversion of the configured values.
use serde_json::{Map, Value};

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// Replaced whole.
    Atomic,
    /// Union of scalars.
    Set,
    /// Merged per element on these keys (a missing key takes its default, if it has one).
    Map(&'static [(&'static str, Option<&'static str>)]),
}

const NAME: &[(&str, Option<&str>)] = &[("name", None)];

/// The list type of the field `field`, whose parent object sits at `parents` (the field names from the root, list
/// indices left out: `["spec", "containers"]` for a container's fields).
pub fn list_type(parents: &[&str], field: &str) -> ListType {
    let in_container = parents
        .last()
        .is_some_and(|p| matches!(*p, "containers" | "initContainers" | "ephemeralContainers"));
    match field {
        // PodSpec
        "containers" | "initContainers" | "ephemeralContainers" => ListType::Map(NAME),
        "volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims" => {
            ListType::Map(NAME)
        }
        "hostAliases" => ListType::Map(&[("ip", None)]),
        "topologySpreadConstraints" => {
            ListType::Map(&[("topologyKey", None), ("whenUnsatisfiable", None)])
        }
        // Container
        "env" if in_container => ListType::Map(NAME),
        "volumeMounts" if in_container => ListType::Map(&[("mountPath", None)]),
        "volumeDevices" if in_container => ListType::Map(&[("devicePath", None)]),
        "ports" if in_container => {
            ListType::Map(&[("containerPort", None), ("protocol", Some("TCP"))])
        }
        // Container.resources.claims
        "claims" if parents.last() == Some(&"resources") => ListType::Map(NAME),
        // ServiceSpec
        "ports" if parents.last() == Some(&"spec") => {
            ListType::Map(&[("port", None), ("protocol", Some("TCP"))])
        }
        // ObjectMeta
        "ownerReferences" if parents.last() == Some(&"metadata") => ListType::Map(&[("uid", None)]),
        "finalizers" if parents.last() == Some(&"metadata") => ListType::Set,
        _ => ListType::Atomic,
    }
}

/// Structs Kubernetes declares atomic (`+structType=atomic`): replaced whole.
fn atomic_struct(field: &str) -> bool {
    matches!(
        field,
        "selector" | "labelSelector" | "namespaceSelector" | "podSelector"
    )
}

/// Why a configuration cannot be merged into an object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MergeError {
    /// A field is a map, a list or a scalar in the object and another of these in the configuration.
    #[error("{field} is {live} in the object but {config} in the configuration")]
    ShapeMismatch {
        /// The field's dotted path (`the object` for the root).
        field: String,
        /// Its shape in the object.
        live: &'static str,
        /// Its shape in the configuration.
        config: &'static str,
    },
    /// A configured list-map holds two elements with the same keys (server-side apply refuses it).
    #[error("duplicate entries for key {key} in the configured list {list}")]
    DuplicateKey {
        /// The keys' values, as a list.
        key: Value,
        /// The list's dotted path.
        list: String,
    },
}

/// Merges `config` into `live` (see the module docs). A configured list-map holding two elements with the same keys is
/// refused, as server-side apply refuses it; `live` is then partly merged and must be dropped.
pub fn apply(live: &mut Value, config: &Value) -> Result<(), MergeError> {
    merge(live, config, &mut Vec::new())
}

fn merge(live: &mut Value, config: &Value, path: &mut Vec<String>) -> Result<(), MergeError> {
    match (live, config) {
        (_, Value::Null) => {}
        (Value::Object(l), Value::Object(c)) => merge_map(l, c, path)?,
        (live, config) if shape(live) != shape(config) && !live.is_null() => {
            return Err(MergeError::ShapeMismatch {
                field: if path.is_empty() {
                    "the object".to_string()
                } else {
                    path.join(".")
                },
                live: shape(live),
                config: shape(config),
            })
        }
        (live, config) => *live = strip_nulls(config),
    }
    Ok(())
}

/// A value's JSON shape as far as merging goes: a map, a list or a scalar (scalars of different types replace each
/// other: Kubernetes has int-or-string fields).
fn shape(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "a map",
        Value::Array(_) => "a list",
        _ => "a scalar",
    }
}

fn merge_map(
    live: &mut Map<String, Value>,
    config: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<(), MergeError> {
    for (k, cv) in config {
        if cv.is_null() {
            continue;
        }
        match live.get_mut(k) {
            None => {
                live.insert(k.clone(), strip_nulls(cv));
            }
            Some(lv) => {
                if let (Value::Array(la), Value::Array(ca)) = (&mut *lv, cv) {
                    let parents: Vec<&str> = path.iter().map(String::as_str).collect();
                    let kind = list_type(&parents, k);
                    path.push(k.clone());
                    merge_list(la, ca, kind, path)?;
                    path.pop();
                } else if atomic_struct(k) && lv.is_object() && cv.is_object() {
                    *lv = strip_nulls(cv);
                } else {
                    path.push(k.clone());
                    merge(lv, cv, path)?;
                    path.pop();
                }
            }
        }
    }
    Ok(())
}

fn key_of(item: &Value, keys: &[(&'static str, Option<&'static str>)]) -> Option<Vec<Value>> {
    let obj = item.as_object()?;
    keys.iter()
        .map(|(k, default)| match obj.get(*k) {
            Some(v) if !v.is_null() => Some(v.clone()),
            _ => default.map(|d| Value::String(d.to_string())),
        })
        .collect()
}

fn merge_list(
    live: &mut Vec<Value>,
    config: &[Value],
    kind: ListType,
    path: &mut Vec<String>,
) -> Result<(), MergeError> {
    match kind {
        ListType::Atomic => *live = config.iter().map(strip_nulls).collect(),
        ListType::Set => {
            for c in config {
                if !live.contains(c) {
                    live.push(strip_nulls(c));
                }
            }
        }
        ListType::Map(keys) => {
            let mut seen = Vec::new();
            for c in config {
                if let Some(k) = key_of(c, keys) {
                    if seen.contains(&k) {
                        return Err(MergeError::DuplicateKey {
                            key: Value::Array(k),
                            list: path.join("."),
                        });
                    }
                    seen.push(k);
                }
            }
            for c in config {
                let found = key_of(c, keys).and_then(|ck| {
                    live.iter()
                        .position(|l| key_of(l, keys).as_ref() == Some(&ck))
                });
                match found {
                    Some(i) => {
                        if let Some(l) = live.get_mut(i) {
                            merge(l, c, path)?;
                        }
                    }
                    None => live.push(strip_nulls(c)),
                }
            }
        }
    }
    Ok(())
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply_ok(live: &mut Value, config: &Value) {
        apply(live, config).expect("merges");
    }

    #[test]
    fn duplicate_keys_in_a_configured_list_map_are_refused() {
        let mut live = json!({"spec": {"containers": [{"name": "a"}]}});
        let e = apply(
            &mut live,
            &json!({"spec": {"containers": [{"name": "b"}, {"name": "b", "image": "x"}]}}),
        )
        .expect_err("refused");
        assert_eq!(
            e.to_string(),
            r#"duplicate entries for key ["b"] in the configured list spec.containers"#
        );
        assert!(
            matches!(e, MergeError::DuplicateKey { ref list, .. } if list == "spec.containers")
        );
    }

    #[test]
    fn a_field_of_another_shape_is_refused_with_its_path() {
        let mut live = json!({"spec": {"replicas": 1}});
        let e = apply(&mut live, &json!({"spec": {"replicas": {"n": 2}}})).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "spec.replicas is a scalar in the object but a map in the configuration"
        );
        let mut root = json!([1]);
        let e = apply(&mut root, &json!({"a": 1})).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "the object is a list in the object but a map in the configuration"
        );
    }

    #[test]
    fn containers_merge_by_name_and_keep_live_fields() {
        let mut live = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}});
        apply_ok(
            &mut live,
            &json!({"spec": {"containers": [
                {"name": "b", "imagePullPolicy": "Always"},
                {"name": "a", "env": [{"name": "Y", "value": "2"}, {"name": "X", "value": "3"}]},
                {"name": "c", "image": "c:1"}
            ]}}),
        );
        assert_eq!(
            live,
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "3"}, {"name": "Y", "value": "2"}]},
                {"name": "b", "image": "b:1", "imagePullPolicy": "Always"},
                {"name": "c", "image": "c:1"}
            ]}})
        );
    }

    #[test]
    fn ports_key_on_container_port_and_protocol_with_its_default() {
        let mut live = json!({"spec": {"containers": [{"name": "a", "ports": [
            {"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}
        ]}]}});
        apply_ok(
            &mut live,
            &json!({"spec": {"containers": [{"name": "a", "ports": [
                {"containerPort": 80, "protocol": "TCP", "name": "http"},
                {"containerPort": 53, "protocol": "TCP"}
            ]}]}}),
        );
        assert_eq!(
            live.pointer("/spec/containers/0/ports").cloned(),
            Some(json!([
                {"containerPort": 80, "protocol": "TCP", "name": "http"},
                {"containerPort": 53, "protocol": "UDP"},
                {"containerPort": 53, "protocol": "TCP"}
            ]))
        );
    }

    #[test]
    fn atomic_lists_and_structs_are_replaced_sets_are_unioned() {
        let mut live = json!({
            "metadata": {"finalizers": ["a"], "labels": {"x": "1"}},
            "spec": {"tolerations": [{"key": "k"}], "containers": [{"name": "a", "args": ["1", "2"]}],
                     "selector": {"matchLabels": {"a": "b"}}}
        });
        apply_ok(
            &mut live,
            &json!({
                "metadata": {"finalizers": ["b", "a"], "labels": {"y": "2", "z": null}},
                "spec": {"tolerations": [{"key": "t"}], "containers": [{"name": "a", "args": ["3"]}],
                         "selector": {"matchExpressions": []}}
            }),
        );
        assert_eq!(
            live,
            json!({
                "metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}},
                "spec": {"tolerations": [{"key": "t"}], "containers": [{"name": "a", "args": ["3"]}],
                         "selector": {"matchExpressions": []}}
            })
        );
    }

    #[test]
    fn volumes_and_volume_mounts_merge_on_their_keys() {
        let mut live = json!({"spec": {
            "volumes": [{"name": "v", "emptyDir": {}}],
            "containers": [{"name": "a", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]
        }});
        apply_ok(
            &mut live,
            &json!({"spec": {
                "volumes": [{"name": "w", "configMap": {"name": "cm"}}],
                "containers": [{"name": "a", "volumeMounts": [{"name": "w", "mountPath": "/v", "readOnly": true}]}]
            }}),
        );
        assert_eq!(
            live,
            json!({"spec": {
                "volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "configMap": {"name": "cm"}}],
                "containers": [{"name": "a", "volumeMounts": [{"name": "w", "mountPath": "/v", "readOnly": true}]}]
            }})
        );
    }
}
