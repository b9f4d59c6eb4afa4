//! Offline analysis of a deployment, beside the live code: drift of its logged inputs and scores
//! against a reference table (`drift`, with the `lake` feature: it reads the prediction log from
//! the lake), and its decision log as logged bandit feedback for off-policy evaluation of a
//! candidate policy (`ope`), the report broken down by a context feature (`segments`) or adjusted
//! by a pre-period covariate (`cuped`), both asked through one [`breakdown::Breakdown`], and each
//! variant's decisions, share and reward rate over time (`timeline`). The
//! CLI (`keel monitor drift`, `keel ope deployment`, `keel deployment report --segment-by`) and
//! the API are thin callers of these operations.

pub mod breakdown;
pub mod cuped;
#[cfg(feature = "lake")]
pub mod drift;
mod error;
#[cfg(feature = "lake")]
pub mod histograms;
pub mod ope;
#[cfg(feature = "lake")]
pub mod outcomes;
#[cfg(feature = "lake")]
pub mod performance;
pub mod segments;
pub mod source;
pub mod timeline;

pub use error::{OfflineError, Result};
