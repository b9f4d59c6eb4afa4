//! Several metrics per deployment: the decision metric (the `reward` block, which the policy
//! learns from) and any number of other metrics (binary, count or continuous), some of them
//! guardrails with a direction and a tolerated loss; and a cost per variant, in the decision
//! metric's units, so the policy maximises the decision metric minus the chosen variant's cost.
//!
//! ```json
//! "reward": {"name": "revenue", "kind": "continuous", "min": 0, "max": 500, "default": 0, "window_seconds": 604800},
//! "metrics": [
//!   {"name": "conversion", "kind": "binary"},
//!   {"name": "unsubscribe", "kind": "binary", "guardrail": {"better": "lower", "max_loss": 0.002}},
//!   {"name": "complaints", "kind": "count", "guardrail": {"better": "lower", "max_loss": 0.01}}
//! ],
//! "variants": [{"name": "free_dessert", "cost": 4.5}, {"name": "voucher", "cost": 1.0}]
//! ```
//!
//! A guardrail's `max_loss` is absolute, in the metric's units: how much worse than its baseline
//! a variant's mean may be (for `"better": "lower"`, how much higher). The baseline is the
//! control group when the deployment has one, otherwise the serving variant with the best mean
//! of that metric (see [`crate::metric_report`]).

use serde::{Deserialize, Serialize};

/// What the decision metric's values are (the `reward` block's `kind`), and how the report
/// summarises a metric (a rate for binary, a mean otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    /// 0/1 conversions (fractions allowed).
    Binary,
    /// Real-valued rewards such as revenue.
    Continuous,
}

/// The name of the decision metric when `reward.name` is not given.
pub const DEFAULT_REWARD_NAME: &str = "reward";

/// Longest metric name.
const MAX_NAME: usize = 64;

/// One metric besides the decision metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub name: String,
    pub kind: MetricKind,
    /// Smallest value accepted (a count's default is 0; a binary metric is 0 or 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest value accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Makes the metric a guardrail: the report gives each variant a verdict on it, and a
    /// breach pauses the variant unless `action` is `report`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail: Option<MetricGuardrail>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// 0 or 1 (an unsubscribe, a complaint, a conversion).
    Binary,
    /// A whole number of at least 0 (items bought, pages seen).
    Count,
    /// Any finite number (revenue, minutes).
    Continuous,
}

/// Which way a guardrail metric is better, and by how much a variant may fall short of its
/// baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricGuardrail {
    pub better: Better,
    /// The largest tolerated loss against the baseline, absolute, in the metric's units.
    pub max_loss: f64,
    /// What a breach does: pause the variant (the default) or only report it.
    #[serde(default, skip_serializing_if = "GuardrailAction::is_pause")]
    pub action: GuardrailAction,
}

/// What a breached guardrail metric does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailAction {
    /// Pauses the variant (a logged `Pause`, a notice, the change log, webhooks), as the
    /// decision metric's guardrails do; never the baseline, never the last variant serving.
    #[default]
    Pause,
    /// Reports the verdict only.
    Report,
}

impl GuardrailAction {
    fn is_pause(&self) -> bool {
        *self == GuardrailAction::Pause
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

impl MetricSpec {
    /// The range values must lie in.
    pub fn range(&self) -> (f64, f64) {
        match self.kind {
            MetricKind::Binary => (0.0, 1.0),
            MetricKind::Count => (self.min.unwrap_or(0.0), self.max.unwrap_or(f64::INFINITY)),
            MetricKind::Continuous => (self.min.unwrap_or(f64::NEG_INFINITY), self.max.unwrap_or(f64::INFINITY)),
        }
    }

    /// Why `value` is not a value of this metric, if it is not.
    pub fn refuse(&self, value: f64) -> Option<String> {
        let name = self.name.escape_default();
        if !value.is_finite() {
            return Some(format!("metric '{name}': {value} is not a finite number"));
        }
        match self.kind {
            MetricKind::Binary if value != 0.0 && value != 1.0 => {
                return Some(format!(
                    "metric '{name}' is binary: send 1 (it happened) or 0 (it did not), not {value}"
                ));
            }
            MetricKind::Count if value.fract() != 0.0 => {
                return Some(format!("metric '{name}' is a count: {value} is not a whole number"));
            }
            _ => {}
        }
        let (min, max) = self.range();
        (value < min || value > max)
            .then(|| format!("metric '{name}': {value} is outside the declared range [{min}, {max}]"))
    }

    /// The kind of figures the report gives it (a rate for binary, a mean otherwise).
    pub fn report_kind(&self) -> RewardKind {
        match self.kind {
            MetricKind::Binary => RewardKind::Binary,
            MetricKind::Count | MetricKind::Continuous => RewardKind::Continuous,
        }
    }
}

fn name_problem(what: &str, name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    (!ok).then(|| {
        format!(
            "{what} '{}' must be 1 to {MAX_NAME} letters, digits, '_', '-' or '.'",
            name.escape_default()
        )
    })
}

/// Every problem of the declared `metrics` beside a decision metric named `reward_name` (given
/// as `reward.name`, or `None` for the default name).
pub(crate) fn problems(reward_name: Option<&str>, metrics: &[MetricSpec]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(n) = reward_name {
        problems.extend(name_problem("reward.name", n));
    }
    let reward_name = reward_name.unwrap_or(DEFAULT_REWARD_NAME);
    for (i, m) in metrics.iter().enumerate() {
        problems.extend(name_problem("metric", &m.name));
        if m.name == reward_name {
            problems.push(format!(
                "metric '{}' has the decision metric's name (reward.name, default \"{DEFAULT_REWARD_NAME}\"): the decision metric is declared by \"reward\"",
                m.name
            ));
        }
        if metrics[..i].iter().any(|o| o.name == m.name) {
            problems.push(format!("metric '{}' appears twice", m.name));
        }
        for (what, v) in [("min", m.min), ("max", m.max)] {
            if let Some(v) = v
                && !v.is_finite()
            {
                problems.push(format!("metric '{}': {what} {v} must be a finite number", m.name));
            }
        }
        match m.kind {
            MetricKind::Binary if m.min.is_some_and(|v| v != 0.0) || m.max.is_some_and(|v| v != 1.0) => {
                problems.push(format!("metric '{}' is binary (0 or 1): leave out min and max", m.name));
            }
            MetricKind::Count if m.min.is_some_and(|v| v < 0.0) => {
                problems.push(format!("metric '{}' is a count: min must be at least 0", m.name));
            }
            _ => {}
        }
        if let (Some(lo), Some(hi)) = (m.min, m.max)
            && lo > hi
        {
            problems.push(format!("metric '{}': min {lo} is above max {hi}", m.name));
        }
        if let Some(g) = &m.guardrail
            && !(g.max_loss.is_finite() && g.max_loss >= 0.0)
        {
            problems.push(format!(
                "metric '{}': guardrail.max_loss {} must be a finite number >= 0 (absolute, in the metric's units)",
                m.name, g.max_loss
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeploymentError;
    use crate::spec::DeploymentSpec;

    fn problems_of(v: serde_json::Value) -> String {
        match DeploymentSpec::from_json(&v) {
            Err(DeploymentError::InvalidSpec(p)) => p.join("\n"),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "variants": [{"name": "dessert", "cost": 4.5}, {"name": "voucher", "cost": 1.0}],
            "policy": {"type": "epsilon_greedy", "epsilon": 0.1},
            "reward": {"name": "revenue", "kind": "continuous", "min": 0, "max": 500, "default": 0, "window_seconds": 60},
            "metrics": [
                {"name": "conversion", "kind": "binary"},
                {"name": "unsubscribe", "kind": "binary", "guardrail": {"better": "lower", "max_loss": 0.002}},
                {"name": "items", "kind": "count", "max": 20}
            ]
        })
    }

    #[test]
    fn the_flagship_spec_is_valid_and_round_trips() {
        let s = DeploymentSpec::from_json(&base()).expect("valid");
        assert_eq!(s.reward_name(), "revenue");
        assert_eq!(s.cost(0), 4.5);
        assert_eq!(
            s.metric("unsubscribe")
                .and_then(|m| m.guardrail.as_ref())
                .map(|g| g.better),
            Some(Better::Lower)
        );
        let again = DeploymentSpec::from_json(&serde_json::to_value(&s).expect("json")).expect("again");
        assert_eq!(again, s);
    }

    #[test]
    fn a_spec_without_metrics_serialises_as_before() {
        let s =
            DeploymentSpec::from_json(&serde_json::json!({"variants": [{"name": "a"}], "policy": {"type": "ucb1"}}))
                .expect("valid");
        let v = serde_json::to_value(&s).expect("json");
        assert!(
            v.get("metrics").is_none() && v["variants"][0].get("cost").is_none() && v["reward"].get("name").is_none()
        );
        assert_eq!(s.reward_name(), "reward");
    }

    #[test]
    fn every_metric_problem_is_reported() {
        let mut v = base();
        v["metrics"] = serde_json::json!([
            {"name": "revenue", "kind": "continuous"},
            {"name": "x", "kind": "count", "min": 5, "max": 2},
            {"name": "x", "kind": "binary", "max": 3},
            {"name": "bad name", "kind": "continuous", "guardrail": {"better": "lower", "max_loss": -1}},
        ]);
        let text = problems_of(v);
        for needle in [
            "has the decision metric's name",
            "min 5 is above max 2",
            "'x' appears twice",
            "leave out min and max",
            "letters, digits",
            "max_loss -1",
        ] {
            assert!(text.contains(needle), "missing '{needle}' in:\n{text}");
        }
        let mut v = base();
        v["metrics"][0]["kind"] = serde_json::json!("ratio");
        let err = DeploymentSpec::from_json(&v).expect_err("bad kind").to_string();
        assert!(
            err.contains("unknown variant `ratio`") && err.contains("binary"),
            "{err}"
        );
    }

    #[test]
    fn costs_need_a_continuous_reward_and_a_policy_that_learns_it() {
        let mut v = base();
        v["reward"] = serde_json::json!({"kind": "binary", "min": 0, "max": 1, "default": 0, "window_seconds": 60});
        v["policy"] = serde_json::json!({"type": "thompson_beta"});
        v["variants"][1]["cost"] = serde_json::json!(-2);
        let text = problems_of(v);
        for needle in [
            "needs \"reward\": {\"kind\": \"continuous\"",
            "learns 0/1 rewards only",
            "cost -2",
        ] {
            assert!(text.contains(needle), "missing '{needle}' in:\n{text}");
        }
    }

    #[test]
    fn values_are_checked_against_the_kind_and_range() {
        let s = DeploymentSpec::from_json(&base()).expect("valid");
        let conv = s.metric("conversion").expect("m");
        assert!(conv.refuse(1.0).is_none() && conv.refuse(0.0).is_none());
        assert!(conv.refuse(0.5).expect("refused").contains("binary"));
        let items = s.metric("items").expect("m");
        assert!(items.refuse(3.0).is_none());
        assert!(items.refuse(2.5).expect("refused").contains("whole number"));
        assert!(items.refuse(-1.0).expect("refused").contains("[0, 20]"));
        assert!(items.refuse(f64::NAN).expect("refused").contains("finite"));
    }
}
