//! CUPED (Deng, Xu, Kohavi and Walker, WSDM 2013): the difference between the variants of a
//! fixed-weight A/B test, adjusted by a covariate measured before the test (last month's spend,
//! given in the decide context under a name the report request names: `--cuped FEATURE`,
//! `?cuped=FEATURE`). From the durable decision log, like the segments.
//!
//! # Method
//!
//! Over every rewarded, policy-driven decision with the covariate `x` and reward `y`:
//! `θ = cov(x, y) / var(x)` (pooled over the variants, which fixed weights assign at random, so
//! `x` is independent of the variant and the adjustment is unbiased), and each decision's
//! adjusted reward is `y - θ (x - mean x)`. A variant's adjusted mean has the variance of its
//! adjusted rewards over `n`; the difference of two variants and its 95% interval (fixed-horizon)
//! and confidence sequence (anytime-valid, [`crate::anytime`]) are computed as for the raw
//! rewards. The variance reduction is `1 - var(adjusted difference) / var(raw difference)`, about
//! the squared correlation of `x` and `y`: the same precision from that many fewer decisions.
//! `θ` is estimated on the same data, which costs one degree of freedom: negligible at the
//! sizes where the figures are read.

use serde::{Deserialize, Serialize};

use super::ope::OpeOutcome;
use super::segments::{Value, rewarded_decisions, source, value_of};
use super::source::LogSource;
use super::{OfflineError, Result};
use crate::DeploymentSpec;
use crate::lift::{Lift, MeanEstimate};

/// One variant, raw and adjusted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CupedVariant {
    pub name: String,
    /// Rewarded policy-driven decisions with the covariate.
    pub rewards: u64,
    pub mean: f64,
    pub adjusted_mean: f64,
    /// Variance of the raw mean and of the adjusted mean.
    pub var: f64,
    pub adjusted_var: f64,
}

/// One variant against the baseline variant, raw and adjusted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CupedComparison {
    pub variant: String,
    /// The difference of raw means: the value, then the fixed-horizon 95% interval.
    pub difference: (f64, f64, f64),
    /// The difference of adjusted means with its fixed-horizon 95% interval.
    pub adjusted_difference: (f64, f64, f64),
    /// The adjusted difference with its anytime-valid 95% confidence sequence (once settled).
    pub adjusted_difference_cs: Option<(f64, f64, f64)>,
    /// `1 - var(adjusted difference) / var(raw difference)`.
    pub variance_reduction: f64,
}

/// The CUPED adjustment of a fixed-weight deployment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cuped {
    pub covariate: String,
    /// What is adjusted: the decision metric's name, "NAME minus the variant's cost", or
    /// another declared metric's name (its values count as that metric's `rewards`).
    pub outcome: String,
    /// `cov(x, y) / var(x)` over every decision used.
    pub theta: f64,
    /// The correlation of the covariate and the reward.
    pub correlation: f64,
    /// Rewarded policy-driven decisions used; those without a numeric covariate are left out.
    pub rewards: u64,
    pub missing: u64,
    /// The variant the others are compared with (the first serving one).
    pub baseline: String,
    pub variants: Vec<CupedVariant>,
    pub comparisons: Vec<CupedComparison>,
    pub method: String,
}

fn invalid(reason: String) -> OfflineError {
    OfflineError::InvalidArgument { name: "cuped", reason }
}

/// Mean and population variance helpers over (x, y) pairs.
fn moments(pairs: &[(f64, f64)]) -> (f64, f64, f64, f64, f64) {
    let n = pairs.len() as f64;
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
        sxy += (x - mx) * (y - my);
    }
    (mx, my, sxx, syy, sxy)
}

/// Sample mean and variance of the mean of `values` (`None` below two).
fn estimate(values: &[f64], settled: bool) -> Option<MeanEstimate> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let (mean, sd) = keel_stats::mean_std_sample(values);
    Some(MeanEstimate {
        mean,
        var: sd * sd / n as f64,
        rewards: n as u64,
        settled,
    })
}

/// CUPED on the deployment whose decision log is `log` (its folder, or where it lives), with
/// `covariate` from the decide context, on `outcome` (the decision metric, net of costs, or
/// another declared metric). Blocking: call it on a blocking thread.
pub fn cuped(log: impl Into<LogSource>, spec: &DeploymentSpec, covariate: &str, outcome: &OpeOutcome) -> Result<Cuped> {
    if !spec.has_fixed_weights() {
        return Err(invalid(format!(
            "CUPED applies to fixed-weight A/B tests (randomised assignment); this deployment's policy is {}",
            spec.policy.name()
        )));
    }
    let source = source(spec, covariate)?;
    let n_variants = spec.variants.len();
    let mut rows: Vec<Vec<(f64, f64)>> = vec![Vec::new(); n_variants];
    let mut missing = 0;
    let treated = rewarded_decisions(&log.into(), spec, outcome, |v, hold, x, ctx| match v {
        Some(v) if !hold && v < n_variants => {
            let value = match value_of(&source, covariate, x, ctx) {
                Some(Value::Number(n)) => Some(n),
                _ => None,
            };
            Some((v, value))
        }
        _ => None,
    })?;
    for ((v, value), r) in treated {
        match value {
            Some(x) => rows[v].push((x, r)),
            None => missing += 1,
        }
    }
    let all: Vec<(f64, f64)> = rows.iter().flatten().copied().collect();
    if all.len() < 4 {
        return Err(invalid(format!(
            "fewer than 4 decisions with a value of {} have a numeric '{covariate}' in their context ({missing} without it)",
            outcome.label(spec)
        )));
    }
    let (mx, _, sxx, syy, sxy) = moments(&all);
    if sxx <= 0.0 {
        return Err(invalid(format!(
            "'{covariate}' takes one value only: it cannot adjust anything"
        )));
    }
    let theta = sxy / sxx;
    let correlation = if syy > 0.0 { sxy / (sxx * syy).sqrt() } else { 0.0 };
    let sums_settled = |ys: &[f64]| {
        let mut s = crate::stats::Sums::default();
        for y in ys {
            s.rewards += 1;
            s.conversions += u64::from(*y > 0.0);
            s.reward_sum += y;
            s.reward_sq_sum += y * y;
        }
        crate::anytime::settled(&s)
    };
    let per: Vec<(Option<MeanEstimate>, Option<MeanEstimate>)> = rows
        .iter()
        .map(|r| {
            let ys: Vec<f64> = r.iter().map(|p| p.1).collect();
            let adjusted: Vec<f64> = r.iter().map(|(x, y)| y - theta * (x - mx)).collect();
            let settled = sums_settled(&ys);
            (estimate(&ys, settled), estimate(&adjusted, settled))
        })
        .collect();
    let arms = spec.arms();
    let base = *arms
        .first()
        .ok_or_else(|| invalid("the deployment has no serving variant".to_string()))?;
    let variants: Vec<CupedVariant> = arms
        .iter()
        .filter_map(|v| {
            let (raw, adj) = per[*v];
            Some(CupedVariant {
                name: spec.variants[*v].name.clone(),
                rewards: raw?.rewards,
                mean: raw?.mean,
                adjusted_mean: adj?.mean,
                var: raw?.var,
                adjusted_var: adj?.var,
            })
        })
        .collect();
    let comparisons = arms
        .iter()
        .skip(1)
        .filter_map(|v| {
            let (raw_t, adj_t) = per[*v];
            let (raw_b, adj_b) = per[base];
            let raw = Lift::between(String::new(), raw_t?, raw_b?);
            let adj = Lift::between(String::new(), adj_t?, adj_b?);
            let raw_var = raw_t?.var + raw_b?.var;
            let adj_var = adj_t?.var + adj_b?.var;
            Some(CupedComparison {
                variant: spec.variants[*v].name.clone(),
                difference: raw.difference,
                adjusted_difference: adj.difference,
                adjusted_difference_cs: adj.difference_cs,
                variance_reduction: if raw_var > 0.0 { 1.0 - adj_var / raw_var } else { 0.0 },
            })
        })
        .collect();
    Ok(Cuped {
        covariate: covariate.to_string(),
        outcome: outcome.label(spec),
        theta,
        correlation,
        rewards: all.len() as u64,
        missing,
        baseline: spec.variants[base].name.clone(),
        variants,
        comparisons,
        method: "CUPED: reward - theta (covariate - its mean), theta = cov(covariate, reward) / var(covariate) pooled \
                 over the variants of a randomised (fixed-weight) test; differences with fixed-horizon 95% intervals and \
                 anytime-valid 95% sequences; variance_reduction = 1 - var(adjusted) / var(raw)"
            .to_string(),
    })
}

/// CUPED on running deployment `name` (see [`cuped`]; `outcome`: a name [`OpeOutcome::parse`]
/// reads, none for the decision metric; blocking work).
pub fn of_running(
    deployments: &crate::Deployments,
    name: &str,
    covariate: &str,
    outcome: Option<&str>,
) -> Result<Cuped> {
    let engine = deployments.get(name)?;
    let spec = engine.with_inner(|inner| inner.spec.clone())?;
    let outcome = OpeOutcome::named(outcome, &spec)?;
    cuped(LogSource::of_running(&engine), &spec, covariate, &outcome)
}
