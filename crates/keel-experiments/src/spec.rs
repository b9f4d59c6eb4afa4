//! The definition of a deployment: variants, traffic policy, context features, control group,
//! reward, canary and guardrails. Validation reports every problem at once.

use keel_bandit::{MAX_ABS_REWARD, PolicyConfig};
use serde::{Deserialize, Serialize};

pub use crate::control::{ControlArm, ControlPolicy, ControlSpec};
pub use crate::metric_spec::{Better, DEFAULT_REWARD_NAME, MetricGuardrail, MetricKind, MetricSpec, RewardKind};
use crate::{DeploymentError, Result};

/// A deployment as a team writes it (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    #[serde(default)]
    pub description: Option<String>,
    pub variants: Vec<VariantSpec>,
    pub policy: PolicyConfig,
    /// Features of the context, for contextual policies (and logged for every policy).
    #[serde(default)]
    pub context: Vec<FeatureSpec>,
    /// Features every serving variant gives values for (`"features"` of each variant), for a
    /// policy that shares one model across variants (`"shared": true`): a variant is then
    /// known by its features, so one added later starts from what similar ones taught.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub action_features: Vec<FeatureSpec>,
    /// A holdout group (one named variant, uniform rotation over the variants, or no action),
    /// to prove lift against the status quo: see [`ControlSpec`].
    #[serde(default)]
    pub control: Option<ControlSpec>,
    /// The decision metric: what the policy learns from (minus the chosen variant's `cost`).
    #[serde(default)]
    pub reward: RewardSpec,
    /// Metrics besides the decision metric (binary, count, continuous; some guardrails), each
    /// reported per variant: see [`crate::metric_spec`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSpec>,
    #[serde(default)]
    pub canary: Option<CanarySpec>,
    #[serde(default)]
    pub guardrails: Option<RewardGuardrailSpec>,
    /// Seed of the decision randomness (decisions are reproducible under a seed).
    #[serde(default)]
    pub seed: u64,
    /// Width of the time buckets of the traffic-share report.
    #[serde(default = "default_bucket_seconds")]
    pub report_bucket_seconds: u64,
    /// Latency and availability objective of the decide endpoint.
    #[serde(default)]
    pub slo: Option<keel_guard::SloSpec>,
    /// Checks on model variants' answers, with the variant that answers instead.
    #[serde(default)]
    pub output_guardrails: Option<OutputGuardsSpec>,
    /// Alert rules over the SLO, guardrails and monitoring figures; a rule may roll back.
    #[serde(default)]
    pub alerts: Vec<keel_guard::AlertRule>,
    /// Live monitoring against a reference table: data quality, sliding-window drift of the
    /// inputs and the score, and the AUC of labelled predictions.
    #[serde(default)]
    pub monitor: Option<crate::drift::MonitorSpec>,
}

fn default_bucket_seconds() -> u64 {
    60
}

/// One variant: a plain action (`promo_a`) or a model version (`bc-lr@production`, `bc-lr:3`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    pub name: String,
    /// A model reference; the decision then carries the model's prediction.
    #[serde(default)]
    pub model: Option<String>,
    /// A shadow variant gets a copy of every request; its answer is logged, never returned.
    #[serde(default)]
    pub shadow: bool,
    /// The variant's values of the deployment's `action_features` (numbers and category levels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<serde_json::Map<String, serde_json::Value>>,
    /// What choosing this variant costs, in the decision metric's units (a free dessert costs
    /// more than a voucher): the policy learns the decision metric minus it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "type")]
pub enum FeatureSpec {
    Numeric { name: String },
    Categorical { name: String, levels: Vec<String> },
}

impl FeatureSpec {
    pub fn name(&self) -> &str {
        match self {
            FeatureSpec::Numeric { name } | FeatureSpec::Categorical { name, .. } => name,
        }
    }

    /// Width of the encoded feature (one-hot for categorical; unknown levels encode as zeros).
    pub fn width(&self) -> usize {
        match self {
            FeatureSpec::Numeric { .. } => 1,
            FeatureSpec::Categorical { levels, .. } => levels.len(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSpec {
    /// The decision metric's name in feedback and reports (default `reward`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub kind: RewardKind,
    pub min: f64,
    pub max: f64,
    /// Reward applied when the window closes without feedback (`null`: none, the decision
    /// simply stops waiting).
    pub default: Option<f64>,
    /// How long after a decision its reward is accepted.
    pub window_seconds: u64,
}

impl Default for RewardSpec {
    fn default() -> Self {
        RewardSpec {
            name: None,
            kind: RewardKind::Binary,
            min: 0.0,
            max: 1.0,
            default: Some(0.0),
            window_seconds: 7 * 24 * 3600,
        }
    }
}

/// A canary: one variant's share ramps through `steps` while its guardrails hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanarySpec {
    pub variant: String,
    /// Shares of traffic, increasing, each in (0, 1].
    pub steps: Vec<f64>,
    /// Rewarded decisions the canary needs at a step before it moves to the next one.
    pub min_rewards_per_step: u64,
}

/// Pause (or, for a canary, roll back) a variant whose mean reward is significantly worse
/// than the control's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardGuardrailSpec {
    /// Rewarded decisions each side needs before the test is made.
    #[serde(default = "default_min_rewards")]
    pub min_rewards: u64,
    /// One-sided significance level.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// The variant compared against (default: the control variant, else the first variant).
    #[serde(default)]
    pub baseline: Option<String>,
}

fn default_min_rewards() -> u64 {
    500
}

fn default_alpha() -> f64 {
    0.01
}

/// `output_guardrails` of a deployment spec: the output guards on model variants' answers (not
/// the reward guardrail, [`RewardGuardrailSpec`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputGuardsSpec {
    /// The output tensor checked (default: the first floating-point output). Every value must
    /// lie within the bounds; the last value of each row is the score watched for a collapse
    /// (the positive class of a binary classifier).
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub collapse_std_below: Option<f64>,
    #[serde(default = "default_collapse_window")]
    pub collapse_window: usize,
    /// The variant that answers instead when a guardrail holds an answer back.
    pub fallback: String,
}

fn default_collapse_window() -> usize {
    200
}

impl OutputGuardsSpec {
    pub fn guard_spec(&self) -> keel_guard::OutputGuardSpec {
        keel_guard::OutputGuardSpec {
            min: self.min,
            max: self.max,
            collapse_std_below: self.collapse_std_below,
            collapse_window: self.collapse_window,
        }
    }
}

impl DeploymentSpec {
    /// Whether traffic is split by fixed weights (an A/B/n test: assignment never depends on
    /// outcomes), which CUPED and a canary need.
    pub fn has_fixed_weights(&self) -> bool {
        matches!(self.policy, PolicyConfig::FixedWeights { .. })
    }

    /// Parses and validates a JSON definition. `"policy": {"type": "contextual"}` becomes the
    /// learner keel recommends ([`PolicyConfig::resolved`]).
    pub fn from_json(value: &serde_json::Value) -> Result<DeploymentSpec> {
        let mut spec: DeploymentSpec =
            serde_json::from_value(value.clone()).map_err(|e| DeploymentError::InvalidSpec(vec![e.to_string()]))?;
        spec.policy = spec.policy.resolved();
        spec.validate()?;
        Ok(spec)
    }

    /// The definition as a revision records it: as written, except that
    /// `"policy": {"type": "contextual"}` is replaced by the concrete learner it stands for
    /// today, so a later keel that recommends another learner never changes a running
    /// deployment (nor finds its saved state at odds with its definition).
    pub fn recorded_form(raw: &serde_json::Value) -> serde_json::Value {
        let mut out = raw.clone();
        if raw["policy"]["type"] == "contextual"
            && let Ok(policy) = serde_json::from_value::<PolicyConfig>(raw["policy"].clone())
            && let Ok(resolved) = serde_json::to_value(policy.resolved())
        {
            out["policy"] = resolved;
        }
        out
    }

    /// Variants the policy chooses among (shadows excluded), in order.
    pub fn arms(&self) -> Vec<usize> {
        (0..self.variants.len()).filter(|i| !self.variants[*i].shadow).collect()
    }

    /// Encoded context width.
    pub fn feature_width(&self) -> usize {
        self.context.iter().map(FeatureSpec::width).sum()
    }

    pub fn variant_index(&self, name: &str) -> Option<usize> {
        self.variants.iter().position(|v| v.name == name)
    }

    /// The variants a decision may choose among, by name, as a mask over the variants; every
    /// name must be a serving variant of this deployment.
    pub fn eligible_mask(&self, deployment: &str, names: &[String]) -> Result<Vec<bool>> {
        if names.is_empty() {
            return Err(DeploymentError::InvalidRequest(
                "'eligible' is empty: give at least one variant, or leave it out to allow them all".into(),
            ));
        }
        let mut mask = vec![false; self.variants.len()];
        for name in names {
            match self.variant_index(name) {
                Some(i) if !self.variants[i].shadow => mask[i] = true,
                Some(_) => {
                    return Err(DeploymentError::InvalidRequest(format!(
                        "'{}' is a shadow variant of deployment '{deployment}': it is never chosen, so it cannot be eligible",
                        name.escape_default()
                    )));
                }
                None => {
                    let known: Vec<&str> = self.arms().iter().map(|i| self.variants[*i].name.as_str()).collect();
                    return Err(DeploymentError::InvalidRequest(format!(
                        "'{}' in 'eligible' is not a variant of deployment '{deployment}' (its variants: {})",
                        name.escape_default(),
                        known.join(", ")
                    )));
                }
            }
        }
        Ok(mask)
    }

    /// Checks everything and reports every problem found.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.variants.is_empty() {
            problems.push("there must be at least one variant".to_string());
        }
        for (i, v) in self.variants.iter().enumerate() {
            if v.name.trim().is_empty() {
                problems.push(format!("variant {} has an empty name", i + 1));
            }
            if self.variants[..i].iter().any(|o| o.name == v.name) {
                problems.push(format!("variant '{}' appears twice", v.name));
            }
            if v.shadow && v.model.is_none() {
                problems.push(format!(
                    "shadow variant '{}' needs a model (a shadow of an action has nothing to run)",
                    v.name
                ));
            }
        }
        let arms = self.arms().len();
        if arms == 0 && !self.variants.is_empty() {
            problems.push("every variant is a shadow; at least one must serve".to_string());
        }
        if arms > 0
            && let Err(e) = self.policy.validate(arms, self.feature_width())
        {
            problems.push(format!("policy: {e}"));
        }
        if self.policy.is_contextual() && self.context.is_empty() {
            problems.push("a contextual policy needs context features (\"context\": [...])".to_string());
        }
        problems.extend(self.feature_problems());
        let r = &self.reward;
        if !(r.min.is_finite() && r.max.is_finite() && r.min < r.max) {
            problems.push(format!(
                "reward range [{}, {}] must be finite with min < max",
                r.min, r.max
            ));
        }
        if r.kind == RewardKind::Binary && (r.min < 0.0 || r.max > 1.0) {
            problems.push("a binary reward must lie within [0, 1]".to_string());
        }
        if let Some(d) = r.default
            && !(d >= r.min && d <= r.max)
        {
            problems.push(format!("reward.default {d} is outside [{}, {}]", r.min, r.max));
        }
        if r.window_seconds == 0 {
            problems.push("reward.window_seconds must be at least 1".to_string());
        }
        problems.extend(crate::metric_spec::problems(self.reward.name.as_deref(), &self.metrics));
        problems.extend(self.cost_problems());
        if let Some(c) = &self.control {
            match c.arm() {
                Some(ControlArm::Variant(v)) => match self.variant_index(v) {
                    None => problems.push(format!(
                        "control variant '{v}' is not a variant (its variants: {})",
                        self.variants.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ")
                    )),
                    Some(i) if self.variants[i].shadow => problems.push(format!("control variant '{v}' is a shadow")),
                    Some(_) => {}
                },
                Some(ControlArm::Uniform | ControlArm::NoAction) => {}
                None if c.variant.is_none() && c.policy.is_none() => problems.push(
                    "control needs \"policy\": \"uniform\" (random rotation), \"none\" (no action) or {\"variant\": NAME} (one default variant)"
                        .to_string(),
                ),
                None => problems.push(
                    "control has both \"variant\" and \"policy\": give one (\"policy\": {\"variant\": NAME} is the same as \"variant\": NAME)"
                        .to_string(),
                ),
            }
            if !(0.0..1.0).contains(&c.share) {
                problems.push(format!(
                    "control.share {} must be in [0, 1) (the share of units held back)",
                    c.share
                ));
            }
        }
        if let Some(slo) = &self.slo
            && let Err(e) = slo.validate()
        {
            problems.push(e.to_string());
        }
        if let Some(g) = &self.output_guardrails {
            if let Err(e) = g.guard_spec().validate() {
                problems.push(e.to_string());
            }
            match self.variant_index(&g.fallback) {
                None => problems.push(format!("output_guardrails.fallback '{}' is not a variant", g.fallback)),
                Some(i) if self.variants[i].shadow => {
                    problems.push(format!("output_guardrails.fallback '{}' is a shadow", g.fallback));
                }
                Some(_) => {}
            }
            if g.min.is_none() && g.max.is_none() && g.collapse_std_below.is_none() {
                problems.push(
                    "output_guardrails needs min, max or collapse_std_below (NaN is always checked, but say what else)"
                        .to_string(),
                );
            }
        }
        for (i, rule) in self.alerts.iter().enumerate() {
            if let Err(e) = rule.validate() {
                problems.push(e.to_string());
            }
            if self.alerts[..i].iter().any(|r| r.name == rule.name) {
                problems.push(format!("alert '{}' appears twice", rule.name));
            }
            if matches!(rule.condition, keel_guard::Condition::SloBurnRate { .. }) && self.slo.is_none() {
                problems.push(format!(
                    "alert '{}' watches the SLO burn rate, but there is no \"slo\"",
                    rule.name
                ));
            }
            if matches!(rule.condition, keel_guard::Condition::Guardrail { .. }) && self.output_guardrails.is_none() {
                problems.push(format!(
                    "alert '{}' watches guardrails, but there are no \"output_guardrails\"",
                    rule.name
                ));
            }
            if matches!(
                rule.condition,
                keel_guard::Condition::Drift { .. } | keel_guard::Condition::AucBelow { .. }
            ) && self.monitor.is_none()
            {
                problems.push(format!(
                    "alert '{}' watches drift or AUC, but there is no \"monitor\" (with a reference table)",
                    rule.name
                ));
            }
        }
        if let Some(m) = &self.monitor {
            problems.extend(m.problems());
            if !self.variants.iter().any(|v| v.model.is_some() && !v.shadow) {
                problems.push(
                    "monitor watches a model's inputs and scores: at least one serving variant must be a model".into(),
                );
            }
        }
        if let Some(c) = &self.canary {
            if !self.has_fixed_weights() {
                problems.push("a canary needs the fixed_weights policy (its weights are ramped)".to_string());
            }
            if arms != 2 {
                problems.push(format!(
                    "a canary needs exactly two serving variants (baseline and canary), found {arms}"
                ));
            }
            match self.variant_index(&c.variant) {
                None => problems.push(format!("canary variant '{}' is not a variant", c.variant)),
                Some(i) if self.variants[i].shadow => {
                    problems.push("the canary variant cannot be a shadow".to_string())
                }
                Some(_) => {}
            }
            if c.steps.is_empty() {
                problems.push("canary.steps must list at least one share".to_string());
            }
            if c.steps.iter().any(|s| !(*s > 0.0 && *s <= 1.0)) {
                problems.push("canary.steps must each be in (0, 1]".to_string());
            }
            if c.steps.windows(2).any(|w| w[1] <= w[0]) {
                problems.push("canary.steps must increase".to_string());
            }
        }
        if let Some(g) = &self.guardrails {
            if !(g.alpha > 0.0 && g.alpha < 0.5) {
                problems.push(format!("guardrails.alpha {} must be in (0, 0.5)", g.alpha));
            }
            if let Some(b) = &g.baseline
                && self.variant_index(b).is_none()
            {
                problems.push(format!("guardrails.baseline '{b}' is not a variant"));
            }
        }
        if self.report_bucket_seconds == 0 {
            problems.push("report_bucket_seconds must be at least 1".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DeploymentError::InvalidSpec(problems))
        }
    }
}

impl DeploymentSpec {
    /// The decision metric's name (`reward.name`, else `reward`).
    pub fn reward_name(&self) -> &str {
        self.reward.name.as_deref().unwrap_or(DEFAULT_REWARD_NAME)
    }

    /// A declared metric other than the decision metric.
    pub fn metric(&self, name: &str) -> Option<&MetricSpec> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// The cost of choosing `variant` (0 when none is declared).
    pub fn cost(&self, variant: usize) -> f64 {
        self.variants.get(variant).and_then(|v| v.cost).unwrap_or(0.0)
    }

    /// Whether any variant declares a cost.
    pub fn has_costs(&self) -> bool {
        self.variants.iter().any(|v| v.cost.is_some())
    }

    /// Every problem of the variants' costs: they need a real-valued decision metric and a
    /// policy that learns one, and the reward minus a cost must stay in the policies' range.
    fn cost_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.has_costs() {
            return problems;
        }
        let reward_name = self.reward_name();
        if self.reward.kind != RewardKind::Continuous {
            problems.push(format!(
                "variant costs are in the decision metric's units and the policy learns '{reward_name}' minus the cost: \
                 that needs \"reward\": {{\"kind\": \"continuous\", ...}} (a binary reward minus a cost is no longer 0 or 1)"
            ));
        }
        if matches!(
            self.policy,
            PolicyConfig::ThompsonBeta { .. } | PolicyConfig::LogisticThompson { .. }
        ) {
            problems.push(format!(
                "variant costs need a policy that learns real-valued rewards: {} learns 0/1 rewards only",
                self.policy.name()
            ));
        }
        for v in &self.variants {
            let Some(cost) = v.cost else { continue };
            if !(cost.is_finite() && cost >= 0.0) {
                problems.push(format!(
                    "variant '{}': cost {cost} must be a finite number >= 0",
                    v.name
                ));
            } else if self.reward.min - cost < -MAX_ABS_REWARD || self.reward.max - cost > MAX_ABS_REWARD {
                problems.push(format!(
                    "variant '{}': reward minus cost {cost} would leave the policies' range of ±{MAX_ABS_REWARD}",
                    v.name
                ));
            }
            if v.shadow {
                problems.push(format!(
                    "variant '{}' is a shadow (never chosen): it has no cost",
                    v.name
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> Result<DeploymentSpec> {
        DeploymentSpec::from_json(&v)
    }

    #[test]
    fn the_contextual_default_needs_no_knobs() {
        let raw = serde_json::json!({
            "variants": [{"name": "a"}, {"name": "b"}],
            "policy": {"type": "contextual"},
            "context": [{"type": "numeric", "name": "recency"}],
        });
        let s = spec(raw.clone()).expect("the default parses");
        assert_eq!(s.policy, PolicyConfig::recommended_contextual());
        assert!(s.policy.is_contextual());
        let recorded = DeploymentSpec::recorded_form(&raw);
        assert_eq!(
            recorded["policy"],
            serde_json::to_value(PolicyConfig::recommended_contextual()).unwrap()
        );
        assert_eq!(recorded["variants"], raw["variants"], "the rest is kept as written");
        assert_eq!(spec(recorded).expect("parses").policy, s.policy);
        // Other policies are recorded as written; knobs on "contextual" are refused.
        let other = serde_json::json!({"variants": [{"name": "a"}], "policy": {"type": "ucb1"}});
        assert_eq!(DeploymentSpec::recorded_form(&other), other);
        let mut knobs = raw.clone();
        knobs["policy"]["gamma"] = serde_json::json!(10);
        assert!(spec(knobs).is_err());
        // Like every contextual policy, it needs context features.
        let mut bare = raw;
        bare["context"] = serde_json::json!([]);
        let err = spec(bare).expect_err("no context").to_string();
        assert!(err.contains("needs context features"), "{err}");
    }

    #[test]
    fn a_valid_contextual_spec() {
        let s = spec(serde_json::json!({
            "variants": [{"name": "a"}, {"name": "b"}],
            "policy": {"type": "lin_ucb", "alpha": 1.0},
            "context": [{"type": "numeric", "name": "recency"}, {"type": "categorical", "name": "device", "levels": ["ios", "web"]}],
            "control": {"variant": "a", "share": 0.1}
        }))
        .expect("valid");
        assert_eq!(s.feature_width(), 3);
        let ctx = serde_json::json!({"recency": 2.5, "device": "web"});
        assert_eq!(s.encode_context(ctx.as_object()).expect("ok"), vec![2.5, 0.0, 1.0]);
        let bad = serde_json::json!({"recency": "x", "device": "web"});
        assert!(
            s.encode_context(bad.as_object())
                .expect_err("type")
                .to_string()
                .contains("finite number")
        );
        let missing = serde_json::json!({"recency": 1});
        assert!(
            s.encode_context(missing.as_object())
                .expect_err("missing")
                .to_string()
                .contains("missing feature 'device'")
        );
        let extra = serde_json::json!({"recency": 1, "device": "ios", "age": 3});
        assert!(
            s.encode_context(extra.as_object())
                .expect_err("extra")
                .to_string()
                .contains("unknown feature 'age'")
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = spec(serde_json::json!({
            "variants": [{"name": "a"}, {"name": "a"}, {"name": "s", "shadow": true}],
            "policy": {"type": "fixed_weights", "weights": [1, 1]},
            "control": {"variant": "zz", "share": 1.5},
            "reward": {"kind": "binary", "min": 0, "max": 2, "default": 5, "window_seconds": 0}
        }))
        .expect_err("invalid");
        let DeploymentError::InvalidSpec(problems) = err else {
            panic!("wrong error")
        };
        let text = problems.join("\n");
        for needle in [
            "appears twice",
            "needs a model",
            "control variant 'zz'",
            "control.share",
            "within [0, 1]",
            "reward.default",
            "window_seconds",
        ] {
            assert!(text.contains(needle), "missing '{needle}' in:\n{text}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = spec(serde_json::json!({"variants": [{"name": "a"}], "policy": {"type": "ucb1"}, "colour": "red"}))
            .expect_err("unknown field");
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
