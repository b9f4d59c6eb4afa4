//! The statistics, written to give the same numbers as Evidently 0.7 (numpy/scipy) on the same data.
//!
//! Numeric inputs are finite and sorted ascending (`keel_stats::sort_f64`); categorical inputs are counts
//! aligned on the same keys.

use statrs::distribution::{ChiSquared, ContinuousCDF};
use statrs::function::erf::erfc;

/// Number of distinct values in the union of two sorted slices, counting no further than `limit + 1`.
pub(crate) fn distinct_union_capped(a: &[f64], b: &[f64], limit: usize) -> usize {
    let (mut i, mut j, mut distinct) = (0, 0, 0);
    let mut last: Option<f64> = None;
    while i < a.len() || j < b.len() {
        let v = if j >= b.len() || (i < a.len() && a[i] <= b[j]) {
            i += 1;
            a[i - 1]
        } else {
            j += 1;
            b[j - 1]
        };
        if last != Some(v) {
            distinct += 1;
            if distinct > limit {
                return distinct;
            }
            last = Some(v);
        }
    }
    distinct
}

/// Distinct values of the union of two sorted slices with their counts in each (for few-valued numeric columns).
pub(crate) fn value_counts_sorted(a: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut keys: Vec<f64> = a.iter().chain(b.iter()).copied().collect();
    keel_stats::sort_f64(&mut keys);
    keys.dedup_by(|x, y| x == y);
    let count = |s: &[f64]| -> Vec<f64> {
        keys.iter()
            .map(|k| (s.partition_point(|v| v < k)..s.partition_point(|v| v <= k)).len() as f64)
            .collect()
    };
    (count(a), count(b))
}

/// First Wasserstein distance between the empirical distributions of two sorted samples
/// (scipy `wasserstein_distance`): integral of |U(x) - V(x)| over x, by a merged walk of the two CDFs.
pub(crate) fn wasserstein_sorted(u: &[f64], v: &[f64]) -> f64 {
    let (n, m) = (u.len() as f64, v.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut total = 0.0;
    let mut prev: Option<f64> = None;
    while i < u.len() || j < v.len() {
        let x = if j >= v.len() || (i < u.len() && u[i] <= v[j]) {
            u[i]
        } else {
            v[j]
        };
        if let Some(p) = prev {
            // CDFs just before x: counts of values <= p, i.e. everything consumed so far.
            total += (i as f64 / n - j as f64 / m).abs() * (x - p);
        }
        while i < u.len() && u[i] == x {
            i += 1;
        }
        while j < v.len() && v[j] == x {
            j += 1;
        }
        prev = Some(x);
    }
    total
}

/// Jensen-Shannon distance (scipy `distance.jensenshannon`, natural log) of two count vectors on the same keys.
pub(crate) fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let (np, nq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    // Evidently divides by the sample size, scipy then renormalises to sum 1.
    let p: Vec<f64> = p.iter().map(|x| x / np).collect();
    let q: Vec<f64> = q.iter().map(|x| x / nq).collect();
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    let mut js = 0.0;
    for (a, b) in p.iter().zip(q.iter()) {
        let (a, b) = (a / sp, b / sq);
        let m = 0.5 * (a + b);
        if a > 0.0 {
            js += a * (a / m).ln();
        }
        if b > 0.0 {
            js += b * (b / m).ln();
        }
    }
    (js / 2.0).max(0.0).sqrt()
}

/// Evidently's `get_binned_data(..., feel_zeroes=True)` zero filling: an empty bin gets
/// min(non-zero share) / 1e6 when that minimum is <= 1e-4, otherwise 1e-4.
fn fill_zeroes(shares: &mut [f64]) {
    let min = shares
        .iter()
        .copied()
        .filter(|x| *x != 0.0)
        .fold(f64::INFINITY, f64::min);
    if !min.is_finite() {
        return;
    }
    let fill = if min <= 0.0001 { min / 1e6 } else { 0.0001 };
    for s in shares.iter_mut().filter(|s| **s == 0.0) {
        *s = fill;
    }
}

/// Population stability index of two count vectors on the same bins (Evidently `psi_stat_test`).
pub(crate) fn psi(ref_counts: &[f64], cur_counts: &[f64], n_ref: f64, n_cur: f64) -> f64 {
    let mut p: Vec<f64> = ref_counts.iter().map(|c| c / n_ref).collect();
    let mut q: Vec<f64> = cur_counts.iter().map(|c| c / n_cur).collect();
    fill_zeroes(&mut p);
    fill_zeroes(&mut q);
    p.iter().zip(q.iter()).map(|(a, b)| (a - b) * (a / b).ln()).sum()
}

/// numpy `histogram_bin_edges(concat(a, b), bins="sturges")` for two sorted, non-empty samples.
pub(crate) fn sturges_edges(a: &[f64], b: &[f64]) -> Vec<f64> {
    let lo = a[0].min(b[0]);
    let hi = a[a.len() - 1].max(b[b.len() - 1]);
    let size = (a.len() + b.len()) as f64;
    let (first, last, bins) = if lo == hi {
        (lo - 0.5, hi + 0.5, 1usize)
    } else {
        let width = (hi - lo) / (size.log2() + 1.0);
        (lo, hi, ((hi - lo) / width).ceil() as usize)
    };
    // numpy linspace: arange * step + start, last edge set exactly
    let step = (last - first) / bins as f64;
    let mut edges: Vec<f64> = (0..=bins).map(|k| k as f64 * step + first).collect();
    edges[bins] = last;
    edges
}

/// numpy `histogram(sorted, edges)` counts: [e_k, e_k+1) with the last bin closed.
pub(crate) fn histogram_sorted(sorted: &[f64], edges: &[f64]) -> Vec<f64> {
    let cum: Vec<usize> = edges
        .iter()
        .enumerate()
        .map(|(k, e)| {
            if k + 1 == edges.len() {
                sorted.partition_point(|v| v <= e)
            } else {
                sorted.partition_point(|v| v < e)
            }
        })
        .collect();
    cum.windows(2).map(|w| (w[1] - w[0]) as f64).collect()
}

/// Two-sample Kolmogorov-Smirnov statistic and two-sided p-value (scipy `ks_2samp`, mode "auto":
/// exact when both samples have at most 10,000 values, asymptotic otherwise).
pub(crate) fn ks_two_sample(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n, m) = (a.len() as u64, b.len() as u64);
    // max |i*m - j*n| over the merged walk, in integers: D = that / (n*m)
    let (mut i, mut j) = (0usize, 0usize);
    let mut k_max: u64 = 0;
    while i < a.len() || j < b.len() {
        let x = if j >= b.len() || (i < a.len() && a[i] <= b[j]) {
            a[i]
        } else {
            b[j]
        };
        while i < a.len() && a[i] == x {
            i += 1;
        }
        while j < b.len() && b[j] == x {
            j += 1;
        }
        k_max = k_max.max((i as u64 * m).abs_diff(j as u64 * n));
    }
    let d = k_max as f64 / (n * m) as f64;
    if k_max == 0 {
        return (d, 1.0);
    }
    let p = if n.max(m) <= 10_000 {
        ks_exact_p(n, m, k_max)
    } else {
        ks_asymptotic_p(n, m, d)
    };
    (d, p.clamp(0.0, 1.0))
}

/// Share of monotone lattice paths from (0,0) to (n,m) leaving the band |i*m - j*n| < k, as a probability
/// (scipy `_compute_prob_inside_method` in floating point form).
fn ks_exact_p(n: u64, m: u64, k: u64) -> f64 {
    let (n, m) = (n as usize, m as usize);
    let inside = |i: usize, j: usize| ((i as u64) * (m as u64)).abs_diff((j as u64) * (n as u64)) < k;
    // u[j] = (paths to (i, j) staying inside) / C(i + j, i)
    let mut u = vec![0.0f64; m + 1];
    u[0] = 1.0;
    for j in 1..=m {
        u[j] = if inside(0, j) { u[j - 1] } else { 0.0 };
    }
    for i in 1..=n {
        u[0] = if inside(i, 0) { u[0] } else { 0.0 };
        for j in 1..=m {
            u[j] = if inside(i, j) {
                let t = (i + j) as f64;
                u[j] * (i as f64 / t) + u[j - 1] * (j as f64 / t)
            } else {
                0.0
            };
        }
    }
    1.0 - u[m]
}

/// Kolmogorov limiting distribution with Stephens' small-sample correction, for large samples.
fn ks_asymptotic_p(n: u64, m: u64, d: f64) -> f64 {
    let en = ((n as f64) * (m as f64) / (n + m) as f64).round();
    let lambda = (en.sqrt() + 0.12 + 0.11 / en.sqrt()) * d;
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = f64::from(k);
        let term = 2.0 * (-1f64).powf(k - 1.0) * (-2.0 * k * k * lambda * lambda).exp();
        sum += term;
        if term.abs() < 1e-16 {
            break;
        }
    }
    sum
}

/// Evidently `chi_stat_test`: observed = current counts, expected = reference counts scaled to the current size.
pub(crate) fn chi_square_p(ref_counts: &[f64], cur_counts: &[f64]) -> f64 {
    let (n_ref, n_cur) = (ref_counts.iter().sum::<f64>(), cur_counts.iter().sum::<f64>());
    let k_norm = n_cur / n_ref;
    let mut stat = 0.0;
    for (r, c) in ref_counts.iter().zip(cur_counts.iter()) {
        let expected = r * k_norm;
        stat += (c - expected) * (c - expected) / expected;
    }
    let dof = ref_counts.len().saturating_sub(1) as f64;
    if stat.is_nan() || dof == 0.0 {
        return 1.0;
    }
    if stat.is_infinite() {
        return 0.0;
    }
    ChiSquared::new(dof).map(|d| d.sf(stat)).unwrap_or(1.0)
}

/// Evidently `z_stat_test` (two proportions, two-sided) on a column with at most two values.
pub(crate) fn z_test_p(ref_counts: &[f64], cur_counts: &[f64]) -> f64 {
    if ref_counts.len() < 2 {
        return 1.0;
    }
    let (n1, n2) = (ref_counts.iter().sum::<f64>(), cur_counts.iter().sum::<f64>());
    let (p1, p2) = (ref_counts[1] / n1, cur_counts[1] / n2);
    let pooled = (p1 * n1 + p2 * n2) / (n1 + n2);
    let z = (p1 - p2) / (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if z.is_nan() {
        return 1.0;
    }
    erfc(z.abs() / std::f64::consts::SQRT_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasserstein_of_a_shift_is_the_shift() {
        let u = [0.0, 1.0, 2.0, 3.0];
        let v = [0.5, 1.5, 2.5, 3.5];
        assert!((wasserstein_sorted(&u, &v) - 0.5).abs() < 1e-15);
        assert_eq!(wasserstein_sorted(&u, &u), 0.0);
        // scipy.stats.wasserstein_distance([0, 1, 3], [5, 6, 8]) == 5.0; ([0, 1], [0, 0, 1, 1, 1]) == 0.1
        assert!((wasserstein_sorted(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0]) - 5.0).abs() < 1e-15);
        assert!((wasserstein_sorted(&[0.0, 1.0], &[0.0, 0.0, 1.0, 1.0, 1.0]) - 0.1).abs() < 1e-15);
    }

    #[test]
    fn jensen_shannon_bounds() {
        assert_eq!(jensen_shannon(&[3.0, 5.0], &[30.0, 50.0]), 0.0);
        // disjoint supports: sqrt(ln 2)
        assert!((jensen_shannon(&[1.0, 0.0], &[0.0, 1.0]) - std::f64::consts::LN_2.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn psi_is_zero_for_equal_shares_and_positive_otherwise() {
        assert_eq!(psi(&[1.0, 3.0], &[2.0, 6.0], 4.0, 8.0), 0.0);
        assert!(psi(&[1.0, 3.0, 0.0], &[3.0, 1.0, 1.0], 4.0, 5.0) > 0.0);
    }

    #[test]
    fn ks_exact_matches_scipy() {
        // scipy.stats.ks_2samp([1, 2, 3, 4], [3, 4, 5, 6, 7]) -> statistic 0.6, pvalue 0.2857142857142857
        let (d, p) = ks_two_sample(&[1.0, 2.0, 3.0, 4.0], &[3.0, 4.0, 5.0, 6.0, 7.0]);
        assert!((d - 0.6).abs() < 1e-15);
        assert!((p - 0.2857142857142857).abs() < 1e-12, "{p}");
    }

    #[test]
    fn sturges_edges_like_numpy() {
        // np.histogram_bin_edges([0, 1, 2, 3, 4, 5, 6, 10], bins="sturges") -> 4 bins on [0, 10]
        let edges = sturges_edges(&[0.0, 1.0, 2.0, 3.0], &[4.0, 5.0, 6.0, 10.0]);
        assert_eq!(edges, [0.0, 2.5, 5.0, 7.5, 10.0]);
        assert_eq!(histogram_sorted(&[0.0, 2.5, 9.0, 10.0], &edges), [1.0, 1.0, 0.0, 2.0]);
    }
}
