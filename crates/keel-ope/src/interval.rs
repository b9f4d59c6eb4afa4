//! Confidence intervals from per-round terms: a normal approximation and a seeded
//! percentile bootstrap in the manner of obp's `estimate_confidence_interval_by_bootstrap`.

use crate::error::{OpeError, Result};

/// Two-sided 95% standard normal quantile, `Phi^-1(0.975)`.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// Settings of a percentile bootstrap (obp's `estimate_interval` arguments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bootstrap {
    /// Number of bootstrap resamples (obp default 10,000).
    pub n_bootstrap_samples: usize,
    /// Significance level; the interval covers `1 - alpha` (obp default 0.05).
    pub alpha: f64,
    /// Seed of the resampling, so a run can be repeated.
    pub seed: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            n_bootstrap_samples: 10_000,
            alpha: 0.05,
            seed: 12345,
        }
    }
}

/// Result of a bootstrap over per-round terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootstrapInterval {
    /// Mean of the bootstrap means (obp's `"mean"`).
    pub mean: f64,
    /// Standard deviation of the bootstrap means.
    pub std_err: f64,
    /// `alpha / 2` percentile of the bootstrap means.
    pub ci_low: f64,
    /// `1 - alpha / 2` percentile of the bootstrap means.
    pub ci_high: f64,
}

/// Mean and standard error (sample standard deviation with `n - 1` over `sqrt(n)`) of `terms`.
///
/// With a single term the standard error is infinite: one round says nothing about spread.
pub fn mean_and_std_err(terms: &[f64]) -> (f64, f64) {
    match terms.len() {
        0 => (f64::NAN, f64::INFINITY),
        1 => (terms[0], f64::INFINITY),
        n => {
            let (mean, sd) = keel_stats::mean_std_sample(terms);
            (mean, sd / (n as f64).sqrt())
        }
    }
}

/// Percentile bootstrap of the mean of `terms`: resample `terms` with replacement
/// `n_bootstrap_samples` times, take each resample's mean, and report the `alpha / 2` and
/// `1 - alpha / 2` percentiles (linear interpolation, numpy's default).
///
/// The random stream is this crate's own (SplitMix64), so intervals repeat for a seed across
/// platforms and versions; they do not reproduce numpy's `RandomState` draws.
pub fn bootstrap_interval(terms: &[f64], config: &Bootstrap) -> Result<BootstrapInterval> {
    if terms.is_empty() {
        return Err(OpeError::EmptyLog);
    }
    if config.n_bootstrap_samples == 0 {
        return Err(OpeError::InvalidParameter {
            name: "n_bootstrap_samples",
            reason: "must be at least 1".into(),
        });
    }
    if !(config.alpha > 0.0 && config.alpha < 1.0) {
        return Err(OpeError::InvalidParameter {
            name: "alpha",
            reason: format!("{} is outside (0, 1); use 0.05 for a 95% interval", config.alpha),
        });
    }
    let n = terms.len();
    let mut rng = SplitMix64::new(config.seed);
    let mut means: Vec<f64> = (0..config.n_bootstrap_samples)
        .map(|_| {
            let mut sum = 0.0;
            for _ in 0..n {
                sum += terms[rng.below(n as u64) as usize];
            }
            sum / n as f64
        })
        .collect();
    let (mean, sd) = mean_and_std_err(&means);
    let sd = sd * (means.len() as f64).sqrt();
    keel_stats::sort_f64(&mut means);
    Ok(BootstrapInterval {
        mean,
        std_err: if sd.is_finite() { sd } else { 0.0 },
        ci_low: percentile_sorted(&means, 100.0 * config.alpha / 2.0),
        ci_high: percentile_sorted(&means, 100.0 * (1.0 - config.alpha / 2.0)),
    })
}

/// numpy's `percentile(..., method="linear")` on sorted, non-empty data (keel-stats').
pub(crate) use keel_stats::percentile_sorted;

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast and fully specified, so seeded runs repeat.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform integer in `[0, bound)` without modulo bias (Lemire's method); `bound > 0`.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(bound);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        // np.percentile([1, 2, 3, 4], [2.5, 50, 97.5]) == [1.075, 2.5, 3.925]
        let s = [1.0, 2.0, 3.0, 4.0];
        assert!((percentile_sorted(&s, 2.5) - 1.075).abs() < 1e-12);
        assert!((percentile_sorted(&s, 50.0) - 2.5).abs() < 1e-12);
        assert!((percentile_sorted(&s, 97.5) - 3.925).abs() < 1e-12);
    }

    #[test]
    fn std_err_is_sample_sd_over_sqrt_n() {
        let (m, se) = mean_and_std_err(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((se - (5.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-15);
        assert!(mean_and_std_err(&[1.0]).1.is_infinite());
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_mean() {
        let terms: Vec<f64> = (0..500).map(|i| f64::from(i % 7)).collect();
        let cfg = Bootstrap {
            n_bootstrap_samples: 2000,
            alpha: 0.05,
            seed: 7,
        };
        let a = bootstrap_interval(&terms, &cfg).unwrap();
        let b = bootstrap_interval(&terms, &cfg).unwrap();
        assert_eq!(a, b);
        let (m, se) = mean_and_std_err(&terms);
        assert!(a.ci_low < m && m < a.ci_high);
        // The bootstrap sd of the mean approximates the analytic standard error.
        assert!((a.std_err - se).abs() < 0.1 * se, "{} vs {se}", a.std_err);
        assert!(bootstrap_interval(&terms, &Bootstrap { alpha: 1.5, ..cfg }).is_err());
        assert!(bootstrap_interval(&[], &cfg).is_err());
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SplitMix64::new(1);
        for b in 1..50 {
            assert!(r.below(b) < b);
        }
    }
}
