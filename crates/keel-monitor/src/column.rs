//! Drift and quality of one column: read both sides, pick the test, score it.

use crate::error::{MonitorError, Result};
use crate::read::{CategoryCounts, NumericValues, Table};
use crate::report::{ColumnDrift, ColumnKind, ColumnQuality, StatDetails, TestKind};
use crate::{DriftOptions, Method, stats};

/// Evidently switches from p-value tests to distances above this many reference values.
const SMALL_SAMPLE: usize = 1000;
/// Numeric columns with at most this many distinct values are treated like categories.
const FEW_VALUES: usize = 5;
/// Evidently bins numeric columns (sturges) for PSI/JS only above this many distinct reference values.
const BIN_ABOVE: usize = 20;
/// New categories listed in the report.
const MAX_NEW_CATEGORIES: usize = 20;

pub(crate) fn drift_column(
    reference: &Table<'_>,
    current: &Table<'_>,
    name: &str,
    kind: ColumnKind,
    options: &DriftOptions,
) -> Result<ColumnDrift> {
    match kind {
        ColumnKind::Numeric => drift_numeric(
            name,
            reference.read_numeric(name)?,
            current.read_numeric(name)?,
            options,
        ),
        ColumnKind::Categorical => drift_categorical(
            name,
            reference.read_categorical(name)?,
            current.read_categorical(name)?,
            options,
        ),
    }
}

/// Drift of a numeric column from its values on both sides.
pub(crate) fn drift_numeric(
    name: &str,
    reference: NumericValues,
    current: NumericValues,
    options: &DriftOptions,
) -> Result<ColumnDrift> {
    let scored = numeric(reference, current, name, options.method)?;
    Ok(finish(name, ColumnKind::Numeric, scored, options))
}

/// Drift of a categorical column from its value counts on both sides.
pub(crate) fn drift_categorical(
    name: &str,
    reference: CategoryCounts,
    current: CategoryCounts,
    options: &DriftOptions,
) -> Result<ColumnDrift> {
    let scored = categorical(reference, current, name, options.method)?;
    Ok(finish(name, ColumnKind::Categorical, scored, options))
}

fn finish(name: &str, kind: ColumnKind, scored: Scored, options: &DriftOptions) -> ColumnDrift {
    let threshold = options.threshold.unwrap_or(scored.test.default_threshold());
    ColumnDrift {
        name: name.to_string(),
        kind,
        method: scored.test,
        score: scored.score,
        threshold,
        drifted: scored.test.drifted(scored.score, threshold),
        reference_values: scored.n_ref as u64,
        current_values: scored.n_cur as u64,
        details: scored.details,
        quality: scored.quality,
    }
}

struct Scored {
    test: TestKind,
    score: f64,
    n_ref: usize,
    n_cur: usize,
    details: StatDetails,
    quality: ColumnQuality,
}

fn empty(name: &str, side: &'static str) -> MonitorError {
    MonitorError::EmptyColumn {
        column: name.to_string(),
        side,
    }
}

fn numeric(mut r: NumericValues, mut c: NumericValues, name: &str, method: Method) -> Result<Scored> {
    if r.values.is_empty() {
        return Err(empty(name, "reference"));
    }
    if c.values.is_empty() {
        return Err(empty(name, "current"));
    }
    keel_stats::sort_f64(&mut r.values);
    keel_stats::sort_f64(&mut c.values);
    let (ref_v, cur_v) = (r.values.as_slice(), c.values.as_slice());
    let (lo, hi) = (ref_v[0], ref_v[ref_v.len() - 1]);
    let out_of_range = cur_v.partition_point(|v| *v < lo) + (cur_v.len() - cur_v.partition_point(|v| *v <= hi));
    let quality = ColumnQuality {
        reference_missing: r.missing,
        current_missing: c.missing,
        reference_infinite: r.infinite,
        current_infinite: c.infinite,
        reference_min: Some(lo),
        reference_max: Some(hi),
        current_out_of_range: Some(out_of_range as u64),
        ..Default::default()
    };
    let distinct = stats::distinct_union_capped(ref_v, cur_v, FEW_VALUES);
    let (ref_mean, ref_std) = keel_stats::mean_std_population(ref_v);
    let (cur_mean, _) = keel_stats::mean_std_population(cur_v);
    let mut details = StatDetails {
        distinct_values: Some(distinct),
        reference_mean: Some(ref_mean),
        reference_std: Some(ref_std),
        current_mean: Some(cur_mean),
        ..Default::default()
    };
    let small = ref_v.len() <= SMALL_SAMPLE;
    let test = match method {
        Method::Auto if small && distinct > FEW_VALUES => TestKind::Ks,
        Method::Auto if small && distinct > 2 => TestKind::ChiSquare,
        Method::Auto if small => TestKind::ZTest,
        Method::Auto if distinct > FEW_VALUES => TestKind::WassersteinNorm,
        Method::Auto => TestKind::JensenShannon,
        Method::Psi => TestKind::Psi,
        Method::Ks => TestKind::Ks,
        Method::Wasserstein => TestKind::WassersteinNorm,
        Method::JensenShannon => TestKind::JensenShannon,
    };
    let score = match test {
        TestKind::WassersteinNorm => stats::wasserstein_sorted(ref_v, cur_v) / ref_std.max(0.001),
        TestKind::Ks => {
            let (d, p) = stats::ks_two_sample(ref_v, cur_v);
            details.ks_statistic = Some(d);
            p
        }
        TestKind::JensenShannon | TestKind::Psi => {
            let (rc, cc) = if stats::distinct_union_capped(ref_v, &[], BIN_ABOVE) > BIN_ABOVE {
                let edges = stats::sturges_edges(ref_v, cur_v);
                (
                    stats::histogram_sorted(ref_v, &edges),
                    stats::histogram_sorted(cur_v, &edges),
                )
            } else {
                stats::value_counts_sorted(ref_v, cur_v)
            };
            details.bins = Some(rc.len());
            if test == TestKind::Psi {
                stats::psi(&rc, &cc, ref_v.len() as f64, cur_v.len() as f64)
            } else {
                stats::jensen_shannon(&rc, &cc)
            }
        }
        TestKind::ChiSquare | TestKind::ZTest => {
            let (rc, cc) = stats::value_counts_sorted(ref_v, cur_v);
            details.bins = Some(rc.len());
            if test == TestKind::ChiSquare {
                stats::chi_square_p(&rc, &cc)
            } else {
                stats::z_test_p(&rc, &cc)
            }
        }
    };
    Ok(Scored {
        test,
        score,
        n_ref: ref_v.len(),
        n_cur: cur_v.len(),
        details,
        quality,
    })
}

fn categorical(r: CategoryCounts, c: CategoryCounts, name: &str, method: Method) -> Result<Scored> {
    let (n_ref, n_cur) = (r.total() as usize, c.total() as usize);
    if n_ref == 0 {
        return Err(empty(name, "reference"));
    }
    if n_cur == 0 {
        return Err(empty(name, "current"));
    }
    let mut keys: Vec<&String> = r
        .counts
        .keys()
        .chain(c.counts.keys().filter(|k| !r.counts.contains_key(*k)))
        .collect();
    keys.sort();
    let count = |side: &CategoryCounts| -> Vec<f64> {
        keys.iter()
            .map(|k| side.counts.get(*k).copied().unwrap_or(0) as f64)
            .collect()
    };
    let (rc, cc) = (count(&r), count(&c));
    let new: Vec<&String> = keys.iter().copied().filter(|k| !r.counts.contains_key(*k)).collect();
    let quality = ColumnQuality {
        reference_missing: r.missing,
        current_missing: c.missing,
        new_categories: new.iter().take(MAX_NEW_CATEGORIES).map(|k| (*k).clone()).collect(),
        current_rows_in_new_categories: Some(new.iter().map(|k| c.counts.get(*k).copied().unwrap_or(0)).sum()),
        ..Default::default()
    };
    let small = n_ref <= SMALL_SAMPLE;
    let test = match method {
        Method::Psi => TestKind::Psi,
        Method::JensenShannon => TestKind::JensenShannon,
        // KS and Wasserstein need an order: categorical columns keep the default test
        Method::Auto | Method::Ks | Method::Wasserstein if small && keys.len() > 2 => TestKind::ChiSquare,
        Method::Auto | Method::Ks | Method::Wasserstein if small => TestKind::ZTest,
        Method::Auto | Method::Ks | Method::Wasserstein => TestKind::JensenShannon,
    };
    let score = match test {
        TestKind::Psi => stats::psi(&rc, &cc, n_ref as f64, n_cur as f64),
        TestKind::JensenShannon => stats::jensen_shannon(&rc, &cc),
        TestKind::ChiSquare => stats::chi_square_p(&rc, &cc),
        TestKind::ZTest => stats::z_test_p(&rc, &cc),
        TestKind::WassersteinNorm | TestKind::Ks => f64::NAN,
    };
    let details = StatDetails {
        bins: Some(keys.len()),
        ..Default::default()
    };
    Ok(Scored {
        test,
        score,
        n_ref,
        n_cur,
        details,
        quality,
    })
}
