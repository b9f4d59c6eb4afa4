//! Lifts of the policy-driven traffic over three baselines: the control group, uniform
//! rotation over the variants, and the best single variant.
//!
//! # Method
//!
//! Each side is a mean reward `m` with the variance of that mean `v = s² / n` (`s²` the sample
//! variance of its `n` rewarded decisions). Two figures are given for each baseline:
//! - the **difference** `m_t - m_b`, with the 95% interval `± 1.96 √(v_t + v_b)`;
//! - the **relative lift** `m_t / m_b - 1`, with the 95% interval of the delta method on the
//!   ratio: `± 1.96 √(v_t / m_b² + m_t² v_b / m_b⁴)`; absent when `m_b` is 0.
//!
//! Both treat the two sides as independent samples. That is exact against the control group
//! (its units are never policy-driven); against the variants' rates the policy-driven traffic
//! is part of both sides, which makes the stated intervals wider than the true ones.
//!
//! The baselines:
//! - **control**: the control group's mean reward (whatever it gets: a variant, uniform
//!   rotation, or no action).
//! - **uniform**: when the control group is uniform rotation, the control group itself (the
//!   randomised uniform arm). Otherwise the equally weighted average of the serving variants'
//!   mean rewards, `(1/K) Σ m_k` with variance `(1/K²) Σ v_k`: uniform rotation gives each of
//!   the K variants 1/K of the units. Each `m_k` is over every decision that got variant k
//!   (policy-driven and held back); under a contextual policy a variant is shown where the
//!   policy expects it to do well, so this average can flatter uniform (`keel ope` with a
//!   uniform candidate, or a uniform control group, measure it without that bias).
//! - **best single variant**: the serving variant with the highest mean reward (at least two
//!   rewards). With a uniform control group it is judged within that group (each variant's
//!   rate on the held-back units randomly given it: an unbiased estimate of sending that variant
//!   to everyone, with wide intervals on a small group). Otherwise it is judged over every
//!   decision that got it, which under an adaptive policy flatters the variant (it was shown
//!   where it does well). Picked on the same data either way, it is optimistic (the winner's
//!   curse): a lift over it that stays positive is strong evidence.
//!
//! Every figure needs at least two rewards on each side; otherwise it is absent.
//!
//! These intervals are fixed-horizon: valid when read once. Each comes with its anytime-valid
//! counterpart (`difference_cs`, `relative_cs`): the normal-mixture confidence sequence of
//! [`crate::anytime`] on the same estimate and variance, with `n` the rewarded decisions of
//! both sides.

use serde::{Deserialize, Serialize};

use crate::spec::{ControlArm, DeploymentSpec};
pub use crate::stats::MeanEstimate;
use crate::stats::{Counters, Sums};

const Z95: f64 = 1.959_963_984_540_054;

/// The method behind the lifts, in one sentence (also in the report).
pub const METHOD: &str = "lifts of the policy-driven traffic; difference of mean rewards with a normal 95% interval, \
relative lift (ratio - 1) with a 95% interval by the delta method on the ratio of mean rewards; sides treated as \
independent samples; uniform is the control group when it rotates the variants, else the equally weighted average \
of the variants' rates";

/// The policy-driven traffic against one baseline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lift {
    /// What the baseline is (`control group: no action`, `uniform: ...`, `variant family_feast`).
    pub baseline: String,
    pub treated_rate: f64,
    /// Rewarded decisions behind `treated_rate`.
    pub treated_rewards: u64,
    pub baseline_rate: f64,
    /// Rewarded decisions behind `baseline_rate`.
    pub baseline_rewards: u64,
    /// `treated_rate - baseline_rate`, with its 95% interval.
    pub difference: (f64, f64, f64),
    /// `treated_rate / baseline_rate - 1`, with its 95% interval (delta method); `null` when
    /// the baseline rate is 0.
    pub relative: Option<(f64, f64, f64)>,
    /// The difference with its 95% confidence sequence (anytime-valid: [`crate::anytime`]);
    /// `null` until both sides have enough rewards for it ([`crate::anytime::settled`]).
    #[serde(default)]
    pub difference_cs: Option<(f64, f64, f64)>,
    /// The relative lift with its 95% confidence sequence (on the log of the ratio); `null`
    /// until both sides have enough rewards, or when a side's mean is not positive.
    #[serde(default)]
    pub relative_cs: Option<(f64, f64, f64)>,
}

impl Lift {
    /// Compares `t` with `b` (see the module's method).
    pub fn between(baseline: String, t: MeanEstimate, b: MeanEstimate) -> Lift {
        let d = t.mean - b.mean;
        let half = Z95 * (t.var + b.var).sqrt();
        let relative = (b.mean != 0.0).then(|| {
            let ratio = t.mean / b.mean;
            let var = t.var / (b.mean * b.mean) + t.mean * t.mean * b.var / b.mean.powi(4);
            let half = Z95 * var.sqrt();
            (ratio - 1.0, ratio - 1.0 - half, ratio - 1.0 + half)
        });
        Lift {
            baseline,
            treated_rate: t.mean,
            treated_rewards: t.rewards,
            baseline_rate: b.mean,
            baseline_rewards: b.rewards,
            difference: (d, d - half, d + half),
            relative,
            difference_cs: crate::anytime::difference_cs(&t, &b),
            relative_cs: crate::anytime::relative_cs(&t, &b),
        }
    }
}

/// The three lifts of the report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Lifts {
    /// How the figures are computed.
    pub method: String,
    /// Over the control group (none without one, or below two rewards on a side).
    pub over_control: Option<Lift>,
    /// Over uniform rotation over the serving variants.
    pub over_uniform: Option<Lift>,
    /// Over the serving variant with the highest mean reward.
    pub over_best_variant: Option<Lift>,
}

/// The lifts of the policy-driven traffic (`treated`) given the counters.
pub(crate) fn lifts(spec: &DeploymentSpec, c: &Counters, treated: &Sums, control: &Sums) -> Lifts {
    let Some(t) = MeanEstimate::of(treated) else {
        return Lifts {
            method: METHOD.to_string(),
            ..Lifts::default()
        };
    };
    let arm = spec.control.as_ref().and_then(|ctl| ctl.arm());
    let over_control = spec
        .control
        .as_ref()
        .zip(MeanEstimate::of(control))
        .map(|(ctl, b)| Lift::between(format!("control group: {}", ctl.describe()), t, b));
    let arms = spec.arms();
    let per_variant: Vec<Option<MeanEstimate>> = arms.iter().map(|v| MeanEstimate::of(&c.total(*v))).collect();
    let over_uniform = if arm == Some(ControlArm::Uniform) {
        MeanEstimate::of(control).map(|b| Lift::between("uniform: the control group (random rotation)".into(), t, b))
    } else {
        MeanEstimate::average(&per_variant).map(|b| {
            Lift::between(
                format!("uniform: the average of the {} variants' rates", arms.len()),
                t,
                b,
            )
        })
    };
    // With a uniform control group each variant's rate among its units is a randomised
    // estimate of sending that variant to everyone; elsewhere a variant's rate is over the
    // units it was shown to, which an adaptive policy picks where it does well.
    let (basis, candidates): (&str, Vec<Option<MeanEstimate>>) = if arm == Some(ControlArm::Uniform) {
        (
            " within the control group's random rotation",
            arms.iter()
                .map(|v| c.control.get(*v).and_then(MeanEstimate::of))
                .collect(),
        )
    } else {
        ("", per_variant.clone())
    };
    let best = arms
        .iter()
        .zip(&candidates)
        .filter_map(|(v, e)| e.map(|e| (*v, e)))
        .fold(None::<(usize, MeanEstimate)>, |best, (v, e)| match best {
            Some((_, b)) if b.mean >= e.mean => best,
            _ => Some((v, e)),
        });
    let over_best_variant = best.map(|(v, b)| {
        Lift::between(
            format!(
                "variant {} (the best single variant by rate{basis})",
                spec.variants[v].name
            ),
            t,
            b,
        )
    });
    Lifts {
        method: METHOD.to_string(),
        over_control,
        over_uniform,
        over_best_variant,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::binary_sums as sums;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    /// 100 of 1,000 treated against 50 of 1,000 held back, worked by hand:
    /// s² = p(1-p) n/(n-1), so v_t = 0.1·0.9/999 = 9.009009e-5 and v_b = 0.05·0.95/999 =
    /// 4.754755e-5; difference 0.05 ± 1.96·√(1.3763764e-4) = 0.05 ± 0.0229938;
    /// ratio 2, var = v_t/0.05² + 0.1²·v_b/0.05⁴ = (36 + 76)/999 = 0.1121121,
    /// relative 1 ± 1.96·0.3348315 = 1 ± 0.6562577.
    #[test]
    fn a_lift_by_hand() {
        let t = MeanEstimate::of(&sums(1000, 100)).expect("t");
        let b = MeanEstimate::of(&sums(1000, 50)).expect("b");
        close(t.var, 0.1 * 0.9 / 999.0);
        close(b.var, 0.05 * 0.95 / 999.0);
        let l = Lift::between("control group: no action".into(), t, b);
        let half_d = Z95 * (0.1 * 0.9 / 999.0 + 0.05 * 0.95 / 999.0_f64).sqrt();
        assert!((half_d - 0.0229938).abs() < 1e-6, "{half_d}");
        close(l.difference.0, 0.05);
        close(l.difference.1, 0.05 - half_d);
        close(l.difference.2, 0.05 + half_d);
        let (r, lo, hi) = l.relative.expect("relative");
        let var = (0.09 / 999.0) / 0.0025 + 0.01 * (0.0475 / 999.0) / 0.05_f64.powi(4);
        close(var, 112.0 / 999.0);
        close(r, 1.0);
        close(lo, 1.0 - Z95 * var.sqrt());
        close(hi, 1.0 + Z95 * var.sqrt());
        assert!((hi - 1.6562577).abs() < 1e-6, "{hi}");
        // The sequences at n = 2,000 of the mixture tuned to 10,000 (hand-computed in Python:
        // ρ² = 7.936155e-4, radius(2000) = sqrt(2·2.587231/(2000²·7.936155e-4)·ln(√2.587231/0.05))
        // = 0.07521882): the difference 0.05 ± sqrt(1.3763764e-4·2000)·radius = 0.05 ± 0.03946482;
        // the lift on the log of the ratio, ln 2 ± sqrt((v_t/0.1² + v_b/0.05²)·2000)·radius =
        // ln 2 ± 0.5631677, so [exp(ln 2 - 0.5631677) - 1, exp(ln 2 + 0.5631677) - 1] =
        // [0.1388050, 2.5124539].
        let (dd, dlo, dhi) = l.difference_cs.expect("difference cs");
        close(dd, 0.05);
        assert!(
            (dhi - 0.05 - 0.03946482).abs() < 1e-8 && (0.05 - dlo - 0.03946482).abs() < 1e-8,
            "{dlo} {dhi}"
        );
        let (rr, rlo, rhi) = l.relative_cs.expect("relative cs");
        close(rr, 1.0);
        assert!(
            (rlo - 0.1388050).abs() < 1e-7 && (rhi - 2.5124539).abs() < 1e-7,
            "{rlo} {rhi}"
        );
        assert_eq!((l.treated_rewards, l.baseline_rewards), (1000, 1000));
    }

    #[test]
    fn the_uniform_average_weights_each_variant_equally() {
        let a = MeanEstimate::of(&sums(100, 10));
        let b = MeanEstimate::of(&sums(400, 120));
        let u = MeanEstimate::average(&[a, b]).expect("u");
        close(u.mean, (0.1 + 0.3) / 2.0);
        close(u.var, (0.1 * 0.9 / 99.0 + 0.3 * 0.7 / 399.0) / 4.0);
        assert_eq!(u.rewards, 500);
        assert!(
            MeanEstimate::average(&[a, None]).is_none(),
            "a variant without rewards: no average"
        );
    }

    #[test]
    fn with_a_uniform_control_the_best_variant_is_judged_within_the_control_group() {
        let spec = DeploymentSpec::from_json(&serde_json::json!({
            "variants": [{"name": "a"}, {"name": "b"}],
            "policy": {"type": "thompson_beta"},
            "control": {"policy": "uniform", "share": 0.1}
        }))
        .expect("spec");
        let mut c = Counters::new(2, 60);
        // Where the policy showed it, b looks best (0.3 against 0.05); in the randomised
        // control group a is (0.2 against 0.1): sending a to everyone is the better single choice.
        c.policy[0] = sums(100, 5);
        c.policy[1] = sums(900, 270);
        c.control[0] = sums(50, 10);
        c.control[1] = sums(50, 5);
        let l = lifts(&spec, &c, &sums(1000, 275), &sums(100, 15));
        let best = l.over_best_variant.expect("best");
        assert_eq!(
            best.baseline,
            "variant a (the best single variant by rate within the control group's random rotation)"
        );
        close(best.baseline_rate, 0.2);
        assert_eq!(best.baseline_rewards, 50);
    }

    #[test]
    fn a_zero_baseline_has_a_difference_but_no_ratio() {
        let t = MeanEstimate::of(&sums(10, 3)).expect("t");
        let b = MeanEstimate::of(&sums(10, 0)).expect("b");
        let l = Lift::between("x".into(), t, b);
        assert!(l.relative.is_none());
        close(l.difference.0, 0.3);
        assert!(MeanEstimate::of(&sums(1, 1)).is_none(), "one reward is not enough");
    }
}
