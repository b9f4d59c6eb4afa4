//! The off-policy estimators: DM, IPW, SNIPW, DR, SNDR, Switch-DR and DR-OS, as obp 0.5.7
//! defines them (`obp/ope/estimators.py`).
//!
//! Notation: round `i` logged action `a_i` at position `k_i` with reward `r_i` and
//! propensity `p_i`; `pi_e` is the evaluation policy's action distribution and `q_hat` the
//! estimated reward, both indexed `(i, a, k)`. The importance weight is
//! `w_i = pi_e(a_i | i, k_i) / p_i`, clipped to `min(w_i, lambda)` by IPW and DR when a
//! finite `lambda` is set (obp's `lambda_`, default infinity: no clipping).
//!
//! Each estimator computes one term per round (obp's `_estimate_round_rewards`); the
//! estimate is their mean:
//!
//! - DM: `sum_a pi_e(a|i,k_i) q_hat(i,a,k_i) / sum_a pi_e(a|i,k_i)`
//! - IPW: `w_i r_i`
//! - SNIPW: `w_i r_i / mean(w)` (never clipped)
//! - DR: `DM_i + w_i (r_i - q_hat(i,a_i,k_i))`
//! - SNDR: `DM_i + w_i (r_i - q_hat(i,a_i,k_i)) / mean(w)` (never clipped)
//! - Switch-DR (obp's `SwitchDoublyRobust`, `lambda_` = `tau`): `DM_i + 1[w_i <= tau] w_i (r_i -
//!   q_hat(i,a_i,k_i))`: DR where the weight is at most `tau`, DM above it
//! - DR-OS (obp's `DoublyRobustWithShrinkage`, `lambda_` = `lambda`): `DM_i + w'_i (r_i -
//!   q_hat(i,a_i,k_i))` with the optimistically shrunk weight `w'_i = lambda w_i / (w_i^2 + lambda)`
//!   (`w_i` itself when `lambda` is infinite, 0 when `lambda` is 0; obp gives NaN there when `w_i = 0`)
//!
//! The normal 95% interval is `mean ± 1.96 · sd(terms) / sqrt(n)`; the bootstrap interval
//! resamples the same terms, as obp's `estimate_interval` does.

use crate::action_dist::ActionDist;
use crate::diagnostics::{Coverage, Diagnostics};
use crate::error::{OpeError, Result};
use crate::interval::{Bootstrap, Z_95, bootstrap_interval, mean_and_std_err};
use crate::log::LoggedBandit;

/// The estimators this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EstimatorKind {
    /// Direct Method: the reward model's value of the evaluation policy.
    Dm,
    /// Inverse Probability Weighting.
    Ipw,
    /// Self-Normalized Inverse Probability Weighting.
    Snipw,
    /// Doubly Robust.
    Dr,
    /// Self-Normalized Doubly Robust.
    Sndr,
    /// Switch Doubly Robust: DR where the importance weight is at most `tau`, DM above it.
    SwitchDr,
    /// Doubly Robust with optimistic shrinkage of the importance weights.
    DrOs,
}

impl EstimatorKind {
    /// Every estimator, in the order [`evaluate`](crate::evaluate) reports them.
    pub const ALL: [EstimatorKind; 7] = [
        EstimatorKind::Dm,
        EstimatorKind::Ipw,
        EstimatorKind::Snipw,
        EstimatorKind::Dr,
        EstimatorKind::Sndr,
        EstimatorKind::SwitchDr,
        EstimatorKind::DrOs,
    ];

    /// obp's `estimator_name`.
    pub fn name(self) -> &'static str {
        match self {
            EstimatorKind::Dm => "dm",
            EstimatorKind::Ipw => "ipw",
            EstimatorKind::Snipw => "snipw",
            EstimatorKind::Dr => "dr",
            EstimatorKind::Sndr => "sndr",
            EstimatorKind::SwitchDr => "switch-dr",
            EstimatorKind::DrOs => "dr-os",
        }
    }

    /// Whether the estimator needs an estimated reward `q_hat`.
    pub fn needs_q_hat(self) -> bool {
        match self {
            EstimatorKind::Dm
            | EstimatorKind::Dr
            | EstimatorKind::Sndr
            | EstimatorKind::SwitchDr
            | EstimatorKind::DrOs => true,
            EstimatorKind::Ipw | EstimatorKind::Snipw => false,
        }
    }
}

/// How an [`Estimate`]'s interval was computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IntervalMethod {
    /// `value ± 1.96 · std_err` from the per-round terms.
    Normal,
    /// Percentile bootstrap of the per-round terms.
    Bootstrap(Bootstrap),
}

/// An estimated policy value with its uncertainty.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// obp's estimator name (`dm`, `ipw`, `snipw`, `dr`, `sndr`, `switch-dr`, `dr-os`).
    pub name: &'static str,
    /// Estimated policy value: the mean of the per-round terms (obp's `estimate_policy_value`).
    pub value: f64,
    /// Standard error: sample sd of the terms over `sqrt(n)`, or the bootstrap sd.
    pub std_err: f64,
    /// Lower end of the interval (95% for the normal one).
    pub ci_low: f64,
    /// Upper end of the interval.
    pub ci_high: f64,
    /// Number of rounds.
    pub n: usize,
    /// How the interval was computed.
    pub interval: IntervalMethod,
    /// Whether the estimate can be believed: importance-weight and coverage diagnostics.
    pub diagnostics: Diagnostics,
}

/// An estimator with its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimator {
    /// Which estimator.
    pub kind: EstimatorKind,
    /// obp's `lambda_`: the largest importance weight kept by IPW and DR (infinity: no
    /// clipping), Switch-DR's threshold `tau`, DR-OS's shrinkage `lambda`; unused by the others.
    pub lambda: f64,
}

impl Estimator {
    /// The estimator with obp's defaults: no clipping, Switch-DR's `tau` infinite (it is DR),
    /// DR-OS's `lambda` 0 (it is DM).
    pub fn new(kind: EstimatorKind) -> Self {
        let lambda = match kind {
            EstimatorKind::DrOs => 0.0,
            EstimatorKind::Dm
            | EstimatorKind::Ipw
            | EstimatorKind::Snipw
            | EstimatorKind::Dr
            | EstimatorKind::Sndr
            | EstimatorKind::SwitchDr => f64::INFINITY,
        };
        Estimator { kind, lambda }
    }

    /// Sets obp's `lambda_`: the clipping of IPW and DR, Switch-DR's `tau`, DR-OS's `lambda`.
    pub fn with_lambda(self, lambda: f64) -> Self {
        Estimator { lambda, ..self }
    }

    /// Clips importance weights at `lambda` (IPW and DR only, as in obp).
    pub fn with_clipping(self, lambda: f64) -> Self {
        self.with_lambda(lambda)
    }

    /// Per-round terms whose mean is the estimate (obp's `_estimate_round_rewards`), after
    /// validating the log and the shapes.
    pub fn round_rewards(
        &self,
        log: &LoggedBandit,
        action_dist: &ActionDist,
        q_hat: Option<&ActionDist>,
    ) -> Result<Vec<f64>> {
        Ok(self.compute(log, action_dist, q_hat)?.terms)
    }

    fn compute(&self, log: &LoggedBandit, action_dist: &ActionDist, q_hat: Option<&ActionDist>) -> Result<Computed> {
        let prepared = Prepared::of(log, action_dist)?;
        self.compute_prepared(log, action_dist, q_hat, &prepared)
    }

    /// [`Estimator::compute`] on a log and candidate already checked, with their raw weights
    /// and coverage ([`Prepared`]), which every estimator of one evaluation shares.
    fn compute_prepared(
        &self,
        log: &LoggedBandit,
        action_dist: &ActionDist,
        q_hat: Option<&ActionDist>,
        prepared: &Prepared,
    ) -> Result<Computed> {
        if self.lambda.is_nan() || self.lambda < 0.0 {
            return Err(OpeError::InvalidParameter {
                name: "lambda",
                reason: format!(
                    "{} must be a non-negative number (infinity disables clipping)",
                    self.lambda
                ),
            });
        }
        let q_hat = match (self.kind.needs_q_hat(), q_hat) {
            (true, None) => {
                return Err(OpeError::MissingRewardModel {
                    estimator: self.kind.name(),
                });
            }
            (true, Some(q)) => {
                q.check_fits("q_hat", log)?;
                if q.len_list() != action_dist.len_list() {
                    return Err(OpeError::ShapeMismatch {
                        what: "q_hat",
                        expected: format!("{:?} like action_dist", action_dist.shape()),
                        got: format!("{:?}", q.shape()),
                    });
                }
                Some(q)
            }
            (false, _) => None,
        };
        let name = self.kind.name();
        let raw = &prepared.raw;
        let (terms, used) = match (self.kind, q_hat) {
            (EstimatorKind::Ipw, _) => {
                let w = clip(raw, self.lambda);
                (w.iter().zip(&log.rewards).map(|(w, r)| r * w).collect(), Some(w))
            }
            (EstimatorKind::Snipw, _) => {
                let norm = normalizer(raw, name)?;
                let terms = raw.iter().zip(&log.rewards).map(|(w, r)| r * w / norm).collect();
                (terms, Some(raw.clone()))
            }
            (EstimatorKind::Dm, Some(q)) => (dm_terms(log, action_dist, q), None),
            (EstimatorKind::Dr, Some(q)) => {
                let w = clip(raw, self.lambda);
                (correction(log, action_dist, q, &w, 1.0), Some(w))
            }
            (EstimatorKind::Sndr, Some(q)) => {
                let norm = normalizer(raw, name)?;
                (correction(log, action_dist, q, raw, norm), Some(raw.clone()))
            }
            (EstimatorKind::SwitchDr, Some(q)) => {
                let tau = self.lambda;
                let w: Vec<f64> = raw.iter().map(|&w| if w <= tau { w } else { 0.0 }).collect();
                (correction(log, action_dist, q, &w, 1.0), Some(w))
            }
            (EstimatorKind::DrOs, Some(q)) => {
                let lambda = self.lambda;
                let w: Vec<f64> = raw
                    .iter()
                    .map(|&w| {
                        if lambda == f64::INFINITY {
                            w
                        } else if lambda == 0.0 {
                            0.0
                        } else {
                            (lambda * w) / (w * w + lambda)
                        }
                    })
                    .collect();
                (correction(log, action_dist, q, &w, 1.0), Some(w))
            }
            (
                EstimatorKind::Dm
                | EstimatorKind::Dr
                | EstimatorKind::Sndr
                | EstimatorKind::SwitchDr
                | EstimatorKind::DrOs,
                None,
            ) => {
                return Err(OpeError::MissingRewardModel { estimator: name });
            }
        };
        let diagnostics = prepared.coverage.diagnose(used.as_deref());
        Ok(Computed { terms, diagnostics })
    }

    /// [`Estimator::estimate`] on a prepared log and candidate (see [`evaluate_with`](crate::evaluate_with)).
    pub(crate) fn estimate_prepared(
        &self,
        log: &LoggedBandit,
        action_dist: &ActionDist,
        q_hat: Option<&ActionDist>,
        prepared: &Prepared,
    ) -> Result<Estimate> {
        let computed = self.compute_prepared(log, action_dist, q_hat, prepared)?;
        Ok(self.normal(computed))
    }

    fn normal(&self, Computed { terms, diagnostics }: Computed) -> Estimate {
        let (value, std_err) = mean_and_std_err(&terms);
        Estimate {
            name: self.kind.name(),
            value,
            std_err,
            ci_low: value - Z_95 * std_err,
            ci_high: value + Z_95 * std_err,
            n: terms.len(),
            interval: IntervalMethod::Normal,
            diagnostics,
        }
    }

    /// The estimate with a normal-approximation 95% interval.
    pub fn estimate(
        &self,
        log: &LoggedBandit,
        action_dist: &ActionDist,
        q_hat: Option<&ActionDist>,
    ) -> Result<Estimate> {
        Ok(self.normal(self.compute(log, action_dist, q_hat)?))
    }

    /// The estimate with a seeded percentile-bootstrap interval (obp's `estimate_interval`);
    /// `value` stays the point estimate, `std_err` is the bootstrap sd.
    pub fn estimate_bootstrap(
        &self,
        log: &LoggedBandit,
        action_dist: &ActionDist,
        q_hat: Option<&ActionDist>,
        bootstrap: &Bootstrap,
    ) -> Result<Estimate> {
        let Computed { terms, diagnostics } = self.compute(log, action_dist, q_hat)?;
        let (value, _) = mean_and_std_err(&terms);
        let b = bootstrap_interval(&terms, bootstrap)?;
        Ok(Estimate {
            name: self.kind.name(),
            value,
            std_err: b.std_err,
            ci_low: b.ci_low,
            ci_high: b.ci_high,
            n: terms.len(),
            interval: IntervalMethod::Bootstrap(*bootstrap),
            diagnostics,
        })
    }
}

/// Direct Method estimate, normal 95% interval.
pub fn dm(log: &LoggedBandit, action_dist: &ActionDist, q_hat: &ActionDist) -> Result<Estimate> {
    Estimator::new(EstimatorKind::Dm).estimate(log, action_dist, Some(q_hat))
}

/// Inverse Probability Weighting estimate (no clipping), normal 95% interval.
pub fn ipw(log: &LoggedBandit, action_dist: &ActionDist) -> Result<Estimate> {
    Estimator::new(EstimatorKind::Ipw).estimate(log, action_dist, None)
}

/// Self-Normalized Inverse Probability Weighting estimate, normal 95% interval.
pub fn snipw(log: &LoggedBandit, action_dist: &ActionDist) -> Result<Estimate> {
    Estimator::new(EstimatorKind::Snipw).estimate(log, action_dist, None)
}

/// Doubly Robust estimate (no clipping), normal 95% interval.
pub fn dr(log: &LoggedBandit, action_dist: &ActionDist, q_hat: &ActionDist) -> Result<Estimate> {
    Estimator::new(EstimatorKind::Dr).estimate(log, action_dist, Some(q_hat))
}

/// Switch-DR estimate with threshold `tau` (DR where the weight is at most `tau`, DM above),
/// normal 95% interval.
pub fn switch_dr(log: &LoggedBandit, action_dist: &ActionDist, q_hat: &ActionDist, tau: f64) -> Result<Estimate> {
    Estimator::new(EstimatorKind::SwitchDr)
        .with_lambda(tau)
        .estimate(log, action_dist, Some(q_hat))
}

/// DR with optimistic shrinkage `lambda` (DR-OS), normal 95% interval.
pub fn dr_os(log: &LoggedBandit, action_dist: &ActionDist, q_hat: &ActionDist, lambda: f64) -> Result<Estimate> {
    Estimator::new(EstimatorKind::DrOs)
        .with_lambda(lambda)
        .estimate(log, action_dist, Some(q_hat))
}

/// Self-Normalized Doubly Robust estimate, normal 95% interval.
pub fn sndr(log: &LoggedBandit, action_dist: &ActionDist, q_hat: &ActionDist) -> Result<Estimate> {
    Estimator::new(EstimatorKind::Sndr).estimate(log, action_dist, Some(q_hat))
}

/// What every estimator of one evaluation shares, computed once: the log and the candidate
/// checked, the raw importance weights and the coverage diagnostics (the logger's frequency of
/// each action, the candidate's mass on rare ones), which cost `O(rounds x actions)` each.
pub(crate) struct Prepared {
    raw: Vec<f64>,
    coverage: Coverage,
}

impl Prepared {
    /// Checks `log` and `action_dist` and computes the shared parts.
    pub(crate) fn of(log: &LoggedBandit, action_dist: &ActionDist) -> Result<Prepared> {
        log.validate()?;
        action_dist.check_fits("action_dist", log)?;
        action_dist.check_probabilities()?;
        action_dist.check_eligible(log)?;
        let raw = weights(log, action_dist);
        let coverage = Coverage::of(log, action_dist, &raw);
        Ok(Prepared { raw, coverage })
    }
}

/// The per-round terms and the diagnostics of the weights they used.
struct Computed {
    terms: Vec<f64>,
    diagnostics: Diagnostics,
}

/// `min(w, lambda)` for each weight (obp's `np.minimum(iw, lambda_)`).
fn clip(raw: &[f64], lambda: f64) -> Vec<f64> {
    raw.iter().map(|w| w.min(lambda)).collect()
}

/// Importance weights `pi_e(a_i | i, k_i) / p_i`.
pub(crate) fn weights(log: &LoggedBandit, action_dist: &ActionDist) -> Vec<f64> {
    (0..log.n_rounds())
        .map(|i| action_dist.get(i, log.actions[i], log.position(i)) / log.propensities[i])
        .collect()
}

/// Mean importance weight, refused when zero.
fn normalizer(w: &[f64], estimator: &'static str) -> Result<f64> {
    let mean = w.iter().sum::<f64>() / w.len() as f64;
    if mean > 0.0 {
        Ok(mean)
    } else {
        Err(OpeError::ZeroWeights { estimator })
    }
}

/// `np.average(q_hat[i, :, k_i], weights=action_dist[i, :, k_i])`.
fn dm_term(i: usize, k: usize, action_dist: &ActionDist, q: &ActionDist) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for a in 0..action_dist.n_actions() {
        let p = action_dist.get(i, a, k);
        num += q.get(i, a, k) * p;
        den += p;
    }
    num / den
}

fn dm_terms(log: &LoggedBandit, action_dist: &ActionDist, q: &ActionDist) -> Vec<f64> {
    (0..log.n_rounds())
        .map(|i| dm_term(i, log.position(i), action_dist, q))
        .collect()
}

/// DR-style terms `DM_i + w_i (r_i - q_hat(i, a_i, k_i)) / norm`.
fn correction(log: &LoggedBandit, action_dist: &ActionDist, q: &ActionDist, w: &[f64], norm: f64) -> Vec<f64> {
    (0..log.n_rounds())
        .map(|i| {
            let k = log.position(i);
            let factual = q.get(i, log.actions[i], k);
            dm_term(i, k, action_dist, q) + w[i] * (log.rewards[i] - factual) / norm
        })
        .collect()
}
