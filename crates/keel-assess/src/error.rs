//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while profiling or assessing a table. Messages are lowercase and
/// say what to do.
#[derive(Debug, thiserror::Error)]
pub enum AssessError {
    /// No file was given (for example a table version without data files).
    #[error("no data files to read: the table has no rows yet; ingest data first")]
    NoFiles,
    /// A file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid Parquet, or a column could not be decoded.
    #[error("cannot decode parquet file {}: {message}", path.display())]
    Parquet { path: PathBuf, message: String },
    /// The files hold no rows.
    #[error("the table is empty (0 rows): there is nothing to assess; ingest data first")]
    Empty,
    /// A named column (target, time, entity) is not in the table.
    #[error("{role} column {column:?} is not in the table; columns are: {available}")]
    UnknownColumn {
        role: &'static str,
        column: String,
        available: String,
    },
    /// The target's type cannot be a binary target.
    #[error(
        "target column {column:?} has type {data_type}: the assessment needs a binary target \
         (numbers or booleans with two values, e.g. 0/1); encode it as 0/1 first"
    )]
    TargetType { column: String, data_type: String },
    /// The target has only one value (or none) among its non-missing rows.
    #[error(
        "target column {column:?} has a single class ({detail}): nothing to learn; \
         check the target column or collect rows of the other class"
    )]
    TargetOneClass { column: String, detail: String },
    /// The target has more than two values.
    #[error(
        "target column {column:?} has {distinct} distinct values ({examples}, ...): the assessment \
         handles binary targets; binarise it (e.g. value > threshold) first"
    )]
    TargetNotBinary {
        column: String,
        distinct: usize,
        examples: String,
    },
    /// The time column's type is not a time.
    #[error(
        "time column {column:?} has type {data_type}, which is not a time: pass a timestamp or date \
         column, or strings like 2019-11-24 00:00:20.110351+00:00 (RFC 3339)"
    )]
    TimeType { column: String, data_type: String },
    /// A string in the time column does not parse as a time.
    #[error(
        "time column {column:?}: row {row} holds {value:?}, which is not a time; expected RFC 3339 \
         or YYYY-MM-DD[ HH:MM:SS[.fff][+00:00]]"
    )]
    TimeParse { column: String, row: u64, value: String },
    /// Options that do not fit together (the same column as target and time, zero folds, ...).
    #[error("invalid options: {0}")]
    InvalidOptions(String),
}

impl AssessError {
    /// Stable public code of the error, for the API and CLI layers to map.
    pub fn code(&self) -> &'static str {
        match self {
            AssessError::NoFiles => "assess.no_files",
            AssessError::Io { .. } => "assess.io",
            AssessError::Parquet { .. } => "assess.bad_parquet",
            AssessError::Empty => "assess.empty_table",
            AssessError::UnknownColumn { .. } => "assess.unknown_column",
            AssessError::TargetType { .. } => "assess.target_type",
            AssessError::TargetOneClass { .. } => "assess.target_one_class",
            AssessError::TargetNotBinary { .. } => "assess.target_not_binary",
            AssessError::TimeType { .. } => "assess.time_type",
            AssessError::TimeParse { .. } => "assess.time_parse",
            AssessError::InvalidOptions(_) => "assess.invalid_options",
        }
    }
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, AssessError>;
