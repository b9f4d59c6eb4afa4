//! The learned state of a policy: decisions, updates and the exact action probabilities.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::PolicyConfig;
use crate::draws::{Normals, argmax_among, matching};
use crate::error::{BanditError, Result};
use crate::linear::LinearModel;
use crate::logistic::LogisticModel;
use crate::pick;

/// Monte Carlo draws of the probability of being best for non-contextual Thompson sampling.
pub const THOMPSON_DRAWS: usize = 2000;
/// Largest absolute context value accepted (scale larger features).
pub const MAX_ABS_FEATURE: f64 = 1e9;
/// Largest absolute reward accepted by the policies without a narrower range.
pub const MAX_ABS_REWARD: f64 = 1e12;
/// Updates after which the Thompson probabilities are always recomputed (see [`PolicyState`]).
pub const THOMPSON_MAX_STALE_UPDATES: u64 = 256;

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
pub(crate) struct ArmStats {
    pub(crate) pulls: u64,
    pub(crate) reward_sum: f64,
    pub(crate) mean: f64,
    /// Sum of squared deviations from the mean.
    pub(crate) m2: f64,
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
pub(crate) struct Sampled {
    pub(crate) computed_at: u64,
    pub(crate) probabilities: Vec<f64>,
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
    pub(crate) config: PolicyConfig,
    pub(crate) actions: usize,
    pub(crate) features: usize,
    pub(crate) updates: u64,
    pub(crate) arms: Vec<ArmStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) linear: Option<LinearModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) logistic: Option<LogisticModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sampled: Option<Sampled>,
    /// Every action's features, for a policy whose one model is shared by every action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) action_features: Option<Vec<Vec<f64>>>,
    /// The Thompson normals of the current version, kept between decides (not saved: a restored
    /// state draws them again, the same ones).
    #[serde(skip)]
    pub(crate) normals: Normals,
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
    #[serde(default)]
    action_features: Option<Vec<Vec<f64>>>,
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
        // A shared model is one model over context x action features.
        let (models, width) = match (&r.action_features, r.config.is_shared()) {
            (Some(af), true) => {
                let width = crate::shared::check_action_features(af, r.actions)?;
                (1, crate::shared::dim(r.features, width) - 1)
            }
            (None, false) => (r.actions, r.features),
            (None, true) => return bad("a shared policy without its actions' features"),
            (Some(_), false) => return bad("action features for a policy that does not share its model"),
        };
        match (&r.linear, r.config.is_contextual() && !logistic) {
            (Some(l), true) => l.check(models, width)?,
            (None, false) => {}
            (None, true) => return bad("a contextual policy without its linear model"),
            (Some(_), false) => return bad("a linear model for a policy that has none"),
        }
        match (&r.logistic, logistic) {
            (Some(l), true) => l.check(models, width)?,
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
            action_features: r.action_features,
            normals: Normals::default(),
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
    ///
    /// A policy that shares one model across actions (`"shared": true`) needs every action's
    /// features: it is created by [`with_action_features`](Self::with_action_features) instead.
    pub fn new(config: PolicyConfig, actions: usize, features: usize) -> Result<PolicyState> {
        let config = config.resolved();
        if config.is_shared() {
            return Err(BanditError::InvalidConfig(vec![format!(
                "the {} policy with \"shared\": true learns over the actions' features; give every action its features",
                config.name()
            )]));
        }
        PolicyState::build(config, actions, features, None)
    }

    pub(crate) fn build(
        config: PolicyConfig,
        actions: usize,
        features: usize,
        action_features: Option<Vec<Vec<f64>>>,
    ) -> Result<PolicyState> {
        config.validate(actions, features)?;
        let discounted = config.half_life().is_some();
        // Per action: `actions` models over the context; shared: one over context x action.
        let (models, width) = match &action_features {
            Some(af) => (
                1,
                crate::shared::dim(features, crate::shared::check_action_features(af, actions)?) - 1,
            ),
            None => (actions, features),
        };
        let (linear, logistic) = match config {
            PolicyConfig::LogisticThompson { prior_variance, .. } => (
                None,
                Some(LogisticModel::new(models, width, prior_variance, discounted)),
            ),
            _ => (
                config
                    .is_contextual()
                    .then(|| LinearModel::new(models, width, discounted)),
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
            action_features,
            normals: Normals::default(),
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
            let mut x = self.context(context)?;
            let gamma = self.config.discount();
            // A shared model learns on the context x the action's features, as its only model.
            let model = match &self.action_features {
                Some(af) => {
                    x = crate::shared::joint(&x, &af[action]);
                    0
                }
                None => action,
            };
            if let Some(linear) = &mut self.linear {
                linear.update(model, &x, reward, gamma)?;
            }
            if let (Some(logistic), PolicyConfig::LogisticThompson { prior_variance, .. }) =
                (&mut self.logistic, &self.config)
            {
                logistic.update(model, &x, reward, gamma, *prior_variance)?;
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
        self.probabilities_among(context, None)
    }

    /// The distribution over the `eligible` actions only (`None`: all): the policy chooses among
    /// them as if the others did not exist (argmax, Thompson draws, SquareCB's gaps and the
    /// floor are over the eligible set), so every other action has probability 0 and the
    /// eligible ones sum to 1 (one eligible action: probability 1). Policies whose distribution
    /// does not depend on the context and is kept between updates (fixed weights, non-contextual
    /// Thompson) restrict theirs and renormalise it, uniform over the eligible actions when it
    /// gave them nothing.
    pub fn probabilities_among(&mut self, context: Option<&[f64]>, eligible: Option<&[bool]>) -> Result<Vec<f64>> {
        let k = self.actions;
        if let Some(mask) = eligible
            && (mask.len() != k || !mask.iter().any(|e| *e))
        {
            return Err(BanditError::InvalidEligible(format!(
                "{} eligibility flags ({} set) for {k} actions; give one flag per action, at least one set",
                mask.len(),
                mask.iter().filter(|e| **e).count()
            )));
        }
        let ok = |a: usize| eligible.is_none_or(|m| m[a]);
        let p = match &self.config {
            PolicyConfig::FixedWeights { weights } => restrict(weights.clone(), ok),
            PolicyConfig::EpsilonGreedy { .. } => {
                let best = match (0..k).position(|a| ok(a) && self.arms[a].pulls == 0) {
                    Some(untried) => untried,
                    None => argmax_among(self.arms.iter().map(|a| a.mean), ok),
                };
                one_hot(k, best)
            }
            PolicyConfig::Ucb1 { .. } => one_hot(k, self.ucb1_arm(ok)),
            PolicyConfig::ThompsonBeta { .. } | PolicyConfig::ThompsonGaussian { .. } => {
                self.refresh_sampled(false)?;
                match &self.sampled {
                    Some(s) => restrict(s.probabilities.clone(), ok),
                    None => return Err(BanditError::Numerical("Thompson probabilities missing".to_string())),
                }
            }
            PolicyConfig::LinUcb { alpha, .. } => {
                let scores = self.scores(context, ok)?;
                one_hot(k, argmax_among(scores.iter().map(|(m, q)| m + alpha * q.sqrt()), ok))
            }
            PolicyConfig::LinearThompson { v, .. } | PolicyConfig::LogisticThompson { v, .. } => {
                let v = *v;
                let posterior: Vec<(f64, f64)> = self
                    .scores(context, ok)?
                    .into_iter()
                    .map(|(mean, quad)| (mean, v * quad.sqrt()))
                    .collect();
                matching(&posterior, self.updates, ok, &mut self.normals)
            }
            PolicyConfig::Contextual {} => {
                return Err(BanditError::Numerical("'contextual' was not resolved".to_string()));
            }
            PolicyConfig::SquareCb { gamma, .. } => {
                let yhat: Vec<f64> = self.scores(context, ok)?.into_iter().map(|(m, _)| m).collect();
                let best = argmax_among(yhat.iter().copied(), ok);
                let n = (0..k).filter(|a| ok(*a)).count() as f64;
                let mut p = vec![0.0; k];
                let mut rest = 0.0;
                for a in (0..k).filter(|a| *a != best && ok(*a)) {
                    p[a] = 1.0 / (n + gamma * (yhat[best] - yhat[a]));
                    rest += p[a];
                }
                p[best] = 1.0 - rest;
                p
            }
        };
        Ok(mix_floor(p, self.config.floor(), ok))
    }

    /// Every action's predicted score and its quadratic form (`x'A^-1 x` or `x'Sx`), from the
    /// per-action models or the shared one; actions `ok` refuses are left at 0.
    fn scores(&self, context: Option<&[f64]>, ok: impl Fn(usize) -> bool) -> Result<Vec<(f64, f64)>> {
        let x = self.context(context)?;
        let k = self.actions;
        let (linear, logistic) = (self.linear.as_ref(), self.logistic.as_ref());
        if let Some(af) = &self.action_features {
            let (w, s) = match (linear, logistic) {
                (Some(l), _) => (&l.theta, &l.a_inv),
                (None, Some(l)) => (&l.mean, &l.cov),
                (None, None) => return Err(BanditError::Numerical("shared policy without its model".into())),
            };
            return Ok(crate::shared::scores(w, s, &x, af, ok));
        }
        let score = |a: usize| match (linear, logistic) {
            (Some(l), _) => Ok(l.mean_and_quad(a, &x)),
            (None, Some(l)) => Ok(l.score(a, &x)),
            (None, None) => Err(BanditError::Numerical("contextual policy without its model".into())),
        };
        (0..k).map(|a| if ok(a) { score(a) } else { Ok((0.0, 0.0)) }).collect()
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

    fn ucb1_arm(&self, ok: impl Fn(usize) -> bool) -> usize {
        if let Some(untried) = (0..self.actions).position(|a| ok(a) && self.arms[a].pulls == 0) {
            return untried;
        }
        let log_n = (self.updates.max(1) as f64).ln();
        argmax_among(
            self.arms.iter().map(|a| a.mean + (2.0 * log_n / a.pulls as f64).sqrt()),
            ok,
        )
    }

    /// Recomputes the Thompson probabilities when due (or when `force`d); no-op for other policies.
    pub(crate) fn refresh_sampled(&mut self, force: bool) -> Result<()> {
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
}

fn one_hot(k: usize, action: usize) -> Vec<f64> {
    let mut p = vec![0.0; k];
    p[action] = 1.0;
    p
}

/// `p` with the actions `ok` refuses set to 0, renormalised; uniform over the allowed ones
/// when they had nothing.
fn restrict(mut p: Vec<f64>, ok: impl Fn(usize) -> bool) -> Vec<f64> {
    for (a, v) in p.iter_mut().enumerate() {
        if !ok(a) {
            *v = 0.0;
        }
    }
    let total: f64 = p.iter().sum();
    if total > 0.0 && total.is_finite() {
        p.iter_mut().for_each(|v| *v /= total);
    } else {
        let n = (0..p.len()).filter(|a| ok(*a)).count().max(1) as f64;
        for (a, v) in p.iter_mut().enumerate() {
            *v = if ok(a) { 1.0 / n } else { 0.0 };
        }
    }
    p
}

/// `(1 - floor) * p + floor / K` over the `K` actions `ok` allows (the others stay at 0).
fn mix_floor(mut p: Vec<f64>, floor: f64, ok: impl Fn(usize) -> bool) -> Vec<f64> {
    if floor > 0.0 {
        let n = (0..p.len()).filter(|a| ok(*a)).count().max(1);
        let share = floor / n as f64;
        for (a, v) in p.iter_mut().enumerate() {
            if ok(a) {
                *v = (1.0 - floor) * *v + share;
            }
        }
    }
    p
}
