//! Kyverno's arithmetic: numbers, Kubernetes quantities (`"100Mi"`) and Go durations (`"1h"`).
//!
//! An operand is a number, or a string that parses as a quantity (tried first, so `"10"` is a quantity), or as a
//! duration. Quantities and durations come back as strings in their canonical form; numbers as numbers (integers
//! when both operands are integers and the result is exact).

use serde_json::{Number, Value};

use super::{as_integer, number, Args, Function};
use crate::eval::Interp;
use crate::units::{format_duration, parse_duration, Quantity};
use crate::JmesError;

pub(crate) static FUNCTIONS: &[Function] = &[
    Function::new("add", 2, Some(2), add),
    Function::new("sum", 1, Some(1), sum),
    Function::new("subtract", 2, Some(2), subtract),
    Function::new("multiply", 2, Some(2), multiply),
    Function::new("divide", 2, Some(2), divide),
    Function::new("modulo", 2, Some(2), modulo),
    Function::new("round", 2, Some(2), round),
];

#[derive(Debug, Clone)]
enum Operand {
    Scalar(Number),
    Quantity(Quantity),
    Duration(i64),
}

#[derive(Clone, Copy)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

fn operand(a: &Args<'_, '_>, value: &Value, i: usize) -> Result<Operand, JmesError> {
    match value {
        Value::Number(n) => Ok(Operand::Scalar(n.clone())),
        Value::String(s) => {
            if let Some(q) = Quantity::parse(s) {
                Ok(Operand::Quantity(q))
            } else if let Some(d) = parse_duration(s) {
                Ok(Operand::Duration(d))
            } else {
                Err(a.error(format!(
                    "argument {}: {s:?} is not a number, quantity or duration",
                    i + 1
                )))
            }
        }
        other => Err(a.type_error(i, "number, quantity or duration", other)),
    }
}

fn float(a: &Args<'_, '_>, n: &Number) -> Result<f64, JmesError> {
    n.as_f64().ok_or_else(|| a.error("number out of range"))
}

fn mismatch(a: &Args<'_, '_>, x: &Operand, y: &Operand) -> JmesError {
    let kind = |o: &Operand| match o {
        Operand::Scalar(_) => "number",
        Operand::Quantity(_) => "quantity",
        Operand::Duration(_) => "duration",
    };
    a.error(format!(
        "types mismatch: cannot combine {} and {}",
        kind(x),
        kind(y)
    ))
}

fn overflow(a: &Args<'_, '_>) -> JmesError {
    a.error("result out of range")
}

fn zero(a: &Args<'_, '_>) -> JmesError {
    a.error("zero divisor")
}

fn duration_value(a: &Args<'_, '_>, nanos: f64) -> Result<Value, JmesError> {
    if !nanos.is_finite() || nanos.abs() >= 9.2e18 {
        return Err(overflow(a));
    }
    Ok(Value::String(format_duration(nanos as i64)))
}

fn quantity_value(a: &Args<'_, '_>, q: Option<Quantity>) -> Result<Value, JmesError> {
    q.map(|q| Value::String(q.to_string()))
        .ok_or_else(|| overflow(a))
}

/// Multiply a quantity by a number exactly when the number is a short decimal.
fn scale_quantity(
    a: &Args<'_, '_>,
    q: &Quantity,
    n: &Number,
    divide: bool,
) -> Result<Value, JmesError> {
    let factor = Quantity::parse(&n.to_string())
        .ok_or_else(|| a.error(format!("cannot use {n} as a factor")))?;
    let f = factor.nanos();
    let nanos = if divide {
        if f == 0 {
            return Err(zero(a));
        }
        q.nanos()
            .checked_mul(1_000_000_000)
            .ok_or_else(|| overflow(a))?
            / f
    } else {
        q.nanos().checked_mul(f).ok_or_else(|| overflow(a))? / 1_000_000_000
    };
    quantity_value(a, Quantity::from_nanos(nanos, q.format()))
}

fn scalar(a: &Args<'_, '_>, op: Op, x: &Number, y: &Number) -> Result<Value, JmesError> {
    if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
        let exact = match op {
            Op::Add => i.checked_add(j),
            Op::Sub => i.checked_sub(j),
            Op::Mul => i.checked_mul(j),
            Op::Div | Op::Mod if j == 0 => return Err(zero(a)),
            Op::Div => None,
            Op::Mod => i.checked_rem(j),
        };
        if let Some(v) = exact {
            return Ok(Value::from(v));
        }
    }
    let (p, q) = (float(a, x)?, float(a, y)?);
    let result = match op {
        Op::Add => p + q,
        Op::Sub => p - q,
        Op::Mul => p * q,
        Op::Div => {
            if q == 0.0 {
                return Err(zero(a));
            }
            p / q
        }
        Op::Mod => {
            let (Some(i), Some(j)) = (as_integer(x), as_integer(y)) else {
                return Err(a.error("non-integer argument(s) passed for modulo"));
            };
            if j == 0 {
                return Err(zero(a));
            }
            return Ok(Value::from(i.checked_rem(j).ok_or_else(|| overflow(a))?));
        }
    };
    match number(result) {
        Value::Null => Err(overflow(a)),
        v => Ok(v),
    }
}

fn apply(a: &Args<'_, '_>, op: Op, x: &Operand, y: &Operand) -> Result<Value, JmesError> {
    use Operand::{Duration as D, Quantity as Q, Scalar as S};
    match (op, x, y) {
        (_, S(p), S(q)) => scalar(a, op, p, q),
        (Op::Add, Q(p), Q(q)) => quantity_value(a, p.checked_add(q)),
        (Op::Sub, Q(p), Q(q)) => quantity_value(a, p.checked_sub(q)),
        (Op::Add, D(p), D(q)) => Ok(Value::String(format_duration(
            p.checked_add(*q).ok_or_else(|| overflow(a))?,
        ))),
        (Op::Sub, D(p), D(q)) => Ok(Value::String(format_duration(
            p.checked_sub(*q).ok_or_else(|| overflow(a))?,
        ))),
        (Op::Mul, Q(p), S(n)) | (Op::Mul, S(n), Q(p)) => scale_quantity(a, p, n, false),
        (Op::Mul, D(d), S(n)) | (Op::Mul, S(n), D(d)) => {
            duration_value(a, *d as f64 * float(a, n)?)
        }
        (Op::Div, Q(p), S(n)) => scale_quantity(a, p, n, true),
        (Op::Div, D(d), S(n)) => {
            let n = float(a, n)?;
            if n == 0.0 {
                return Err(zero(a));
            }
            duration_value(a, *d as f64 / n)
        }
        (Op::Div, Q(p), Q(q)) => {
            if q.nanos() == 0 {
                return Err(zero(a));
            }
            Ok(number(p.as_f64() / q.as_f64()))
        }
        (Op::Div, D(p), D(q)) => {
            if *q == 0 {
                return Err(zero(a));
            }
            Ok(number(*p as f64 / *q as f64))
        }
        (Op::Mod, Q(p), Q(q)) => {
            if p.nanos() % 1_000_000_000 != 0 || q.nanos() % 1_000_000_000 != 0 {
                return Err(a.error("non-integer argument(s) passed for modulo"));
            }
            if q.nanos() == 0 {
                return Err(zero(a));
            }
            quantity_value(a, Quantity::from_nanos(p.nanos() % q.nanos(), p.format()))
        }
        (Op::Mod, D(p), D(q)) => {
            if *q == 0 {
                return Err(zero(a));
            }
            Ok(Value::String(format_duration(
                p.checked_rem(*q).ok_or_else(|| overflow(a))?,
            )))
        }
        _ => Err(mismatch(a, x, y)),
    }
}

/// Parse two operands. A string such as `"30m"` or `"0"` is both a quantity and a duration: next to a duration
/// it is read as a duration (Kyverno would report a type mismatch for `add('1h', '30m')`).
fn operands(a: &Args<'_, '_>, x: &Value, y: &Value) -> Result<(Operand, Operand), JmesError> {
    let mut p = operand(a, x, 0)?;
    let mut q = operand(a, y, 1)?;
    let as_duration = |v: &Value| v.as_str().and_then(parse_duration).map(Operand::Duration);
    match (&p, &q) {
        (Operand::Duration(_), Operand::Quantity(_)) => q = as_duration(y).unwrap_or(q),
        (Operand::Quantity(_), Operand::Duration(_)) => p = as_duration(x).unwrap_or(p),
        _ => {}
    }
    Ok((p, q))
}

fn binary(a: &Args<'_, '_>, op: Op) -> Result<Value, JmesError> {
    let (x, y) = operands(a, a.value(0)?, a.value(1)?)?;
    apply(a, op, &x, &y)
}

fn add(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    binary(a, Op::Add)
}

fn subtract(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    binary(a, Op::Sub)
}

fn multiply(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    binary(a, Op::Mul)
}

fn divide(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    binary(a, Op::Div)
}

fn modulo(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    binary(a, Op::Mod)
}

/// Kyverno's `sum`: adds the elements of a non-empty array of numbers, quantities or durations (all of one kind).
fn sum(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let items = a.array(0)?;
    let Some(first) = items.first() else {
        return Err(a.error("at least one element in the array is required"));
    };
    let mut total = first.clone();
    // Validate the first element even when it is the only one.
    operand(a, first, 0)?;
    for item in items.iter().skip(1) {
        let (x, y) = operands(a, &total, item)?;
        total = apply(a, Op::Add, &x, &y)?;
    }
    Ok(total)
}

fn round(_: &mut Interp<'_>, a: &Args<'_, '_>) -> Result<Value, JmesError> {
    let n = a.number(0)?;
    let places = a.integer(1)?;
    if places < 0 {
        return Err(a.error("the number of decimal places must be a non-negative integer"));
    }
    if n.is_i64() || n.is_u64() {
        return Ok(Value::Number(n.clone()));
    }
    let value = float(a, n)?;
    let shift = 10f64.powi(i32::try_from(places.min(300)).unwrap_or(300));
    let rounded = (value * shift).round() / shift;
    Ok(if rounded.is_finite() {
        number(rounded)
    } else {
        Value::Number(n.clone())
    })
}
