//! Counters kept per variant, and the statistics of the report built from them.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Normal};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal as StatNormal};

/// Running sums of one group of decisions.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Sums {
    pub exposures: u64,
    pub rewards: u64,
    pub defaults: u64,
    pub conversions: u64,
    pub reward_sum: f64,
    pub reward_sq_sum: f64,
}

impl Sums {
    fn add_reward(&mut self, r: f64, default: bool) {
        self.rewards += 1;
        if default {
            self.defaults += 1;
        }
        if r > 0.0 {
            self.conversions += 1;
        }
        self.reward_sum += r;
        self.reward_sq_sum += r * r;
    }

    pub fn mean(&self) -> f64 {
        if self.rewards == 0 {
            0.0
        } else {
            self.reward_sum / self.rewards as f64
        }
    }

    pub fn variance(&self) -> f64 {
        if self.rewards < 2 {
            return 0.0;
        }
        let n = self.rewards as f64;
        ((self.reward_sq_sum - self.reward_sum * self.reward_sum / n) / (n - 1.0)).max(0.0)
    }

    fn merged(&self, other: &Sums) -> Sums {
        Sums {
            exposures: self.exposures + other.exposures,
            rewards: self.rewards + other.rewards,
            defaults: self.defaults + other.defaults,
            conversions: self.conversions + other.conversions,
            reward_sum: self.reward_sum + other.reward_sum,
            reward_sq_sum: self.reward_sq_sum + other.reward_sq_sum,
        }
    }
}

/// A mean reward and the variance of that mean, with the rewarded decisions behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanEstimate {
    pub mean: f64,
    /// Variance of the mean (the squared standard error).
    pub var: f64,
    pub rewards: u64,
    /// Enough rewards for the normal approximation the confidence sequences rest on
    /// ([`settled`]).
    pub settled: bool,
}

impl MeanEstimate {
    /// The mean of a group's rewards; `None` below two rewards.
    pub fn of(s: &Sums) -> Option<MeanEstimate> {
        (s.rewards >= 2).then(|| MeanEstimate {
            mean: s.mean(),
            var: s.variance() / s.rewards as f64,
            rewards: s.rewards,
            settled: settled(s),
        })
    }

    /// The equally weighted average of several means; `None` when one of them is missing.
    pub fn average(parts: &[Option<MeanEstimate>]) -> Option<MeanEstimate> {
        if parts.is_empty() {
            return None;
        }
        let parts: Vec<MeanEstimate> = parts.iter().copied().collect::<Option<_>>()?;
        let k = parts.len() as f64;
        Some(MeanEstimate {
            mean: parts.iter().map(|p| p.mean).sum::<f64>() / k,
            var: parts.iter().map(|p| p.var).sum::<f64>() / (k * k),
            rewards: parts.iter().map(|p| p.rewards).sum(),
            settled: parts.iter().all(|p| p.settled),
        })
    }
}

/// Rewarded decisions a side needs before its normal-mixture sequences are given.
pub const MIN_REWARDS: u64 = 100;
/// Conversions and non-conversions a side of 0/1 rewards needs before its normal-mixture
/// sequences are given.
pub const MIN_OUTCOMES: u64 = 25;

/// Whether a group has enough rewards for the normal approximation the normal-mixture
/// sequences rest on: [`MIN_REWARDS`] rewards and, when every reward is 0 or 1, at least
/// [`MIN_OUTCOMES`] conversions and as many non-conversions. Before that a group of five
/// conversions in a hundred (or none) has an estimated variance far from the true one, and the
/// sequence would be too narrow (the A/A benchmark shows it).
pub fn settled(s: &Sums) -> bool {
    let zero_one = s.reward_sq_sum == s.reward_sum && s.conversions as f64 == s.reward_sum;
    s.rewards >= MIN_REWARDS
        && (!zero_one || (s.conversions >= MIN_OUTCOMES && s.rewards - s.conversions >= MIN_OUTCOMES))
}

/// Counters of a deployment: per variant, split into the policy-driven traffic and the
/// control (holdout) group, the control group's units that got no action, plus exposures per
/// time bucket (of variants: no action is in no bucket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub(crate) policy: Vec<Sums>,
    pub(crate) control: Vec<Sums>,
    /// Decisions of a no-action control group (absent from snapshots taken before it existed).
    #[serde(default)]
    pub(crate) no_action: Sums,
    step: Vec<u64>,
    bucket_ms: i64,
    pub(crate) buckets: BTreeMap<i64, Vec<u64>>,
    /// Metrics other than the decision metric, by name (absent from snapshots taken before
    /// metrics existed). In each [`Sums`], `rewards` counts the values received.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) metrics: BTreeMap<String, MetricSums>,
}

/// The sums of one metric other than the decision metric, split as the decision metric's are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricSums {
    pub policy: Vec<Sums>,
    pub control: Vec<Sums>,
    pub no_action: Sums,
}

impl Counters {
    pub fn new(variants: usize, bucket_seconds: u64) -> Counters {
        Counters {
            policy: vec![Sums::default(); variants],
            control: vec![Sums::default(); variants],
            no_action: Sums::default(),
            step: vec![0; variants],
            bucket_ms: (bucket_seconds.max(1) as i64) * 1000,
            buckets: BTreeMap::new(),
            metrics: BTreeMap::new(),
        }
    }

    /// Counts a value of metric `name` for a decision of `variant`, or of no action (`None`).
    pub fn metric(&mut self, name: &str, variant: Option<usize>, hold: bool, value: f64) {
        let n = self.policy.len();
        if variant.is_some_and(|v| v >= n) {
            return;
        }
        let sums = self.metrics.entry(name.to_string()).or_insert_with(|| MetricSums {
            policy: vec![Sums::default(); n],
            control: vec![Sums::default(); n],
            no_action: Sums::default(),
        });
        let side = match variant {
            None => &mut sums.no_action,
            Some(v) if hold => &mut sums.control[v],
            Some(v) => &mut sums.policy[v],
        };
        side.add_reward(value, false);
    }

    /// Counts a decision: of `variant`, or of no action (`None`).
    pub fn exposure(&mut self, variant: Option<usize>, hold: bool, ts: i64) {
        let n = self.policy.len();
        let Some(variant) = variant else {
            self.no_action.exposures += 1;
            return;
        };
        if variant >= n {
            return;
        }
        if hold {
            self.control[variant].exposures += 1;
        } else {
            self.policy[variant].exposures += 1;
        }
        let bucket = ts - ts.rem_euclid(self.bucket_ms);
        self.buckets.entry(bucket).or_insert_with(|| vec![0; n])[variant] += 1;
    }

    /// Counts a reward of a decision of `variant`, or of no action (`None`).
    pub fn reward(&mut self, variant: Option<usize>, hold: bool, r: f64, default: bool) {
        let Some(variant) = variant else {
            self.no_action.add_reward(r, default);
            return;
        };
        if variant >= self.policy.len() {
            return;
        }
        if hold {
            self.control[variant].add_reward(r, default);
        } else {
            self.policy[variant].add_reward(r, default);
        }
        self.step[variant] += 1;
    }

    pub fn step_rewards(&self, variant: usize) -> u64 {
        self.step.get(variant).copied().unwrap_or(0)
    }

    pub fn reset_step(&mut self, variant: usize) {
        if let Some(s) = self.step.get_mut(variant) {
            *s = 0;
        }
    }

    pub fn reset_all_steps(&mut self) {
        self.step.iter_mut().for_each(|s| *s = 0);
    }

    /// All rewarded decisions of a variant, whichever group.
    pub fn total(&self, variant: usize) -> Sums {
        self.policy[variant].merged(&self.control[variant])
    }

    /// One-sided test that `variant`'s mean reward is below `base`'s; `Some(p)` when
    /// significant at `alpha` with at least `min` rewards on each side.
    pub fn significantly_worse(&self, variant: usize, base: usize, min: u64, alpha: f64) -> Option<f64> {
        let (v, b) = (self.total(variant), self.total(base));
        if v.rewards < min || b.rewards < min {
            return None;
        }
        let p = one_sided_below(&v, &b)?;
        (p < alpha).then_some(p)
    }
}

/// p-value of H1: mean(v) < mean(b), by a Welch z-test (binary rewards use the pooled
/// Bernoulli variance when the sample variance is zero).
pub fn one_sided_below(v: &Sums, b: &Sums) -> Option<f64> {
    let (nv, nb) = (v.rewards as f64, b.rewards as f64);
    if nv < 2.0 || nb < 2.0 {
        return None;
    }
    let se = (v.variance() / nv + b.variance() / nb).sqrt();
    if se.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return None;
    }
    let z = (v.mean() - b.mean()) / se;
    let normal = StatNormal::standard();
    Some(normal.cdf(z))
}

/// Wilson score interval for a proportion, 95%.
pub fn wilson(successes: f64, n: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054;
    let p = successes / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) + z * z / (4.0 * n)) / n).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Normal 95% interval of a mean.
pub fn mean_interval(s: &Sums) -> (f64, f64) {
    if s.rewards < 2 {
        return (f64::NEG_INFINITY, f64::INFINITY);
    }
    let half = 1.959_963_984_540_054 * (s.variance() / s.rewards as f64).sqrt();
    (s.mean() - half, s.mean() + half)
}

/// Probability that each variant has the highest mean reward, by Monte Carlo over the
/// posterior (Beta(1+conversions, 1+non-conversions) for binary rewards, a normal
/// approximation of the mean otherwise). Deterministic: seeded.
pub fn prob_best(sums: &[&Sums], binary: bool, draws: usize) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let k = sums.len();
    let mut wins = vec![0usize; k];
    if k == 0 {
        return Vec::new();
    }
    enum Post {
        Beta(Beta<f64>),
        Normal(Normal<f64>),
        Flat,
    }
    let posts: Vec<Post> = sums
        .iter()
        .map(|s| {
            if binary {
                let a = 1.0 + s.reward_sum;
                let b = 1.0 + (s.rewards as f64 - s.reward_sum).max(0.0);
                Beta::new(a, b).map_or(Post::Flat, Post::Beta)
            } else if s.rewards >= 2 {
                let sd = (s.variance() / s.rewards as f64).sqrt().max(1e-12);
                Normal::new(s.mean(), sd).map_or(Post::Flat, Post::Normal)
            } else {
                Post::Flat
            }
        })
        .collect();
    for _ in 0..draws {
        let mut best = 0;
        let mut best_v = f64::NEG_INFINITY;
        for (i, p) in posts.iter().enumerate() {
            let v = match p {
                Post::Beta(d) => d.sample(&mut rng),
                Post::Normal(d) => d.sample(&mut rng),
                Post::Flat => f64::NEG_INFINITY,
            };
            if v > best_v {
                best_v = v;
                best = i;
            }
        }
        wins[best] += 1;
    }
    wins.iter().map(|w| *w as f64 / draws as f64).collect()
}

/// Relative lift of `v` over `c` with a 95% interval (delta method on the ratio of means).
pub fn lift(v: &Sums, c: &Sums) -> Option<(f64, f64, f64)> {
    if v.rewards < 2 || c.rewards < 2 || c.mean() <= 0.0 {
        return None;
    }
    let (mv, mc) = (v.mean(), c.mean());
    let ratio = mv / mc;
    let var =
        (v.variance() / v.rewards as f64) / (mc * mc) + (mv * mv) * (c.variance() / c.rewards as f64) / mc.powi(4);
    let half = 1.959_963_984_540_054 * var.sqrt();
    Some((ratio - 1.0, ratio - 1.0 - half, ratio - 1.0 + half))
}

/// Sample-ratio-mismatch: chi-square goodness of fit of observed counts to expected shares.
/// Returns (statistic, p-value).
pub fn srm(observed: &[u64], expected_shares: &[f64]) -> Option<(f64, f64)> {
    let n: f64 = observed.iter().map(|o| *o as f64).sum();
    let cells: Vec<(f64, f64)> = observed
        .iter()
        .zip(expected_shares)
        .filter(|(_, e)| **e > 0.0)
        .map(|(o, e)| (*o as f64, e * n))
        .collect();
    if n < 1.0 || cells.len() < 2 {
        return None;
    }
    let stat: f64 = cells.iter().map(|(o, e)| (o - e) * (o - e) / e).sum();
    let dist = ChiSquared::new((cells.len() - 1) as f64).ok()?;
    Some((stat, 1.0 - dist.cdf(stat)))
}

/// `n` rewarded binary decisions of which `conv` converted (for tests of the report's math).
#[cfg(test)]
pub(crate) fn binary_sums(n: u64, conv: u64) -> Sums {
    Sums {
        exposures: n,
        rewards: n,
        defaults: 0,
        conversions: conv,
        reward_sum: conv as f64,
        reward_sq_sum: conv as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::binary_sums as sums;

    #[test]
    fn wilson_matches_known_values() {
        // 20 of 100: the Wilson 95% interval is [0.1333, 0.2888].
        let (lo, hi) = wilson(20.0, 100.0);
        assert!((lo - 0.1333).abs() < 1e-3 && (hi - 0.2888).abs() < 1e-3, "{lo} {hi}");
        assert_eq!(wilson(0.0, 0.0), (0.0, 1.0));
    }

    #[test]
    fn srm_detects_a_skewed_split() {
        let (_, p) = srm(&[5000, 5000], &[0.5, 0.5]).expect("srm");
        assert!(p > 0.99);
        let (_, p) = srm(&[5200, 4800], &[0.5, 0.5]).expect("srm");
        assert!(p < 1e-4, "{p}");
    }

    #[test]
    fn prob_best_sums_to_one_and_prefers_the_better_arm() {
        let a = sums(10_000, 300);
        let b = sums(10_000, 200);
        let p = prob_best(&[&a, &b], true, 4000);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p[0] > 0.99, "{p:?}");
    }

    #[test]
    fn lift_and_one_sided_test() {
        let v = sums(20_000, 600);
        let c = sums(20_000, 500);
        let (l, lo, hi) = lift(&v, &c).expect("lift");
        assert!((l - 0.2).abs() < 1e-9 && lo < l && l < hi);
        let p = one_sided_below(&c, &v).expect("p");
        assert!(p < 0.01, "{p}");
        assert!(one_sided_below(&v, &c).expect("p") > 0.99);
    }
}
