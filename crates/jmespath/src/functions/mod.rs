//! Function registry, argument checking and value helpers shared by the function families.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

use super::ast::Node;
use super::eval::Interp;
use super::JmesError;

mod arithmetic;
mod encoding;
#[cfg(test)]
mod error_tests;
mod misc;
mod standard;
pub(crate) mod strings;
mod time;
mod x509;

/// Signature of a function implementation.
pub(crate) type Impl = fn(&mut Interp<'_>, &Args<'_, '_>) -> Result<Value, JmesError>;

/// A callable function: name, accepted argument count, implementation.
pub(crate) struct Function {
    pub(crate) name: &'static str,
    /// Least number of arguments.
    pub(crate) min: usize,
    /// Most arguments; `None` = variadic.
    pub(crate) max: Option<usize>,
    pub(crate) call: Impl,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}()", self.name)
    }
}

impl Function {
    pub(crate) const fn new(
        name: &'static str,
        min: usize,
        max: Option<usize>,
        call: Impl,
    ) -> Self {
        Function {
            name,
            min,
            max,
            call,
        }
    }

    /// Check a call's argument count.
    pub(crate) fn check_arity(&self, given: usize) -> Result<(), ArityError> {
        let ok = given >= self.min && self.max.is_none_or(|m| given <= m);
        if ok {
            return Ok(());
        }
        let expected = match self.max {
            Some(m) if m == self.min => format!("{m}"),
            Some(m) => format!("{} to {m}", self.min),
            None => format!("at least {}", self.min),
        };
        Err(ArityError {
            name: self.name,
            expected,
            given,
        })
    }
}

/// A function called with a number of arguments it does not take (reported when the expression is compiled).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("function {name}() expects {expected} argument{s}, got {given}", s = plural(.expected))]
pub(crate) struct ArityError {
    /// The function's name.
    pub(crate) name: &'static str,
    /// What it takes: `1`, `1 to 2`, `at least 1`.
    pub(crate) expected: String,
    /// How many it was given.
    pub(crate) given: usize,
}

/// The plural ending of "argument" after `expected`.
fn plural(expected: &str) -> &'static str {
    if expected == "1" {
        ""
    } else {
        "s"
    }
}

/// Every family's table. Later tables win over earlier ones for the same name (Kyverno replaces `sum`).
fn tables() -> [&'static [Function]; 7] {
    [
        arithmetic::FUNCTIONS,
        standard::FUNCTIONS,
        strings::FUNCTIONS,
        encoding::FUNCTIONS,
        misc::FUNCTIONS,
        time::FUNCTIONS,
        x509::FUNCTIONS,
    ]
}

/// Find a function by name.
pub(crate) fn lookup(name: &str) -> Option<&'static Function> {
    tables()
        .into_iter()
        .flat_map(|t| t.iter())
        .find(|f| f.name == name)
}

/// The names of every function expressions may call, sorted.
pub fn function_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = tables()
        .into_iter()
        .flat_map(|t| t.iter().map(|f| f.name))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// One evaluated argument.
pub(crate) enum Arg<'a> {
    /// A value.
    Value(Cow<'a, Value>),
    /// An expression reference (`&expr`), evaluated by the function.
    Expref(&'a Node),
}

/// A call's arguments with typed accessors that produce the specification's type errors.
pub(crate) struct Args<'x, 'a> {
    pub(crate) name: &'static str,
    args: &'x [Arg<'a>],
    /// The first argument's regular expression, compiled with the expression (a literal pattern).
    pub(crate) regex: Option<&'x std::sync::Arc<regex::Regex>>,
}

/// The JMESPath type name of a value.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl<'x, 'a> Args<'x, 'a> {
    pub(crate) fn new(name: &'static str, args: &'x [Arg<'a>]) -> Self {
        Args {
            name,
            args,
            regex: None,
        }
    }

    /// The arguments of a call whose first argument's regular expression was compiled with the expression.
    pub(crate) fn with_regex(self, regex: Option<&'x std::sync::Arc<regex::Regex>>) -> Self {
        Args { regex, ..self }
    }

    /// Number of arguments.
    pub(crate) fn len(&self) -> usize {
        self.args.len()
    }

    /// A function error with this function's name.
    pub(crate) fn error(&self, message: impl Into<String>) -> JmesError {
        JmesError::Function {
            name: self.name.to_string(),
            message: message.into(),
        }
    }

    /// A type error for argument `i` (0-based).
    pub(crate) fn type_error(&self, i: usize, expected: &str, got: &Value) -> JmesError {
        self.error(format!(
            "argument {}: expected {expected}, got {}",
            i + 1,
            type_name(got)
        ))
    }

    /// Argument `i` as any value.
    pub(crate) fn value(&self, i: usize) -> Result<&Value, JmesError> {
        match self.args.get(i) {
            Some(Arg::Value(v)) => Ok(v),
            Some(Arg::Expref(_)) => Err(self.error(format!(
                "argument {}: expected a value, got an expression",
                i + 1
            ))),
            None => Err(self.error(format!("missing argument {}", i + 1))),
        }
    }

    /// Argument `i` as an expression reference.
    pub(crate) fn expref(&self, i: usize) -> Result<&'a Node, JmesError> {
        match self.args.get(i) {
            Some(Arg::Expref(node)) => Ok(node),
            Some(Arg::Value(v)) => Err(self.type_error(i, "expression (&expr)", v)),
            None => Err(self.error(format!("missing argument {}", i + 1))),
        }
    }

    /// Argument `i` as a string.
    pub(crate) fn string(&self, i: usize) -> Result<&str, JmesError> {
        match self.value(i)? {
            Value::String(s) => Ok(s),
            other => Err(self.type_error(i, "string", other)),
        }
    }

    /// Argument `i` as a number.
    pub(crate) fn number(&self, i: usize) -> Result<&Number, JmesError> {
        match self.value(i)? {
            Value::Number(n) => Ok(n),
            other => Err(self.type_error(i, "number", other)),
        }
    }

    /// Argument `i` as a float.
    pub(crate) fn float(&self, i: usize) -> Result<f64, JmesError> {
        let n = self.number(i)?;
        n.as_f64()
            .ok_or_else(|| self.error(format!("argument {}: number out of range", i + 1)))
    }

    /// Argument `i` as an integer (an integral number).
    pub(crate) fn integer(&self, i: usize) -> Result<i64, JmesError> {
        let n = self.number(i)?;
        as_integer(n)
            .ok_or_else(|| self.error(format!("argument {}: expected an integer, got {n}", i + 1)))
    }

    /// Argument `i` as an array.
    pub(crate) fn array(&self, i: usize) -> Result<&[Value], JmesError> {
        match self.value(i)? {
            Value::Array(a) => Ok(a),
            other => Err(self.type_error(i, "array", other)),
        }
    }

    /// Argument `i` as an object.
    pub(crate) fn object(&self, i: usize) -> Result<&Map<String, Value>, JmesError> {
        match self.value(i)? {
            Value::Object(o) => Ok(o),
            other => Err(self.type_error(i, "object", other)),
        }
    }

    /// Argument `i` as an array of strings.
    pub(crate) fn strings(&self, i: usize) -> Result<Vec<&str>, JmesError> {
        let items = self.array(i)?;
        items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                other => Err(self.error(format!(
                    "argument {}: expected array of strings, found {}",
                    i + 1,
                    type_name(other)
                ))),
            })
            .collect()
    }
}

/// A number as an exact integer, when it is one (`2` and `2.0` are, `2.5` is not).
pub(crate) fn as_integer(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
        Some(f as i64)
    } else {
        None
    }
}

/// A JSON number from a float: integral values become integers (as Go prints them), non-finite ones null.
pub(crate) fn number(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
        return Value::from(f as i64);
    }
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Encode a value as Go's `encoding/json` does (what Kyverno prints): object keys sorted, integral floats without
/// a fraction, exponents as `1e+21`, and `<`, `>`, `&`, U+2028, U+2029 escaped.
pub fn json_string(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, &mut out);
    out
}

fn write_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&format_number(n)),
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(key, out);
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_json(v, out);
                }
            }
            out.push('}');
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Format a number as Go's `strconv.FormatFloat(f, 'g'-like JSON rules)` does for JSON output.
pub(crate) fn format_number(n: &Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let Some(f) = n.as_f64() else {
        return n.to_string();
    };
    format_float(f)
}

/// Format a float as Go's JSON encoder does.
pub(crate) fn format_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let text = format!("{f:e}");
        match text.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = match exp.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', exp),
                };
                let digits = if digits.len() < 2 {
                    format!("0{digits}")
                } else {
                    digits.to_string()
                };
                format!("{mantissa}e{sign}{digits}")
            }
            None => text,
        }
    } else {
        format!("{f}")
    }
}
