//! Kyverno's misc functions.

use super::Function;

pub(crate) static FUNCTIONS: &[Function] = &[];
