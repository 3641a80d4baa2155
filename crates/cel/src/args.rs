//! Argument and result plumbing shared by the Kubernetes libraries' overloads.

use std::cmp::Ordering;

use cel::common::value::{CowVal, Val};
use cel::objects::Opaque;
use cel::{ExecutionError, Value};

/// An argument as a plain value.
pub(crate) fn value(v: &CowVal<'_, '_>) -> Result<Value, ExecutionError> {
    Value::try_from(v.as_ref() as &dyn Val)
}

/// An argument that must be one of our opaque types (`T`); anything else is an error of `function` saying `what`
/// it expected.
pub(crate) fn opaque_arg<T: Opaque + Clone>(
    function: &str,
    v: &CowVal<'_, '_>,
    what: &str,
) -> Result<T, ExecutionError> {
    match value(v)? {
        Value::Opaque(o) => o.downcast_ref::<T>().cloned(),
        _ => None,
    }
    .ok_or_else(|| ExecutionError::function_error(function, what))
}

/// A plain value as a result.
pub(crate) fn out<'b, 'v>(v: Value) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(CowVal::Owned(v.try_into()?))
}

/// Exactly `N` arguments.
pub(crate) fn take<'b, 'v, const N: usize>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<[CowVal<'b, 'v>; N], ExecutionError> {
    args.try_into()
        .map_err(|a: Vec<_>| ExecutionError::invalid_argument_count(N, a.len()))
}

/// A string argument.
pub(crate) fn text(function: &str, v: &CowVal<'_, '_>) -> Result<String, ExecutionError> {
    match value(v)? {
        Value::String(s) => Ok(s.to_string()),
        other => Err(ExecutionError::function_error(
            function,
            format!("expected a string, got {}", crate::type_name(&other)),
        )),
    }
}

/// What an ordered type's `compareTo`, `isGreaterThan` and `isLessThan` return for an ordering.
#[derive(Clone, Copy)]
pub(crate) enum Comparison {
    CompareTo,
    IsGreaterThan,
    IsLessThan,
}

impl Comparison {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Comparison::CompareTo => "compareTo",
            Comparison::IsGreaterThan => "isGreaterThan",
            Comparison::IsLessThan => "isLessThan",
        }
    }

    pub(crate) fn result<'b, 'v>(
        self,
        ordering: Ordering,
    ) -> Result<CowVal<'b, 'v>, ExecutionError> {
        out(match self {
            Comparison::CompareTo => Value::Int(ordering as i64),
            Comparison::IsGreaterThan => Value::Bool(ordering == Ordering::Greater),
            Comparison::IsLessThan => Value::Bool(ordering == Ordering::Less),
        })
    }
}
