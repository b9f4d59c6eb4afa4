//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while computing a drift report.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid Parquet, or a column could not be decoded.
    #[error("cannot decode parquet file {path}: {message}")]
    Parquet { path: PathBuf, message: String },
    /// A file holds no rows.
    #[error("{path} has no rows: drift needs at least one row in the reference and in the current data")]
    EmptyFile { path: PathBuf },
    /// Columns that exist in only one of the two files.
    #[error(
        "the two files have different columns: only in reference [{}], only in current [{}]; \
         pass the same schema or select common columns",
        only_in_reference.join(", "),
        only_in_current.join(", ")
    )]
    ColumnMismatch {
        only_in_reference: Vec<String>,
        only_in_current: Vec<String>,
    },
    /// A requested column is in neither file.
    #[error("column {0} is not in the files; check the name")]
    UnknownColumn(String),
    /// A column whose type the monitor does not handle (for example a struct or a timestamp).
    #[error("column {column} has type {data_type}, which drift does not support; drop it from the selection")]
    UnsupportedType { column: String, data_type: String },
    /// The same column is numeric in one file and categorical in the other.
    #[error("column {column} is {reference} in the reference but {current} in the current data; align the types")]
    TypeMismatch {
        column: String,
        reference: String,
        current: String,
    },
    /// After dropping missing values a column has no values left in one file.
    #[error("column {column} has no non-missing values in the {side} data; drop it or fix the data")]
    EmptyColumn { column: String, side: &'static str },
    /// A reference table holds no rows.
    #[error("the reference has no rows: a monitor needs at least one reference row")]
    EmptyReference,
    /// One side of an in-memory comparison holds no rows.
    #[error("the {side} batches have no rows: drift needs at least one row on each side")]
    EmptyBatches { side: &'static str },
    /// The worker pool of a drift computation could not be started.
    #[error("cannot start the drift worker threads: {0}")]
    ThreadPool(String),
    /// A column of in-memory data could not be converted.
    #[error("column {column} cannot be read: {message}")]
    Arrow { column: String, message: String },
}

impl MonitorError {
    /// Stable public code of the error, for the API and CLI layers to map.
    pub fn code(&self) -> &'static str {
        match self {
            MonitorError::Io { .. } => "monitor.io",
            MonitorError::Parquet { .. } => "monitor.bad_parquet",
            MonitorError::EmptyFile { .. } => "monitor.empty_file",
            MonitorError::ColumnMismatch { .. } => "monitor.column_mismatch",
            MonitorError::UnknownColumn(_) => "monitor.unknown_column",
            MonitorError::UnsupportedType { .. } => "monitor.unsupported_type",
            MonitorError::TypeMismatch { .. } => "monitor.type_mismatch",
            MonitorError::EmptyColumn { .. } => "monitor.empty_column",
            MonitorError::EmptyReference => "monitor.empty_reference",
            MonitorError::Arrow { .. } => "monitor.bad_column",
            MonitorError::EmptyBatches { .. } => "monitor.empty_batches",
            MonitorError::ThreadPool(_) => "monitor.thread_pool",
        }
    }
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, MonitorError>;
