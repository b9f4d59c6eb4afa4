//! Whether an estimate can be believed: diagnostics of the importance weights and of the
//! logger's coverage of the candidate's actions, and a verdict with its reasons.
//!
//! IPW-type estimates average `w_i r_i` over the log; when the candidate puts weight where the
//! logger almost never went, a handful of rows with huge weights carry the whole estimate and
//! its normal interval is meaningless (the standard error is itself estimated from those few
//! rows). Each [`Estimate`](crate::Estimate) therefore carries [`Diagnostics`]:
//!
//! - the **effective sample size** `ESS = (sum w)^2 / sum w^2` (Kish) of the weights *as the
//!   estimator uses them* (clipped by IPW/DR with a finite `lambda`, zeroed above `tau` by
//!   Switch-DR, shrunk by DR-OS), its share of the rounds, the **maximum** and **mean** weight and
//!   the maximum weight's share of the sum; DM uses no weights and has none;
//! - the **rare-action mass**: the share of the candidate's probability, averaged over rounds, on
//!   actions the logger took in fewer than `1 / (10 · n_actions)` of the rounds (per position
//!   when the log has positions; among the rounds where the action was eligible, when the log
//!   has eligible sets). The logger's frequency of an action is the empirical estimate
//!   of its average propensity `E_x[pi_b(a | x)]`; an action never logged counts as rare. The
//!   estimators learn about such actions from few rows (IPW) or from the reward model's
//!   extrapolation (DM, and DR where it falls back on the model).
//!
//! The verdict, with every threshold a documented constant below:
//!
//! | verdict | when (any of) |
//! | --- | --- |
//! | `do_not_trust` | ESS < [`MIN_ESS`] rows; one row carries more than [`MAX_WEIGHT_SHARE_DO_NOT_TRUST`] of the sum of weights; rare-action mass > [`RARE_MASS_DO_NOT_TRUST`] |
//! | `caution` | ESS < [`CAUTION_ESS_SHARE`] of the rounds; one row carries more than [`MAX_WEIGHT_SHARE_CAUTION`] of the sum; rare-action mass > [`RARE_MASS_CAUTION`]; the mean raw weight outside [[`MEAN_WEIGHT_LOW`], [`MEAN_WEIGHT_HIGH`]] (it is 1 in expectation when the propensities are right and the logger covers the candidate); DM always (its bias is not measured by these diagnostics) |
//! | `trust` | none of the above |
//!
//! These are keel's choices, rules of thumb rather than tests: ESS below 30 rows is too few for
//! a normal interval; a tenth of the weight on one row means that row decides the estimate.
//! Each reason is named in the output.

use crate::action_dist::ActionDist;
use crate::log::LoggedBandit;

/// Fewer effective rows than this: do not trust.
pub const MIN_ESS: f64 = 30.0;
/// ESS below this share of the rounds: caution.
pub const CAUTION_ESS_SHARE: f64 = 0.1;
/// The largest weight above this share of the sum of weights: do not trust.
pub const MAX_WEIGHT_SHARE_DO_NOT_TRUST: f64 = 0.1;
/// The largest weight above this share of the sum of weights: caution.
pub const MAX_WEIGHT_SHARE_CAUTION: f64 = 0.01;
/// An action is rare for the logger when it took it in fewer than `1 / (RARE_FACTOR · n_actions)` of the rounds.
pub const RARE_FACTOR: f64 = 10.0;
/// Candidate mass on rare actions above this: caution.
pub const RARE_MASS_CAUTION: f64 = 0.05;
/// Candidate mass on rare actions above this: do not trust.
pub const RARE_MASS_DO_NOT_TRUST: f64 = 0.5;
/// Mean raw importance weight below this: caution.
pub const MEAN_WEIGHT_LOW: f64 = 0.5;
/// Mean raw importance weight above this: caution.
pub const MEAN_WEIGHT_HIGH: f64 = 2.0;

/// How far an estimate can be believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// No diagnostic raised a concern.
    Trust,
    /// At least one diagnostic raised a concern: read the reasons.
    Caution,
    /// The estimate rests on too few rows or on actions the logger barely took.
    DoNotTrust,
}

impl Verdict {
    /// `trust`, `caution` or `do_not_trust`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Trust => "trust",
            Verdict::Caution => "caution",
            Verdict::DoNotTrust => "do_not_trust",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Summary of a set of importance weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightStats {
    /// Number of rounds.
    pub n: usize,
    /// Effective sample size `(sum w)^2 / sum w^2` (0 when every weight is 0).
    pub ess: f64,
    /// `ess / n`.
    pub ess_share: f64,
    /// Largest weight.
    pub max: f64,
    /// Mean weight.
    pub mean: f64,
    /// Largest weight over the sum of weights (0 when every weight is 0).
    pub max_share: f64,
}

impl WeightStats {
    /// Statistics of `weights` (non-negative, at least one).
    pub fn of(weights: &[f64]) -> WeightStats {
        let n = weights.len();
        let (sum, sum_sq, max) = weights
            .iter()
            .fold((0.0, 0.0, 0.0_f64), |(s, q, m), w| (s + w, q + w * w, m.max(*w)));
        let ess = if sum_sq > 0.0 { sum * sum / sum_sq } else { 0.0 };
        WeightStats {
            n,
            ess,
            ess_share: if n > 0 { ess / n as f64 } else { 0.0 },
            max,
            mean: if n > 0 { sum / n as f64 } else { 0.0 },
            max_share: if sum > 0.0 { max / sum } else { 0.0 },
        }
    }
}

/// The diagnostics of one estimate and its verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics {
    /// The weights as this estimator uses them; `None` for DM, which uses none.
    pub weights: Option<WeightStats>,
    /// The raw importance weights `pi_e(a_i | x_i) / p_i` (the same for every estimator).
    pub raw_weights: WeightStats,
    /// Share of the candidate's probability on actions the logger rarely took.
    pub rare_mass: f64,
    /// The logger's frequency below which an action is rare: `1 / (10 · n_actions)`.
    pub rare_threshold: f64,
    /// The verdict.
    pub verdict: Verdict,
    /// Why the verdict is not `trust`, one sentence each (empty for `trust`).
    pub reasons: Vec<String>,
}

/// What the diagnostics need from the log and the candidate, computed once per evaluation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Coverage {
    pub raw_weights: WeightStats,
    pub rare_mass: f64,
    pub rare_threshold: f64,
}

impl Coverage {
    /// The raw weights' statistics and the candidate's mass on actions the logger rarely took.
    pub(crate) fn of(log: &LoggedBandit, action_dist: &ActionDist, raw_weights: &[f64]) -> Coverage {
        let (n, n_actions, len_list) = action_dist.shape();
        let rare_threshold = 1.0 / (RARE_FACTOR * n_actions as f64);
        // The logger's frequency of each action at each position, among the rounds where the
        // action was eligible (every round without eligible sets).
        let mut counts = vec![0.0_f64; n_actions * len_list];
        let mut offered = vec![0.0_f64; n_actions * len_list];
        for i in 0..n {
            let k = log.position(i);
            counts[log.actions[i] * len_list + k] += 1.0;
            for a in 0..n_actions {
                if log.is_eligible(i, a) {
                    offered[a * len_list + k] += 1.0;
                }
            }
        }
        let rare: Vec<bool> = (0..n_actions * len_list)
            .map(|idx| offered[idx] == 0.0 || counts[idx] / offered[idx] < rare_threshold)
            .collect();
        let mut mass = 0.0;
        for i in 0..n {
            let k = log.position(i);
            mass += (0..n_actions)
                .filter(|a| rare[a * len_list + k])
                .map(|a| action_dist.get(i, a, k))
                .sum::<f64>();
        }
        Coverage {
            raw_weights: WeightStats::of(raw_weights),
            rare_mass: if n > 0 { mass / n as f64 } else { 0.0 },
            rare_threshold,
        }
    }

    /// The diagnostics of an estimator that uses `weights` (`None`: a model-only estimate).
    pub(crate) fn diagnose(&self, weights: Option<&[f64]>) -> Diagnostics {
        let stats = weights.map(WeightStats::of);
        let mut bad = Vec::new();
        let mut caution = Vec::new();
        if let Some(s) = &stats {
            if s.ess < MIN_ESS {
                bad.push(format!(
                    "effective sample size {:.1} of {} rounds is below {MIN_ESS}",
                    s.ess, s.n
                ));
            } else if s.ess_share < CAUTION_ESS_SHARE {
                caution.push(format!(
                    "effective sample size {:.0} is {:.1}% of {} rounds (below {:.0}%)",
                    s.ess,
                    100.0 * s.ess_share,
                    s.n,
                    100.0 * CAUTION_ESS_SHARE
                ));
            }
            if s.max_share > MAX_WEIGHT_SHARE_DO_NOT_TRUST {
                bad.push(format!(
                    "one row carries {:.1}% of the importance weight (max weight {:.4})",
                    100.0 * s.max_share,
                    s.max
                ));
            } else if s.max_share > MAX_WEIGHT_SHARE_CAUTION {
                caution.push(format!(
                    "one row carries {:.1}% of the importance weight (max weight {:.4})",
                    100.0 * s.max_share,
                    s.max
                ));
            }
        } else {
            caution.push("dm rests on the reward model alone: its bias is not measured here".to_owned());
        }
        let rare = format!(
            "{:.1}% of the candidate's probability is on actions the logger took in under 1/{:.0} of the rounds",
            100.0 * self.rare_mass,
            1.0 / self.rare_threshold
        );
        if self.rare_mass > RARE_MASS_DO_NOT_TRUST {
            bad.push(rare);
        } else if self.rare_mass > RARE_MASS_CAUTION {
            caution.push(rare);
        }
        let mean = self.raw_weights.mean;
        if !(MEAN_WEIGHT_LOW..=MEAN_WEIGHT_HIGH).contains(&mean) {
            caution.push(format!(
                "mean importance weight {mean:.3} is far from 1: check the logged propensities and the logger's coverage"
            ));
        }
        let verdict = if !bad.is_empty() {
            Verdict::DoNotTrust
        } else if !caution.is_empty() {
            Verdict::Caution
        } else {
            Verdict::Trust
        };
        bad.extend(caution);
        Diagnostics {
            weights: stats,
            raw_weights: self.raw_weights,
            rare_mass: self.rare_mass,
            rare_threshold: self.rare_threshold,
            verdict,
            reasons: bad,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ess_of_equal_and_degenerate_weights() {
        let s = WeightStats::of(&[1.0; 100]);
        assert_eq!((s.ess, s.ess_share, s.max, s.mean), (100.0, 1.0, 1.0, 1.0));
        let mut w = vec![0.0; 100];
        w[3] = 100.0;
        let s = WeightStats::of(&w);
        assert_eq!((s.ess, s.max, s.max_share), (1.0, 100.0, 1.0));
        assert_eq!(WeightStats::of(&[0.0; 4]).ess, 0.0);
    }

    fn log(actions: Vec<usize>, n_actions: usize) -> LoggedBandit {
        let n = actions.len();
        LoggedBandit::new(n_actions, actions, vec![0.0; n], vec![1.0 / n_actions as f64; n]).unwrap()
    }

    #[test]
    fn rare_mass_counts_actions_the_logger_barely_took() {
        // 2 actions, threshold 1/20: action 1 taken in 1 of 100 rounds is rare.
        let mut actions = vec![0; 100];
        actions[7] = 1;
        let log = log(actions, 2);
        let pi = ActionDist::tiled(100, &[vec![0.7], vec![0.3]]).unwrap();
        let c = Coverage::of(&log, &pi, &[1.0; 100]);
        assert!((c.rare_mass - 0.3).abs() < 1e-12, "{}", c.rare_mass);
        assert_eq!(c.rare_threshold, 0.05);
        let d = c.diagnose(Some(&[1.0; 100]));
        assert_eq!(d.verdict, Verdict::Caution);
        assert!(
            d.reasons[0].contains("30.0% of the candidate's probability"),
            "{:?}",
            d.reasons
        );
    }

    #[test]
    fn verdicts_follow_the_thresholds() {
        let log = log((0..200).map(|i| i % 2).collect(), 2);
        let pi = ActionDist::tiled(200, &[vec![0.5], vec![0.5]]).unwrap();
        let c = Coverage::of(&log, &pi, &[1.0; 200]);
        let d = c.diagnose(Some(&[1.0; 200]));
        assert_eq!((d.verdict, d.reasons.len()), (Verdict::Trust, 0));
        assert_eq!(c.diagnose(None).verdict, Verdict::Caution);
        // ESS 20 < 30
        let mut w = vec![0.0; 200];
        w[..20].fill(10.0);
        let d = c.diagnose(Some(&w));
        assert_eq!(d.verdict, Verdict::DoNotTrust);
        assert!(
            d.reasons[0].starts_with("effective sample size 20.0"),
            "{:?}",
            d.reasons
        );
        // ESS 50 >= 30 but 25% of rounds is fine; one row with 2% of the weight: caution
        let mut w = vec![1.0; 200];
        w[0] = 4.0;
        let d = c.diagnose(Some(&w));
        assert_eq!(d.verdict, Verdict::Caution, "{:?}", d.reasons);
        assert!(d.reasons[0].contains("one row carries"), "{:?}", d.reasons);
    }
}
