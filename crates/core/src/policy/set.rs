//! The immutable policy set: the policies, their index, and the identity of the load that made them.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use super::{Policy, PolicyInfo, SourceFile};
use crate::admission::Review;
use crate::select::{Index, Target};

/// A complete, immutable set of loaded policies with its selection index.
///
/// A set is built off the request path and published in one step; a request keeps the `Arc<PolicySet>` it started
/// with until it is answered.
#[derive(Debug)]
pub struct PolicySet {
    policies: Vec<Arc<dyn Policy>>,
    index: Index,
    generation: u64,
    hash: String,
    loaded_at: SystemTime,
    warnings: Vec<super::LoadError>,
}

/// A policy as listed by `/status` and `lint`.
#[derive(Debug, Clone, Serialize)]
pub struct PolicySummary {
    /// Identity.
    #[serde(flatten)]
    pub info: PolicyInfo,
    /// Whether it validates.
    pub validates: bool,
    /// Whether it mutates.
    pub mutates: bool,
}

impl PolicySet {
    /// Build a set; the index is computed here, once.
    pub fn new(policies: Vec<Arc<dyn Policy>>, generation: u64, hash: String) -> PolicySet {
        let scopes: Vec<_> = policies.iter().map(|p| p.scope()).collect();
        let index = Index::build(&scopes);
        PolicySet {
            policies,
            index,
            generation,
            hash,
            loaded_at: SystemTime::now(),
            warnings: Vec::new(),
        }
    }

    /// The same set, with the warnings of the load that built it.
    pub fn with_warnings(mut self, warnings: Vec<super::LoadError>) -> PolicySet {
        self.warnings = warnings;
        self
    }

    /// The warnings of the load that built it (unknown kinds, rules skipped as unsupported, ...).
    pub fn warnings(&self) -> &[super::LoadError] {
        &self.warnings
    }

    /// An empty set.
    pub fn empty() -> PolicySet {
        PolicySet::new(Vec::new(), 0, content_hash(&[]))
    }

    /// The policies, in set order.
    pub fn policies(&self) -> &[Arc<dyn Policy>] {
        &self.policies
    }

    /// The policies that may match `review`, in set order.
    pub fn select(&self, review: &Review) -> Vec<&Arc<dyn Policy>> {
        self.index
            .candidates(&Target::of(review))
            .filter_map(|i| self.policies.get(i as usize))
            .collect()
    }

    /// Load generation: 1 for the first set a process loads, then counting up.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Hash of the sources the set was built from (hex SHA-256 over origins and contents).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// When the set was built.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// A summary of every policy.
    pub fn summaries(&self) -> Vec<PolicySummary> {
        self.policies
            .iter()
            .map(|p| PolicySummary {
                info: p.info().clone(),
                validates: p.validates(),
                mutates: p.mutates(),
            })
            .collect()
    }
}

/// Hex SHA-256 over the sources, independent of their order.
pub fn content_hash(files: &[SourceFile]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&SourceFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.origin.cmp(&b.origin));
    let mut hasher = Sha256::new();
    for file in sorted {
        hasher.update((file.origin.len() as u64).to_le_bytes());
        hasher.update(file.origin.as_bytes());
        hasher.update((file.content.len() as u64).to_le_bytes());
        hasher.update(file.content.as_bytes());
    }
    let digest = hasher.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
