//! The control group: what it gets (one named variant, uniform rotation over the variants, or
//! no action at all), how a unit is assigned to it (sticky by unit), and the propensity of
//! what a decision got under the mixture of control group and policy.
//!
//! A spec writes the control as
//! - `{"policy": "uniform", "share": 0.1}`: the status quo of rotating the variants at random;
//! - `{"policy": "none", "share": 0.1}`: no action (no e-mail, no promotion); those units get no
//!   variant, their decisions are logged with `hold` and no variant, and their rewards count
//!   toward the control group only (the policy never learns from them);
//! - `{"policy": {"variant": "free_dessert"}, "share": 0.1}` or the older
//!   `{"variant": "free_dessert", "share": 0.1}`: the business's one default variant.

use keel_bandit::sticky_unit;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The holdout control group: the status quo the policy is measured against; sticky per unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSpec {
    /// The variant the control group always gets (the older spelling of
    /// `"policy": {"variant": NAME}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `"uniform"`, `"none"` or `{"variant": NAME}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<ControlPolicy>,
    /// Share of units in the control group, in [0, 1).
    pub share: f64,
}

/// What the control group gets, as written in a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlPolicy {
    /// A variant drawn uniformly among those eligible (rotating the promotions at random).
    Uniform,
    /// No action: the unit gets no variant at all.
    None,
    /// Always this variant.
    Variant(String),
}

/// What the control group gets, once the two spellings of a named variant are one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlArm<'a> {
    Variant(&'a str),
    Uniform,
    NoAction,
}

impl ControlSpec {
    /// What the control group gets; `None` for a spec that says neither or both (refused by
    /// validation).
    pub fn arm(&self) -> Option<ControlArm<'_>> {
        match (&self.variant, &self.policy) {
            (Some(v), None) | (None, Some(ControlPolicy::Variant(v))) => Some(ControlArm::Variant(v)),
            (None, Some(ControlPolicy::Uniform)) => Some(ControlArm::Uniform),
            (None, Some(ControlPolicy::None)) => Some(ControlArm::NoAction),
            _ => None,
        }
    }

    /// The named control variant, if the control group gets one.
    pub fn variant_name(&self) -> Option<&str> {
        match self.arm() {
            Some(ControlArm::Variant(v)) => Some(v),
            _ => None,
        }
    }

    /// What the control group gets, for people: `variant free_dessert`, `uniform random over
    /// the variants` or `no action`.
    pub fn describe(&self) -> String {
        match self.arm() {
            Some(ControlArm::Variant(v)) => format!("variant {v}"),
            Some(ControlArm::Uniform) => "uniform random over the variants".to_string(),
            Some(ControlArm::NoAction) => "no action".to_string(),
            None => "nothing".to_string(),
        }
    }
}

/// What a decision got: the variant (`None`: no action), its propensity under the mixture of
/// control group and policy, and whether the unit is in the control group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Assigned {
    pub(crate) variant: Option<usize>,
    pub(crate) propensity: f64,
    pub(crate) hold: bool,
}

/// The inputs of one assignment: the deployment's name (the sticky hashes are salted with it),
/// the unit, the policy's distribution over `arms` (after pauses, canary and eligibility), the
/// eligible variants, the control group and its variant's index (for a named variant).
pub(crate) struct Draw<'a> {
    pub(crate) name: &'a str,
    pub(crate) unit: Option<&'a str>,
    pub(crate) probs: &'a [f64],
    pub(crate) arms: &'a [usize],
    pub(crate) eligible: Option<&'a [bool]>,
    pub(crate) control: Option<&'a ControlSpec>,
    pub(crate) control_variant: Option<usize>,
    /// Whether the policy's draw is sticky by unit (fixed weights).
    pub(crate) sticky_pick: bool,
}

/// Chooses for one decision: the control group (a sticky share of units) first, then the
/// policy's draw (sticky for fixed weights). The random numbers are drawn in the same order
/// whatever the control, so a seed gives the same decisions as before this was split out.
pub(crate) fn assign(rng: &mut ChaCha8Rng, d: &Draw<'_>) -> Assigned {
    let eligible = |v: usize| d.eligible.is_none_or(|m| m.get(v).copied().unwrap_or(false));
    let u_hold = match d.unit {
        Some(u) => sticky_unit(&format!("{}#control", d.name), u),
        None => rand::Rng::random::<f64>(rng),
    };
    let u_pick = match d.unit {
        Some(u) if d.sticky_pick => sticky_unit(d.name, u),
        _ => rand::Rng::random::<f64>(rng),
    };
    let arm = keel_bandit::pick(d.probs, u_pick);
    let p_of = |v: usize| d.arms.iter().position(|a| *a == v).map_or(0.0, |i| d.probs[i]);
    let by_policy = |share: f64, extra: f64| Assigned {
        variant: Some(d.arms[arm]),
        propensity: (1.0 - share) * d.probs[arm] + extra,
        hold: false,
    };
    let Some(control) = d.control else {
        return by_policy(0.0, 0.0);
    };
    let share = control.share;
    match control.arm() {
        Some(ControlArm::Variant(_)) => match d.control_variant.filter(|cv| eligible(*cv)) {
            // The control group holds a unit back only when the control variant is eligible.
            Some(cv) if u_hold < share => Assigned {
                variant: Some(cv),
                propensity: share + (1.0 - share) * p_of(cv),
                hold: true,
            },
            Some(cv) => by_policy(share, if d.arms[arm] == cv { share } else { 0.0 }),
            None => by_policy(0.0, 0.0),
        },
        Some(ControlArm::Uniform) => {
            // The status quo: a variant drawn uniformly among the eligible arms, sticky per
            // unit; the propensity is the mixture's.
            let pool: Vec<usize> = d.arms.iter().copied().filter(|v| eligible(*v)).collect();
            let k = pool.len().max(1) as f64;
            if u_hold < share && !pool.is_empty() {
                let u = match d.unit {
                    Some(u) => sticky_unit(&format!("{}#control-pick", d.name), u),
                    None => rand::Rng::random::<f64>(rng),
                };
                let v = pool[((u * k) as usize).min(pool.len() - 1)];
                Assigned {
                    variant: Some(v),
                    propensity: share / k + (1.0 - share) * p_of(v),
                    hold: true,
                }
            } else {
                by_policy(share, if pool.contains(&d.arms[arm]) { share / k } else { 0.0 })
            }
        }
        // No action is always possible, whatever the unit's eligible variants: the unit is
        // held back with probability `share` (its propensity), else the policy decides.
        Some(ControlArm::NoAction) if u_hold < share => Assigned {
            variant: None,
            propensity: share,
            hold: true,
        },
        Some(ControlArm::NoAction) => by_policy(share, 0.0),
        None => by_policy(0.0, 0.0),
    }
}
