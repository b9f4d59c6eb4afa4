//! `keel ope ...`: off-policy evaluation of a candidate policy on logged data.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum OpeCommand {
    /// On an Open Bandit Dataset CSV (e.g. ../shared/data/obd/random/all/all.csv)
    Obd {
        file: PathBuf,
        /// The candidate policy: JSON inline or a file, e.g. '{"type": "thompson_beta"}'
        #[arg(long)]
        candidate: String,
        /// Share of the log (oldest first) used to warm the candidate up
        #[arg(long, default_value_t = 0.5)]
        train_fraction: f64,
        /// A log of the candidate itself, whose observed mean reward is printed as ground truth
        #[arg(long)]
        ground_truth: Option<PathBuf>,
        #[command(flatten)]
        estimators: OpeEstimatorArgs,
    },
    /// On a deployment's own decision log
    Deployment {
        name: String,
        #[arg(long)]
        candidate: String,
        #[arg(long, default_value_t = 0.5)]
        train_fraction: f64,
        /// What a round's reward is: `reward` (the decision metric), `net` (minus the logged
        /// variant's cost) or the name of another declared metric
        #[arg(long, default_value = "reward")]
        outcome: String,
        #[command(flatten)]
        estimators: OpeEstimatorArgs,
    },
}

/// The parameters of the estimators that have one.
#[derive(Debug, Clone, Copy, Args)]
pub struct OpeEstimatorArgs {
    /// Switch-DR's threshold: rounds whose importance weight exceeds it use the reward model alone
    #[arg(long, default_value_t = keel_ope::Settings::DEFAULT_SWITCH_TAU)]
    pub switch_tau: f64,
    /// DR-OS's shrinkage: an importance weight w becomes lambda w / (w^2 + lambda)
    #[arg(long, default_value_t = keel_ope::Settings::DEFAULT_DROS_LAMBDA)]
    pub dros_lambda: f64,
}
