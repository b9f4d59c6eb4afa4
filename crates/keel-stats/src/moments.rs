//! Means and standard deviations.

/// Mean and sample standard deviation (ddof = 1, as pandas), two passes with plain summation.
/// `(NaN, NaN)` when empty; the standard deviation of one value is 0.
pub fn mean_std_sample(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    (mean, (ss / (n - 1.0)).sqrt())
}

/// Population mean and standard deviation (numpy `np.mean` / `np.std`, ddof = 0), two passes of
/// pairwise summation so the results agree with numpy's to the last bits. `(NaN, NaN)` when empty.
pub fn mean_std_population(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = pairwise_sum(values, &|v| v) / n;
    let var = pairwise_sum(values, &|v| (v - mean) * (v - mean)) / n;
    (mean, var.sqrt())
}

/// Pairwise summation of `f(v)` in blocks of 128, close to numpy's `sum`.
pub fn pairwise_sum(values: &[f64], f: &dyn Fn(f64) -> f64) -> f64 {
    if values.len() <= 128 {
        values.iter().map(|v| f(*v)).sum()
    } else {
        let mid = values.len() / 2;
        pairwise_sum(&values[..mid], f) + pairwise_sum(&values[mid..], f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_and_population_by_hand() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        let (m, s) = mean_std_sample(&v);
        assert_eq!(m, 4.0);
        // sample std: sqrt((9+4+1+0+36)/4) = sqrt(12.5); population: sqrt(50/5) = sqrt(10)
        assert!((s - 12.5f64.sqrt()).abs() < 1e-12);
        let (m, s) = mean_std_population(&v);
        assert_eq!(m, 4.0);
        assert!((s - 10f64.sqrt()).abs() < 1e-12);
        assert_eq!(mean_std_sample(&[3.0]), (3.0, 0.0));
        assert!(mean_std_sample(&[]).0.is_nan());
    }
}
