//! Off-policy evaluation (OPE) of bandit policies on logged data: how a team runs a
//! candidate policy on real traffic logs before deploying it.
//!
//! This crate owns the log formats ([`LoggedBandit`], the Open Bandit Dataset reader
//! [`read_obd_csv`]) and the estimators DM, IPW, SNIPW, DR, SNDR, Switch-DR and DR-OS with
//! their intervals, defined exactly as in obp 0.5.7 (Open Bandit Pipeline), against which
//! `tests/ope/crosscheck.py` checks them. Every estimate carries [`Diagnostics`] (effective
//! sample size, largest and mean importance weight, the candidate's mass on actions the logger
//! rarely took) and a [`Verdict`]: trust, caution or do not trust, with its reasons. It is plain, synchronous computation: it must never
//! depend on HTTP, the store, or an async runtime; callers run it on a compute pool.
//!
//! ```
//! use keel_ope::{ActionDist, LoggedBandit, evaluate};
//!
//! // Uniform logging over two actions; evaluate "always action 1".
//! let log = LoggedBandit::new(2, vec![0, 1, 1, 0], vec![0.0, 1.0, 1.0, 1.0], vec![0.5; 4])?;
//! let pi_e = ActionDist::from_rows(&vec![vec![0.0, 1.0]; 4])?;
//! let estimates = evaluate(&log, &pi_e, None)?;
//! assert_eq!(estimates[0].name, "ipw");
//! assert_eq!(estimates[0].value, 1.0);
//! # Ok::<(), keel_ope::OpeError>(())
//! ```

mod action_dist;
pub mod diagnostics;
mod error;
mod estimators;
mod interval;
mod log;
mod obd;

pub use action_dist::ActionDist;
pub use diagnostics::{Diagnostics, Verdict, WeightStats};
pub use error::{OpeError, Result};
pub use estimators::{Estimate, Estimator, EstimatorKind, IntervalMethod, dm, dr, dr_os, ipw, sndr, snipw, switch_dr};
pub use interval::{Bootstrap, BootstrapInterval, Z_95, bootstrap_interval, mean_and_std_err};
pub use log::LoggedBandit;
pub use obd::{ItemContext, ObdLog, read_item_context_csv, read_obd_csv};

/// The settings of [`evaluate_with`]: the two estimators whose parameter has no neutral value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Switch-DR's `tau`: rounds whose importance weight exceeds it use the reward model alone.
    pub switch_tau: f64,
    /// DR-OS's `lambda`: weights are shrunk to `lambda w / (w^2 + lambda)`.
    pub dros_lambda: f64,
}

impl Settings {
    /// keel's default Switch-DR `tau`: a round where the candidate is more than 100 times as
    /// likely as the logger to take the logged action falls back to the model.
    pub const DEFAULT_SWITCH_TAU: f64 = 100.0;
    /// keel's default DR-OS `lambda`: `100^2`, so weights well under 100 are barely shrunk and
    /// the shrunk weight never exceeds 50 (`sqrt(lambda) / 2`).
    pub const DEFAULT_DROS_LAMBDA: f64 = 10_000.0;
}

impl Default for Settings {
    /// keel's defaults, chosen once (not tuned per data set; obp tunes them by SLOPE or a
    /// hyperparameter search): `tau = 100`, `lambda = 10,000`.
    fn default() -> Self {
        Settings {
            switch_tau: Settings::DEFAULT_SWITCH_TAU,
            dros_lambda: Settings::DEFAULT_DROS_LAMBDA,
        }
    }
}

/// Every estimator that applies, with normal 95% intervals and [`Settings::default`]: IPW and
/// SNIPW always; DM, DR, SNDR, Switch-DR and DR-OS when an estimated reward `q_hat` (same shape
/// as `action_dist`) is given. Order: dm, ipw, snipw, dr, sndr, switch-dr, dr-os.
pub fn evaluate(log: &LoggedBandit, action_dist: &ActionDist, q_hat: Option<&ActionDist>) -> Result<Vec<Estimate>> {
    evaluate_with(log, action_dist, q_hat, &Settings::default())
}

/// [`evaluate`] with the given Switch-DR `tau` and DR-OS `lambda` (IPW and DR unclipped).
pub fn evaluate_with(
    log: &LoggedBandit,
    action_dist: &ActionDist,
    q_hat: Option<&ActionDist>,
    settings: &Settings,
) -> Result<Vec<Estimate>> {
    // The checks, raw weights and coverage diagnostics are the same for every estimator:
    // computed once, shared by all seven.
    let prepared = estimators::Prepared::of(log, action_dist)?;
    EstimatorKind::ALL
        .into_iter()
        .filter(|k| q_hat.is_some() || !k.needs_q_hat())
        .map(|k| estimator(k, settings).estimate_prepared(log, action_dist, q_hat, &prepared))
        .collect()
}

/// The estimator of `kind` with `settings` applied.
pub fn estimator(kind: EstimatorKind, settings: &Settings) -> Estimator {
    match kind {
        EstimatorKind::SwitchDr => Estimator::new(kind).with_lambda(settings.switch_tau),
        EstimatorKind::DrOs => Estimator::new(kind).with_lambda(settings.dros_lambda),
        EstimatorKind::Dm | EstimatorKind::Ipw | EstimatorKind::Snipw | EstimatorKind::Dr | EstimatorKind::Sndr => {
            Estimator::new(kind)
        }
    }
}
