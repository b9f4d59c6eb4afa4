//! Quantiles and percentiles of sorted data with linear interpolation between order statistics
//! (numpy's default `linear` method, pandas' `quantile`).

/// Quantile `q` (clamped to [0, 1]) of ascending `sorted` values; NaN when empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    interpolate(sorted, pos)
}

/// numpy's `percentile(sorted, q, method="linear")` for `q` in [0, 100] (clamped); NaN when empty.
///
/// The position is computed as numpy does for percentiles, `(n - 1) * q / 100`, which can differ
/// in the last bit from `quantile_sorted(sorted, q / 100)`.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = (sorted.len() - 1) as f64 * q.clamp(0.0, 100.0) / 100.0;
    interpolate(sorted, pos)
}

fn interpolate(sorted: &[f64], pos: f64) -> f64 {
    let lo = pos.floor() as usize;
    let hi = (pos.ceil() as usize).min(sorted.len() - 1);
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        // numpy.quantile([1,2,3,4,10], [0.01, 0.25, 0.5, 0.75, 0.99]) = 1.04, 2, 3, 4, 9.76
        assert!((quantile_sorted(&v, 0.01) - 1.04).abs() < 1e-12);
        assert_eq!(quantile_sorted(&v, 0.25), 2.0);
        assert_eq!(quantile_sorted(&v, 0.5), 3.0);
        assert_eq!(quantile_sorted(&v, 0.75), 4.0);
        assert!((quantile_sorted(&v, 0.99) - 9.76).abs() < 1e-12);
        assert!(quantile_sorted(&[], 0.5).is_nan());
        // numpy.percentile([1,2,3,4,10], [2.5, 97.5]) = 1.1, 9.4
        assert!((percentile_sorted(&v, 2.5) - 1.1).abs() < 1e-12);
        assert!((percentile_sorted(&v, 97.5) - 9.4).abs() < 1e-12);
        assert_eq!(percentile_sorted(&[7.0], 50.0), 7.0);
    }
}
