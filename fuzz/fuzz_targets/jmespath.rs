//! The Kyverno JMESPath dialect: `<expression>\0<data JSON>` (a fixed document when there is no data). Compiling and
//! evaluating (every function, with a deadline) must never panic.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use policyctl_jmespath::Expression;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (expression, data) = match text.split_once('\0') {
        Some((expression, data)) => match serde_json::from_str::<Value>(data) {
            Ok(data) => (expression, data),
            Err(_) => return,
        },
        None => (
            text,
            json!({"a": {"b": [1, 2.5, "3", null, true]}, "s": "Hello, World", "q": "128Mi", "d": "1h30m",
                   "items": [{"name": "x", "v": 1}, {"name": "y", "v": -2}], "t": "2024-01-01T00:00:00Z"}),
        ),
    };
    let Ok(compiled) = Expression::compile(expression) else {
        return;
    };
    let _ = compiled.search_until(&data, Some(Instant::now() + Duration::from_secs(2)));
});
