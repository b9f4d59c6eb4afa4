//! The experiment report: per variant exposures, rewards, rates with intervals, probability
//! to be best, lift over control, each fixed-horizon figure beside its anytime-valid
//! counterpart ([`crate::anytime`]); the control group (what it gets, its share, its figures);
//! the lifts of the policy over the control, uniform and the best single variant
//! ([`crate::lift`] says how they are computed); traffic share over time; checks.

use keel_bandit::PolicyConfig;
use serde::{Deserialize, Serialize};

pub use crate::anytime::Statistics;
use crate::anytime::{ALPHA, lift_cs, may_be_best, rate_cs};
pub use crate::lift::{Lift, Lifts};
use crate::spec::{ControlArm, ControlSpec, RewardKind};
use crate::state::Inner;
use crate::stats::{Sums, lift, mean_interval, prob_best, srm, wilson};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VariantReport {
    pub name: String,
    pub shadow: bool,
    pub paused: bool,
    /// Decisions driven by the policy (the control group excluded).
    pub exposures: u64,
    /// Share of policy-driven decisions.
    pub share: f64,
    pub rewards: u64,
    pub conversions: u64,
    /// Mean reward (the conversion rate for binary rewards).
    pub rate: f64,
    /// Fixed-horizon 95% interval of `rate` (Wilson for binary rewards).
    pub rate_ci: (f64, f64),
    /// Anytime-valid 95% confidence sequence of `rate` ([`crate::anytime`]); `null` for a
    /// continuous reward below two rewards.
    #[serde(default)]
    pub rate_cs: Option<(f64, f64)>,
    /// Posterior probability of the highest mean reward (fixed-horizon reading).
    pub prob_best: f64,
    /// Whether the confidence sequences still allow this variant to be the best (anytime-valid:
    /// false once another variant is surely better); false for shadows.
    #[serde(default)]
    pub may_be_best: bool,
    /// Relative lift of the mean reward over the holdout group (or, without one, over the
    /// guardrail baseline variant), with its fixed-horizon 95% interval.
    pub lift_vs_control: Option<(f64, f64, f64)>,
    /// The same lift with its anytime-valid 95% confidence sequence.
    #[serde(default)]
    pub lift_vs_control_cs: Option<(f64, f64, f64)>,
    /// The variant's cost, in the decision metric's units (when the deployment declares costs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// `rate - cost`: what the policy maximises (when the deployment declares costs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_value: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupReport {
    pub exposures: u64,
    pub rewards: u64,
    pub rate: f64,
    /// Fixed-horizon 95% interval.
    pub rate_ci: (f64, f64),
    /// Anytime-valid 95% confidence sequence.
    #[serde(default)]
    pub rate_cs: Option<(f64, f64)>,
}

/// What the control group is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ControlReport {
    /// `variant` (one named variant), `uniform` (random rotation over the variants) or `none`
    /// (no action).
    pub kind: String,
    /// The variant, for `variant`.
    pub variant: Option<String>,
    /// Share of units held back in the control group.
    pub share: f64,
    /// For people: `variant free_dessert`, `uniform random over the variants`, `no action`.
    pub description: String,
}

impl ControlReport {
    fn of(c: &ControlSpec) -> ControlReport {
        let (kind, variant) = match c.arm() {
            Some(ControlArm::Variant(v)) => ("variant", Some(v.to_string())),
            Some(ControlArm::Uniform) => ("uniform", None),
            Some(ControlArm::NoAction) | None => ("none", None),
        };
        ControlReport {
            kind: kind.to_string(),
            variant,
            share: c.share,
            description: c.describe(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SrmCheck {
    pub chi_square: f64,
    pub p_value: f64,
    /// True when the split differs from the configured weights beyond chance (p < 0.001).
    pub mismatch: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub deployment: String,
    pub revision: i64,
    pub policy: String,
    pub policy_version: u64,
    pub reward_kind: RewardKind,
    pub variants: Vec<VariantReport>,
    /// The holdout group versus the policy-driven traffic.
    pub control_group: Option<GroupReport>,
    /// What the holdout group gets and its share.
    pub control: Option<ControlReport>,
    pub treated_group: GroupReport,
    /// Relative lift of the policy-driven traffic over the holdout group (as
    /// `lifts.over_control.relative`).
    pub lift_over_control_group: Option<(f64, f64, f64)>,
    /// The same lift with its anytime-valid 95% confidence sequence.
    #[serde(default)]
    pub lift_over_control_group_cs: Option<(f64, f64, f64)>,
    /// The policy-driven traffic over the control group, uniform rotation and the best single
    /// variant, each with its interval and the counts it rests on.
    #[serde(default)]
    pub lifts: Lifts,
    pub srm: Option<SrmCheck>,
    pub canary_share: Option<f64>,
    /// Exposures per variant per time bucket: (bucket start, ms since epoch; counts).
    pub traffic: Vec<(i64, Vec<u64>)>,
    /// Decisions inside their attribution window that have no reward yet.
    pub waiting_for_reward: usize,
    /// Which figures are fixed-horizon (read once) and which anytime-valid (read at any time).
    #[serde(default)]
    pub statistics: Statistics,
    /// The report broken down by a context feature, when asked for (`--segment-by`,
    /// `?segment_by=`): computed from the decision log by [`crate::offline::segments`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<crate::offline::segments::Segments>,
    /// The variants' differences adjusted by a pre-period covariate (CUPED), when asked for
    /// (`--cuped`, `?cuped=`): computed from the decision log by [`crate::offline::cuped`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuped: Option<crate::offline::cuped::Cuped>,
    /// The decision metric's name (`reward.name`), when the deployment declares other metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_name: Option<String>,
    /// Every declared metric besides the decision metric, per variant, with guardrail verdicts
    /// ([`crate::metric_report`]); absent when the deployment declares none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<crate::metric_report::MetricReport>,
}

fn interval(s: &Sums, kind: RewardKind) -> (f64, f64) {
    match kind {
        RewardKind::Binary => wilson(s.reward_sum, s.rewards as f64),
        RewardKind::Continuous => mean_interval(s),
    }
}

fn group(s: &Sums, kind: RewardKind) -> GroupReport {
    GroupReport {
        exposures: s.exposures,
        rewards: s.rewards,
        rate: s.mean(),
        rate_ci: interval(s, kind),
        rate_cs: rate_cs(s, kind, ALPHA),
    }
}

pub(crate) fn build(name: &str, inner: &Inner, waiting: usize) -> Report {
    let spec = &inner.spec;
    let kind = spec.reward.kind;
    let c = &inner.counters;
    let total_policy: u64 = c.policy.iter().map(|s| s.exposures).sum();
    let control_variant = spec
        .control
        .as_ref()
        .and_then(|ctl| ctl.variant_name())
        .and_then(|v| spec.variant_index(v))
        .or_else(|| {
            spec.guardrails
                .as_ref()
                .and_then(|g| g.baseline.as_ref())
                .and_then(|b| spec.variant_index(b))
        });
    // Variant rows describe the policy-driven traffic; the holdout group is reported apart.
    let totals: Vec<Sums> = c.policy.clone();
    let arms = spec.arms();
    let arm_sums: Vec<&Sums> = arms.iter().map(|a| &totals[*a]).collect();
    let best = prob_best(&arm_sums, kind == RewardKind::Binary, 4000);
    let contenders = may_be_best(&arm_sums, kind);
    let sum = |v: &[Sums]| v.iter().fold(Sums::default(), |acc, s| merge(&acc, s));
    let treated = sum(&c.policy);
    // The control group: the held-back decisions of every variant, and those of no action.
    let control = merge(&sum(&c.control), &c.no_action);
    let variants = spec
        .variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let s = &c.policy[i];
            // The holdout group, or without one the guardrail baseline (not for itself).
            let baseline = if spec.control.is_some() {
                Some(&control)
            } else {
                control_variant.filter(|cv| *cv != i).map(|cv| &totals[cv])
            };
            VariantReport {
                name: v.name.clone(),
                shadow: v.shadow,
                paused: inner.paused[i],
                exposures: s.exposures,
                share: if total_policy == 0 {
                    0.0
                } else {
                    s.exposures as f64 / total_policy as f64
                },
                rewards: totals[i].rewards,
                conversions: totals[i].conversions,
                rate: totals[i].mean(),
                rate_ci: interval(&totals[i], kind),
                rate_cs: rate_cs(&totals[i], kind, ALPHA),
                prob_best: arms.iter().position(|a| *a == i).map_or(0.0, |k| best[k]),
                may_be_best: arms.iter().position(|a| *a == i).is_some_and(|k| contenders[k]),
                lift_vs_control: baseline.and_then(|b| lift(&totals[i], b)),
                lift_vs_control_cs: baseline.and_then(|b| lift_cs(&totals[i], b)),
                cost: spec.has_costs().then(|| spec.cost(i)),
                net_value: spec.has_costs().then(|| totals[i].mean() - spec.cost(i)),
            }
        })
        .collect();
    let srm_check = match (&spec.policy, &spec.canary) {
        (PolicyConfig::FixedWeights { weights }, None) => {
            let total_w: f64 = weights.iter().sum();
            let shares: Vec<f64> = arms
                .iter()
                .zip(weights)
                .map(|(a, w)| if inner.paused[*a] { 0.0 } else { w / total_w })
                .collect();
            let observed: Vec<u64> = arms.iter().map(|a| c.policy[*a].exposures).collect();
            srm(&observed, &shares).map(|(chi_square, p_value)| SrmCheck {
                chi_square,
                p_value,
                mismatch: p_value < 1e-3,
            })
        }
        _ => None,
    };
    Report {
        deployment: name.to_string(),
        revision: inner.revision,
        policy: spec.policy.name().to_string(),
        policy_version: inner.policy.updates(),
        reward_kind: kind,
        variants,
        control_group: spec.control.as_ref().map(|_| group(&control, kind)),
        control: spec.control.as_ref().map(ControlReport::of),
        treated_group: group(&treated, kind),
        lift_over_control_group: spec.control.as_ref().and_then(|_| lift(&treated, &control)),
        lift_over_control_group_cs: spec.control.as_ref().and_then(|_| lift_cs(&treated, &control)),
        lifts: crate::lift::lifts(spec, c, &treated, &control),
        srm: srm_check,
        canary_share: spec.canary.as_ref().map(|cs| {
            let cv = spec.variant_index(&cs.variant).unwrap_or(0);
            if inner.paused[cv] {
                0.0
            } else {
                cs.steps[inner.canary_step.min(cs.steps.len() - 1)]
            }
        }),
        traffic: c.buckets.iter().map(|(k, v)| (*k, v.clone())).collect(),
        waiting_for_reward: waiting,
        statistics: Statistics::default(),
        segments: None,
        cuped: None,
        reward_name: (!spec.metrics.is_empty()).then(|| spec.reward_name().to_string()),
        metrics: crate::metric_report::build(spec, c),
    }
}

fn merge(a: &Sums, b: &Sums) -> Sums {
    Sums {
        exposures: a.exposures + b.exposures,
        rewards: a.rewards + b.rewards,
        defaults: a.defaults + b.defaults,
        conversions: a.conversions + b.conversions,
        reward_sum: a.reward_sum + b.reward_sum,
        reward_sq_sum: a.reward_sq_sum + b.reward_sq_sum,
    }
}
