//! The active policy set, swapped atomically.
//!
//! Readers take one `Arc<PolicySet>` per request and keep it until they answer, so a request is evaluated entirely by
//! the generation it started with. A rejected load never replaces the active set; it is kept as the last error.
//!
//! A load that would take the active set from some policies to none (a policy directory emptied by mistake, a
//! ConfigMap deleted) is rejected like a broken one, unless empty sets are allowed ([`EmptySet::Allow`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use serde::Serialize;

use super::loader::Compiled;
use super::{LoadError, PolicySet, SourceRef};

/// Whether a load with no policies may replace an active set that has some.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmptySet {
    /// Reject it, keeping the active set (the default when serving).
    #[default]
    Refuse,
    /// Publish it (`serve --allow-empty-policy-set`).
    Allow,
}

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
    /// errors is recorded and the active set stays. Returns the new generation or the errors. An empty load never
    /// replaces a non-empty set (see [`PolicyStore::publish_with`]).
    pub fn publish(&self, compiled: Compiled) -> Result<Arc<PolicySet>, Vec<LoadError>> {
        self.publish_with(compiled, EmptySet::Refuse)
    }

    /// [`PolicyStore::publish`], saying whether a load with no policies may replace an active set that has some;
    /// when it may not, it is rejected with an error that says so.
    pub fn publish_with(
        &self,
        mut compiled: Compiled,
        empty: EmptySet,
    ) -> Result<Arc<PolicySet>, Vec<LoadError>> {
        if empty == EmptySet::Refuse
            && compiled.built.errors.is_empty()
            && compiled.built.policies.is_empty()
        {
            if let Some(active) = self.current().filter(|s| !s.policies().is_empty()) {
                compiled.built.errors.push(LoadError::new(
                    SourceRef::file("policy sources"),
                    format!(
                        "the update has no policies and would replace the active set of {} policies \
                         (generation {}): refused, the active set keeps serving; start the server with \
                         --allow-empty-policy-set to allow an empty set",
                        active.policies().len(),
                        active.generation()
                    ),
                ));
            }
        }
        if !compiled.built.errors.is_empty() {
            let errors = compiled.built.errors;
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(LoadFailure {
                errors: errors.clone(),
                at: SystemTime::now(),
            });
            return Err(errors);
        }
        let generation = self.generations.fetch_add(1, Ordering::SeqCst) + 1;
        let set = Arc::new(
            PolicySet::new(compiled.built.policies, generation, compiled.hash)
                .with_warnings(compiled.built.warnings),
        );
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
    use crate::policy::inert::Inert;

    fn one_policy() -> Compiled {
        Compiled {
            built: Built {
                policies: vec![Inert::policy("p", None)],
                ..Built::default()
            },
            ..Compiled::default()
        }
    }

    #[test]
    fn an_empty_load_does_not_replace_a_set_with_policies() {
        let store = PolicyStore::new();
        // Starting empty is allowed (a warning is the server's business).
        assert!(store.publish(Compiled::default()).is_ok());
        store.publish(one_policy()).expect("clean load");
        let errors = store.publish(Compiled::default()).expect_err("refused");
        assert!(
            errors[0].to_string().contains("--allow-empty-policy-set"),
            "{errors:?}"
        );
        assert_eq!(store.current().map(|s| s.policies().len()), Some(1));
        assert!(store.last_error().is_some());

        let emptied = store
            .publish_with(Compiled::default(), EmptySet::Allow)
            .expect("allowed");
        assert!(emptied.policies().is_empty());
    }

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
