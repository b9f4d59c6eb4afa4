//! The report broken down by a context feature, from the deployment's durable decision log
//! (`keel deployment report NAME --segment-by FEATURE`, `GET /v1/deployments/{name}/report
//! ?segment_by=FEATURE`).
//!
//! Each rewarded decision since the last revision that reset the counters falls in one segment:
//! a level of a categorical feature, or for a numeric feature one of its distinct values (up to
//! [`MAX_LEVELS`]) or else a quartile of the values seen. Per segment: every variant's
//! policy-driven rate, the policy-driven traffic and the control group, and the lift of the one
//! over the other (as `lifts.over_control` of the report).
//!
//! # Multiple comparisons
//!
//! Reading `m` segments is `m` comparisons: at 95% each, one segment in twenty shows a lift
//! where there is none. Every segment's lift therefore also comes with Bonferroni-adjusted
//! figures, at level `1 - 0.05/m` (fixed-horizon interval and anytime-valid sequence): the
//! chance that *any* segment's adjusted figure excludes a true zero stays at most 5%. Read the
//! unadjusted ones as exploration, the adjusted ones as evidence. The rates' intervals are not
//! adjusted.

use std::collections::{BTreeMap, HashMap};

use keel_stats::sequential::NormalMixture;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use super::ope::OpeOutcome;
use super::source::LogSource;
use super::{OfflineError, Result};
use crate::anytime::{ALPHA, TUNING_N, rate_cs};
use crate::lift::{Lift, MeanEstimate};
use crate::spec::FeatureSpec;
use crate::stats::{Sums, wilson};
use crate::{DeploymentSpec, Event};

/// A numeric feature with at most this many distinct values is segmented by value; otherwise
/// by quartile.
pub const MAX_LEVELS: usize = 8;

/// One variant within a segment (policy-driven decisions).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentVariant {
    pub name: String,
    pub rewards: u64,
    pub rate: f64,
    /// Fixed-horizon 95% interval (Wilson for binary rewards, normal otherwise).
    pub rate_ci: (f64, f64),
    /// Anytime-valid 95% confidence sequence.
    pub rate_cs: Option<(f64, f64)>,
}

/// The lift of one segment with its Bonferroni-adjusted figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentLift {
    /// The figures at 95% each (as `lifts.over_control` of the report).
    pub lift: Lift,
    /// The difference with its fixed-horizon interval at level `1 - 0.05/m`.
    pub difference_adjusted: (f64, f64, f64),
    /// The difference with its anytime-valid sequence at level `1 - 0.05/m`, once settled.
    pub difference_cs_adjusted: Option<(f64, f64, f64)>,
}

/// One segment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Segment {
    /// The level, the value, or the quartile (`[12.5, 20)`) of the feature.
    pub value: String,
    /// Rewarded decisions in the segment (both groups).
    pub rewards: u64,
    pub variants: Vec<SegmentVariant>,
    /// Policy-driven traffic: rewards and rate.
    pub treated_rewards: u64,
    pub treated_rate: f64,
    /// Control group: rewards and rate (absent without a control group).
    pub control_rewards: Option<u64>,
    pub control_rate: Option<f64>,
    /// The policy-driven traffic over the control group; absent below two rewards on a side.
    pub lift_over_control: Option<SegmentLift>,
}

/// The breakdown of a report by one feature.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Segments {
    pub feature: String,
    /// What the segments compare: the decision metric's name, "NAME minus the variant's cost",
    /// or another declared metric's name (its values count as that metric's `rewards`).
    pub outcome: String,
    /// `categorical`, `numeric values` or `numeric quartiles`.
    pub kind: String,
    /// Rewarded decisions read from the log (since the last revision that reset the counters).
    pub rewards: u64,
    /// Rewarded decisions without the feature in their context (in no segment).
    pub missing: u64,
    /// The number of segments `m` and the level of the adjusted figures, `1 - 0.05/m`.
    pub comparisons: usize,
    pub adjusted_level: f64,
    /// What the adjusted figures mean, for people.
    pub note: String,
    pub segments: Vec<Segment>,
}

/// A feature's value in one decision.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Level(String),
    Number(f64),
}

/// Where `feature` is in the deployment's encoded context, if it declares one.
pub(super) enum Source {
    /// The spec's context: offset into `x`, and the levels for a categorical feature.
    Encoded { offset: usize, levels: Option<Vec<String>> },
    /// No declared context: the raw context logged with each decision.
    Raw,
}

pub(super) fn source(spec: &DeploymentSpec, feature: &str) -> Result<Source> {
    if spec.context.is_empty() {
        return Ok(Source::Raw);
    }
    let mut offset = 0;
    for f in &spec.context {
        if f.name() == feature {
            let levels = match f {
                FeatureSpec::Categorical { levels, .. } => Some(levels.clone()),
                FeatureSpec::Numeric { .. } => None,
            };
            return Ok(Source::Encoded { offset, levels });
        }
        offset += f.width();
    }
    let known: Vec<&str> = spec.context.iter().map(FeatureSpec::name).collect();
    Err(OfflineError::InvalidArgument {
        name: "segment_by",
        reason: format!("'{feature}' is not a context feature of this deployment; it has {known:?}"),
    })
}

pub(super) fn value_of(source: &Source, feature: &str, x: &[f64], ctx: Option<&serde_json::Value>) -> Option<Value> {
    match source {
        Source::Encoded { offset, levels: None } => x.get(*offset).map(|v| Value::Number(*v)),
        Source::Encoded {
            offset,
            levels: Some(levels),
        } => levels
            .iter()
            .enumerate()
            .find(|(j, _)| x.get(offset + j) == Some(&1.0))
            .map(|(_, l)| Value::Level(l.clone())),
        Source::Raw => match ctx?.get(feature)? {
            serde_json::Value::String(s) => Some(Value::Level(s.clone())),
            serde_json::Value::Bool(b) => Some(Value::Level(b.to_string())),
            v => v.as_f64().filter(|v| v.is_finite()).map(Value::Number),
        },
    }
}

/// The sums of one segment: per variant policy-driven, and the control group.
#[derive(Default, Clone)]
struct Cell {
    variants: Vec<Sums>,
    control: Sums,
}

fn add(s: &mut Sums, r: f64) {
    s.exposures += 1;
    s.rewards += 1;
    if r > 0.0 {
        s.conversions += 1;
    }
    s.reward_sum += r;
    s.reward_sq_sum += r * r;
}

/// Every decision given a value of `outcome` since the last revision that reset the counters,
/// in log order, with that value (a reward, net of the variant's cost for `Net`, or a
/// metric's value): what `keep` takes from the decision (its variant or no action, whether it
/// was held back, its features and context), or nothing to leave it out. The one pass over the
/// log that segments and CUPED share.
pub(super) fn rewarded_decisions<T>(
    source: &LogSource,
    spec: &DeploymentSpec,
    outcome: &OpeOutcome,
    mut keep: impl FnMut(Option<usize>, bool, &[f64], Option<&serde_json::Value>) -> Option<T>,
) -> Result<Vec<(T, f64)>> {
    let mut pending: HashMap<uuid::Uuid, (T, Option<usize>)> = HashMap::new();
    let mut rewarded = Vec::new();
    let mut variants: Option<Vec<String>> = None;
    // Read as a stream: memory holds the rewarded decisions kept, not the log.
    source.read(|event| {
        match &event {
            Event::Revision { reset: true, .. } => {
                pending.clear();
                rewarded.clear();
            }
            // A revision that changed the variants keeps the policy's learning but starts the
            // report afresh (its variant indices changed too).
            Event::Spec { spec, .. } => {
                let names: Vec<String> = spec.variants.iter().map(|v| v.name.clone()).collect();
                if variants.as_ref().is_some_and(|old| *old != names) {
                    pending.clear();
                    rewarded.clear();
                }
                variants = Some(names);
            }
            Event::Decision {
                id, v, hold, x, ctx, ..
            } => {
                if let Some(kept) = keep(*v, *hold, x, ctx.as_ref()) {
                    pending.insert(*id, (kept, *v));
                }
            }
            Event::Reward { .. } | Event::Metrics { .. } => {
                if let Some((id, value)) = outcome.value_in(&event)
                    && let Some((kept, v)) = pending.remove(&id)
                {
                    let cost = match (outcome, v) {
                        (OpeOutcome::Net, Some(v)) => spec.cost(v),
                        _ => 0.0,
                    };
                    rewarded.push((kept, value - cost));
                }
            }
            Event::Revision { .. } | Event::Pause { .. } | Event::CanaryStep { .. } | Event::Output { .. } => {}
        }
        Ok(())
    })?;
    Ok(rewarded)
}

/// The segments of the deployment whose decision log is `log` (its folder, or where it lives),
/// by `feature`, comparing `outcome` (the decision metric, net of costs, or another declared
/// metric). Blocking: call it on a blocking thread.
pub fn segments(
    log: impl Into<LogSource>,
    spec: &DeploymentSpec,
    feature: &str,
    outcome: &OpeOutcome,
) -> Result<Segments> {
    let source = source(spec, feature)?;
    let rewarded: Vec<(Option<usize>, bool, Option<Value>, f64)> =
        rewarded_decisions(&log.into(), spec, outcome, |v, hold, x, ctx| {
            Some((v, hold, value_of(&source, feature, x, ctx)))
        })?
        .into_iter()
        .map(|((v, hold, value), r)| (v, hold, value, r))
        .collect();
    let n_variants = spec.variants.len();
    if matches!(source, Source::Raw) && !rewarded.iter().any(|d| d.2.is_some()) {
        return Err(OfflineError::InvalidArgument {
            name: "segment_by",
            reason: format!(
                "no decision with a value of {} has '{feature}' in its context",
                outcome.label(spec)
            ),
        });
    }
    // Numeric values: by value when few, else by quartile.
    let numbers: Vec<f64> = rewarded
        .iter()
        .filter_map(|d| match d.2 {
            Some(Value::Number(v)) => Some(v),
            _ => None,
        })
        .collect();
    let mut sorted = numbers.clone();
    keel_stats::sort_f64(&mut sorted);
    sorted.dedup();
    let by_value = sorted.len() <= MAX_LEVELS;
    let edges: Vec<f64> = if by_value || numbers.is_empty() {
        Vec::new()
    } else {
        let mut all = numbers.clone();
        keel_stats::sort_f64(&mut all);
        let mut e: Vec<f64> = [0.25, 0.5, 0.75]
            .iter()
            .map(|q| keel_stats::quantile_sorted(&all, *q))
            .collect();
        e.dedup();
        e
    };
    let label = |v: f64| -> (String, f64) {
        if by_value {
            return (format!("{v}"), v);
        }
        let k = edges.iter().filter(|e| v >= **e).count();
        let lo = if k == 0 { None } else { Some(edges[k - 1]) };
        let hi = edges.get(k).copied();
        let text = match (lo, hi) {
            (None, Some(h)) => format!("< {h}"),
            (Some(l), Some(h)) => format!("[{l}, {h})"),
            (Some(l), None) => format!(">= {l}"),
            (None, None) => "all".to_string(),
        };
        (text, k as f64)
    };
    // Segments in order: levels as declared (or by name), numbers by value.
    let mut cells: BTreeMap<(u64, String), Cell> = BTreeMap::new();
    let mut missing = 0;
    let order = |v: &Value| -> (u64, String) {
        match v {
            Value::Level(l) => match &source {
                Source::Encoded {
                    levels: Some(levels), ..
                } => (levels.iter().position(|x| x == l).unwrap_or(0) as u64, l.clone()),
                _ => (0, l.clone()),
            },
            Value::Number(n) => {
                let (text, key) = label(*n);
                (keel_stats::order_key(key), text)
            }
        }
    };
    for (v, hold, value, r) in &rewarded {
        let Some(value) = value else {
            missing += 1;
            continue;
        };
        let cell = cells.entry(order(value)).or_insert_with(|| Cell {
            variants: vec![Sums::default(); n_variants],
            control: Sums::default(),
        });
        match (v, hold) {
            (_, true) => add(&mut cell.control, *r),
            (Some(v), false) if *v < n_variants => add(&mut cell.variants[*v], *r),
            _ => {}
        }
    }
    let m = cells.len().max(1);
    let level = ALPHA / m as f64;
    let z = Normal::standard().inverse_cdf(1.0 - level / 2.0);
    let mixture = NormalMixture::tuned(level, TUNING_N);
    let kind = outcome.kind(spec);
    let segments = cells
        .into_iter()
        .map(|((_, value), cell)| {
            let treated = cell.variants.iter().fold(Sums::default(), |acc, s| merged(&acc, s));
            let lift_over_control = spec.control.as_ref().and_then(|_| {
                let (t, b) = (MeanEstimate::of(&treated)?, MeanEstimate::of(&cell.control)?);
                let lift = Lift::between("control group".to_string(), t, b);
                let d = lift.difference.0;
                let half = z * (t.var + b.var).sqrt();
                let cs = (t.settled && b.settled).then(|| {
                    let h = mixture.half_width(t.var + b.var, (t.rewards + b.rewards) as f64);
                    (d, d - h, d + h)
                });
                Some(SegmentLift {
                    lift,
                    difference_adjusted: (d, d - half, d + half),
                    difference_cs_adjusted: cs,
                })
            });
            Segment {
                value,
                rewards: treated.rewards + cell.control.rewards,
                variants: spec
                    .variants
                    .iter()
                    .zip(&cell.variants)
                    .map(|(v, s)| SegmentVariant {
                        name: v.name.clone(),
                        rewards: s.rewards,
                        rate: s.mean(),
                        rate_ci: match kind {
                            crate::spec::RewardKind::Binary => wilson(s.reward_sum, s.rewards as f64),
                            crate::spec::RewardKind::Continuous => {
                                MeanEstimate::of(s).map_or((f64::NAN, f64::NAN), |e| {
                                    let h = keel_stats::sequential::fixed_half_width(e.var);
                                    (e.mean - h, e.mean + h)
                                })
                            }
                        },
                        rate_cs: rate_cs(s, kind, ALPHA),
                    })
                    .collect(),
                treated_rewards: treated.rewards,
                treated_rate: treated.mean(),
                control_rewards: spec.control.as_ref().map(|_| cell.control.rewards),
                control_rate: spec.control.as_ref().map(|_| cell.control.mean()),
                lift_over_control,
            }
        })
        .collect::<Vec<_>>();
    Ok(Segments {
        feature: feature.to_string(),
        outcome: outcome.label(spec),
        kind: match (numbers.is_empty(), by_value) {
            (true, _) => "categorical",
            (false, true) => "numeric values",
            (false, false) => "numeric quartiles",
        }
        .to_string(),
        rewards: rewarded.len() as u64,
        missing,
        comparisons: segments.len(),
        adjusted_level: 1.0 - level,
        note: format!(
            "{} segments are {} comparisons: at 95% each, about one in twenty shows a lift that is not there. The \
             *_adjusted figures are Bonferroni-adjusted to level {:.4} (0.05/{}), so that all segments together keep \
             a 5% error rate; read the unadjusted ones as exploration, the adjusted ones as evidence.",
            segments.len(),
            segments.len(),
            1.0 - level,
            segments.len()
        ),
        segments,
    })
}

fn merged(a: &Sums, b: &Sums) -> Sums {
    Sums {
        exposures: a.exposures + b.exposures,
        rewards: a.rewards + b.rewards,
        defaults: a.defaults + b.defaults,
        conversions: a.conversions + b.conversions,
        reward_sum: a.reward_sum + b.reward_sum,
        reward_sq_sum: a.reward_sq_sum + b.reward_sq_sum,
    }
}

/// The segments of running deployment `name` (its current spec, its decision log as written so
/// far, in files or in PostgreSQL; a record being appended while this reads is left out),
/// comparing `outcome` (a name [`OpeOutcome::parse`] reads; none: the decision metric).
/// CPU, file and database work: call it on a blocking thread.
pub fn of_running(
    deployments: &crate::Deployments,
    name: &str,
    feature: &str,
    outcome: Option<&str>,
) -> Result<Segments> {
    let engine = deployments.get(name)?;
    let spec = engine.with_inner(|inner| inner.spec.clone())?;
    let outcome = OpeOutcome::named(outcome, &spec)?;
    segments(LogSource::of_running(&engine), &spec, feature, &outcome)
}
