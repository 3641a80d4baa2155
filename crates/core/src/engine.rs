//! Stage 3 of a request: evaluation, one module per policy language.
//!
//! An [`Engine`] turns the documents of its language into [`Policy`] values when a policy set is built; the pipeline
//! then evaluates them through the [`Policy`] trait without knowing the language. Each language is a crate of its
//! own (`policyctl-gatekeeper`, `policyctl-kyverno`, `policyctl-rego`); `policyctl-engines` lists them.

use std::sync::Arc;
use std::time::Duration;

use crate::policy::kinds::KnownKinds;
use crate::policy::source::Document;
use crate::policy::{LoadError, Policy, SourceFile, DEFAULT_EVAL_TIMEOUT};

/// Settings that apply to every engine when a policy set is built.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Time limit for one policy evaluation; engines with a cooperative timer (regorus) enforce it themselves.
    pub eval_timeout: Duration,
    /// What to do with a policy that enforces and has a rule policyctl does not run.
    pub unsupported_rules: UnsupportedRules,
    /// The cluster's custom resource kinds, when the server reads them: no warning for a kind a CRD defines.
    pub known_kinds: Option<Arc<KnownKinds>>,
    /// Run the Rego of Gatekeeper templates that carry both Rego and CEL (`K8sNativeValidation`); by default their
    /// CEL runs, as Gatekeeper's default driver does.
    pub prefer_rego: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            eval_timeout: DEFAULT_EVAL_TIMEOUT,
            unsupported_rules: UnsupportedRules::default(),
            known_kinds: None,
            prefer_rego: false,
        }
    }
}

/// The per-policy opt-out annotation: a policy with `policyctl.io/unsupported-rules: skip` loads with its unsupported
/// rules skipped (each one a load warning) even when it enforces.
pub const UNSUPPORTED_RULES_ANNOTATION: &str = "policyctl.io/unsupported-rules";

/// What a load does with an enforcing policy that contains a rule policyctl does not run (a Kyverno `podSecurity`
/// or `verifyImages` rule under `Enforce`, say). Serving it with the rule skipped would admit what the policy is
/// there to deny, so by default that is a load error; a policy opts out with [`UNSUPPORTED_RULES_ANNOTATION`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnsupportedRules {
    /// An enforcing policy with an unsupported rule is a load error unless it opts out (serve, eval, lint, bench,
    /// audit).
    #[default]
    Refuse,
    /// Load it with the rule skipped: for `policyctl test`, which reports each case of such a rule as
    /// `unsupported`, never as a pass.
    Report,
}

/// What an engine is given to build: the YAML documents and the files it claimed.
#[derive(Debug, Default)]
pub struct EngineInput {
    /// YAML documents whose apiVersion/kind the engine claimed.
    pub documents: Vec<Document>,
    /// Whole files the engine claimed (e.g. Rego modules).
    pub files: Vec<SourceFile>,
    /// Documents no engine claims whose apiVersion/kind is one of the engine's [`Engine::param_kinds`]: the
    /// parameter resources of its policies (a ValidatingAdmissionPolicy's `paramKind`).
    pub params: Vec<Document>,
}

/// What an engine built.
#[derive(Debug, Default)]
pub struct Built {
    /// Ready policies, in the order of their documents.
    pub policies: Vec<Arc<dyn Policy>>,
    /// Problems that make the set unusable.
    pub errors: Vec<LoadError>,
    /// Problems worth reporting that do not stop the set from loading.
    pub warnings: Vec<LoadError>,
}

/// A policy language.
pub trait Engine: Send + Sync {
    /// Short name, e.g. `rego`.
    fn name(&self) -> &'static str;

    /// Whether YAML documents of this apiVersion and kind belong to this engine.
    fn claims(&self, api_version: &str, kind: &str) -> bool;

    /// Whether a whole (non-YAML) file belongs to this engine.
    fn claims_file(&self, file: &SourceFile) -> bool {
        let _ = file;
        false
    }

    /// The `(apiVersion, kind)` of the parameter resources the claimed documents name (a ValidatingAdmissionPolicy's
    /// `paramKind`). Documents of these kinds that no engine claims are given to the engine as
    /// [`EngineInput::params`] instead of being unknown kinds.
    fn param_kinds(&self, documents: &[Document]) -> Vec<(String, String)> {
        let _ = documents;
        Vec::new()
    }

    /// The kinds this engine loads, for error messages (`apiVersion kind`).
    fn kinds(&self) -> Vec<&'static str>;

    /// Build the policies from everything the engine claimed. Must not panic on any input.
    fn build(&self, input: EngineInput, options: &LoadOptions) -> Built;
}
