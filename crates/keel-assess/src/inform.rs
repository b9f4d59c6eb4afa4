//! The target and how informative each feature is for it: single-feature AUC, mutual information,
//! suspected leakage.
//!
//! - Numeric feature: rank AUC of the raw values (missing values rank lowest, ties count one half).
//! - Categorical feature: AUC of an out-of-fold target encoding: each row gets its category's
//!   positive rate computed on the *other* folds, smoothed towards the prior with weight
//!   [`SMOOTHING`]. An identifier column (one row per value) thus scores about 0.5 instead of 1.
//!   Out-of-fold encodings are biased low when a class is rare (a row's own positives are left out
//!   of its category's rate), so AUC below 0.5 counts as no signal (strength 0.5).
//! - Mutual information in nats between the binned feature and the target, minus the Miller-Madow
//!   bias `(bins - 1) / 2N`: numerics in up to 20 equal-frequency bins (one bin per value when they
//!   have at most 20) plus a missing bin; categoricals as their 50 most frequent values, "other"
//!   and missing. `mi_share` is MI over the target's entropy (the uncertainty coefficient).

use serde::Serialize;

use crate::error::{AssessError, Result};
use crate::profile::{Values, format_number};
use crate::read::{ColumnKind, MISSING_CODE};
use crate::stats;

/// Bins of a numeric feature for mutual information.
const MI_BINS: usize = 20;
/// Categories kept (most frequent) for mutual information; the rest share one bin.
const MI_TOP_CATEGORIES: usize = 50;
/// Weight of the prior in the out-of-fold target encoding (in rows).
pub const SMOOTHING: f64 = 10.0;
/// Label of a row whose target is missing.
pub(crate) const NO_LABEL: u8 = 2;

/// The binary target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub column: String,
    /// The value counted as positive (the larger number, or `true`).
    pub positive_label: String,
    pub negative_label: String,
    pub positives: u64,
    pub negatives: u64,
    /// Rows whose target is missing (left out of every target statistic).
    pub missing: u64,
    /// Positives over labelled rows.
    pub rate: f64,
    /// Share of the smaller class among labelled rows.
    pub minority_share: f64,
    /// Entropy of the target in nats.
    pub entropy: f64,
}

/// Reads a binary target from a column's values: numbers or booleans with exactly two values.
pub(crate) fn target(name: &str, data_type: &str, values: &Values) -> Result<(TargetSummary, Vec<u8>)> {
    let one_class = |detail: String| AssessError::TargetOneClass {
        column: name.to_string(),
        detail,
    };
    let (labels, negative_label, positive_label) = match values {
        Values::Numeric(v) => {
            let mut distinct: Vec<f64> = Vec::new();
            for x in v.iter().filter(|x| !x.is_nan()) {
                if !distinct.contains(x) {
                    distinct.push(*x);
                    if distinct.len() > 2 {
                        break;
                    }
                }
            }
            distinct.sort_by(f64::total_cmp);
            match distinct.as_slice() {
                [] => return Err(one_class("every value is missing".into())),
                [only] => {
                    return Err(one_class(format!(
                        "every non-missing value is {}",
                        format_number(*only)
                    )));
                }
                [lo, hi] => {
                    let labels = v
                        .iter()
                        .map(|x| if x.is_nan() { NO_LABEL } else { u8::from(x == hi) })
                        .collect();
                    (labels, format_number(*lo), format_number(*hi))
                }
                _ => {
                    let mut all: Vec<f64> = v.iter().filter(|x| !x.is_nan()).copied().collect();
                    keel_stats::sort_f64(&mut all);
                    all.dedup();
                    return Err(AssessError::TargetNotBinary {
                        column: name.to_string(),
                        distinct: all.len(),
                        examples: all
                            .iter()
                            .take(4)
                            .map(|x| format_number(*x))
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
        Values::Categorical(c) if data_type == "Boolean" => {
            let code_true = c.values.iter().position(|v| v == "true");
            let code_false = c.values.iter().position(|v| v == "false");
            match (code_true, code_false) {
                (Some(t), Some(_)) => {
                    let labels = c
                        .codes
                        .iter()
                        .map(|code| {
                            if *code == MISSING_CODE {
                                NO_LABEL
                            } else {
                                u8::from(*code as usize == t)
                            }
                        })
                        .collect();
                    (labels, "false".to_string(), "true".to_string())
                }
                (None, None) => return Err(one_class("every value is missing".into())),
                (Some(_), None) => return Err(one_class("every non-missing value is true".into())),
                (None, Some(_)) => return Err(one_class("every non-missing value is false".into())),
            }
        }
        _ => {
            return Err(AssessError::TargetType {
                column: name.to_string(),
                data_type: data_type.to_string(),
            });
        }
    };
    let labels: Vec<u8> = labels;
    let positives = labels.iter().filter(|l| **l == 1).count() as u64;
    let negatives = labels.iter().filter(|l| **l == 0).count() as u64;
    let labelled = positives + negatives;
    Ok((
        TargetSummary {
            column: name.to_string(),
            positive_label,
            negative_label,
            positives,
            negatives,
            missing: labels.len() as u64 - labelled,
            rate: positives as f64 / labelled as f64,
            minority_share: positives.min(negatives) as f64 / labelled as f64,
            entropy: stats::binary_entropy(positives, labelled),
        },
        labels,
    ))
}

/// How informative one feature is for the target on its own.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureInfo {
    pub name: String,
    pub kind: ColumnKind,
    /// P(score of a positive > score of a negative); below 0.5 when lower values mean positive.
    pub auc: f64,
    /// Numerics: max(auc, 1 - auc); categoricals: max(auc, 0.5) (the encoding has a direction).
    /// 0.5 is useless, 1 predicts the target perfectly.
    pub strength: f64,
    /// `rank` (numeric values) or `out_of_fold_target_encoding` (categories).
    pub auc_method: &'static str,
    /// Mutual information with the target, nats, bias-corrected.
    pub mutual_information: f64,
    /// Mutual information over the target's entropy (0..1).
    pub mi_share: f64,
    /// Strength at or above the leakage threshold: the feature alone predicts the target almost perfectly.
    pub leakage: bool,
}

/// Labels and folds shared by every feature.
pub(crate) struct TargetCtx<'a> {
    pub labels: &'a [u8],
    pub folds: &'a [u8],
    pub k: usize,
    pub positives: u64,
    pub labelled: u64,
    pub entropy: f64,
    pub leakage_auc: f64,
}

/// The feature statistics of one column (`None` for time and unsupported columns).
pub(crate) fn feature(name: &str, values: &Values, ctx: &TargetCtx<'_>) -> Option<FeatureInfo> {
    let (kind, auc, mi, method) = match values {
        Values::Numeric(v) => {
            let (auc, mi) = numeric(v, ctx);
            (ColumnKind::Numeric, auc, mi, "rank")
        }
        Values::Categorical(c) => {
            let (auc, mi) = categorical(&c.codes, c.values.len(), &c.counts, ctx);
            (ColumnKind::Categorical, auc, mi, "out_of_fold_target_encoding")
        }
        Values::Time(_) | Values::Unsupported { .. } => return None,
    };
    // An out-of-fold encoding has a fixed direction (a higher encoded rate means positive); below
    // 0.5 it shows the encoding's known pessimistic bias on rare classes, not a signal.
    let strength = match kind {
        ColumnKind::Categorical => auc.max(0.5),
        _ => auc.max(1.0 - auc),
    };
    Some(FeatureInfo {
        name: name.to_string(),
        kind,
        auc,
        strength,
        auc_method: method,
        mutual_information: mi,
        mi_share: if ctx.entropy > 0.0 {
            (mi / ctx.entropy).min(1.0)
        } else {
            0.0
        },
        leakage: strength >= ctx.leakage_auc,
    })
}

fn numeric(v: &[f64], ctx: &TargetCtx<'_>) -> (f64, f64) {
    let mut pos = Vec::with_capacity(ctx.positives as usize);
    let mut neg = Vec::with_capacity((ctx.labelled - ctx.positives) as usize);
    let (mut pos_missing, mut neg_missing) = (0u64, 0u64);
    for (x, y) in v.iter().zip(ctx.labels) {
        match (*y, x.is_nan()) {
            (1, false) => pos.push(*x),
            (1, true) => pos_missing += 1,
            (0, false) => neg.push(*x),
            (0, true) => neg_missing += 1,
            _ => {}
        }
    }
    keel_stats::sort_f64(&mut pos);
    keel_stats::sort_f64(&mut neg);
    let (p_all, n_all) = (
        pos.len() as f64 + pos_missing as f64,
        neg.len() as f64 + neg_missing as f64,
    );
    // Missing values rank below every value.
    let u_present = keel_stats::auc_sorted(&pos, &neg).map_or(0.0, |a| a * pos.len() as f64 * neg.len() as f64);
    let u = u_present + pos.len() as f64 * neg_missing as f64 + 0.5 * pos_missing as f64 * neg_missing as f64;
    let auc = if p_all > 0.0 && n_all > 0.0 {
        u / (p_all * n_all)
    } else {
        0.5
    };

    // Bins: each distinct value when few, else equal-frequency edges over the labelled values.
    let edges = bin_edges(&pos, &neg);
    let mut table = vec![(neg_missing, pos_missing)];
    let mut prev = (0usize, 0usize);
    for i in 0..=edges.len() {
        let end = if i == edges.len() {
            (neg.len(), pos.len())
        } else {
            let e = edges[i];
            (neg.partition_point(|x| *x < e), pos.partition_point(|x| *x < e))
        };
        table.push(((end.0 - prev.0) as u64, (end.1 - prev.1) as u64));
        prev = end;
    }
    (auc, stats::mutual_information(&table))
}

/// Edges `e1 < e2 < ...`: bin 0 is `x < e1`, bin j is `e_j <= x < e_(j+1)`.
fn bin_edges(pos: &[f64], neg: &[f64]) -> Vec<f64> {
    // Merge the two sorted halves.
    let mut all = Vec::with_capacity(pos.len() + neg.len());
    let (mut i, mut j) = (0, 0);
    while i < pos.len() || j < neg.len() {
        if j >= neg.len() || (i < pos.len() && pos[i] <= neg[j]) {
            all.push(pos[i]);
            i += 1;
        } else {
            all.push(neg[j]);
            j += 1;
        }
    }
    let mut distinct: Vec<f64> = Vec::new();
    for x in &all {
        if distinct.last() != Some(x) {
            distinct.push(*x);
            if distinct.len() > MI_BINS {
                break;
            }
        }
    }
    if distinct.len() <= MI_BINS {
        return distinct.into_iter().skip(1).collect();
    }
    let mut edges: Vec<f64> = (1..MI_BINS)
        .map(|k| all[(k * all.len() / MI_BINS).min(all.len() - 1)])
        .collect();
    edges.dedup();
    if edges.first() == all.first() {
        edges.remove(0);
    }
    edges
}

fn categorical(codes: &[u32], n_values: usize, counts: &[u64], ctx: &TargetCtx<'_>) -> (f64, f64) {
    let k = ctx.k;
    let slots = n_values + 1; // the last slot is "missing"
    let slot = |code: u32| if code == MISSING_CODE { n_values } else { code as usize };
    // Per category and fold: labelled rows and positives.
    let mut total = vec![0u32; slots * k];
    let mut positive = vec![0u32; slots * k];
    for ((code, y), f) in codes.iter().zip(ctx.labels).zip(ctx.folds) {
        if *y == NO_LABEL {
            continue;
        }
        let at = slot(*code) * k + *f as usize;
        total[at] += 1;
        positive[at] += u32::from(*y);
    }
    let sum = |v: &[u32], s: usize| -> u64 { v[s * k..(s + 1) * k].iter().map(|x| u64::from(*x)).sum() };
    let cat_total: Vec<u64> = (0..slots).map(|s| sum(&total, s)).collect();
    let cat_pos: Vec<u64> = (0..slots).map(|s| sum(&positive, s)).collect();
    let prior = ctx.positives as f64 / ctx.labelled.max(1) as f64;

    let mut pos = Vec::with_capacity(ctx.positives as usize);
    let mut neg = Vec::with_capacity((ctx.labelled - ctx.positives) as usize);
    for ((code, y), f) in codes.iter().zip(ctx.labels).zip(ctx.folds) {
        if *y == NO_LABEL {
            continue;
        }
        let s = slot(*code);
        let at = s * k + *f as usize;
        let n = (cat_total[s] - u64::from(total[at])) as f64;
        let p = (cat_pos[s] - u64::from(positive[at])) as f64;
        let encoded = (p + SMOOTHING * prior) / (n + SMOOTHING);
        if *y == 1 {
            pos.push(encoded);
        } else {
            neg.push(encoded);
        }
    }
    keel_stats::sort_f64(&mut pos);
    keel_stats::sort_f64(&mut neg);
    let auc = keel_stats::auc_sorted(&pos, &neg).unwrap_or(0.5);

    // MI over the most frequent categories, "other" and missing.
    let mut order: Vec<usize> = (0..n_values).collect();
    order.sort_by(|a, b| counts[*b].cmp(&counts[*a]));
    let mut table: Vec<(u64, u64)> = Vec::with_capacity(MI_TOP_CATEGORIES + 2);
    let (mut other_n, mut other_p) = (0u64, 0u64);
    for (rank, s) in order.iter().enumerate() {
        if rank < MI_TOP_CATEGORIES {
            table.push((cat_total[*s] - cat_pos[*s], cat_pos[*s]));
        } else {
            other_n += cat_total[*s] - cat_pos[*s];
            other_p += cat_pos[*s];
        }
    }
    table.push((other_n, other_p));
    table.push((cat_total[n_values] - cat_pos[n_values], cat_pos[n_values]));
    (auc, stats::mutual_information(&table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(labels: &'a [u8], folds: &'a [u8]) -> TargetCtx<'a> {
        let positives = labels.iter().filter(|l| **l == 1).count() as u64;
        let labelled = labels.iter().filter(|l| **l != NO_LABEL).count() as u64;
        TargetCtx {
            labels,
            folds,
            k: 5,
            positives,
            labelled,
            entropy: stats::binary_entropy(positives, labelled),
            leakage_auc: 0.98,
        }
    }

    #[test]
    fn a_copy_of_the_target_is_leakage_and_noise_is_not() {
        let n = 2000;
        let labels: Vec<u8> = (0..n).map(|i| u8::from(stats::mix64(i).is_multiple_of(3))).collect();
        let folds: Vec<u8> = (0..n).map(|i| (stats::mix64(i ^ 77) % 5) as u8).collect();
        let c = ctx(&labels, &folds);
        let copy = Values::Numeric(labels.iter().map(|l| f64::from(*l)).collect());
        let f = feature("copy", &copy, &c).unwrap();
        assert_eq!(f.auc, 1.0);
        assert!(f.leakage);
        assert!(f.mi_share > 0.99, "{}", f.mi_share);
        let noise = Values::Numeric((0..n).map(|i| (stats::mix64(i ^ 5) % 1000) as f64).collect());
        let f = feature("noise", &noise, &c).unwrap();
        assert!((f.auc - 0.5).abs() < 0.05, "{}", f.auc);
        assert!(!f.leakage);
        assert!(f.mi_share < 0.02, "{}", f.mi_share);
    }

    #[test]
    fn an_identifier_is_not_leakage_but_a_category_copy_is() {
        let n = 3000u64;
        let labels: Vec<u8> = (0..n).map(|i| u8::from(stats::mix64(i).is_multiple_of(4))).collect();
        let folds: Vec<u8> = (0..n).map(|i| (stats::mix64(i ^ 77) % 5) as u8).collect();
        let c = ctx(&labels, &folds);
        let id = crate::read::Categories {
            codes: (0..n as u32).collect(),
            values: (0..n).map(|i| format!("id{i}")).collect(),
            counts: vec![1; n as usize],
            missing: 0,
        };
        let f = feature("id", &Values::Categorical(id), &c).unwrap();
        assert!((f.auc - 0.5).abs() < 0.05, "{}", f.auc);
        assert!(!f.leakage);
        let copy = crate::read::Categories {
            codes: labels.iter().map(|l| u32::from(*l)).collect(),
            values: vec!["no".into(), "yes".into()],
            counts: vec![0, 0],
            missing: 0,
        };
        let f = feature("copy", &Values::Categorical(copy), &c).unwrap();
        assert_eq!(f.auc, 1.0);
        assert!(f.leakage);
    }

    #[test]
    fn numeric_auc_with_missing_values_ranked_lowest() {
        // positives: 3.0, NaN; negatives: 1.0, NaN.
        // pairs: (3 > 1) 1, (3 > NaN) 1, (NaN < 1) 0, (NaN = NaN) 0.5 -> 2.5 / 4
        let labels = [1, 1, 0, 0];
        let folds = [0, 1, 2, 3];
        let c = ctx(&labels, &folds);
        let v = Values::Numeric(vec![3.0, f64::NAN, 1.0, f64::NAN]);
        let f = feature("x", &v, &c).unwrap();
        assert!((f.auc - 0.625).abs() < 1e-12, "{}", f.auc);
    }

    #[test]
    fn targets() {
        let (t, labels) = target("y", "Int64", &Values::Numeric(vec![0.0, 1.0, f64::NAN, 1.0])).unwrap();
        assert_eq!((t.positives, t.negatives, t.missing), (2, 1, 1));
        assert_eq!(labels, vec![0, 1, NO_LABEL, 1]);
        assert_eq!(t.positive_label, "1");
        let err = target("y", "Int64", &Values::Numeric(vec![1.0, 1.0])).unwrap_err();
        assert_eq!(err.code(), "assess.target_one_class");
        let err = target("y", "Int64", &Values::Numeric(vec![1.0, 2.0, 3.0])).unwrap_err();
        assert_eq!(err.code(), "assess.target_not_binary");
        assert!(err.to_string().contains("3 distinct"), "{err}");
        let cats = crate::read::Categories {
            codes: vec![0, 1],
            values: vec!["a".into(), "b".into()],
            counts: vec![1, 1],
            missing: 0,
        };
        let err = target("y", "Utf8", &Values::Categorical(cats)).unwrap_err();
        assert_eq!(err.code(), "assess.target_type");
    }
}
