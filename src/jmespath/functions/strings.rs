//! Kyverno's strings functions.

use super::Function;

pub(crate) static FUNCTIONS: &[Function] = &[];
