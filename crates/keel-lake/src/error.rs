//! The one error type of keel-lake.

use std::path::PathBuf;

use deltalake::DeltaTableError;
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::error::DataFusionError;

/// Result alias used across keel-lake.
pub type Result<T, E = LakeError> = std::result::Result<T, E>;

/// Everything that can go wrong in a lake operation. Messages are lowercase and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The table name does not match `[a-z0-9_][a-z0-9_.-]{0,127}`.
    #[error("invalid table name {name:?}: use 1-128 characters of [a-z0-9_.-], starting with [a-z0-9_]")]
    InvalidTableName { name: String },
    /// The lake root is not usable (an unsupported URL scheme, a store without conditional writes...).
    #[error("unsupported lake root {root:?}: {reason}")]
    UnsupportedRoot { root: String, reason: String },
    /// The table does not exist.
    #[error("table {table:?} not found: ingest a file into it first")]
    TableNotFound { table: String },
    /// The requested version or timestamp does not exist.
    #[error("table {table:?} has no version {at}: see its history")]
    VersionNotFound { table: String, at: String },
    /// The ingest options are inconsistent (unknown format, bad schema string, ...).
    #[error("invalid ingest options: {0}")]
    InvalidOptions(String),
    /// The input file could not be read or parsed; the message names the file and line or column.
    #[error("cannot read {}: {message}", file.display())]
    Input { file: PathBuf, message: String },
    /// The input schema does not match the existing table.
    #[error("schema of {} conflicts with table {table:?}: {detail}; file schema: {file_schema}; table schema: {table_schema}", file.display())]
    SchemaConflict {
        table: String,
        file: PathBuf,
        detail: String,
        file_schema: String,
        table_schema: String,
    },
    /// A SQL query failed to plan or execute.
    #[error("sql error: {0}")]
    Sql(#[from] DataFusionError),
    /// An error from the Delta Lake library.
    #[error("delta error: {0}")]
    Delta(#[from] DeltaTableError),
    /// An Arrow error outside of file parsing (for example pretty printing).
    #[error("arrow error: {0}")]
    Arrow(#[from] ArrowError),
    /// The bucket of a lake in object storage cannot be used (missing bucket, unreachable
    /// endpoint, refused credentials...); the message says what to fix.
    #[error("cannot use the lake at {location}: {message}")]
    Storage { location: String, message: String },
    /// A filesystem error on the lake root.
    #[error("io error on {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl LakeError {
    /// What kind of failure this is: the caller's request (a bad name, option, query or version),
    /// the caller's data (an unreadable file, a schema conflict), a missing table, an unreachable
    /// bucket, or keel's own fault.
    pub fn kind(&self) -> keel_types::ErrorKind {
        use keel_types::ErrorKind as K;
        match self {
            LakeError::InvalidTableName { .. }
            | LakeError::InvalidOptions(_)
            | LakeError::Sql(_)
            | LakeError::VersionNotFound { .. } => K::InvalidArgument,
            LakeError::TableNotFound { .. } => K::NotFound,
            LakeError::Input { .. } | LakeError::SchemaConflict { .. } => K::Unprocessable,
            LakeError::UnsupportedRoot { .. } | LakeError::Delta(_) | LakeError::Arrow(_) | LakeError::Io { .. } => {
                K::Internal
            }
            // The lake's bucket is unreachable or refuses keel: not the caller's fault.
            LakeError::Storage { .. } => K::Unavailable,
        }
    }

    /// A stable public code for this error, for API bodies and CLI exit messages.
    pub fn code(&self) -> &'static str {
        match self {
            LakeError::InvalidTableName { .. } => "invalid_table_name",
            LakeError::UnsupportedRoot { .. } => "unsupported_root",
            LakeError::TableNotFound { .. } => "table_not_found",
            LakeError::VersionNotFound { .. } => "version_not_found",
            LakeError::InvalidOptions(_) => "invalid_options",
            LakeError::Input { .. } => "invalid_input",
            LakeError::SchemaConflict { .. } => "schema_conflict",
            LakeError::Sql(_) => "sql_error",
            LakeError::Delta(_) => "delta_error",
            LakeError::Arrow(_) => "arrow_error",
            LakeError::Storage { .. } => "storage_error",
            LakeError::Io { .. } => "io_error",
        }
    }
}

impl keel_types::KeelError for LakeError {
    fn kind(&self) -> keel_types::ErrorKind {
        LakeError::kind(self)
    }

    fn code(&self) -> &'static str {
        LakeError::code(self)
    }
}
