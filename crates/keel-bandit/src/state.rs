//! The learned state of a policy: decisions, updates and the exact action probabilities.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::config::PolicyConfig;
use crate::error::{BanditError, Result};
use crate::linear::LinearModel;
use crate::logistic::LogisticModel;
use crate::pick;

/// Monte Carlo draws of the probability of being best for non-contextual Thompson sampling.
pub const THOMPSON_DRAWS: usize = 2000;
/// Monte Carlo draws of the action distribution of linear Thompson sampling, per context.
pub const LINEAR_THOMPSON_DRAWS: usize = 64;
/// Largest absolute context value accepted (scale larger features).
pub const MAX_ABS_FEATURE: f64 = 1e9;
/// Largest absolute reward accepted by the policies without a narrower range.
pub const MAX_ABS_REWARD: f64 = 1e12;
/// Updates after which the Thompson probabilities are always recomputed (see [`PolicyState`]).
pub const THOMPSON_MAX_STALE_UPDATES: u64 = 256;

/// Internal seed of the Monte Carlo estimates, mixed with the policy version.
const MC_SEED: u64 = 0x6b65_656c_2d62_616e;

/// One decision: the chosen action, its probability, and the whole distribution it was drawn from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Decision {
    /// The chosen action, `0..K`.
    pub action: usize,
    /// `probabilities[action]`: the exact probability with which the action was chosen.
    pub propensity: f64,
    /// The distribution over all `K` actions (sums to 1).
    pub probabilities: Vec<f64>,
}

/// What the policy knows about one action, for reports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ArmSummary {
    /// The action, `0..K`.
    pub action: usize,
    /// Updates (rewards) applied to the action.
    pub pulls: u64,
    /// Sum of its rewards.
    pub reward_sum: f64,
    /// Mean reward (0 before the first update).
    pub mean: f64,
    /// Beta posterior `alpha` (Beta policies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Beta posterior `beta` (Beta policies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
}

/// Running statistics of one action's rewards (Welford).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
struct ArmStats {
    pulls: u64,
    reward_sum: f64,
    mean: f64,
    /// Sum of squared deviations from the mean.
    m2: f64,
}

impl ArmStats {
    fn add(&mut self, r: f64) {
        self.pulls += 1;
        self.reward_sum += r;
        let delta = r - self.mean;
        self.mean += delta / self.pulls as f64;
        self.m2 += delta * (r - self.mean);
    }
}

/// Cached Thompson probabilities (before the floor) and the version they were computed at.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Sampled {
    computed_at: u64,
    probabilities: Vec<f64>,
}

/// The state of a policy over `K` actions (and `d` features for contextual policies).
///
/// Serialises to plain numbers (matrices are flat row-major vectors); deserialising checks sizes and
/// values, so a hand-edited or corrupted state is refused instead of panicking later.
///
/// Non-contextual Thompson policies keep their action distribution (the Monte Carlo probability of
/// being best, [`THOMPSON_DRAWS`] draws) in the state. It is recomputed inside [`update`](Self::update)
/// after each of the first 20 updates, then whenever the number of updates grew by 5% since the last
/// computation, and at least every [`THOMPSON_MAX_STALE_UPDATES`] updates. The schedule depends on
/// the update count only, so replaying the same updates rebuilds the same distribution. One
/// computation costs `THOMPSON_DRAWS * K` posterior draws (about 0.2 ms at K = 5).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(try_from = "StateRepr")]
pub struct PolicyState {
    config: PolicyConfig,
    actions: usize,
    features: usize,
    updates: u64,
    arms: Vec<ArmStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    linear: Option<LinearModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    logistic: Option<LogisticModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sampled: Option<Sampled>,
}

/// The serialized form of [`PolicyState`], checked before use.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateRepr {
    config: PolicyConfig,
    actions: usize,
    features: usize,
    updates: u64,
    arms: Vec<ArmStats>,
    #[serde(default)]
    linear: Option<LinearModel>,
    #[serde(default)]
    logistic: Option<LogisticModel>,
    #[serde(default)]
    sampled: Option<Sampled>,
}

impl TryFrom<StateRepr> for PolicyState {
    type Error = BanditError;

    fn try_from(r: StateRepr) -> Result<PolicyState> {
        r.config.validate(r.actions, r.features)?;
        let bad = |what: &str| Err(BanditError::Numerical(format!("saved state: {what}")));
        if r.arms.len() != r.actions {
            return bad("arms do not match actions");
        }
        if r.arms
            .iter()
            .any(|a| !a.reward_sum.is_finite() || !a.mean.is_finite() || !a.m2.is_finite() || a.m2 < 0.0)
        {
            return bad("arm statistics hold a non-finite value");
        }
        if matches!(r.config, PolicyConfig::Contextual {}) {
            return bad("the policy is 'contextual' instead of the learner it resolved to");
        }
        let logistic = matches!(r.config, PolicyConfig::LogisticThompson { .. });
        let discounted = r.config.half_life().is_some();
        match (&r.linear, r.config.is_contextual() && !logistic) {
            (Some(l), true) => l.check(r.actions, r.features)?,
            (None, false) => {}
            (None, true) => return bad("a contextual policy without its linear model"),
            (Some(_), false) => return bad("a linear model for a policy that has none"),
        }
        match (&r.logistic, logistic) {
            (Some(l), true) => l.check(r.actions, r.features)?,
            (None, false) => {}
            (None, true) => return bad("a logistic policy without its model"),
            (Some(_), false) => return bad("a logistic model for another policy"),
        }
        let kept = r
            .linear
            .as_ref()
            .map(|l| l.a.is_some())
            .or(r.logistic.as_ref().map(|l| l.precision.is_some()));
        if kept.is_some_and(|k| k != discounted) {
            return bad("the model's discounting matrices do not match the policy's half_life");
        }
        if let Some(s) = &r.sampled {
            let sum: f64 = s.probabilities.iter().sum();
            if !is_thompson(&r.config)
                || s.computed_at > r.updates
                || s.probabilities.len() != r.actions
                || s.probabilities.iter().any(|p| !(0.0..=1.0).contains(p))
                || (sum - 1.0).abs() > 1e-9
            {
                return bad("cached Thompson probabilities are not a distribution over the actions");
            }
        }
        Ok(PolicyState {
            config: r.config,
            actions: r.actions,
            features: r.features,
            updates: r.updates,
            arms: r.arms,
            linear: r.linear,
            logistic: r.logistic,
            sampled: r.sampled,
        })
    }
}

fn is_thompson(config: &PolicyConfig) -> bool {
    matches!(
        config,
        PolicyConfig::ThompsonBeta { .. } | PolicyConfig::ThompsonGaussian { .. }
    )
}

impl PolicyState {
    /// A fresh policy over `actions` actions; `features` is the context width of contextual
    /// policies (ignored by the others, so 0 or the deployment's logged width both work).
    ///
    /// `contextual` is replaced by the learner it stands for ([`PolicyConfig::resolved`]).
    pub fn new(config: PolicyConfig, actions: usize, features: usize) -> Result<PolicyState> {
        let config = config.resolved();
        config.validate(actions, features)?;
        let discounted = config.half_life().is_some();
        let (linear, logistic) = match config {
            PolicyConfig::LogisticThompson { prior_variance, .. } => (
                None,
                Some(LogisticModel::new(actions, features, prior_variance, discounted)),
            ),
            _ => (
                config
                    .is_contextual()
                    .then(|| LinearModel::new(actions, features, discounted)),
                None,
            ),
        };
        let mut state = PolicyState {
            config,
            actions,
            features,
            updates: 0,
            arms: vec![ArmStats::default(); actions],
            linear,
            logistic,
            sampled: None,
        };
        state.refresh_sampled(true)?;
        Ok(state)
    }

    /// Draws an action from [`probabilities`](Self::probabilities) with one uniform from `rng`.
    pub fn decide(&mut self, context: Option<&[f64]>, rng: &mut impl Rng) -> Result<Decision> {
        let probabilities = self.probabilities(context)?;
        let action = pick(&probabilities, rng.random::<f64>());
        Ok(Decision {
            action,
            propensity: probabilities[action],
            probabilities,
        })
    }

    /// Learns from `reward` for `action` (taken in `context`, for contextual policies). Nothing is
    /// changed when an error is returned.
    pub fn update(&mut self, action: usize, context: Option<&[f64]>, reward: f64) -> Result<()> {
        if action >= self.actions {
            return Err(BanditError::ActionOutOfRange {
                action,
                actions: self.actions,
            });
        }
        let (min, max) = match self.config {
            PolicyConfig::ThompsonBeta { .. } | PolicyConfig::LogisticThompson { .. } => (0.0, 1.0),
            _ => (-MAX_ABS_REWARD, MAX_ABS_REWARD),
        };
        if !reward.is_finite() || reward < min || reward > max {
            return Err(BanditError::InvalidReward {
                policy: self.config.name(),
                reward,
                min,
                max,
            });
        }
        if self.config.is_contextual() {
            let x = self.context(context)?;
            let gamma = self.config.discount();
            if let Some(linear) = &mut self.linear {
                linear.update(action, &x, reward, gamma)?;
            }
            if let (Some(model), PolicyConfig::LogisticThompson { prior_variance, .. }) =
                (&mut self.logistic, &self.config)
            {
                model.update(action, &x, reward, gamma, *prior_variance)?;
            }
        }
        self.arms[action].add(reward);
        self.updates += 1;
        self.refresh_sampled(false)
    }

    /// The distribution that [`decide`](Self::decide) samples from, floor included; for the OPE of
    /// this policy on logged contexts. Non-contextual policies ignore `context`.
    ///
    /// Thompson policies give a Monte Carlo estimate with a fixed internal seed (mixed with the policy
    /// version), so the result is a deterministic function of the state and the context, and it is
    /// exactly the distribution `decide` samples from.
    pub fn probabilities(&mut self, context: Option<&[f64]>) -> Result<Vec<f64>> {
        let k = self.actions;
        let p = match &self.config {
            PolicyConfig::FixedWeights { weights } => {
                let total: f64 = weights.iter().sum();
                weights.iter().map(|w| w / total).collect()
            }
            PolicyConfig::EpsilonGreedy { .. } => {
                let best = match self.arms.iter().position(|a| a.pulls == 0) {
                    Some(untried) => untried,
                    None => argmax(self.arms.iter().map(|a| a.mean)),
                };
                one_hot(k, best)
            }
            PolicyConfig::Ucb1 { .. } => one_hot(k, self.ucb1_arm()),
            PolicyConfig::ThompsonBeta { .. } | PolicyConfig::ThompsonGaussian { .. } => {
                self.refresh_sampled(false)?;
                match &self.sampled {
                    Some(s) => s.probabilities.clone(),
                    None => return Err(BanditError::Numerical("Thompson probabilities missing".to_string())),
                }
            }
            PolicyConfig::LinUcb { alpha, .. } => {
                let x = self.context(context)?;
                let linear = self.linear()?;
                let best = argmax((0..k).map(|a| {
                    let (mean, quad) = linear.mean_and_quad(a, &x);
                    mean + alpha * quad.sqrt()
                }));
                one_hot(k, best)
            }
            PolicyConfig::LinearThompson { v, .. } => {
                let x = self.context(context)?;
                let linear = self.linear()?;
                let posterior: Vec<(f64, f64)> = (0..k)
                    .map(|a| {
                        let (mean, quad) = linear.mean_and_quad(a, &x);
                        (mean, v * quad.sqrt())
                    })
                    .collect();
                matching(&posterior, self.updates)
            }
            PolicyConfig::LogisticThompson { v, .. } => {
                let x = self.context(context)?;
                let model = self
                    .logistic
                    .as_ref()
                    .ok_or_else(|| BanditError::Numerical("logistic policy without its model".to_string()))?;
                let posterior: Vec<(f64, f64)> = (0..k)
                    .map(|a| {
                        let (mean, var) = model.score(a, &x);
                        (mean, v * var.sqrt())
                    })
                    .collect();
                matching(&posterior, self.updates)
            }
            PolicyConfig::Contextual {} => {
                return Err(BanditError::Numerical("'contextual' was not resolved".to_string()));
            }
            PolicyConfig::SquareCb { gamma, .. } => {
                let x = self.context(context)?;
                let linear = self.linear()?;
                let yhat: Vec<f64> = (0..k).map(|a| linear.mean(a, &x)).collect();
                let best = argmax(yhat.iter().copied());
                let mut p = vec![0.0; k];
                let mut rest = 0.0;
                for a in (0..k).filter(|a| *a != best) {
                    p[a] = 1.0 / (k as f64 + gamma * (yhat[best] - yhat[a]));
                    rest += p[a];
                }
                p[best] = 1.0 - rest;
                p
            }
        };
        Ok(mix_floor(p, self.config.floor()))
    }

    /// Number of updates applied; keel reports it as the policy version.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Number of actions `K`.
    pub fn actions(&self) -> usize {
        self.actions
    }

    /// Number of context features `d` the policy was created with.
    pub fn features(&self) -> usize {
        self.features
    }

    /// The configuration of the policy.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Per action: updates, reward sum, mean, and for Beta policies the posterior `alpha`, `beta`.
    pub fn arm_summaries(&self) -> Vec<ArmSummary> {
        self.arms
            .iter()
            .enumerate()
            .map(|(action, a)| {
                let (alpha, beta) = match self.config {
                    PolicyConfig::ThompsonBeta {
                        prior_alpha,
                        prior_beta,
                        ..
                    } => (
                        Some(prior_alpha + a.reward_sum),
                        Some(prior_beta + (a.pulls as f64 - a.reward_sum).max(0.0)),
                    ),
                    _ => (None, None),
                };
                ArmSummary {
                    action,
                    pulls: a.pulls,
                    reward_sum: a.reward_sum,
                    mean: if a.pulls == 0 { 0.0 } else { a.mean },
                    alpha,
                    beta,
                }
            })
            .collect()
    }

    fn linear(&self) -> Result<&LinearModel> {
        self.linear
            .as_ref()
            .ok_or_else(|| BanditError::Numerical("contextual policy without a linear model".to_string()))
    }

    /// Validates a context and prepends the intercept.
    fn context(&self, context: Option<&[f64]>) -> Result<Vec<f64>> {
        let values = match context {
            Some(c) => c,
            None if self.features == 0 => &[],
            None => {
                return Err(BanditError::MissingContext {
                    policy: self.config.name(),
                    expected: self.features,
                });
            }
        };
        if values.len() != self.features {
            return Err(BanditError::ContextLength {
                expected: self.features,
                got: values.len(),
            });
        }
        if let Some((index, value)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite() || v.abs() > MAX_ABS_FEATURE)
        {
            return Err(BanditError::InvalidContextValue {
                index,
                value: *value,
                max: MAX_ABS_FEATURE,
            });
        }
        let mut x = Vec::with_capacity(values.len() + 1);
        x.push(1.0);
        x.extend_from_slice(values);
        Ok(x)
    }

    fn ucb1_arm(&self) -> usize {
        if let Some(untried) = self.arms.iter().position(|a| a.pulls == 0) {
            return untried;
        }
        let log_n = (self.updates.max(1) as f64).ln();
        argmax(self.arms.iter().map(|a| a.mean + (2.0 * log_n / a.pulls as f64).sqrt()))
    }

    /// Recomputes the Thompson probabilities when due (or when `force`d); no-op for other policies.
    fn refresh_sampled(&mut self, force: bool) -> Result<()> {
        if !is_thompson(&self.config) {
            return Ok(());
        }
        if let (Some(s), false) = (&self.sampled, force) {
            let interval = (s.computed_at / 20).clamp(1, THOMPSON_MAX_STALE_UPDATES);
            if self.updates - s.computed_at < interval {
                return Ok(());
            }
        }
        let probabilities = self.probability_of_best()?;
        self.sampled = Some(Sampled {
            computed_at: self.updates,
            probabilities,
        });
        Ok(())
    }

    /// Monte Carlo probability that each action has the highest posterior draw.
    fn probability_of_best(&self) -> Result<Vec<f64>> {
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

/// Probability matching for independent Normal scores `(mean, sd)` per action: the share of
/// [`LINEAR_THOMPSON_DRAWS`] joint draws (fixed seed mixed with the version) each action wins.
fn matching(posterior: &[(f64, f64)], version: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(mc_seed(version));
    let mut wins = vec![0u32; posterior.len()];
    for _ in 0..LINEAR_THOMPSON_DRAWS {
        let best = argmax(posterior.iter().map(|(m, s)| {
            let z: f64 = rng.sample(StandardNormal);
            m + s * z
        }));
        wins[best] += 1;
    }
    wins.iter()
        .map(|w| f64::from(*w) / LINEAR_THOMPSON_DRAWS as f64)
        .collect()
}

fn mc_seed(version: u64) -> u64 {
    MC_SEED ^ version.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Index of the largest value, the lowest index on ties; NaN never wins.
fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = 0;
    let mut best_value = f64::NEG_INFINITY;
    for (i, v) in values.enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    best
}

fn one_hot(k: usize, action: usize) -> Vec<f64> {
    let mut p = vec![0.0; k];
    p[action] = 1.0;
    p
}

/// `(1 - floor) * p + floor / K`.
fn mix_floor(mut p: Vec<f64>, floor: f64) -> Vec<f64> {
    if floor > 0.0 {
        let share = floor / p.len() as f64;
        for v in &mut p {
            *v = (1.0 - floor) * *v + share;
        }
    }
    p
}
