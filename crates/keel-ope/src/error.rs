//! The error type of the crate and its stable public codes.

use std::path::PathBuf;

/// Errors of off-policy evaluation; each has a stable public [`code`](OpeError::code).
#[derive(Debug, thiserror::Error)]
pub enum OpeError {
    /// The logged data has no rounds.
    #[error("logged data has no rounds; log at least one round before evaluating")]
    EmptyLog,
    /// A per-round field of the log has a different length from `actions`.
    #[error("logged data: {field} has {got} entries but actions has {expected}; give every field one entry per round")]
    LengthMismatch {
        /// The offending field.
        field: &'static str,
        /// Number of rounds (length of `actions`).
        expected: usize,
        /// Length of the offending field.
        got: usize,
    },
    /// One round of the log holds an invalid value.
    #[error("logged data row {row}: {field} {reason}")]
    InvalidRow {
        /// 1-based row (round) number.
        row: usize,
        /// The offending field.
        field: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// An action distribution or reward-model tensor has the wrong shape for the log.
    #[error("{what}: expected shape {expected} but got {got}; build it with one entry per round, action and position")]
    ShapeMismatch {
        /// Which input (`action_dist` or `q_hat`).
        what: &'static str,
        /// The expected shape.
        expected: String,
        /// The shape that was given.
        got: String,
    },
    /// An action distribution or reward-model tensor holds an invalid value.
    #[error("{what} round {round}: {reason}")]
    InvalidTensor {
        /// Which input (`action_dist` or `q_hat`).
        what: &'static str,
        /// 1-based round number.
        round: usize,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// An estimator that needs an estimated reward (`q_hat`) was called without one.
    #[error("{estimator} needs an estimated reward q_hat; fit a reward model and pass its predictions")]
    MissingRewardModel {
        /// Name of the estimator.
        estimator: &'static str,
    },
    /// Self-normalization is undefined because every importance weight is zero.
    #[error(
        "{estimator}: every importance weight is zero (the evaluation policy never picks a logged action); use ipw or dr instead"
    )]
    ZeroWeights {
        /// Name of the estimator.
        estimator: &'static str,
    },
    /// A parameter of an estimator or interval is out of range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A CSV file could not be opened or read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A CSV file lacks a required column.
    #[error("{path}: missing column `{column}` in the header; export the file with that column")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The missing column.
        column: String,
    },
    /// A CSV file holds a malformed row.
    #[error("{path}: line {line}: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line number in the file (the header is line 1).
        line: u64,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl OpeError {
    /// Stable public code.
    pub fn code(&self) -> &'static str {
        match self {
            OpeError::EmptyLog => "ope.empty_log",
            OpeError::LengthMismatch { .. } => "ope.invalid_log",
            OpeError::InvalidRow { .. } => "ope.invalid_log",
            OpeError::ShapeMismatch { .. } => "ope.shape_mismatch",
            OpeError::InvalidTensor { .. } => "ope.invalid_action_dist",
            OpeError::MissingRewardModel { .. } => "ope.missing_reward_model",
            OpeError::ZeroWeights { .. } => "ope.zero_weights",
            OpeError::InvalidParameter { .. } => "ope.invalid_parameter",
            OpeError::Io { .. } => "ope.io",
            OpeError::MissingColumn { .. } => "ope.invalid_file",
            OpeError::Csv { .. } => "ope.invalid_file",
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, OpeError>;
