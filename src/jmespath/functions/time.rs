//! Kyverno's time functions.

use super::Function;

pub(crate) static FUNCTIONS: &[Function] = &[];
