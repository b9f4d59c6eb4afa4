//! What deciding, recording feedback and closing windows answer.

use serde::{Deserialize, Serialize};

use crate::notice::Notice;

/// What `decide` answers.
///
/// A unit of a no-action control group (`"control": {"policy": "none"}`) gets no variant:
/// `no_action` is true, `control` is true, `variant` is empty here and `null` in JSON, and
/// `propensity` is the probability of being held back (the control's share).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DecisionOut {
    pub decision_id: String,
    pub deployment: String,
    /// The variant chosen; empty (`null` in JSON) when `no_action`. Variant names are never
    /// empty, so an empty name always means no action: see [`DecisionOut::chosen`].
    #[serde(serialize_with = "variant_or_null")]
    pub variant: String,
    /// True when the unit gets no action at all (a no-action control group).
    pub no_action: bool,
    pub propensity: f64,
    pub policy_version: u64,
    pub revision: i64,
    /// True when the unit is in the control (holdout) group.
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

impl DecisionOut {
    /// The variant chosen; `None` for no action.
    pub fn chosen(&self) -> Option<&str> {
        (!self.no_action && !self.variant.is_empty()).then_some(self.variant.as_str())
    }
}

fn variant_or_null<S: serde::Serializer>(variant: &str, s: S) -> Result<S::Ok, S::Error> {
    if variant.is_empty() {
        s.serialize_none()
    } else {
        s.serialize_str(variant)
    }
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

/// One item of feedback: the decision metric (`reward`), other metrics, or both. A metric named
/// after the decision metric (`reward.name`) is the reward.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct FeedbackIn {
    pub decision_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<f64>,
    /// Values of the deployment's declared metrics (`{"unsubscribe": 0, "items": 2}`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metrics: std::collections::BTreeMap<String, f64>,
}

impl From<&RewardIn> for FeedbackIn {
    fn from(r: &RewardIn) -> FeedbackIn {
        FeedbackIn {
            decision_id: r.decision_id.clone(),
            reward: Some(r.reward),
            metrics: Default::default(),
        }
    }
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
