//! The one error type of keel-data.

use keel_assess::AssessError;
use keel_catalog::CatalogError;
use keel_lake::LakeError;
use keel_monitor::MonitorError;
use keel_store::StoreError;
use keel_types::ErrorKind;

/// Result alias used across keel-data.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// What can go wrong in a data operation. Catalog, lake and store errors keep their own kind
/// and code, so the CLI and `/v1/data` report them alike.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A check or catalog change failed (denied, unknown token, unknown team, ...).
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A lake operation failed (unknown table, SQL that does not plan, unreadable file, ...).
    #[error(transparent)]
    Lake(Box<LakeError>),
    /// An ingest failed before its commit: nothing was written.
    #[error("ingest into {table} failed; the table is unchanged: {source}")]
    Ingest { table: String, source: Box<LakeError> },
    /// The metadata store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request itself is wrong (a limit too high, an edit that changes nothing, ...).
    #[error("{0}")]
    Invalid(String),
    /// One side of a drift comparison is a table without rows.
    #[error("the {side} table {input} has no rows: nothing to compare")]
    NothingToCompare { side: &'static str, input: String },
    /// The drift comparison failed (unreadable file, columns that differ, ...).
    #[error(transparent)]
    Drift(#[from] MonitorError),
    /// The assessment of `input` failed (unknown target, a target that is not binary, ...).
    #[error("cannot assess {input}: {source}")]
    Assess { input: String, source: AssessError },
    /// A local file or folder could not be made or written.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A compute task panicked or was cancelled.
    #[error("the {what} task failed: {message}")]
    Task { what: &'static str, message: String },
}

impl From<LakeError> for DataError {
    fn from(e: LakeError) -> Self {
        DataError::Lake(Box::new(e))
    }
}

impl DataError {
    /// What kind of failure this is, for the transports' status mapping.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DataError::Catalog(e) => e.kind(),
            DataError::Lake(e) | DataError::Ingest { source: e, .. } => e.kind(),
            DataError::Store(e) => e.kind(),
            DataError::Invalid(_) => ErrorKind::InvalidArgument,
            DataError::NothingToCompare { .. } => ErrorKind::Unprocessable,
            DataError::Drift(e) => drift_kind(e),
            DataError::Assess { source, .. } => assess_kind(source),
            DataError::Io { .. } | DataError::Task { .. } => ErrorKind::Internal,
        }
    }

    /// A stable public code for API bodies.
    pub fn code(&self) -> &'static str {
        match self {
            DataError::Catalog(e) => e.code(),
            DataError::Lake(e) | DataError::Ingest { source: e, .. } => e.code(),
            DataError::Store(e) => e.code(),
            DataError::Invalid(_) => "invalid_request",
            DataError::NothingToCompare { .. } => "data.nothing_to_compare",
            DataError::Drift(e) => e.code(),
            DataError::Assess { source, .. } => source.code(),
            DataError::Io { .. } => "data.io",
            DataError::Task { .. } => "data.task_failed",
        }
    }
}

fn drift_kind(e: &MonitorError) -> ErrorKind {
    match e {
        MonitorError::Io { .. } => ErrorKind::NotFound,
        MonitorError::ColumnMismatch { .. } | MonitorError::UnknownColumn(_) => ErrorKind::InvalidArgument,
        MonitorError::Parquet { .. }
        | MonitorError::EmptyFile { .. }
        | MonitorError::UnsupportedType { .. }
        | MonitorError::TypeMismatch { .. }
        | MonitorError::EmptyColumn { .. }
        | MonitorError::EmptyReference
        | MonitorError::EmptyBatches { .. }
        | MonitorError::Arrow { .. } => ErrorKind::Unprocessable,
        MonitorError::ThreadPool(_) => ErrorKind::Internal,
    }
}

fn assess_kind(e: &AssessError) -> ErrorKind {
    match e {
        AssessError::Io { .. } => ErrorKind::NotFound,
        AssessError::UnknownColumn { .. } | AssessError::InvalidOptions(_) => ErrorKind::InvalidArgument,
        AssessError::NoFiles
        | AssessError::Parquet { .. }
        | AssessError::Empty
        | AssessError::TargetType { .. }
        | AssessError::TargetOneClass { .. }
        | AssessError::TargetNotBinary { .. }
        | AssessError::TimeType { .. }
        | AssessError::TimeParse { .. } => ErrorKind::Unprocessable,
    }
}

impl keel_types::KeelError for DataError {
    fn kind(&self) -> ErrorKind {
        DataError::kind(self)
    }

    fn code(&self) -> &'static str {
        DataError::code(self)
    }
}
