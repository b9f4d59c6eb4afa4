//! Argmax (over all actions or an eligible subset) and probability matching: the draws every
//! Thompson policy shares, with a fixed seed mixed with the policy version.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// Monte Carlo draws of the action distribution of linear Thompson sampling, per context.
pub const LINEAR_THOMPSON_DRAWS: usize = 64;

/// Internal seed of the Monte Carlo estimates, mixed with the policy version.
const MC_SEED: u64 = 0x6b65_656c_2d62_616e;

/// Probability matching for independent Normal scores `(mean, sd)` per action: the share of
/// [`LINEAR_THOMPSON_DRAWS`] joint draws (fixed seed mixed with the version) each action wins,
/// among the actions `ok` allows (the others get 0 and take no draw).
pub(crate) fn matching(posterior: &[(f64, f64)], version: u64, ok: impl Fn(usize) -> bool) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(mc_seed(version));
    // The eligible actions' scores, in action order: each draw takes one normal per eligible
    // action in that order (the stream every earlier version drew, so the same state and
    // context give the same distribution), and the first of the largest wins (NaN never).
    let eligible: Vec<(usize, f64, f64)> = posterior
        .iter()
        .enumerate()
        .filter(|(a, _)| ok(*a))
        .map(|(a, (m, s))| (a, *m, *s))
        .collect();
    // Wins counted in place of the shares (whole numbers are exact in f64).
    let mut shares = vec![0.0; posterior.len()];
    let first = eligible.first().map_or(0, |e| e.0);
    for _ in 0..LINEAR_THOMPSON_DRAWS {
        let mut best = first;
        let mut best_value = f64::NEG_INFINITY;
        for &(a, m, s) in &eligible {
            let z: f64 = rng.sample(StandardNormal);
            let value = m + s * z;
            if value > best_value {
                best = a;
                best_value = value;
            }
        }
        shares[best] += 1.0;
    }
    for p in &mut shares {
        *p /= LINEAR_THOMPSON_DRAWS as f64;
    }
    shares
}

pub(crate) fn mc_seed(version: u64) -> u64 {
    MC_SEED ^ version.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Index of the largest value, the lowest index on ties; NaN never wins.
pub(crate) fn argmax(values: impl Iterator<Item = f64>) -> usize {
    argmax_among(values, |_| true)
}

/// Index of the largest value among the indices `ok` allows (the first allowed one when none
/// is larger than minus infinity), the lowest index on ties; NaN never wins.
pub(crate) fn argmax_among(values: impl Iterator<Item = f64>, ok: impl Fn(usize) -> bool) -> usize {
    let mut best = None;
    let mut best_value = f64::NEG_INFINITY;
    for (i, v) in values.enumerate() {
        if !ok(i) {
            continue;
        }
        if best.is_none() {
            best = Some(i);
        }
        if v > best_value {
            best = Some(i);
            best_value = v;
        }
    }
    best.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probability matching as keel 0.1 wrote it: the reference the faster loop must equal.
    fn matching_reference(posterior: &[(f64, f64)], version: u64, ok: impl Fn(usize) -> bool) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(mc_seed(version));
        let mut wins = vec![0u32; posterior.len()];
        for _ in 0..LINEAR_THOMPSON_DRAWS {
            let best = argmax_among(
                posterior.iter().enumerate().map(|(a, (m, s))| {
                    if ok(a) {
                        let z: f64 = rng.sample(StandardNormal);
                        m + s * z
                    } else {
                        f64::NEG_INFINITY
                    }
                }),
                &ok,
            );
            wins[best] += 1;
        }
        wins.iter()
            .map(|w| f64::from(*w) / LINEAR_THOMPSON_DRAWS as f64)
            .collect()
    }

    #[test]
    fn matching_draws_the_same_distribution_as_before() {
        let mut rng = ChaCha8Rng::seed_from_u64(23);
        for case in 0..2000u64 {
            let k = rng.random_range(1..9usize);
            // Close means (the draws decide), far means (one action wins them all), zero
            // spread, a NaN now and then, and ties (the first of the largest wins).
            let mut posterior: Vec<(f64, f64)> = (0..k)
                .map(|_| {
                    let u: f64 = rng.random();
                    let mean = if u < 0.05 {
                        f64::NAN
                    } else {
                        rng.random_range(-2.0..2.0)
                    };
                    let sd = if u > 0.9 { 0.0 } else { rng.random_range(0.0..1.0) };
                    (mean, sd)
                })
                .collect();
            if case % 5 == 0 {
                posterior = vec![(0.5, 0.0); k];
            }
            let mut eligible: Vec<bool> = (0..k).map(|_| rng.random::<f64>() < 0.7).collect();
            if case % 2 == 0 {
                eligible[rng.random_range(0..k)] = true;
            }
            let got = matching(&posterior, case, |a| eligible[a]);
            let want = matching_reference(&posterior, case, |a| eligible[a]);
            assert_eq!(got, want, "case {case}: {posterior:?} {eligible:?}");
        }
    }
}
