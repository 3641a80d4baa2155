//! The Kubernetes quantity library: `quantity(s)`, `isQuantity(s)` and, on a `kubernetes.Quantity`, `sign()`,
//! `isInteger()`, `asInteger()`, `asApproximateFloat()`, `compareTo(q)`, `isGreaterThan(q)`, `isLessThan(q)`,
//! `add(q | int)` and `sub(q | int)`.
//!
//! A quantity is held exactly as `mantissa × 10^exponent` (binary suffixes multiplied out), normalized so that equal
//! amounts are equal values (`quantity('1') == quantity('1000m')`). Numbers too large for that form (beyond about
//! 38 digits) are refused as invalid quantities.

use std::cmp::Ordering;
use std::sync::Arc;

use cel::common::types::{Type, INT_TYPE, STRING_TYPE};
use cel::common::value::CowVal;
use cel::objects::Opaque;
use cel::{DeclarationError, Env, ExecutionError, Value};

use crate::args::{out, take, value, Comparison};

/// The CEL type name.
pub const TYPE_NAME: &str = "kubernetes.Quantity";

/// An exact quantity, `mantissa × 10^exponent`, with no trailing zeros in the mantissa (zero is `0 × 10^0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    mantissa: i128,
    exponent: i32,
}

impl Opaque for Quantity {
    fn runtime_type_name(&self) -> &str {
        TYPE_NAME
    }
}

/// The largest decimal exponent accepted (Kubernetes' own limits are far below what this form can hold).
const MAX_EXPONENT: i32 = 1_000;

impl Quantity {
    fn new(mantissa: i128, exponent: i32) -> Option<Quantity> {
        let (mut mantissa, mut exponent) = (mantissa, exponent);
        if mantissa == 0 {
            return Some(Quantity {
                mantissa: 0,
                exponent: 0,
            });
        }
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent = exponent.checked_add(1)?;
        }
        (exponent.abs() <= MAX_EXPONENT).then_some(Quantity { mantissa, exponent })
    }

    /// Parses Kubernetes' quantity syntax: a signed decimal number, then a binary suffix (`Ki` … `Ei`), a decimal
    /// suffix (`n`, `u`, `m`, `k`, `M`, `G`, `T`, `P`, `E`) or a decimal exponent (`e3`, `E-2`).
    pub fn parse(s: &str) -> Option<Quantity> {
        let (negative, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return None;
        }
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 36 {
            return None;
        }
        let mut mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let mut exponent = -i32::try_from(fraction.len()).ok()?;
        let binary = |power: u32| 1024_i128.checked_pow(power);
        match suffix {
            "" => {}
            "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
                let power = match suffix {
                    "Ki" => 1,
                    "Mi" => 2,
                    "Gi" => 3,
                    "Ti" => 4,
                    "Pi" => 5,
                    _ => 6,
                };
                mantissa = mantissa.checked_mul(binary(power)?)?;
            }
            "n" => exponent -= 9,
            "u" => exponent -= 6,
            "m" => exponent -= 3,
            "k" => exponent += 3,
            "M" => exponent += 6,
            "G" => exponent += 9,
            "T" => exponent += 12,
            "P" => exponent += 15,
            "E" => exponent += 18,
            other => {
                let e = other.strip_prefix(['e', 'E'])?;
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let e: i32 = e.parse().ok()?;
                if e.abs() > MAX_EXPONENT {
                    return None;
                }
                exponent += e;
            }
        }
        Quantity::new(if negative { -mantissa } else { mantissa }, exponent)
    }

    /// Both mantissas at the smaller exponent; `None` when the other one does not fit (it is then the larger in
    /// magnitude).
    fn aligned(self, other: Quantity) -> Option<(i128, i128, i32)> {
        let e = self.exponent.min(other.exponent);
        let scale = |q: Quantity| {
            10_i128
                .checked_pow(u32::try_from(q.exponent - e).ok()?)
                .and_then(|f| q.mantissa.checked_mul(f))
        };
        Some((scale(self)?, scale(other)?, e))
    }

    fn compare(self, other: Quantity) -> Ordering {
        let (a, b) = (self.mantissa.signum(), other.mantissa.signum());
        if a != b || a == 0 {
            return a.cmp(&b);
        }
        match self.aligned(other) {
            Some((x, y, _)) => x.cmp(&y),
            // The one with the larger exponent overflowed: it is larger in magnitude.
            None => {
                let larger = if self.exponent > other.exponent {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
                if a > 0 {
                    larger
                } else {
                    larger.reverse()
                }
            }
        }
    }

    fn add(self, other: Quantity) -> Option<Quantity> {
        let (x, y, e) = self.aligned(other)?;
        Quantity::new(x.checked_add(y)?, e)
    }

    fn as_integer(self) -> Option<i64> {
        if self.exponent < 0 {
            return None;
        }
        let value = self
            .mantissa
            .checked_mul(10_i128.checked_pow(u32::try_from(self.exponent).ok()?)?)?;
        i64::try_from(value).ok()
    }

    fn as_float(self) -> f64 {
        self.mantissa as f64 * 10_f64.powi(self.exponent)
    }
}

fn quantity_type() -> Type {
    Type::new_opaque_type(TYPE_NAME)
}

fn quantity_arg(function: &str, v: &CowVal<'_, '_>) -> Result<Quantity, ExecutionError> {
    match value(v)? {
        Value::Opaque(o) => o.downcast_ref::<Quantity>().copied(),
        Value::Int(i) => Quantity::new(i128::from(i), 0),
        _ => None,
    }
    .ok_or_else(|| ExecutionError::function_error(function, "expected a quantity"))
}

fn quantity_value(q: Quantity) -> Value {
    Value::Opaque(Arc::new(q))
}

fn parse_fn<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    let Value::String(s) = value(&s)? else {
        return Err(ExecutionError::function_error(
            "quantity",
            "expected a string",
        ));
    };
    let q = Quantity::parse(&s).ok_or_else(|| {
        ExecutionError::function_error("quantity", format!("invalid quantity {:?}", s.as_str()))
    })?;
    out(quantity_value(q))
}

fn is_quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    let valid = matches!(value(&s)?, Value::String(s) if Quantity::parse(&s).is_some());
    out(Value::Bool(valid))
}

fn sign<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [q] = take(args)?;
    let q = quantity_arg("sign", &q)?;
    out(Value::Int(q.mantissa.signum() as i64))
}

fn is_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [q] = take(args)?;
    out(Value::Bool(
        quantity_arg("isInteger", &q)?.as_integer().is_some(),
    ))
}

fn as_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [q] = take(args)?;
    let i = quantity_arg("asInteger", &q)?.as_integer().ok_or_else(|| {
        ExecutionError::function_error(
            "asInteger",
            "cannot convert value to integer: the quantity is not an integer or does not fit in int",
        )
    })?;
    out(Value::Int(i))
}

fn as_float<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [q] = take(args)?;
    out(Value::Float(
        quantity_arg("asApproximateFloat", &q)?.as_float(),
    ))
}

fn comparison<'b, 'v>(
    which: Comparison,
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = take(args)?;
    which.result(quantity_arg(which.name(), &a)?.compare(quantity_arg(which.name(), &b)?))
}

fn compare_to<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    comparison(Comparison::CompareTo, args)
}

fn greater<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    comparison(Comparison::IsGreaterThan, args)
}

fn less<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    comparison(Comparison::IsLessThan, args)
}

fn arithmetic<'b, 'v>(
    function: &str,
    args: Vec<CowVal<'b, 'v>>,
    negate: bool,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = take(args)?;
    let (a, mut b) = (quantity_arg(function, &a)?, quantity_arg(function, &b)?);
    if negate {
        b.mantissa = -b.mantissa;
    }
    let sum = a
        .add(b)
        .ok_or_else(|| ExecutionError::function_error(function, "quantity overflow"))?;
    out(quantity_value(sum))
}

fn add<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic("add", args, false)
}

fn sub<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic("sub", args, true)
}

/// Registers the type and its functions.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    let q = quantity_type;
    env.add_type(q())?;
    env.add_overload("quantity", "quantity(string)", vec![STRING_TYPE], parse_fn)?;
    env.add_overload(
        "isQuantity",
        "isQuantity(string)",
        vec![STRING_TYPE],
        is_quantity,
    )?;
    env.add_member_overload("sign", "quantity.sign()", q(), vec![], sign)?;
    env.add_member_overload("isInteger", "quantity.isInteger()", q(), vec![], is_integer)?;
    env.add_member_overload("asInteger", "quantity.asInteger()", q(), vec![], as_integer)?;
    env.add_member_overload(
        "asApproximateFloat",
        "quantity.asApproximateFloat()",
        q(),
        vec![],
        as_float,
    )?;
    env.add_member_overload(
        "compareTo",
        "quantity.compareTo(quantity)",
        q(),
        vec![q()],
        compare_to,
    )?;
    env.add_member_overload(
        "isGreaterThan",
        "quantity.isGreaterThan(quantity)",
        q(),
        vec![q()],
        greater,
    )?;
    env.add_member_overload(
        "isLessThan",
        "quantity.isLessThan(quantity)",
        q(),
        vec![q()],
        less,
    )?;
    env.add_member_overload("add", "quantity.add(quantity)", q(), vec![q()], add)?;
    env.add_member_overload("add", "quantity.add(int)", q(), vec![INT_TYPE], add)?;
    env.add_member_overload("sub", "quantity.sub(quantity)", q(), vec![q()], sub)?;
    env.add_member_overload("sub", "quantity.sub(int)", q(), vec![INT_TYPE], sub)
}

#[cfg(test)]
mod tests {
    use super::Quantity;
    use crate::{EvalError, Value};
    use serde_json::json;

    fn eval(src: &str) -> Result<Value, EvalError> {
        crate::eval_on(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"resources": {"limits": {"memory": "512Mi", "cpu": "500m"}}}]}}),
            src,
        )
    }

    #[test]
    fn parsing() {
        let q = |s: &str| Quantity::parse(s);
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1.5Gi"), q("1610612736"));
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("-.5"), q("-500m"));
        assert_eq!(q("0"), q("0Gi"));
        for bad in [
            "",
            "abc",
            "1.2.3",
            "1Kb",
            "1e",
            "1e+",
            "--1",
            ".",
            "1 Gi",
            "12345678901234567890123456789012345678901",
        ] {
            assert_eq!(q(bad), None, "{bad}");
        }
    }

    #[test]
    fn functions() {
        for src in [
            "quantity('1Gi').isGreaterThan(quantity('1000Mi'))",
            "quantity('500m').isLessThan(quantity('1'))",
            "quantity(object.spec.containers[0].resources.limits.memory).isLessThan(quantity('1Gi'))",
            "quantity('1') == quantity('1000m') && quantity('1') != quantity('2')",
            "quantity('2Ki').compareTo(quantity('2048')) == 0 && quantity('1').compareTo(quantity('2')) == -1",
            "quantity('-1').sign() == -1 && quantity('0').sign() == 0 && quantity('3m').sign() == 1",
            "quantity('2k').isInteger() && !quantity('1m').isInteger() && quantity('2k').asInteger() == 2000",
            "quantity('1.5').asApproximateFloat() == 1.5",
            "quantity('1').add(quantity('500m')) == quantity('1.5') && quantity('1').add(2) == quantity('3')",
            "quantity('1Gi').sub(quantity('512Mi')) == quantity('512Mi') && quantity('1').sub(1).sign() == 0",
            "isQuantity('10Mi') && !isQuantity('10MB')",
            "quantity('1E').isGreaterThan(quantity('999P')) && quantity('1e30').isGreaterThan(quantity('1n'))",
            "quantity('-1e30').isLessThan(quantity('-1n'))",
        ] {
            assert_eq!(eval(src), Ok(Value::Bool(true)), "{src}");
        }
        for (src, error) in [
            ("quantity('nope')", "invalid quantity"),
            (
                "quantity('1m').asInteger()",
                "cannot convert value to integer",
            ),
            (
                "quantity('1e30').asInteger()",
                "cannot convert value to integer",
            ),
        ] {
            let e = eval(src).expect_err(src);
            assert!(e.to_string().contains(error), "{src}: {e}");
        }
    }
}
