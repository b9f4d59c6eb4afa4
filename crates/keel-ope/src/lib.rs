//! Off-policy evaluation (OPE) of bandit policies on logged data: how a team runs a
//! candidate policy on real traffic logs before deploying it.
//!
//! This crate owns the log formats ([`LoggedBandit`], the Open Bandit Dataset reader
//! [`read_obd_csv`]) and the estimators DM, IPW, SNIPW, DR and SNDR with their intervals,
//! defined exactly as in obp 0.5.7 (Open Bandit Pipeline), against which
//! `tests/ope/crosscheck.py` checks them. It is plain, synchronous computation: it must never
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
mod error;
mod estimators;
mod interval;
mod log;
mod obd;

pub use action_dist::ActionDist;
pub use error::{OpeError, Result};
pub use estimators::{Estimate, Estimator, EstimatorKind, IntervalMethod, dm, dr, ipw, sndr, snipw};
pub use interval::{Bootstrap, BootstrapInterval, Z_95, bootstrap_interval, mean_and_std_err};
pub use log::LoggedBandit;
pub use obd::{ItemContext, ObdLog, read_item_context_csv, read_obd_csv};

/// Every estimator that applies, with normal 95% intervals and no clipping: IPW and SNIPW
/// always; DM, DR and SNDR when an estimated reward `q_hat` (same shape as `action_dist`) is
/// given. Order: dm, ipw, snipw, dr, sndr.
pub fn evaluate(log: &LoggedBandit, action_dist: &ActionDist, q_hat: Option<&ActionDist>) -> Result<Vec<Estimate>> {
    EstimatorKind::ALL
        .into_iter()
        .filter(|k| q_hat.is_some() || !k.needs_q_hat())
        .map(|k| Estimator::new(k).estimate(log, action_dist, q_hat))
        .collect()
}
