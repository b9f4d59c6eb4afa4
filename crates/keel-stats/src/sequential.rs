//! Intervals of a mean or a difference of means: the fixed-horizon normal interval (valid when
//! read once, at a sample size fixed in advance) and the anytime-valid confidence sequence of
//! the normal mixture (valid at every sample size at once, so a report may be read as often as
//! wanted).
//!
//! # The confidence sequence
//!
//! Robbins' two-sided normal mixture, in the form of Waudby-Smith, Arbour, Sinha, Kennedy and
//! Ramdas, "Time-uniform central limit theory and asymptotic confidence sequences" (Annals of
//! Statistics, 2024), Theorem 2.2, the method GrowthBook and Eppo call sequential testing. With
//! `n` observations, an estimate `m` and the variance of that estimate `v` (so the standard
//! deviation of one observation is `σ = √(n v)`), the `1 - α` confidence sequence is
//!
//! ```text
//! m ± σ · √( 2 (n ρ² + 1) / (n² ρ²) · ln( √(n ρ² + 1) / α ) )
//! ```
//!
//! It covers the true mean at every `n` simultaneously with probability at least `1 - α`
//! (asymptotically: `σ` is estimated and the mean of `n` observations is taken as normal, which
//! needs some tens of observations, and for rare binary outcomes some tens of successes, before
//! the first look that counts). `ρ` is the mixture's tuning: [`NormalMixture::tuned`] picks
//! the `ρ` that makes the sequence narrowest at `n*` observations
//! (`ρ² = (-2 ln α + ln(1 - 2 ln α)) / n*`), and the sequence stays valid at every other `n`.
//! At `n*` it is about 1.55 times as wide as the fixed-horizon interval for `α = 0.05`.

/// The 97.5% quantile of the standard normal: the 95% fixed-horizon interval is `± Z95 · se`.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Half-width of the 95% fixed-horizon normal interval of an estimate whose variance is `var`.
pub fn fixed_half_width(var: f64) -> f64 {
    Z95 * var.max(0.0).sqrt()
}

/// The two-sided normal-mixture confidence sequence at level `1 - alpha` with mixing variance
/// `rho2` (see the module).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormalMixture {
    pub alpha: f64,
    pub rho2: f64,
}

impl NormalMixture {
    /// The mixture narrowest at `n_star` observations, at level `1 - alpha`.
    pub fn tuned(alpha: f64, n_star: f64) -> NormalMixture {
        let l = -2.0 * alpha.ln();
        NormalMixture {
            alpha,
            rho2: (l + (1.0 + l).ln()) / n_star,
        }
    }

    /// The half-width in units of one observation's standard deviation at `n` observations;
    /// infinite below one observation.
    pub fn radius(&self, n: f64) -> f64 {
        if n < 1.0 {
            return f64::INFINITY;
        }
        let a = n * self.rho2 + 1.0;
        (2.0 * a / (n * n * self.rho2) * (a.sqrt() / self.alpha).ln()).sqrt()
    }

    /// Half-width of the sequence of an estimate whose variance is `var`, resting on `n`
    /// observations (for a difference of two independent means, `var` is the sum of their
    /// variances and `n` the sum of their counts).
    pub fn half_width(&self, var: f64, n: f64) -> f64 {
        (var.max(0.0) * n).sqrt() * self.radius(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// α = 0.05, n* = 10,000, worked by hand: l = -2 ln 0.05 = 5.991465, ρ² = (l + ln(1 + l))
    /// / 10,000 = (5.991465 + 1.944690) / 10,000 = 7.936155e-4. At n = 10,000: nρ² + 1 =
    /// 8.936155, ln(√8.936155 / 0.05) = 4.090785, radius² = 2 · 8.936155 / (10,000 · 7.936155)
    /// · 4.090785 = 9.212494e-4, radius = 0.0303521; the fixed-horizon half-width of one
    /// observation's mean at n = 10,000 is 1.959964 / 100 = 0.0195996, so the sequence is
    /// 1.549 times as wide there.
    #[test]
    fn the_radius_by_hand() {
        let m = NormalMixture::tuned(0.05, 10_000.0);
        assert!((m.rho2 - 7.936155e-4).abs() < 1e-9, "{}", m.rho2);
        let r = m.radius(10_000.0);
        assert!((r - 0.0303521).abs() < 1e-6, "{r}");
        let ratio = r / (Z95 / 100.0);
        assert!((ratio - 1.549).abs() < 1e-3, "{ratio}");
        assert!(m.radius(0.0).is_infinite());
    }

    #[test]
    fn the_sequence_is_wider_than_the_interval_everywhere_and_narrows() {
        let m = NormalMixture::tuned(0.05, 10_000.0);
        let mut last = f64::INFINITY;
        for n in [10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1e7] {
            let cs = m.half_width(0.25 / n, n);
            let ci = fixed_half_width(0.25 / n);
            assert!(cs > ci, "n = {n}: {cs} <= {ci}");
            assert!(cs < last, "n = {n}: the sequence does not narrow");
            last = cs;
        }
    }

    #[test]
    fn half_width_scales_with_the_standard_error() {
        let m = NormalMixture::tuned(0.05, 5_000.0);
        let one = m.half_width(1.0 / 400.0, 400.0);
        let four = m.half_width(4.0 / 400.0, 400.0);
        assert!((four - 2.0 * one).abs() < 1e-12);
        assert!((one - m.radius(400.0)).abs() < 1e-12);
    }
}
