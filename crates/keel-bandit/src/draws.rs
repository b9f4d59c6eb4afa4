//! Argmax (over all actions or an eligible subset) and probability matching: the draws every
//! Thompson policy shares, with a fixed seed mixed with the policy version.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// Monte Carlo draws of the action distribution of linear Thompson sampling, per context.
pub const LINEAR_THOMPSON_DRAWS: usize = 64;

/// Internal seed of the Monte Carlo estimates, mixed with the policy version.
const MC_SEED: u64 = 0x6b65_656c_2d62_616e;

/// The standard normals of probability matching at one policy version, kept between decides:
/// the stream of the version's seed, drawn as far as a decide has needed it. Each of the
/// [`LINEAR_THOMPSON_DRAWS`] joint draws takes one normal per eligible action, in action order,
/// so with `n` eligible actions draw `r` takes the normals `r n .. (r + 1) n` of the stream
/// whatever the context: every decide of a version reads the same prefix, and the result is
/// the same bit for bit as drawing it anew. An update (a new version) starts a new stream.
#[derive(Clone, Default)]
pub(crate) struct Normals {
    version: u64,
    stream: Option<ChaCha8Rng>,
    z: Vec<f64>,
}

impl std::fmt::Debug for Normals {
    // The version and how many are kept, not the numbers (a state's debug output stays short).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Normals")
            .field("version", &self.version)
            .field("kept", &self.z.len())
            .finish()
    }
}

impl Normals {
    /// The first `count` normals of the stream of `version`.
    fn first(&mut self, version: u64, count: usize) -> &[f64] {
        if self.stream.is_none() || self.version != version {
            self.version = version;
            self.z.clear();
            self.stream = Some(ChaCha8Rng::seed_from_u64(mc_seed(version)));
        }
        if let Some(rng) = self.stream.as_mut() {
            let more = count.saturating_sub(self.z.len());
            self.z.extend((0..more).map(|_| rng.sample::<f64, _>(StandardNormal)));
        }
        &self.z[..count.min(self.z.len())]
    }
}

/// Probability matching for independent Normal scores `(mean, sd)` per action: the share of
/// [`LINEAR_THOMPSON_DRAWS`] joint draws (fixed seed mixed with the version) each action wins,
/// among the actions `ok` allows (the others get 0 and take no draw); the normals come from
/// `normals`, the version's stream (see [`Normals`]).
pub(crate) fn matching(
    posterior: &[(f64, f64)],
    version: u64,
    ok: impl Fn(usize) -> bool,
    normals: &mut Normals,
) -> Vec<f64> {
    // The eligible actions' scores, in action order; the first of the largest wins (NaN never).
    let eligible: Vec<(usize, f64, f64)> = posterior
        .iter()
        .enumerate()
        .filter(|(a, _)| ok(*a))
        .map(|(a, (m, s))| (a, *m, *s))
        .collect();
    let z = normals.first(version, LINEAR_THOMPSON_DRAWS * eligible.len());
    // Wins counted in place of the shares (whole numbers are exact in f64).
    let mut shares = vec![0.0; posterior.len()];
    let first = eligible.first().map_or(0, |e| e.0);
    for draw in z.chunks_exact(eligible.len().max(1)).take(LINEAR_THOMPSON_DRAWS) {
        let mut best = first;
        let mut best_value = f64::NEG_INFINITY;
        for (&(a, m, s), z) in eligible.iter().zip(draw) {
            let value = m + s * z;
            if value > best_value {
                best = a;
                best_value = value;
            }
        }
        shares[best] += 1.0;
    }
    if eligible.is_empty() {
        shares[first] = LINEAR_THOMPSON_DRAWS as f64;
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
    fn matching_with_kept_normals_draws_the_same_distribution_as_before() {
        let mut rng = ChaCha8Rng::seed_from_u64(23);
        let mut normals = Normals::default();
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
            // Versions come back with other contexts and eligible sets: the kept normals are
            // reused, extended and replaced.
            let version = case % 7 + u64::from(case > 1000);
            let got = matching(&posterior, version, |a| eligible[a], &mut normals);
            let want = matching_reference(&posterior, version, |a| eligible[a]);
            assert_eq!(got, want, "case {case}: {posterior:?} {eligible:?}");
        }
    }
}
