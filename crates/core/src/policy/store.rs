//! The active policy set, swapped atomically.
//!
//! Readers take one `Arc<PolicySet>` per request and keep it until they answer, so a request is evaluated entirely by
//! the generation it started with. A rejected load never replaces the active set; it is kept as the last error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use serde::Serialize;

use super::loader::Compiled;
use super::{LoadError, PolicySet};

/// A load that was rejected.
#[derive(Debug, Clone, Serialize)]
pub struct LoadFailure {
    /// Every error of the load.
    pub errors: Vec<LoadError>,
    /// When it happened.
    #[serde(serialize_with = "serialize_time")]
    pub at: SystemTime,
}

fn serialize_time<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    s.serialize_f64(secs)
}

/// Holder of the active policy set.
#[derive(Debug, Default)]
pub struct PolicyStore {
    current: ArcSwapOption<PolicySet>,
    generations: AtomicU64,
    last_error: Mutex<Option<LoadFailure>>,
}

impl PolicyStore {
    /// An empty store: not ready until a set is published.
    pub fn new() -> PolicyStore {
        PolicyStore::default()
    }

    /// The active set, if one was ever loaded.
    pub fn current(&self) -> Option<Arc<PolicySet>> {
        self.current.load_full()
    }

    /// Publish the result of a load: a clean load becomes the active set under the next generation; a load with
    /// errors is recorded and the active set stays. Returns the new generation or the errors.
    pub fn publish(&self, compiled: Compiled) -> Result<Arc<PolicySet>, Vec<LoadError>> {
        if !compiled.built.errors.is_empty() {
            let errors = compiled.built.errors;
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(LoadFailure {
                errors: errors.clone(),
                at: SystemTime::now(),
            });
            return Err(errors);
        }
        let generation = self.generations.fetch_add(1, Ordering::SeqCst) + 1;
        let set = Arc::new(PolicySet::new(
            compiled.built.policies,
            generation,
            compiled.hash,
        ));
        self.current.store(Some(set.clone()));
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(set)
    }

    /// The last rejected load, if the latest load failed.
    pub fn last_error(&self) -> Option<LoadFailure> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Built;
    use crate::policy::SourceRef;

    #[test]
    fn a_bad_load_keeps_the_active_set() {
        let store = PolicyStore::new();
        assert!(store.current().is_none());
        let first = store.publish(Compiled::default()).expect("clean load");
        assert_eq!(first.generation(), 1);

        let bad = Compiled {
            built: Built {
                errors: vec![LoadError::new(SourceRef::file("x.rego"), "broken")],
                ..Built::default()
            },
            ..Compiled::default()
        };
        assert!(store.publish(bad).is_err());
        assert_eq!(store.current().map(|s| s.generation()), Some(1));
        assert_eq!(store.last_error().map(|e| e.errors.len()), Some(1));

        let second = store.publish(Compiled::default()).expect("clean load");
        assert_eq!(second.generation(), 2);
        assert!(store.last_error().is_none());
    }
}
