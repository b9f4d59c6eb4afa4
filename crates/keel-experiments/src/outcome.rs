//! What deciding, recording feedback and closing windows answer.

use serde::{Deserialize, Serialize};

use crate::notice::Notice;

/// What `decide` answers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DecisionOut {
    pub decision_id: String,
    pub deployment: String,
    pub variant: String,
    pub propensity: f64,
    pub policy_version: u64,
    pub revision: i64,
    pub control: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<serde_json::Value>,
    /// The id the prediction was logged under (prediction logging on): labels refer to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_id: Option<String>,
    /// Set when an output guardrail held the chosen variant's answer back and `variant` is the
    /// fallback: `{"from": variant held back, "violation": {...}}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<serde_json::Value>,
    /// The model answer behind `prediction`, as tensors (for transports that send tensors,
    /// such as gRPC); not part of the JSON answer.
    #[serde(skip)]
    pub response: Option<keel_serving::InferResponse>,
}

/// What `feedback` answers for one event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FeedbackOut {
    pub decision_id: String,
    /// `false` when the same reward had already been counted (the call changed nothing).
    pub counted: bool,
}

/// One item of a batch of rewards.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct RewardIn {
    pub decision_id: String,
    pub reward: f64,
}

/// What closing attribution windows did.
#[derive(Debug, Default)]
pub struct ClosedWindows {
    pub closed: usize,
    /// Default rewards applied: (decision id, reward).
    pub defaults: Vec<(String, f64)>,
    /// Guardrail pauses or canary moves the default rewards caused.
    pub notices: Vec<Notice>,
}
