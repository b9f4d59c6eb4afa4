//! The small statistics shared by the assessment, drift monitoring, prediction-log performance
//! and off-policy evaluation, written once: sorting (an LSD radix sort on order-preserving keys),
//! numpy-style quantiles and percentiles, means and standard deviations (sample and population),
//! AUC with ties, log loss, fixed-horizon intervals and anytime-valid confidence sequences
//! (`sequential`), and (with the `arrow` feature) how a column's Arrow type is treated.
//!
//! Every function is pure and allocation-light; the results match numpy/scipy/scikit-learn to
//! the last bit where the callers' tests say so.

mod classify;
#[cfg(feature = "arrow")]
pub mod column;
mod moments;
mod quantile;
pub mod sequential;
mod sort;

pub use classify::{EPS, auc, auc_sorted, log_loss};
pub use moments::{mean_std_population, mean_std_sample, pairwise_sum};
pub use quantile::{percentile_sorted, quantile_sorted};
pub use sort::{from_order_key, order_key, radix_sort_u64, sort_f64};
