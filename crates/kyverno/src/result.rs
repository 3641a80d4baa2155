//! Rule and policy responses, as Kyverno computes them.

use serde::Serialize;
use serde_json::Value;

pub use crate::policy::RuleStatus;

/// What kind of rule produced a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleType {
    /// `validate`.
    Validation,
    /// `mutate`.
    Mutation,
    /// Anything else (generate, verifyImages).
    Other,
}

/// The response of one rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleResponse {
    /// Rule name (autogen names included).
    pub name: String,
    /// Rule type.
    pub rule_type: RuleType,
    /// Result.
    pub status: RuleStatus,
    /// Message.
    pub message: String,
}

impl RuleResponse {
    /// A response.
    pub fn new(
        name: &str,
        rule_type: RuleType,
        status: RuleStatus,
        message: impl Into<String>,
    ) -> RuleResponse {
        RuleResponse {
            name: name.to_string(),
            rule_type,
            status,
            message: message.into(),
        }
    }
}

/// The responses of one policy on one resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyResponse {
    /// One entry per rule that matched, in evaluation order (mutations first).
    pub rules: Vec<RuleResponse>,
    /// The resource after the policy's mutations, when any rule changed it.
    pub patched: Option<Value>,
}
