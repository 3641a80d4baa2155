//! Autogen: rules written for Pods also apply to Pod controllers.
//!
//! A rule matching `Pod` is cloned as `autogen-<rule>` for DaemonSet, Deployment, Job, StatefulSet, ReplicaSet and
//! ReplicationController, and as `autogen-cronjob-<rule>` for CronJob. Patterns and strategic-merge overlays are
//! wrapped in `spec.template` (`spec.jobTemplate.spec.template` for CronJob) and variables are rewritten
//! (`request.object.spec` → `request.object.spec.template.spec`, same for `metadata` and `oldObject`). The
//! annotation `pod-policies.kyverno.io/autogen-controllers` (`none` or a comma list) restricts generation.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::matching::parse_kind;

/// The annotation that controls autogen.
pub const ANNOTATION: &str = "pod-policies.kyverno.io/autogen-controllers";

/// Controllers of the `autogen-` rule.
pub const CONTROLLERS: [&str; 6] = [
    "DaemonSet",
    "Deployment",
    "Job",
    "StatefulSet",
    "ReplicaSet",
    "ReplicationController",
];

fn contains_pod(kinds: &[Value]) -> bool {
    kinds
        .iter()
        .filter_map(Value::as_str)
        .any(|k| parse_kind(k).kind() == "Pod")
}

/// Every resource description (`resources` object) of a match/exclude block.
fn descriptions(block: Option<&Value>) -> Vec<&Value> {
    let Some(block) = block else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for key in ["any", "all"] {
        if let Some(list) = block.get(key).and_then(Value::as_array) {
            out.extend(list.iter().filter_map(|f| f.get("resources")));
        }
    }
    if let Some(r) = block.get("resources") {
        out.push(r);
    }
    out
}

fn kinds_of(block: Option<&Value>) -> Vec<Value> {
    descriptions(block)
        .into_iter()
        .flat_map(|d| {
            d.get("kinds")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

fn description_allows(d: &Value, needed: &mut bool) -> bool {
    let set = |k: &str| match d.get(k) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(_)) => true,
        Some(_) => true,
    };
    if set("name") || set("names") || set("selector") || set("annotations") {
        return false;
    }
    let kinds = d
        .get("kinds")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if kinds.len() > 1 && contains_pod(&kinds) {
        return false;
    }
    *needed = *needed || contains_pod(&kinds);
    true
}

/// Which controllers get generated rules for a policy; empty when autogen is off.
pub fn controllers(annotations: &BTreeMap<String, String>, rules: &[Value]) -> Vec<String> {
    let mut needed = false;
    for rule in rules {
        if rule.get("generate").is_some() {
            return Vec::new();
        }
        if let Some(m) = rule.get("mutate") {
            if m.get("patchesJson6902").is_some() {
                return Vec::new();
            }
            if let Some(list) = m.get("foreach").and_then(Value::as_array) {
                if list.iter().any(|f| f.get("patchesJson6902").is_some()) {
                    return Vec::new();
                }
            }
        }
        for block in ["match", "exclude"] {
            for d in descriptions(rule.get(block)) {
                if !description_allows(d, &mut needed) {
                    return Vec::new();
                }
            }
        }
    }
    if !needed {
        return Vec::new();
    }
    match annotations.get(ANNOTATION).map(|s| s.trim()) {
        Some("none") => Vec::new(),
        None | Some("") | Some("all") => CONTROLLERS
            .iter()
            .map(|s| s.to_string())
            .chain(["CronJob".to_string()])
            .collect(),
        Some(list) => list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    }
}

fn replace_kinds(block: &mut Value, kinds: &[String]) {
    let new: Vec<Value> = kinds.iter().map(|k| Value::String(k.clone())).collect();
    let fix = |d: &mut Value| {
        if let Some(k) = d.get_mut("kinds") {
            if k.as_array().is_some_and(|a| contains_pod(a)) {
                *k = Value::Array(new.clone());
            }
        }
    };
    for key in ["any", "all"] {
        if let Some(list) = block.get_mut(key).and_then(Value::as_array_mut) {
            for f in list {
                if let Some(d) = f.get_mut("resources") {
                    fix(d);
                }
            }
        }
    }
    if let Some(d) = block.get_mut("resources") {
        fix(d);
    }
}

fn wrap(value: Value, cronjob: bool) -> Value {
    if cronjob {
        json!({"spec": {"jobTemplate": {"spec": {"template": value}}}})
    } else {
        json!({"spec": {"template": value}})
    }
}

fn truncate(name: String) -> String {
    if name.len() <= 63 {
        return name;
    }
    let mut end = 63;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// Generate one rule for `kinds` (`cronjob` selects the CronJob wrapping). `None` when the rule does not match Pods.
pub fn generate(rule: &Value, kinds: &[String], cronjob: bool) -> Option<Value> {
    let match_kinds = kinds_of(rule.get("match"));
    let exclude_kinds = kinds_of(rule.get("exclude"));
    if !contains_pod(&match_kinds)
        || (!exclude_kinds.is_empty() && !contains_pod(&exclude_kinds))
        || kinds.is_empty()
    {
        return None;
    }
    let name = rule.get("name").and_then(Value::as_str).unwrap_or("");
    // Variables are rewritten over the serialised rule, as Kyverno does.
    let text = rule.to_string();
    let (spec_to, meta_to, old_spec_to, old_meta_to) = if cronjob {
        (
            "request.object.spec.jobTemplate.spec.template.spec",
            "request.object.spec.jobTemplate.spec.template.metadata",
            "request.oldObject.spec.jobTemplate.spec.template.spec",
            "request.oldObject.spec.jobTemplate.spec.template.metadata",
        )
    } else {
        (
            "request.object.spec.template.spec",
            "request.object.spec.template.metadata",
            "request.oldObject.spec.template.spec",
            "request.oldObject.spec.template.metadata",
        )
    };
    let is_cel = rule.pointer("/validate/cel").is_some() || rule.get("celPreconditions").is_some();
    let text = if is_cel {
        // CEL rules name `object` / `oldObject` directly (`oldObject.spec` does not contain `object.spec`: the
        // match is case-sensitive).
        let strip = |s: &str| s.trim_start_matches("request.").to_string();
        text.replace("object.spec", &strip(spec_to))
            .replace("object.metadata", &strip(meta_to))
            .replace("oldObject.spec", &strip(old_spec_to))
            .replace("oldObject.metadata", &strip(old_meta_to))
    } else {
        text.replace("request.object.spec", spec_to)
            .replace("request.object.metadata", meta_to)
            .replace("request.oldObject.spec", old_spec_to)
            .replace("request.oldObject.metadata", old_meta_to)
    };
    let mut out: Value = serde_json::from_str(&text).ok()?;
    let prefix = if cronjob {
        "autogen-cronjob-"
    } else {
        "autogen-"
    };
    let obj = out.as_object_mut()?;
    obj.insert(
        "name".into(),
        Value::String(truncate(format!("{prefix}{name}"))),
    );
    if let Some(m) = obj.get_mut("match") {
        replace_kinds(m, kinds);
    }
    if let Some(e) = obj.get_mut("exclude") {
        replace_kinds(e, kinds);
    }
    if let Some(v) = obj.get_mut("validate").and_then(Value::as_object_mut) {
        if let Some(p) = v.remove("pattern") {
            v.insert("pattern".into(), wrap(p, cronjob));
        }
        if let Some(Value::Array(list)) = v.remove("anyPattern") {
            v.insert(
                "anyPattern".into(),
                Value::Array(list.into_iter().map(|p| wrap(p, cronjob)).collect()),
            );
        }
    }
    if let Some(m) = obj.get_mut("mutate").and_then(Value::as_object_mut) {
        if let Some(p) = m.remove("patchStrategicMerge") {
            m.insert("patchStrategicMerge".into(), wrap(p, cronjob));
        }
        if let Some(list) = m.get_mut("foreach").and_then(Value::as_array_mut) {
            for f in list {
                if let Some(f) = f.as_object_mut() {
                    if let Some(p) = f.remove("patchStrategicMerge") {
                        f.insert("patchStrategicMerge".into(), wrap(p, cronjob));
                    }
                }
            }
        }
    }
    Some(out)
}

/// The policy's rules followed by the generated ones (Kyverno's order: all controller rules, then CronJob rules).
pub fn expand(annotations: &BTreeMap<String, String>, rules: &[Value]) -> Vec<Value> {
    let controllers = controllers(annotations, rules);
    let mut out: Vec<Value> = rules.to_vec();
    if controllers.is_empty() {
        return out;
    }
    let plain: Vec<String> = controllers
        .iter()
        .filter(|c| *c != "CronJob")
        .cloned()
        .collect();
    let cron = controllers.iter().any(|c| c == "CronJob");
    let mut generated = Vec::new();
    let mut generated_cron = Vec::new();
    for rule in rules {
        if !plain.is_empty() {
            if let Some(r) = generate(rule, &plain, false) {
                generated.push(r);
            }
        }
        if cron {
            if let Some(r) = generate(rule, &["CronJob".to_string()], true) {
                generated_cron.push(r);
            }
        }
    }
    out.extend(generated);
    out.extend(generated_cron);
    out
}

/// Whether a rule name was made by autogen.
pub fn is_autogen(name: &str) -> bool {
    name.starts_with("autogen-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Value {
        json!({
            "name": "check",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "validate": {"message": "{{ request.object.metadata.name }}", "pattern": {"spec": {"hostNetwork": false}}}
        })
    }

    #[test]
    fn generates_controller_and_cronjob_rules() {
        let rules = expand(&BTreeMap::new(), &[rule()]);
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[1]["name"], "autogen-check");
        assert_eq!(
            rules[1]["match"]["any"][0]["resources"]["kinds"]
                .as_array()
                .map(Vec::len),
            Some(6)
        );
        assert_eq!(
            rules[1]["validate"]["pattern"],
            json!({"spec": {"template": {"spec": {"hostNetwork": false}}}})
        );
        assert_eq!(
            rules[1]["validate"]["message"],
            "{{ request.object.spec.template.metadata.name }}"
        );
        assert_eq!(rules[2]["name"], "autogen-cronjob-check");
        assert_eq!(
            rules[2]["match"]["any"][0]["resources"]["kinds"],
            json!(["CronJob"])
        );
        assert_eq!(
            rules[2]["validate"]["pattern"],
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"hostNetwork": false}}}}}})
        );
    }

    #[test]
    fn annotation_and_conditions_turn_it_off() {
        let mut ann = BTreeMap::new();
        ann.insert(ANNOTATION.to_string(), "none".to_string());
        assert_eq!(expand(&ann, &[rule()]).len(), 1);
        ann.insert(ANNOTATION.to_string(), "Deployment".to_string());
        let rules = expand(&ann, &[rule()]);
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[1]["match"]["any"][0]["resources"]["kinds"],
            json!(["Deployment"])
        );
        let mut named = rule();
        named["match"]["any"][0]["resources"]["names"] = json!(["x"]);
        assert_eq!(expand(&BTreeMap::new(), &[named]).len(), 1);
        let mut multi = rule();
        multi["match"]["any"][0]["resources"]["kinds"] = json!(["Pod", "Service"]);
        assert_eq!(expand(&BTreeMap::new(), &[multi]).len(), 1);
        let not_pod =
            json!({"name": "n", "match": {"any": [{"resources": {"kinds": ["Service"]}}]}});
        assert_eq!(expand(&BTreeMap::new(), &[not_pod]).len(), 1);
        assert_eq!(truncate("a".repeat(70)).len(), 63);
    }
}
