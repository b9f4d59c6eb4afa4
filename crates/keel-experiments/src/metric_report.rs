//! The report's section on the metrics other than the decision metric: per serving variant the
//! values received, their mean with its fixed-horizon 95% interval and its anytime-valid 95%
//! confidence sequence (the same figures as the decision metric's, [`crate::anytime`]), the
//! comparison with a baseline ([`Lift`]: difference and relative lift, each fixed-horizon and
//! anytime-valid), and for a guardrail metric a verdict.
//!
//! # The baseline
//!
//! The control group when the deployment has one (all its units, whatever they get); without
//! one, the serving variant with the best mean of that metric (the highest, or for a guardrail
//! with `"better": "lower"` the lowest) among those with at least two values. Picked on the
//! same data, the best variant is an optimistic baseline: a guardrail judged against it errs
//! towards "breached".
//!
//! # Guardrail verdicts
//!
//! A variant's loss is how much worse its mean is than the baseline's, in the metric's units
//! (baseline minus variant when higher is better, variant minus baseline when lower is). The
//! verdict reads the loss's anytime-valid confidence sequence, so it may be read at any time:
//! `breached` once the whole sequence lies above `max_loss`, `ok` once it lies at or below
//! `max_loss`, `undecided` in between or while a side has too few values for a sequence
//! ([`crate::anytime::settled`]: 100 values, and for a binary metric 25 of each outcome). The
//! fixed-horizon interval of the loss is given beside it.

use serde::{Deserialize, Serialize};

use crate::anytime::{ALPHA, rate_cs};
use crate::lift::{Lift, MeanEstimate};
use crate::metric_spec::{Better, MetricGuardrail, MetricKind, MetricSpec};
use crate::spec::{DeploymentSpec, RewardKind};
use crate::stats::{Counters, MetricSums, Sums, mean_interval, wilson};

/// One metric, per variant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricReport {
    pub name: String,
    pub kind: MetricKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail: Option<MetricGuardrail>,
    /// What the comparisons are against (`control group: ...` or `variant X (...)`); `null`
    /// while there is none (no control group and no variant with two values).
    pub baseline: Option<String>,
    /// The serving variants' policy-driven decisions (as the report's variant rows).
    pub variants: Vec<MetricVariant>,
    /// The control group, when the deployment has one.
    pub control_group: Option<MetricGroup>,
}

/// A group's values of one metric.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricGroup {
    /// Values received.
    pub n: u64,
    /// Their mean (the rate, for a binary metric).
    pub mean: f64,
    /// Fixed-horizon 95% interval of `mean` (Wilson for binary).
    pub mean_ci: (f64, f64),
    /// Anytime-valid 95% confidence sequence of `mean`; `null` for a count or continuous
    /// metric below 100 values.
    pub mean_cs: Option<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricVariant {
    pub name: String,
    #[serde(flatten)]
    pub values: MetricGroup,
    /// This variant against the baseline (`treated_*` is the variant); `null` for the baseline
    /// itself, or below two values on a side.
    pub vs_baseline: Option<Lift>,
    /// For a guardrail metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail: Option<GuardrailVerdict>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The loss is surely within `max_loss`.
    Ok,
    /// The loss is surely beyond `max_loss`.
    Breached,
    /// Not yet known either way.
    Undecided,
    /// The variant is the baseline.
    Baseline,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GuardrailVerdict {
    pub verdict: Verdict,
    /// How much worse than the baseline (positive: worse), in the metric's units.
    pub loss: Option<f64>,
    /// Fixed-horizon 95% interval of the loss.
    pub loss_ci: Option<(f64, f64)>,
    /// Anytime-valid 95% confidence sequence of the loss (what the verdict reads).
    pub loss_cs: Option<(f64, f64)>,
    pub max_loss: f64,
    /// The verdict in a sentence.
    pub why: String,
}

fn group(s: &Sums, kind: RewardKind) -> MetricGroup {
    MetricGroup {
        n: s.rewards,
        mean: s.mean(),
        mean_ci: match kind {
            RewardKind::Binary => wilson(s.reward_sum, s.rewards as f64),
            RewardKind::Continuous => mean_interval(s),
        },
        mean_cs: rate_cs(s, kind, ALPHA),
    }
}

fn merged(parts: &[&Sums]) -> Sums {
    parts.iter().fold(Sums::default(), |acc, s| Sums {
        exposures: acc.exposures + s.exposures,
        rewards: acc.rewards + s.rewards,
        defaults: acc.defaults + s.defaults,
        conversions: acc.conversions + s.conversions,
        reward_sum: acc.reward_sum + s.reward_sum,
        reward_sq_sum: acc.reward_sq_sum + s.reward_sq_sum,
    })
}

/// The loss of a comparison `variant - baseline` for a metric where `better` is better.
fn loss_of(better: Better, (_, lo, hi): (f64, f64, f64)) -> (f64, f64) {
    match better {
        Better::Higher => (-hi, -lo),
        Better::Lower => (lo, hi),
    }
}

fn verdict(g: &MetricGuardrail, lift: Option<&Lift>) -> GuardrailVerdict {
    let Some(l) = lift else {
        return GuardrailVerdict {
            verdict: Verdict::Undecided,
            loss: None,
            loss_ci: None,
            loss_cs: None,
            max_loss: g.max_loss,
            why: "fewer than two values on a side: nothing to compare yet".into(),
        };
    };
    let d = l.difference.0;
    let loss = match g.better {
        Better::Higher => -d,
        Better::Lower => d,
    };
    let loss_ci = loss_of(g.better, l.difference);
    let loss_cs = l.difference_cs.map(|cs| loss_of(g.better, cs));
    let (verdict, why) = match loss_cs {
        Some((lo, _)) if lo > g.max_loss => (
            Verdict::Breached,
            format!(
                "the loss is above {} at every reading (its 95% confidence sequence starts at {lo:.6})",
                g.max_loss
            ),
        ),
        Some((_, hi)) if hi <= g.max_loss => (
            Verdict::Ok,
            format!(
                "the loss is at most {} (its 95% confidence sequence ends at {hi:.6})",
                g.max_loss
            ),
        ),
        Some((lo, hi)) => (
            Verdict::Undecided,
            format!(
                "the loss's 95% confidence sequence [{lo:.6}, {hi:.6}] contains {}",
                g.max_loss
            ),
        ),
        None => (
            Verdict::Undecided,
            "too few values for an anytime-valid sequence yet (100 per side; for a binary metric 25 of each outcome)"
                .to_string(),
        ),
    };
    GuardrailVerdict {
        verdict,
        loss: Some(loss),
        loss_ci: Some(loss_ci),
        loss_cs,
        max_loss: g.max_loss,
        why,
    }
}

/// What a metric's variants are compared with: the control group when there is one, else the
/// variant with the best mean; its estimate and its description.
struct Baseline {
    variant: Option<usize>,
    estimate: Option<(String, MeanEstimate)>,
    /// The control group's values, merged (no-action units included).
    control: Option<Sums>,
}

fn at(v: &[Sums], i: usize) -> Sums {
    v.get(i).cloned().unwrap_or_default()
}

fn baseline(spec: &DeploymentSpec, m: &MetricSpec, sums: &MetricSums) -> Baseline {
    let control = spec.control.as_ref().map(|_| {
        let mut parts: Vec<&Sums> = sums.control.iter().collect();
        parts.push(&sums.no_action);
        merged(&parts)
    });
    let better = m.guardrail.as_ref().map_or(Better::Higher, |g| g.better);
    if let (Some(c), Some(s)) = (&spec.control, &control) {
        return Baseline {
            variant: None,
            estimate: MeanEstimate::of(s).map(|e| (format!("control group: {}", c.describe()), e)),
            control,
        };
    }
    let best = spec
        .arms()
        .iter()
        .filter_map(|v| MeanEstimate::of(&at(&sums.policy, *v)).map(|e| (*v, e)))
        .fold(None::<(usize, MeanEstimate)>, |best, (v, e)| match best {
            Some((_, b))
                if (better == Better::Higher && b.mean >= e.mean) || (better == Better::Lower && b.mean <= e.mean) =>
            {
                best
            }
            _ => Some((v, e)),
        });
    let word = if better == Better::Higher { "highest" } else { "lowest" };
    Baseline {
        variant: best.map(|(v, _)| v),
        estimate: best.map(|(v, e)| {
            (
                format!(
                    "variant {} (the {word} mean of '{}'; no control group)",
                    spec.variants[v].name, m.name
                ),
                e,
            )
        }),
        control,
    }
}

/// Variant `v`'s lift over the baseline and its guardrail verdict.
fn compared(m: &MetricSpec, base: &Baseline, v: usize, s: &Sums) -> (Option<Lift>, Option<GuardrailVerdict>) {
    let is_base = base.variant == Some(v);
    let vs_baseline = match (&base.estimate, MeanEstimate::of(s)) {
        (Some((what, b)), Some(t)) if !is_base => Some(Lift::between(what.clone(), t, *b)),
        _ => None,
    };
    let guardrail = m.guardrail.as_ref().map(|g| {
        if is_base {
            GuardrailVerdict {
                verdict: Verdict::Baseline,
                loss: Some(0.0),
                loss_ci: None,
                loss_cs: None,
                max_loss: g.max_loss,
                why: "the baseline the other variants are compared with".into(),
            }
        } else {
            verdict(g, vs_baseline.as_ref())
        }
    });
    (vs_baseline, guardrail)
}

/// Variant `v`'s guardrail verdict on metric `m` and what it was compared with: what a
/// guardrail check needs, without the rest of the report.
pub(crate) fn guardrail_of(
    spec: &DeploymentSpec,
    m: &MetricSpec,
    sums: &MetricSums,
    v: usize,
) -> Option<(GuardrailVerdict, Option<String>)> {
    let base = baseline(spec, m, sums);
    let (_, verdict) = compared(m, &base, v, &at(&sums.policy, v));
    verdict.map(|g| (g, base.estimate.map(|(what, _)| what)))
}

pub(crate) fn one(spec: &DeploymentSpec, m: &MetricSpec, sums: &MetricSums) -> MetricReport {
    let kind = m.report_kind();
    let base = baseline(spec, m, sums);
    let variants = spec
        .arms()
        .iter()
        .map(|v| {
            let s = at(&sums.policy, *v);
            let (vs_baseline, guardrail) = compared(m, &base, *v, &s);
            MetricVariant {
                name: spec.variants[*v].name.clone(),
                values: group(&s, kind),
                vs_baseline,
                guardrail,
            }
        })
        .collect();
    MetricReport {
        name: m.name.clone(),
        kind: m.kind,
        guardrail: m.guardrail.clone(),
        control_group: base.control.as_ref().map(|s| group(s, kind)),
        baseline: base.estimate.map(|(what, _)| what),
        variants,
    }
}

/// Every declared metric of `spec` from the counters.
pub(crate) fn build(spec: &DeploymentSpec, counters: &Counters) -> Vec<MetricReport> {
    spec.metrics
        .iter()
        .map(|m| match counters.metrics.get(&m.name) {
            Some(sums) => one(spec, m, sums),
            None => one(spec, m, &MetricSums::default()),
        })
        .collect()
}

/// The method, in one sentence (also in the report's `statistics`).
pub const METHOD: &str = "metrics: per variant the mean of the values received with the decision metric's intervals \
(fixed-horizon) and confidence sequences (anytime-valid), compared with the control group or, without one, with the \
variant whose mean is best; a guardrail is breached once the anytime-valid sequence of the variant's loss (how much \
worse than the baseline, in the metric's units) lies above max_loss, ok once it lies at or below it, undecided \
otherwise";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::binary_sums;

    fn spec(control: bool) -> DeploymentSpec {
        let mut v = serde_json::json!({
            "variants": [{"name": "a"}, {"name": "b"}],
            "policy": {"type": "fixed_weights", "weights": [1, 1]},
            "metrics": [{"name": "unsub", "kind": "binary", "guardrail": {"better": "lower", "max_loss": 0.01}}]
        });
        if control {
            v["control"] = serde_json::json!({"policy": "uniform", "share": 0.1});
        }
        DeploymentSpec::from_json(&v).expect("spec")
    }

    /// Without a control group the baseline is the variant with the lowest unsubscribe rate;
    /// 5% against 1% over 10,000 each is a loss of 0.04, surely above 0.01: breached. 1.2%
    /// against 1% is surely within 0.01 at 100,000 each: ok.
    #[test]
    fn guardrail_verdicts_against_the_best_variant() {
        let s = spec(false);
        let mut c = Counters::new(2, 60);
        let sums = c.metrics.entry("unsub".into()).or_default();
        sums.policy = vec![binary_sums(10_000, 100), binary_sums(10_000, 500)];
        sums.control = vec![Sums::default(); 2];
        let r = &build(&s, &c)[0];
        assert!(
            r.baseline
                .as_deref()
                .expect("baseline")
                .starts_with("variant a (the lowest mean")
        );
        let a = r.variants[0].guardrail.as_ref().expect("a");
        assert_eq!(a.verdict, Verdict::Baseline);
        let b = r.variants[1].guardrail.as_ref().expect("b");
        assert_eq!(b.verdict, Verdict::Breached, "{b:?}");
        assert!((b.loss.expect("loss") - 0.04).abs() < 1e-12);
        let (lo, hi) = b.loss_cs.expect("cs");
        let (flo, fhi) = b.loss_ci.expect("ci");
        assert!(lo < flo && fhi < hi && lo > 0.01, "{lo} {hi} {flo} {fhi}");
        let sums = c.metrics.get_mut("unsub").expect("m");
        sums.policy = vec![binary_sums(100_000, 1_000), binary_sums(100_000, 1_200)];
        let b = build(&s, &c)[0].variants[1].guardrail.clone().expect("b");
        assert_eq!(b.verdict, Verdict::Ok, "{b:?}");
        sums_few(&mut c);
        let b = build(&s, &c)[0].variants[1].guardrail.clone().expect("b");
        assert_eq!(b.verdict, Verdict::Undecided, "{b:?}");
    }

    fn sums_few(c: &mut Counters) {
        let sums = c.metrics.get_mut("unsub").expect("m");
        sums.policy = vec![binary_sums(50, 0), binary_sums(50, 5)];
    }

    #[test]
    fn with_a_control_group_it_is_the_baseline() {
        let s = spec(true);
        let mut c = Counters::new(2, 60);
        c.metric("unsub", Some(0), true, 0.0);
        c.metric("unsub", Some(1), true, 1.0);
        c.metric("unsub", None, true, 0.0);
        c.metric("unsub", Some(0), false, 0.0);
        c.metric("unsub", Some(0), false, 1.0);
        let r = &build(&s, &c)[0];
        assert!(r.baseline.as_deref().expect("b").starts_with("control group: "));
        let cg = r.control_group.as_ref().expect("control");
        assert_eq!(cg.n, 3);
        assert!((cg.mean - 1.0 / 3.0).abs() < 1e-12);
        let a = &r.variants[0];
        assert_eq!((a.values.n, a.values.mean), (2, 0.5));
        let l = a.vs_baseline.as_ref().expect("lift");
        assert!((l.difference.0 - (0.5 - 1.0 / 3.0)).abs() < 1e-12);
        assert_eq!(r.variants[1].values.n, 0);
        assert!(r.variants[1].vs_baseline.is_none());
    }
}
