//! The Kubernetes lists library's `indexOf` and `lastIndexOf` on lists: `[1, 2, 2].indexOf(2) == 1`,
//! `[1, 2, 2].lastIndexOf(2) == 2`, `-1` when absent (elements compared with CEL equality). Kyverno MutatingPolicies
//! build JSON patch paths with them (`object.spec.containers.indexOf(c)`). The strings extension's `indexOf` on
//! strings is untouched: these overloads take a list receiver.
//!
//! If the rest of the Kubernetes lists library lands (`isSorted`, `sum`, `min`, `max`), these two belong with it.
use cel::common::types::{CelInt, DYN_TYPE, LIST_TYPE};
use cel::common::value::CowVal;
use cel::{DeclarationError, Env, ExecutionError};

fn position<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
    last: bool,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list, needle] = <[CowVal<'b, 'v>; 2]>::try_from(args)
        .map_err(|a| ExecutionError::invalid_argument_count(2, a.len()))?;
    let size = list
        .as_sizer()
        .map(|s| *s.size().inner())
        .ok_or_else(|| ExecutionError::function_error(function, "receiver is not a list"))?;
    let indexer = list
        .as_indexer()
        .ok_or_else(|| ExecutionError::function_error(function, "receiver is not a list"))?;
    let mut found = -1i64;
    for i in 0..size.max(0) {
        let item = indexer.get(&CelInt::from(i))?;
        if item.as_ref().equals(needle.as_ref()) {
            found = i;
            if !last {
                break;
            }
        }
    }
    Ok(CowVal::Owned(Box::new(CelInt::from(found))))
}

fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    position(args, "indexOf", false)
}

fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    position(args, "lastIndexOf", true)
}

/// Registers `<list>.indexOf(x)` and `<list>.lastIndexOf(x)`.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_member_overload(
        "indexOf",
        "list_index_of_dyn",
        LIST_TYPE,
        vec![DYN_TYPE],
        index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list_last_index_of_dyn",
        LIST_TYPE,
        vec![DYN_TYPE],
        last_index_of,
    )
}

#[cfg(test)]
mod tests {
    use crate::{Activation, Limits, Program, ReviewBindings};
    use policyctl_core::admission::{Operation, Review};
    use serde_json::json;

    #[test]
    fn list_index_of_and_last_index_of() {
        let review = Review::for_object(
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}}),
            None,
            Operation::Create,
        );
        let activation = Activation::new(ReviewBindings::of(&review));
        for (source, want) in [
            ("[1, 2, 2].indexOf(2) == 1", true),
            ("[1, 2, 2].lastIndexOf(2) == 2", true),
            ("[1, 2].indexOf(3) == -1", true),
            ("'abcb'.indexOf('b') == 1", true),
            (
                "object.spec.containers.map(c, object.spec.containers.indexOf(c)) == [0, 1, 0]",
                true,
            ),
            (
                "object.spec.containers.lastIndexOf({'name': 'a'}) == 2",
                true,
            ),
        ] {
            let p = Program::compile(source).expect("compiles");
            assert_eq!(
                activation.evaluate_bool(&p, &Limits::default()),
                Ok(want),
                "{source}"
            );
        }
    }
}
