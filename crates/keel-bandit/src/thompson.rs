//! Non-contextual Thompson sampling's probability of being best (Monte Carlo with a fixed seed
//! mixed with the version), cached in the state on the schedule [`PolicyState`] describes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, StandardNormal};

use crate::config::PolicyConfig;
use crate::draws::{argmax, mc_seed};
use crate::error::{BanditError, Result};
use crate::state::{ArmStats, PolicyState, THOMPSON_DRAWS};

impl PolicyState {
    /// Monte Carlo probability that each action has the highest posterior draw.
    pub(crate) fn probability_of_best(&self) -> Result<Vec<f64>> {
        let k = self.actions;
        let mut rng = ChaCha8Rng::seed_from_u64(mc_seed(self.updates));
        let mut wins = vec![0u32; k];
        let mut draws = vec![0.0; k];
        match self.config {
            PolicyConfig::ThompsonBeta {
                prior_alpha,
                prior_beta,
                ..
            } => {
                let posteriors = self
                    .arms
                    .iter()
                    .map(|a| {
                        let alpha = prior_alpha + a.reward_sum;
                        let beta = prior_beta + (a.pulls as f64 - a.reward_sum).max(0.0);
                        Beta::new(alpha, beta)
                            .map_err(|e| BanditError::Numerical(format!("beta posterior ({alpha}, {beta}): {e}")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                for _ in 0..THOMPSON_DRAWS {
                    for (d, p) in draws.iter_mut().zip(&posteriors) {
                        *d = p.sample(&mut rng);
                    }
                    wins[argmax(draws.iter().copied())] += 1;
                }
            }
            PolicyConfig::ThompsonGaussian {
                prior_mean,
                prior_variance,
                ..
            } => {
                let pooled = pooled_variance(&self.arms, prior_variance);
                let posteriors: Vec<(f64, f64)> = self
                    .arms
                    .iter()
                    .map(|a| gaussian_posterior(a, prior_mean, prior_variance, pooled))
                    .collect();
                for _ in 0..THOMPSON_DRAWS {
                    for (d, (m, s)) in draws.iter_mut().zip(&posteriors) {
                        let z: f64 = rng.sample(StandardNormal);
                        *d = m + s * z;
                    }
                    wins[argmax(draws.iter().copied())] += 1;
                }
            }
            _ => return Ok(vec![1.0 / k as f64; k]),
        }
        Ok(wins.iter().map(|w| f64::from(*w) / THOMPSON_DRAWS as f64).collect())
    }
}

/// Noise variance pooled over all actions: `(prior_variance + sum M2) / (1 + sum max(n - 1, 0))`,
/// the pooled sample variance with the prior variance as one pseudo-observation.
fn pooled_variance(arms: &[ArmStats], prior_variance: f64) -> f64 {
    let m2: f64 = arms.iter().map(|a| a.m2).sum();
    let dof: u64 = arms.iter().map(|a| a.pulls.saturating_sub(1)).sum();
    (prior_variance + m2) / (1.0 + dof as f64)
}

/// Posterior mean and standard deviation of an action's mean reward: Normal prior
/// `N(prior_mean, prior_variance)` and a Normal likelihood with the plug-in noise variance
/// `max(pooled, own sample variance)`. The pooled floor matters for sparse rewards (revenue is
/// mostly 0): an action whose few rewards were all 0 has sample variance 0 and would otherwise
/// look certain and be starved.
fn gaussian_posterior(arm: &ArmStats, prior_mean: f64, prior_variance: f64, pooled: f64) -> (f64, f64) {
    let n = arm.pulls as f64;
    let own = if arm.pulls >= 2 { arm.m2 / (n - 1.0) } else { 0.0 };
    let noise = pooled.max(own);
    let precision = 1.0 / prior_variance + n / noise;
    let mean = (prior_mean / prior_variance + n * arm.mean / noise) / precision;
    (mean, precision.recip().sqrt())
}
