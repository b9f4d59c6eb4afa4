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
