//! regorus plumbing shared by the engines that evaluate Rego (plain modules, Gatekeeper templates): engine settings,
//! JSON ↔ regorus conversions, time limits, rule messages and patches.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub mod check;
pub mod divergence;
mod lexer;
pub mod vm;

use std::num::NonZeroU32;
use std::time::Duration;

use std::sync::Arc;

use policyctl_core::admission::Review;
use policyctl_core::policy::EvalError;

/// How many work units regorus runs between two clock reads.
const TIMER_CHECK_INTERVAL: u32 = 32;

/// A regorus engine with the settings every policy engine wants: OPA's builtin-error semantics (an error in a
/// builtin makes the expression undefined), `print` captured instead of written to stderr, and a time limit.
pub fn new_engine(timeout: Duration) -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(false);
    engine.set_gather_prints(true);
    set_time_limit(&mut engine, timeout);
    engine
}

/// The regorus timer for one evaluation of at most `limit` (regorus reads the clock every few work units).
pub fn timer(limit: Duration) -> regorus::utils::limits::ExecutionTimerConfig {
    regorus::utils::limits::ExecutionTimerConfig {
        limit,
        check_interval: NonZeroU32::new(TIMER_CHECK_INTERVAL).unwrap_or(NonZeroU32::MIN),
    }
}

/// Limit the next evaluations of `engine` to `limit`.
pub fn set_time_limit(engine: &mut regorus::Engine, limit: Duration) {
    engine.set_execution_timer_config(timer(limit));
}

/// The review (the whole AdmissionReview document) as a regorus value: converted once per review, on first use, and
/// shared by every engine that evaluates Rego (plain Rego's `input`, Gatekeeper's `input.review` is built from its
/// `request` member without converting the objects again). regorus values are reference-counted: sharing and
/// cloning them copies no object.
pub fn review_value(review: &Review) -> Arc<regorus::Value> {
    review
        .cached(|r| RegoReview(Arc::new(to_rego(r.document()))))
        .0
        .clone()
}

/// The per-review slot of [`review_value`].
struct RegoReview(Arc<regorus::Value>);

/// Convert a JSON document to a regorus value, directly (no serde round trip): strings, arrays and objects are built
/// from the JSON tree, numbers convert as regorus's own JSON reading does (`u64`, then `i64`, else `f64`).
///
/// Strings that repeat are mostly shared rather than allocated again (see [`Converter`]): within the document (object
/// keys such as `name`, `image` or `securityContext` in every container, values such as `RuntimeDefault` or `ALL`),
/// and, for object keys, from one conversion to the next on the same thread.
pub fn to_rego(value: &serde_json::Value) -> regorus::Value {
    let converted = KEYS.try_with(|cell| {
        cell.try_borrow_mut()
            .ok()
            .map(|mut slots| Converter::run(&mut slots, value))
    });
    match converted {
        Ok(Some(converted)) => converted,
        // The thread's cache is gone (thread exit) or in use: a cache for this conversion only.
        _ => Converter::run(&mut [const { None }; SHARED_STRINGS], value),
    }
}

/// How many strings the cache holds.
const SHARED_STRINGS: usize = 64;

/// Longer strings are never cached (nor kept from one conversion to the next).
const MAX_SHARED_LEN: usize = 64;

/// A cached string, and whether it was seen as an object key (kept for the thread's next conversions).
struct SharedString {
    value: regorus::Value,
    key: bool,
}

type Slots = [Option<SharedString>; SHARED_STRINGS];

thread_local! {
    /// The object keys of this thread's last conversions. Only keys stay between conversions (field names, label
    /// and annotation keys, all short): the values of one review are forgotten when its conversion ends.
    static KEYS: std::cell::RefCell<Slots> = const { std::cell::RefCell::new([const { None }; SHARED_STRINGS]) };
}

/// One conversion, with a small direct-mapped cache of regorus strings, so a string that occurs again is a
/// reference-count clone of the first one instead of a new allocation (and one free fewer when the value is dropped).
/// A string whose slot holds another string simply replaces it: the cache only saves work, every string converts to
/// the same text either way, and each lookup is constant time whatever the document holds.
struct Converter<'s> {
    strings: &'s mut Slots,
}

impl Converter<'_> {
    /// Convert `value` with the cache `strings`, then forget the values (not the keys) it cached.
    fn run(strings: &mut Slots, value: &serde_json::Value) -> regorus::Value {
        let mut converter = Converter { strings };
        let converted = converter.convert(value);
        for slot in converter.strings.iter_mut() {
            if slot.as_ref().is_some_and(|shared| !shared.key) {
                *slot = None;
            }
        }
        converted
    }

    fn convert(&mut self, value: &serde_json::Value) -> regorus::Value {
        match value {
            serde_json::Value::Null => regorus::Value::Null,
            serde_json::Value::Bool(b) => regorus::Value::Bool(*b),
            serde_json::Value::Number(n) => number_to_rego(n),
            serde_json::Value::String(s) => self.string(s, false),
            serde_json::Value::Array(items) => regorus::Value::from(
                items
                    .iter()
                    .map(|item| self.convert(item))
                    .collect::<Vec<_>>(),
            ),
            serde_json::Value::Object(map) if map.is_empty() => regorus::Value::new_object(),
            serde_json::Value::Object(map) => {
                // serde_json's map iterates in key order, which is regorus's order of string keys: the entries go
                // straight into the object's sorted storage. Sized exactly (`collect` would round small maps up to
                // four entries, and the object's storage would then be reallocated to fit).
                let mut entries = Vec::with_capacity(map.len());
                for (key, value) in map {
                    entries.push((self.string(key, true), self.convert(value)));
                }
                regorus::Value::from(regorus::value::Object::from_entries(entries))
            }
        }
    }

    /// The regorus string for `text` (an object key when `key`): the cached one when its slot holds the same text,
    /// else a new one, cached.
    fn string(&mut self, text: &str, key: bool) -> regorus::Value {
        if text.len() > MAX_SHARED_LEN {
            return regorus::Value::from(text);
        }
        let slot = &mut self.strings[slot_of(text)];
        if let Some(shared) = slot {
            if matches!(&shared.value, regorus::Value::String(seen) if **seen == *text) {
                shared.key |= key;
                return shared.value.clone();
            }
        }
        let value = regorus::Value::from(text);
        *slot = Some(SharedString {
            value: value.clone(),
            key,
        });
        value
    }
}

/// The cache slot of a string: a multiplicative hash of its length and its first, middle and last bytes (cheap, and
/// enough to tell apart the keys and short values a Kubernetes object repeats).
fn slot_of(text: &str) -> usize {
    let bytes = text.as_bytes();
    let len = bytes.len();
    let byte = |i: usize| u64::from(bytes.get(i).copied().unwrap_or(0));
    let key = len as u64 | byte(0) << 16 | byte(len / 2) << 24 | byte(len.wrapping_sub(1)) << 32;
    // The top bits of the product are the best mixed.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARED_STRINGS
}

/// A JSON number as regorus reads it from JSON text: unsigned and signed integers exactly, anything else as the
/// (always finite) `f64` serde_json holds.
fn number_to_rego(n: &serde_json::Number) -> regorus::Value {
    if let Some(u) = n.as_u64() {
        regorus::Value::from(u)
    } else if let Some(i) = n.as_i64() {
        regorus::Value::from(i)
    } else {
        // serde_json numbers are finite: this never yields regorus's `Null` for NaN/infinity.
        n.as_f64()
            .map_or(regorus::Value::Null, regorus::Value::from)
    }
}

/// Convert a regorus value to JSON (sets become arrays).
pub fn to_json(value: &regorus::Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Map a regorus evaluation error to an [`EvalError`], recognising the time limit (reported as the request's
/// `budget`).
pub fn eval_error(err: anyhow::Error, timeout: Duration) -> EvalError {
    if let Some(regorus::LimitError::TimeLimitExceeded { .. }) =
        err.downcast_ref::<regorus::LimitError>()
    {
        return EvalError::Timeout(timeout);
    }
    let text = err.to_string();
    if text.contains("exceeded time limit") || text.contains("Execution exceeded time limit") {
        return EvalError::Timeout(timeout);
    }
    EvalError::Engine(text)
}

/// Messages of a `deny`/`warn` rule: each element that is a string, or an object's `msg`; anything else as JSON.
pub fn messages(value: &regorus::Value) -> Vec<String> {
    let elements: Vec<&regorus::Value> = match value {
        regorus::Value::Set(set) => set.iter().collect(),
        regorus::Value::Array(items) => items.iter().collect(),
        regorus::Value::Undefined | regorus::Value::Null => Vec::new(),
        regorus::Value::Bool(false) => Vec::new(),
        other => vec![other],
    };
    elements
        .into_iter()
        .map(|element| match element {
            regorus::Value::String(s) => s.to_string(),
            regorus::Value::Object(map) => match map.get(&regorus::Value::from("msg")) {
                Some(regorus::Value::String(s)) => s.to_string(),
                _ => to_json(element).to_string(),
            },
            regorus::Value::Bool(true) => "denied".to_string(),
            other => to_json(other).to_string(),
        })
        .collect()
}

/// The JSONPatch operations of a `patch` rule (a set or array of operation objects).
pub fn patch_operations(value: &regorus::Value) -> Result<Vec<json_patch::PatchOperation>, String> {
    let json = match value {
        regorus::Value::Undefined => return Ok(Vec::new()),
        other => to_json(other),
    };
    let items = match json {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Null => return Ok(Vec::new()),
        other => vec![other],
    };
    items
        .into_iter()
        .map(|item| {
            serde_json::from_value::<json_patch::PatchOperation>(item.clone())
                .map_err(|e| format!("patch element {item} is not a JSONPatch operation: {e}"))
        })
        .collect()
}

/// Builtins a policy may not call, with the reason. `http.send` exists in regorus only as a stub that is always
/// undefined: a policy relying on it would silently allow.
pub fn forbidden_builtin(source: &str) -> Option<String> {
    for (needle, name) in [
        ("http.send", "http.send"),
        ("net.lookup_ip_addr", "net.lookup_ip_addr"),
    ] {
        if source.lines().any(|line| {
            let code = line.split('#').next().unwrap_or("");
            code.contains(needle)
        }) {
            return Some(format!(
                "{name} is not available to policies (policies get no network access); remove the call"
            ));
        }
    }
    None
}

/// Deepest nesting of `{` and `[` a policy module may have. regorus's parser tries a brace or bracket as a
/// comprehension first and parses its contents again when it is not one, so its work doubles with every level
/// (measured: 12 levels of `{` take ~0.4 s, 18 levels ~85 s, 90 levels would take years). Policies nest 4 levels
/// at most (the bundled policies and the Gatekeeper library).
pub const MAX_NESTING: usize = 12;

/// Bound on the parser's work over a whole module, counted as the sum of 2^depth over every `{` and `[`: many
/// constructs each under [`MAX_NESTING`] add up. The largest bundled or library policy counts under 500.
pub const MAX_NESTING_WORK: u64 = 1 << 16;

/// Why a module's brackets nest too deeply for the Rego parser to finish in reasonable time, if they do. Brackets in
/// comments and strings (`"..."`, `` `...` ``) do not count.
pub fn nesting_problem(source: &str) -> Option<String> {
    let mut depth = 0usize;
    let mut work = 0u64;
    let mut line = 1usize;
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' | '\n' => {
                            line += usize::from(c == '\n');
                            break;
                        }
                        _ => {}
                    }
                }
            }
            '`' => {
                for c in chars.by_ref() {
                    match c {
                        '`' => break,
                        '\n' => line += 1,
                        _ => {}
                    }
                }
            }
            '{' | '[' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(format!(
                        "brackets nested more than {MAX_NESTING} levels deep (line {line}): the Rego parser's time \
                         doubles with every level of `{{` and `[`; move nested literals into rules of their own"
                    ));
                }
                work = work.saturating_add(1u64 << depth);
                if work > MAX_NESTING_WORK {
                    return Some(format!(
                        "too much deeply nested bracketing (up to line {line}): the Rego parser's time doubles with \
                         every level of `{{` and `[`; move nested literals into rules of their own"
                    ));
                }
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nesting_is_bounded_in_depth_and_in_total() {
        let nested = |n: usize| format!("package x\np := {}1{}\n", "{".repeat(n), "}".repeat(n));
        assert_eq!(nesting_problem(&nested(MAX_NESTING)), None);
        let problem = nesting_problem(&nested(MAX_NESTING + 1)).expect("too deep");
        assert!(
            problem.contains("more than 12 levels deep (line 2)"),
            "{problem}"
        );
        // Unclosed brackets count the same.
        assert!(nesting_problem(&format!("package x\np := {}", "[".repeat(90))).is_some());
        // Many constructs, each allowed, add up.
        let many: String = (0..40)
            .map(|i| format!("p{i} := {}\n", nested(10)))
            .collect();
        let problem = nesting_problem(&many).expect("too much");
        assert!(problem.contains("too much deeply nested"), "{problem}");
        // Brackets in comments and strings do not count.
        let quoted = format!(
            "package x\n# {}\na := \"{}\\\"{}\"\nb := `{}`\n",
            "{".repeat(40),
            "[".repeat(40),
            "{".repeat(40),
            "{".repeat(40)
        );
        assert_eq!(nesting_problem(&quoted), None);
    }

    #[test]
    fn direct_conversion_matches_regorus_json_reading() {
        use serde::Deserialize;
        let text = r#"{
            "apiVersion": "v1", "kind": "Pod", "empty": {}, "none": [], "null": null, "yes": true, "no": false,
            "ints": [0, 1, -1, 18446744073709551615, -9223372036854775808, 9223372036854775807],
            "floats": [0.5, -0.0, 1e300, -2.5e-300, 3.141592653589793, 1.0, 18446744073709551616, -9223372036854775809],
            "nested": {"z": [{"a": {"b": [1, "x", {}]}}], "a": "é\u0000", "": 1},
            "labels": {"app.kubernetes.io/name": "web", "B": "upper", "a": "lower"}
        }"#;
        let doc: serde_json::Value = serde_json::from_str(text).expect("json");
        let direct = to_rego(&doc);
        let via_serde = regorus::Value::deserialize(&doc).expect("serde");
        assert_eq!(direct, via_serde);
        assert_eq!(to_json(&direct), to_json(&via_serde));
        assert_eq!(
            direct.to_json_str().expect("json"),
            regorus::Value::from_json_str(text)
                .expect("regorus")
                .to_json_str()
                .expect("json")
        );
        // Integers stay exact; a number beyond u64/i64 is a float, as when regorus reads the text.
        assert_eq!(direct["ints"][3].as_u64().ok(), Some(u64::MAX));
        assert_eq!(direct["ints"][4].as_i64().ok(), Some(i64::MIN));
        assert_eq!(
            direct["floats"][6].as_f64().ok(),
            Some(18446744073709551616.0)
        );
        for scalar in [
            json!(null),
            json!(true),
            json!(7),
            json!(-7),
            json!(0.25),
            json!("s"),
        ] {
            assert_eq!(
                to_rego(&scalar),
                regorus::Value::deserialize(&scalar).expect("serde")
            );
        }
    }

    #[test]
    fn repeated_strings_are_shared_and_every_string_converts_exactly() {
        use serde::Deserialize;
        // Two containers: their keys and equal values are one string each.
        let pod = json!({"containers": [
            {"name": "a", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
            {"name": "b", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}
        ]});
        let value = to_rego(&pod);
        let containers = &value["containers"];
        let profile = |i: usize| containers[i]["securityContext"]["seccompProfile"].clone();
        let (first, second) = (profile(0), profile(1));
        let key = |object: &regorus::Value| match object.as_object().map(|o| o.iter().next()) {
            Ok(Some((regorus::Value::String(key), _))) => key.clone(),
            other => panic!("{other:?}"),
        };
        assert!(Arc::ptr_eq(&key(&first), &key(&second)));
        match (&first["type"], &second["type"]) {
            (regorus::Value::String(a), regorus::Value::String(b)) => assert!(Arc::ptr_eq(a, b)),
            other => panic!("{other:?}"),
        }
        // Keys are shared with the thread's next conversion; values are not kept.
        let again = to_rego(&pod);
        let profile_again = again["containers"][0]["securityContext"]["seccompProfile"].clone();
        assert!(Arc::ptr_eq(&key(&first), &key(&profile_again)));
        match (&first["type"], &profile_again["type"]) {
            (regorus::Value::String(a), regorus::Value::String(b)) => assert!(!Arc::ptr_eq(a, b)),
            other => panic!("{other:?}"),
        }
        // A long string is never cached: equal long values are separate strings.
        let long = "x".repeat(MAX_SHARED_LEN + 1);
        let pair = to_rego(&json!([long, long]));
        match (&pair[0], &pair[1]) {
            (regorus::Value::String(a), regorus::Value::String(b)) => assert!(!Arc::ptr_eq(a, b)),
            other => panic!("{other:?}"),
        }
        // Many strings that compete for the same slots (same length, same first, middle and last bytes) and more
        // distinct strings than the cache holds: each still converts to its own text.
        let mut object = serde_json::Map::new();
        let mut items = Vec::new();
        for i in 0..300u32 {
            let text = format!("k{:03}x{:03}k", i, 299 - i);
            object.insert(text.clone(), json!([text.clone(), format!("v{i}"), text]));
            items.push(json!({ format!("{}", i % 7): i, "k": format!("{}", i % 5) }));
        }
        let doc = json!({"object": object, "items": items, "": ""});
        assert_eq!(
            to_rego(&doc),
            regorus::Value::deserialize(&doc).expect("serde")
        );
    }

    #[test]
    fn messages_accept_strings_objects_and_other_values() {
        let value = to_rego(&serde_json::json!(["a", {"msg": "b", "details": {}}, {"x": 1}, 3]));
        assert_eq!(messages(&value), ["a", "b", "{\"x\":1}", "3"]);
        assert!(messages(&regorus::Value::Undefined).is_empty());
    }

    #[test]
    fn forbidden_builtins_ignore_comments() {
        assert!(forbidden_builtin("x := http.send({})").is_some());
        assert!(forbidden_builtin("# we do not call http.send here\nx := 1").is_none());
    }

    #[test]
    fn patch_operations_are_validated() {
        let ok = to_rego(&serde_json::json!([{"op": "add", "path": "/a", "value": 1}]));
        assert_eq!(patch_operations(&ok).map(|ops| ops.len()), Ok(1));
        let bad = to_rego(&serde_json::json!([{"op": "frobnicate"}]));
        assert!(patch_operations(&bad).is_err());
    }
}
